"""``python -m polyloss``: the ``polyloss`` command (``python -m polyloss check --help``)."""

import sys

from polyloss.cli import main

if __name__ == "__main__":
    sys.exit(main())

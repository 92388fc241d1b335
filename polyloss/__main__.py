"""``python -m polyloss``: the ``polyloss`` command (``python -m polyloss check --help``)."""

import sys

from polyloss.cli import main

sys.exit(main())

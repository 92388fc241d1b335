"""The examples in the docstrings run (NumPy) and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import re

import pytest

from helpers import run_python


def _modules() -> list[str]:
    """Every module of the installed package (``polyloss.backends`` included): a new module's examples
    run without being listed here."""
    import pkgutil

    import polyloss

    return ["polyloss"] + sorted(m.name for m in pkgutil.walk_packages(polyloss.__path__, "polyloss."))


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_docs_code_blocks_run(page):
    """The ```python blocks of a docs page run, in order, in a fresh process (all frameworks installed)."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    if not blocks:
        pytest.skip(f"{page} has no python code blocks")
    run_python(code="\n\n".join(blocks))

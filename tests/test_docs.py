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
    import importlib.util
    import pkgutil

    import polyloss
    from polyloss import backends

    # a GPU-only backend's adapter imports its framework at module level; on machines without it (every
    # CPU machine for CuPy) there is nothing to run, and test_gpu checks that it is registered
    absent = {f"polyloss.backends.{name}" for name in backends.GPU_BACKEND_NAMES
              if importlib.util.find_spec(name) is None}
    names = sorted(m.name for m in pkgutil.walk_packages(polyloss.__path__, "polyloss."))
    return ["polyloss"] + [name for name in names if name not in absent]


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if not p.relative_to(DOCS).parts[0].startswith("_"))
# a python block anywhere in a page, also inside ``:::{tab-item}`` directives (their fences stay plain)
BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)
ALIASES = ("np", "torch", "jax", "jnp", "tf", "keras", "da", "polyloss", "metrics", "reference")


@pytest.mark.parametrize("page", [p for p in PAGES if BLOCK.search((DOCS / p).read_text())])
def test_docs_code_blocks_run(page):
    """The ```python blocks of a docs page run, in order, in a fresh process (all frameworks installed)."""
    run_python(code="\n\n".join(BLOCK.findall((DOCS / page).read_text())))


@pytest.mark.parametrize("page", PAGES)
def test_docs_code_blocks_stand_alone(page):
    """A reader copies one block (one framework's tab): every module a block uses is imported in it."""
    text = (DOCS / page).read_text()
    assert len(BLOCK.findall(text)) == text.count("```python\n"), "a python block the runner cannot see"
    for number, block in enumerate(BLOCK.findall(text), 1):
        code = re.sub(r"^\s*(from|import) .*$", "", block, flags=re.M)
        for alias in ALIASES:
            used = re.search(rf"(?<![\w.]){alias}\.", code)
            bound = re.search(rf"^\s*(import .*\b{alias}\b|from \S+ import .*\b{alias}\b|{alias}\s*=)", block, re.M)
            assert not used or bound, f"{page}, python block {number}: uses {alias} without importing it"

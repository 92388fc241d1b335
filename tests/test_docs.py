"""The examples in the docstrings run (NumPy) and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "polyloss",
    "polyloss._namespace",
    "polyloss._reduce",
    "polyloss.losses.multilabel",
    "polyloss.reference",
    "polyloss.reference.multilabel",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0

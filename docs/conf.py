"""Sphinx configuration of the polyloss documentation site.

Build it with ``pip install ".[docs]" && sphinx-build -W docs docs/_build/html`` (or ``bash docs/build.sh``).
The pages are the Markdown files of this folder (MyST); the API reference comes from the docstrings
(autodoc + napoleon); math is typeset by a MathJax copy that ships with the build
(sphinx-mathjax-offline), so neither the build nor a reader needs the network.
"""

from __future__ import annotations

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = pathlib.Path(__file__).resolve().parent

import polyloss  # noqa: E402  (the installed package: pip install ".[docs]")

project = "polyloss"
author = "the polyloss authors"
copyright = "polyloss authors"
release = version = polyloss.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 bundled and copied into _static: no CDN
    "sphinx_design",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
smartquotes = False  # keep "--modes" and "x - y" as written
exclude_patterns = ["_build", "_generated/*.part.md", "Thumbs.db", ".DS_Store"]

# MyST: $...$ and $$...$$ math, ::: directives (so that ```python blocks inside tabs stay plain fences,
# which tests/test_docs.py runs), heading anchors for the README's links
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "none"  # the signatures say it; the docstrings name the shapes and dtypes
napoleon_google_docstring = True
napoleon_numpy_docstring = True

html_theme = "furo"
html_title = f"polyloss {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": True}

# the frameworks are imported by the API pages only through polyloss (which imports none of them)
sys.path.insert(0, str(HERE))


def _conformance_table(app):
    """The conformance page shows a table of this build: ``polyloss check --backends numpy`` (seconds)."""
    from polyloss import cli

    target = HERE / "_generated"
    target.mkdir(exist_ok=True)
    cli.main(["check", "--backends", "numpy", "--format", "markdown",
              "--output", str(target / "check-numpy.part.md")])


def setup(app):
    app.connect("builder-inited", _conformance_table)
    return {"parallel_read_safe": True}

"""Every script in ``examples/`` runs in its quick mode, prints its results table and saves its figure
(a new example is one file there: it is found here without being listed)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from helpers import run_python

EXAMPLES = sorted(p for p in (pathlib.Path(__file__).resolve().parent.parent / "examples").glob("[a-z]*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quickly(script, tmp_path):
    plot = importlib.util.find_spec("matplotlib") is not None  # the examples extra; the table needs none
    figure = tmp_path / f"{script.stem}.png"
    done = run_python(str(script), "--quick", *(["--plot", str(figure)] if plot else []), timeout=600)
    lines = done.stdout.splitlines()
    assert any(set(line.replace(" ", "")) == {"-"} for line in lines), done.stdout  # a table's rule
    assert "nan" not in done.stdout.lower(), done.stdout
    if plot:
        assert figure.stat().st_size > 10_000

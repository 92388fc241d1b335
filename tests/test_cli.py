"""``polyloss check``: the table, the summary, the exit status and the selections."""

from __future__ import annotations

import numpy as np

import polyloss
from polyloss import backends, cli

from helpers import run_python


def test_check_prints_rows_and_passes(capsys):
    rc = cli.main(["check", "--backends", "numpy", "--functions", "reduce,multilabel_divergence"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "function" in out and "value err" in out and "grad err" in out
    for dtype in ("float64", "float32", "float16"):
        assert f"multilabel_divergence  numpy    eager  cpu     {dtype}" in out
    assert "PASS" in out and "FAIL" not in out.split("\n\n")[0]
    assert "0 FAIL; not installed: none" in out


def test_missing_backends_are_listed_never_passed(capsys, monkeypatch):
    real = backends.get_backend

    def pretend_missing(name):
        if name == "tensorflow":
            raise ImportError("No module named 'tensorflow'")
        return real(name)

    monkeypatch.setattr(backends, "get_backend", pretend_missing)
    rc = cli.main(["check", "--backends", "numpy,tensorflow", "--functions", "reduce"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "tensorflow: not installed (No module named 'tensorflow'); its rows were not run" in out
    assert "not installed: tensorflow" in out
    assert not any(line.startswith("reduce") and "tensorflow" in line for line in out.splitlines())


def test_a_failing_row_makes_the_exit_status_non_zero(capsys, monkeypatch):
    monkeypatch.setattr(polyloss.reference, "reduce", lambda values, *a, **k: np.float64(42.0))
    rc = cli.main(["check", "--backends", "numpy", "--functions", "reduce", "--dtypes", "float64"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL" in out and "failures:" in out and "value error" in out


def test_unknown_names_are_usage_errors(capsys):
    assert cli.main(["check", "--backends", "numpyy"]) == 2
    assert cli.main(["check", "--backends", "numpy", "--functions", "no_such_loss"]) == 2
    err = capsys.readouterr().err
    assert "unknown backends: numpyy" in err and "no conformance cases for ['no_such_loss']" in err


def test_console_script_runs():
    done = run_python("-m", "polyloss.cli", "check", "--backends", "numpy", "--functions", "reduce")
    assert "rows" in done.stdout and "0 FAIL" in done.stdout


def test_versions_line_names_every_backend():
    # every adapter in the registry gets a version (or "-"), never a KeyError: `polyloss check`
    # prints this line first, for the default selection of every backend
    from polyloss import backends

    line = cli._versions(backends.BACKEND_NAMES)
    assert [part.split(" ")[0] for part in line] == list(backends.BACKEND_NAMES)

"""``polyloss check``: the table, the summary, the exit status and the selections."""

from __future__ import annotations

import numpy as np

import polyloss
from polyloss import backends, cli

import helpers
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


# ------------------------------------------------------------------------------------------------
# for people: help, version, formats, list, progress, suggestions, reasons for 0 rows
# ------------------------------------------------------------------------------------------------
def test_help_explains_every_option_with_an_example(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option in ("--backends", "--modes", "--devices", "--dtypes", "--functions", "--format", "--output", "--list",
                   "--verbose"):
        assert option in out
    assert out.count("Example:") >= 9 and "examples:" in out
    assert "dask" in out and "device1" in out and "'-'" in out


def test_version_and_python_dash_m():
    done = run_python("-m", "polyloss", "--version")
    assert done.stdout.strip() == f"polyloss {polyloss.__version__}"
    done = run_python("-m", "polyloss", "check", "--backends", "numpy", "--functions", "reduce")
    assert "0 FAIL" in done.stdout


def test_table_shows_tolerances_and_a_legend(capsys):
    assert cli.main(["check", "--backends", "numpy", "--functions", "reduce"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("function"))
    assert "tol" in header.split() and "1.0e-12" in out
    assert "legend:" in out and "grad err '-'" in out and "device1" in out
    assert out.startswith(f"polyloss {polyloss.__version__} conformance check\nPython ")
    assert "devices: numpy: cpu" in out


def test_markdown_json_and_output_file(tmp_path, capsys):
    import json

    target = tmp_path / "check.md"
    assert cli.main(["check", "--backends", "numpy", "--functions", "reduce", "--format", "markdown",
                     "--output", str(target)]) == 0
    text = target.read_text()
    assert text.startswith("## polyloss") and "| function | backend |" in text and "| --- |" in text
    assert f"wrote {target}" in capsys.readouterr().out
    assert cli.main(["check", "--backends", "numpy", "--functions", "reduce", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["polyloss"] == polyloss.__version__ and data["summary"]["fail"] == 0
    assert {row["dtype"] for row in data["rows"]} >= {"float64", "float32"}
    assert all(row["backend"] == "numpy" and row["result"] == "PASS" for row in data["rows"])


def test_list_names_functions_and_cases(capsys):
    assert cli.main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("multilabel_crossentropy", "span_f1", "best_threshold_vector", "cosent_loss"):
        assert any(line.startswith(name + " (") for line in out.splitlines()), name
    assert "overlapping" in out and "(eager only)" in out


def test_a_misspelled_function_gets_a_suggestion(capsys):
    assert cli.main(["check", "--backends", "numpy", "--functions", "multilabel_crosentropy"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'multilabel_crossentropy'" in err


def test_zero_rows_say_why(capsys):
    has_gpu = any(label != "cpu" and not label.startswith("device") for name in ("torch", "jax", "tensorflow")
                  if not isinstance(helpers.INSTALLED.get(name), Exception)
                  for label, _ in helpers.INSTALLED[name].devices())
    if not has_gpu:
        assert cli.main(["check", "--backends", "numpy,torch", "--devices", "cuda", "--functions", "reduce"]) == 1
        out = capsys.readouterr().out
        assert "0 rows: --devices cuda: no selected backend has such a device" in out and "torch: cpu" in out
    assert cli.main(["check", "--backends", "numpy", "--modes", "jit", "--functions", "reduce"]) == 1
    out = capsys.readouterr().out
    assert "0 rows: --modes jit: no selected backend runs it (jit is jax (jax.jit)" in out
    assert cli.main(["check", "--backends", "numpy", "--dtypes", "bfloat16", "--functions", "reduce"]) == 1
    out = capsys.readouterr().out
    assert "0 rows: --dtypes bfloat16: numpy runs float16, float32, float64 here (NumPy has no bfloat16)" in out


def test_progress_on_a_terminal_only(capsys, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(cli.sys, "stdout", terminal)
    assert cli.main(["check", "--backends", "numpy", "--functions", "reduce"]) == 0
    shown = terminal.getvalue()
    assert "\r\033[K" in shown and "rows, " in shown and " case runs, " in shown and " s - numpy/eager/cpu/" in shown
    monkeypatch.undo()
    assert cli.main(["check", "--backends", "numpy", "--functions", "reduce"]) == 0
    assert "\r" not in capsys.readouterr().out  # not a terminal: nothing extra


def test_tensorflow_logs_stay_out_of_the_checker():
    """oneDNN's notice and tf.function's retracing warnings are the framework's, not the checker's."""
    helpers.get("tensorflow")
    done = run_python("-m", "polyloss", "check", "--backends", "tensorflow", "--functions", "reduce,squareplus",
                      env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert "0 FAIL" in done.stdout
    for noise in ("retracing", "oneDNN", "cudart_stub", "absl::InitializeLog"):
        assert noise not in done.stdout + done.stderr, noise

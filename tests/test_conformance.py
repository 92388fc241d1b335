"""Every registered case, on every installed backend, mode, device and dtype (CPU and GPU)."""

from __future__ import annotations

import pytest

from polyloss import backends
from polyloss.conformance import cases_for, run_case

from helpers import INSTALLED, get


def _matrix():
    params = []
    # the GPU-only backends (CuPy) where they are installed: never listed as missing (tests/helpers.py)
    for name in (*backends.BACKEND_NAMES, *(n for n in backends.GPU_BACKEND_NAMES if n in INSTALLED)):
        adapter = INSTALLED.get(name)
        if isinstance(adapter, Exception) or adapter is None:
            params.append(pytest.param(None, name, "eager", "cpu", None, "float32", id=f"{name}-not-installed"))
            continue
        for mode in adapter.modes:
            if mode == "compile":
                continue  # torch.compile: a subset, in test_compiled.py
            for label, device in adapter.devices():
                for case in cases_for():
                    if not case.runs_on(adapter) or (case.modes is not None and mode not in case.modes):
                        continue
                    for dtype in case.dtypes:
                        if dtype in adapter.dtypes(device):
                            params.append(pytest.param(case, name, mode, label, device, dtype,
                                                       id=f"{case.name}-{name}-{mode}-{label}-{dtype}"))
    return params


@pytest.mark.parametrize("case, name, mode, label, device, dtype", _matrix())
def test_case(case, name, mode, label, device, dtype):
    adapter = get(name)
    result = run_case(case, adapter, mode=mode, device=device, device_label=label, dtype=dtype)
    assert result.passed, f"{result.status}: {result.message}"


# torch.compile takes seconds per graph: a subset, one case per function, float32
COMPILE_SUBSET = ["multilabel_crossentropy/hard-bool", "multilabel_crossentropy/soft",
                  "sparse_multilabel_crossentropy/padded", "multilabel_divergence/gp-padding",
                  "softmax_crossentropy/where", "focal_loss/gamma0.5-soft", "focal_loss/softmax-ids",
                  "rdrop_loss/probs-smoothing", "squareplus/wide-range",
                  "cosent_loss/sorted-graded"]


@pytest.mark.parametrize("case_name", COMPILE_SUBSET)
def test_case_under_torch_compile(case_name):
    adapter = get("torch")
    (case,) = [c for c in cases_for() if c.name == case_name]
    result = run_case(case, adapter, mode="compile", dtype="float32")
    assert result.passed, f"{result.status}: {result.message}"


def _pair(rng, dtype):
    return (rng.normal(0.0, 2.0, (3, 4)), rng.random((3, 4)) < 0.5), {}


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_cases_can_call_through_adapters_and_dotted_names(name):
    """``Case.call`` / ``reference_call`` wrap the functions (for losses that take a model); a wrong
    wrapper on one side fails the row; dotted names resolve below polyloss and polyloss.reference."""
    from polyloss.conformance import Case

    adapter = get(name)
    same = Case("demo/call", "multilabel_crossentropy", _pair, call=lambda f, s, y: 2.0 * f(s, y),
                reference_call=lambda f, s, y: 2.0 * f(s, y))
    assert run_case(same, adapter, dtype="float64").passed
    wrong = Case("demo/wrong", "multilabel_crossentropy", _pair, call=lambda f, s, y: 2.0 * f(s, y))
    result = run_case(wrong, adapter, dtype="float64")
    assert result.status == "FAIL" and "value error" in result.message
    dotted = Case("demo/dotted", "metrics.accuracy", _pair, grad_args=())
    assert run_case(dotted, adapter, dtype="float64").passed

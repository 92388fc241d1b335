"""CPU and GPU give the same results within the dtype's tolerance, for every registered case (losses and
metrics, through the runner's ``library_call``): values, and gradients where the backend differentiates.
Bit-equality is not possible (reduction orders differ); exact cases (boolean results) must be equal.
Each case also runs against the reference on every GPU in test_conformance.py; this file compares the two
devices directly. A GPU-only backend (CuPy) is compared with NumPy, its CPU counterpart.

Without a visible GPU the GPU tests are skipped with the reason; the comparison itself is tested on every
machine with array-api-strict's second device standing in for the GPU
(``test_the_comparison_runs_on_a_second_device``), so that the GPU run (``benchmarks/gpu.sh``) exercises
code that has run before."""

from __future__ import annotations

import numpy as np
import pytest

from polyloss.conformance import cases_for, relative_error, tolerance
from polyloss.conformance.runner import library_call

from helpers import INSTALLED, get, gpu_targets, run_python

TARGETS = gpu_targets()


def _cpu_side(adapter):
    """``(adapter, device)`` that computes the CPU side: the same framework on its CPU device, or NumPy for a
    GPU-only framework."""
    if adapter.gpu_only:
        return INSTALLED["numpy"], None
    return adapter, dict(adapter.devices())["cpu"]


def _convert(adapter, value, dtype, device):
    if not isinstance(value, np.ndarray):
        return value
    floating = np.issubdtype(value.dtype, np.floating)
    return adapter.from_numpy(value, dtype=dtype if floating else None, device=device)


def _run(adapter, device, case, dtype, args, kwargs, weights):
    """The case's results as NumPy arrays, and the gradients of ``Σ out · w`` where ``adapter`` has autograd."""
    xp = adapter.namespace
    conv = [_convert(adapter, a, dtype, device) for a in args]
    kw = {k: _convert(adapter, v, dtype, device) for k, v in kwargs.items()}
    call = library_call(case)
    out = call(*conv, **kw, **case.options)
    outs = [adapter.to_numpy(o) for o in (out if isinstance(out, (tuple, list)) else (out,))]
    grads = []
    if case.grad_args and adapter.has_autograd and weights is not None:
        w = adapter.from_numpy(weights, dtype=dtype if dtype in ("float64",) else "float32", device=device)

        def objective(*diff):
            full = list(conv)
            for i, d in zip(case.grad_args, diff):
                full[i] = d
            return xp.sum(call(*full, **kw, **case.options) * w)

        _, gs = adapter.value_and_grad(objective, argnums=tuple(range(len(case.grad_args))))(
            *[conv[i] for i in case.grad_args])
        grads = [adapter.to_numpy(g) for g in gs]
    return outs, grads


def compare_devices(gpu, device, cpu, cpu_device, cases) -> list[str]:
    """The disagreements between ``gpu`` on ``device`` and ``cpu`` on ``cpu_device`` over ``cases``."""
    failures = []
    for case in cases:
        if not (gpu.supports(case.function) and cpu.supports(case.function)):
            continue
        for dtype in case.dtypes:
            if dtype not in gpu.dtypes(device) or dtype not in cpu.dtypes(cpu_device):
                continue
            args, kwargs = case.inputs(np.random.default_rng(case.seed), dtype)
            try:
                probe, _ = _run(cpu, cpu_device, case, dtype, args, kwargs, None)
                weights = (np.random.default_rng(case.seed + 1).standard_normal(probe[0].shape)
                           if len(probe) == 1 and not case.exact else None)
                (cpu_out, cpu_grads), (gpu_out, gpu_grads) = (
                    _run(a, d, case, dtype, args, kwargs, weights) for a, d in ((cpu, cpu_device), (gpu, device)))
            except Exception as exc:  # noqa: BLE001 - reported with the case, the others still run
                failures.append(f"{case.name} {dtype}: {type(exc).__name__}: {exc}")
                continue
            for i, (a, b) in enumerate(zip(gpu_out, cpu_out)):
                if case.exact:
                    bad = not np.array_equal(a, b)
                    err = "not equal"
                else:
                    e = relative_error(a, b, elementwise=True, floor=1e-30)
                    bad, err = e > 2 * tolerance(case, dtype, "value"), f"{e:.2e}"
                if bad:
                    failures.append(f"{case.name} {dtype} result {i}: {err}")
            for i, (a, b) in enumerate(zip(gpu_grads, cpu_grads)):
                e = relative_error(a, b)
                if e > 2 * tolerance(case, dtype, "grad"):
                    failures.append(f"{case.name} {dtype} gradient {i}: {e:.2e}")
    return failures


@pytest.mark.gpu
@pytest.mark.skipif(not TARGETS, reason="no GPU visible to torch, jax, tensorflow or cupy")
@pytest.mark.parametrize("name, label, device", TARGETS, ids=[f"{name}-{label}" for name, label, _ in TARGETS])
def test_cpu_and_gpu_agree(name, label, device):
    gpu = INSTALLED[name]
    cpu, cpu_device = _cpu_side(gpu)
    failures = compare_devices(gpu, device, cpu, cpu_device, cases_for())
    assert not failures, failures


def test_the_comparison_runs_on_a_second_device():
    """The comparison above, with array-api-strict's ``device1`` as the "GPU": one case per function (losses
    and metrics), so that the GPU run meets no error of the test itself."""
    adapter = get("array_api_strict")
    devices = dict(adapter.devices())
    first = {}
    for case in cases_for():
        if case.runs_on(adapter):  # not the cases that differentiate a user's function (no autograd here)
            first.setdefault(case.function, case)
    assert any(c.exact for c in cases_for()) and len(first) > 20
    failures = compare_devices(adapter, devices["device1"], adapter, devices["cpu"], list(first.values()))
    assert not failures, failures


@pytest.mark.parametrize("name", ["torch"])  # eager JAX compiles every operation: minutes for the same check
def test_the_comparison_differentiates_on_the_cpu(name):
    """The gradient half of the comparison, CPU against CPU on a framework with autograd (one case per
    differentiable function)."""
    adapter = get(name)
    cpu = dict(adapter.devices())["cpu"]
    first = {}
    for case in cases_for():
        if case.grad_args:
            first.setdefault(case.function, case)
    failures = compare_devices(adapter, cpu, adapter, cpu, [
        c for c in first.values() if "float32" in c.dtypes or "float64" in c.dtypes])
    assert not failures, failures


def test_gpu_only_backends_are_registered_but_never_missing():
    """CuPy is registered (its arrays are recognised, ``polyloss check --backends cupy`` reaches it) and
    declared GPU-only: it is outside BACKEND_NAMES (the CPU matrix, CI's required backends), and where it is
    absent ``available_backends`` reports it with the import error instead of failing, and the test matrix
    neither lists nor skips it."""
    import importlib.util

    from polyloss import backends

    assert "cupy" in backends.GPU_BACKEND_NAMES and "cupy" not in backends.BACKEND_NAMES
    status = backends.available_backends()
    assert set(status) == set(backends.BACKEND_NAMES) | set(backends.GPU_BACKEND_NAMES)
    if importlib.util.find_spec("cupy") is None:
        assert "cupy" in status["cupy"]  # the import error's text, e.g. "No module named 'cupy'"
        with pytest.raises(ImportError):
            backends.get_backend("cupy")
        assert "cupy" not in INSTALLED
    code = ("import sys, numpy as np, polyloss; polyloss.multilabel_crossentropy(np.zeros((2, 3)), np.zeros((2, 3)));"
            "polyloss.backends.available_backends(); print('cupy' in sys.modules)")
    if importlib.util.find_spec("cupy") is None:
        done = run_python(code=code, timeout=120)  # outside the source tree, which would shadow the package
        assert done.stdout.strip() == "False"

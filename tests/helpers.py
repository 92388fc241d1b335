"""Helpers shared by the test modules (``from helpers import ...``; conftest.py holds only fixtures and
hooks): the installed backends, skipping on a missing one, fresh interpreters, tolerance tables.

A backend that is not installed is skipped, with "not installed" in the reason; set
``POLYLOSS_REQUIRE_BACKENDS=numpy,array_api_strict,torch,jax,tensorflow,dask`` (``.ci/run`` does) to
make a missing one an error instead (conftest.py), so that a green run can never hide an untested
framework.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

try:
    from polyloss import backends  # noqa: E402
except ImportError as exc:  # pragma: no cover - a usage error, explained
    raise pytest.UsageError(
        "polyloss.backends cannot be imported: polyloss is probably being imported from the source tree "
        "without being installed (the top-level backends/ folder becomes polyloss.backends at install "
        "time). Install it first, `pip install -e \".[test]\"`, and run `pytest` from the repository root."
    ) from exc
from polyloss.conformance import matrix  # noqa: E402

REQUIRED = [b for b in os.environ.get("POLYLOSS_REQUIRE_BACKENDS", "").split(",") if b]
AUTOGRAD_BACKENDS = ("torch", "jax", "tensorflow")


def _installed() -> dict[str, object]:
    out = {}
    for name in backends.BACKEND_NAMES:
        try:
            adapter = backends.get_backend(name)
            adapter.namespace  # noqa: B018
        except ImportError as exc:
            out[name] = exc
            continue
        matrix.prepare(adapter)  # JAX float64
        out[name] = adapter
    return out


def _installed_gpu_only() -> dict[str, object]:
    """The GPU-only backends (``backends.GPU_BACKEND_NAMES``, e.g. CuPy) that import and see a device: absent
    ones are not missing (no skip, no "not installed"); the CPU matrix never lists them."""
    out = {}
    for name in backends.GPU_BACKEND_NAMES:
        try:
            adapter = backends.get_backend(name)
            adapter.namespace  # noqa: B018
            if adapter.devices():
                out[name] = adapter
        except Exception:  # noqa: BLE001 - not installed, or no driver or device: the GPU half is not here
            continue
    return out


INSTALLED = {**_installed(), **_installed_gpu_only()}

# Dask runs the metrics only (Backend.supports); the loss tests use the other five
LOSS_BACKENDS = tuple(name for name in backends.BACKEND_NAMES if name != "dask")


def with_hooks(names, *hooks: str) -> list[str]:
    """The backends of ``names`` whose adapter has one of the optional ``hooks`` (``Backend.sigmoid``, ...),
    for tests of what a hook changes: an adapter without them has nothing to test, so no parameter (never
    a skip). A backend that is not installed stays listed: ``get`` reports it as such."""
    out = []
    for name in names:
        adapter = INSTALLED.get(name)
        if adapter is None or isinstance(adapter, Exception) or any(getattr(adapter, h) is not None for h in hooks):
            out.append(name)
    return out


def get(name: str):
    """The adapter ``name``, or skip the test (with "not installed" in the reason)."""
    adapter = INSTALLED.get(name)
    if isinstance(adapter, Exception) or adapter is None:
        pytest.skip(f"{name} not installed: {adapter}")
    return adapter


def jax_modules():
    """``(jax, jax.numpy, optax)`` for the native-agreement tests, or skip; JAX runs in float64."""
    get("jax")
    import jax
    import jax.numpy as jnp

    return jax, jnp, pytest.importorskip("optax")


def tensorflow_module():
    get("tensorflow")
    import tensorflow as tf

    return tf


def keras_modules():
    """``(tensorflow, keras)`` with Keras on its TensorFlow backend, or skip."""
    tf = tensorflow_module()
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"keras runs on {keras.backend.backend()}, these tests need its TensorFlow backend")
    return tf, keras


def gpu_targets():
    """(backend, device label, device) for every visible GPU."""
    out = []
    for name, adapter in INSTALLED.items():
        if isinstance(adapter, Exception):
            continue
        for label, device in adapter.devices():
            if label.startswith(("cuda", "gpu")):
                out.append((name, label, device))
    return out


def run_python(*args: str, code: str | None = None, env: dict | None = None, timeout: float = 300):
    """Run this interpreter in a fresh process, from a directory outside the repository (``python -c``
    and ``-m`` put the working directory first on ``sys.path``, where the uninstalled source tree
    would shadow the installed package). Returns the completed process; asserts it succeeded."""
    argv = [sys.executable, *args] + (["-c", textwrap.dedent(code)] if code is not None else [])
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def tolerance(table: dict, dtype: str, scale: float = 1.0, **override) -> dict:
    """The keyword arguments of :func:`polyloss.testing.assert_close` for a comparison at ``dtype``:
    ``table[dtype]`` (``rtol``, ``atol``, ...) with ``atol`` multiplied by ``scale`` (the magnitude of the
    values compared) and ``override`` applied."""
    out = dict(table[dtype])
    out["atol"] = out.get("atol", 0.0) * scale
    out.update(override)
    return out


# --- helpers of the metric tests ---------------------------------------------------------------
def host(backend, x):
    """A backend's result as float64 NumPy."""
    return np.asarray(backend.to_numpy(x), dtype=np.float64)


def hosts(backend, values):
    """Several results as float64 NumPy; Dask evaluates them in one ``dask.compute``."""
    if backend.name == "dask":
        import dask

        values = dask.compute(*values)
    return [host(backend, v) for v in values]


def grid(rng, shape, step=0.5, half_width=2.0):
    """Scores on a coarse grid of ``step`` in ``[-half_width, half_width]`` (exact in float32): ties,
    argmax ties and entries exactly at the thresholds 0 and 0.5 are certain in a few dozen draws."""
    k = int(round(half_width / step))
    return rng.integers(-k, k + 1, shape) * step


# the last lines of every gloo worker script: all members reach the end before any leaves, and the
# process then exits without interpreter finalization, where gloo's threads can still hold tensors and
# abort it (SIGABRT, "terminate called without an active exception": pytorch/pytorch#190489, #179291)
GLOO_WORKER_END = """
dist.barrier()
dist.destroy_process_group()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
"""


def libmtl_weighting():
    """``LibMTL.weighting`` without running ``LibMTL/__init__.py`` (which imports torchvision's removed
    ``models.utils``: LibMTL issue 62), or skip; shared by the multi-task peer and native tests."""
    if "LibMTL.weighting" in sys.modules:
        return sys.modules["LibMTL.weighting"]
    import importlib.util
    import types

    spec = importlib.util.find_spec("LibMTL")
    if spec is None:
        pytest.skip("LibMTL is absent (optional peer: pip install --no-deps LibMTL)")
    if "LibMTL" not in sys.modules:
        package = types.ModuleType("LibMTL")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["LibMTL"] = package
    import LibMTL.weighting as weighting

    return weighting

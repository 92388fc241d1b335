"""The test matrix: backends x modes x devices x dtypes, from the conformance registry.

A backend that is not installed is skipped, with "not installed" in the reason; set
``POLYLOSS_REQUIRE_BACKENDS=numpy,array_api_strict,torch,jax,tensorflow`` (``.ci/run`` does) to make
a missing one an error instead, so that a green run can never hide an untested framework.
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


INSTALLED = _installed()


def pytest_configure(config):
    missing = [name for name in REQUIRED if isinstance(INSTALLED.get(name), Exception) or name not in INSTALLED]
    if missing:
        raise pytest.UsageError(
            f"POLYLOSS_REQUIRE_BACKENDS names {', '.join(missing)}, which cannot be imported: "
            + "; ".join(f"{m}: {INSTALLED.get(m)}" for m in missing)
        )


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


# Dask runs the metrics only (Backend.supports); the loss tests use the other five
LOSS_BACKENDS = tuple(name for name in backends.BACKEND_NAMES if name != "dask")


@pytest.fixture(params=list(LOSS_BACKENDS))
def backend(request):
    """Every backend of the losses, eager."""
    return get(request.param)


@pytest.fixture(params=list(backends.BACKEND_NAMES))
def metric_backend(request):
    """Every backend of the metrics (Dask included), eager."""
    return get(request.param)


@pytest.fixture(params=list(AUTOGRAD_BACKENDS))
def autograd_backend(request):
    return get(request.param)


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


# --- helpers of the metric tests ---------------------------------------------------------------
def host(be, x):
    """A backend's result as float64 NumPy."""
    return np.asarray(be.to_numpy(x), dtype=np.float64)


def hosts(be, values):
    """Several results as float64 NumPy; Dask evaluates them in one ``dask.compute``."""
    if be.name == "dask":
        import dask

        values = dask.compute(*values)
    return [host(be, v) for v in values]


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


@pytest.fixture
def one_process_group(tmp_path):
    """A one-process torch.distributed gloo group (every collective is the identity), torn down after."""
    get("torch")
    import datetime

    import torch.distributed as dist

    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=30))
    try:
        yield dist
    finally:
        dist.destroy_process_group()

"""Fixtures and hooks of the test matrix (backends x modes x devices x dtypes, from the conformance
registry). Shared helper functions live in ``helpers.py``; test modules import them from there."""

from __future__ import annotations

import os

# The matrix makes XLA (jax.jit, JAX's eager ops, TensorFlow's XLA kernels) compile thousands of small
# programs; at optimisation level 0 they compile about twice as fast (measured: the CRF rows under
# jax.jit, 61 s -> 28 s) and compute the same operations (XLA's CPU backend does no fast-math at any
# level; the values are compared with the reference at the dtype's tolerance all the same). Set before
# any framework is imported; subprocesses inherit it; a caller's own XLA_FLAGS win. `polyloss check`
# runs at XLA's default level.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")

import pytest  # noqa: E402

from polyloss import backends  # noqa: E402

from helpers import AUTOGRAD_BACKENDS, INSTALLED, LOSS_BACKENDS, REQUIRED, get


def pytest_configure(config):
    missing = [name for name in REQUIRED if isinstance(INSTALLED.get(name), Exception) or name not in INSTALLED]
    if missing:
        raise pytest.UsageError(
            f"POLYLOSS_REQUIRE_BACKENDS names {', '.join(missing)}, which cannot be imported: "
            + "; ".join(f"{m}: {INSTALLED.get(m)}" for m in missing)
        )


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

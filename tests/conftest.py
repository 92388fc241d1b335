"""Fixtures and hooks of the test matrix (backends x modes x devices x dtypes, from the conformance
registry). Shared helper functions live in ``helpers.py``; test modules import them from there."""

from __future__ import annotations

import pytest

from polyloss import backends

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


@pytest.fixture
def float64_default():
    """torch's default dtype float64 for the test (LibMTL builds its work tensors with it), restored after."""
    get("torch")
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def restore_global_rngs():
    """The global Python and torch generators restored after the test (peers such as LibMTL and TorchJD
    draw from them, and tests seed them)."""
    import random

    get("torch")
    import torch

    python_state, torch_state = random.getstate(), torch.get_rng_state()
    yield
    random.setstate(python_state)
    torch.set_rng_state(torch_state)

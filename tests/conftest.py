"""Fixtures and hooks of the test matrix (backends x modes x devices x dtypes, from the conformance
registry). Shared helper functions live in ``helpers.py``; test modules import them from there."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Compile time is most of the matrix's cost: JAX compiles every eager operation once per shape and dtype,
# and every jax.jit row once. Set before any framework is imported (helpers imports them all), inherited
# by the xdist workers and by every subprocess a test starts; a caller's own settings win.
# - XLA at optimisation level 0 (about 20% less compile time for small programs, half for a CRF row's
#   scan): the same operations, rounded possibly otherwise (no fast-math at any level), compared with the
#   reference at the dtype's tolerance all the same. `polyloss check` runs at XLA's default level.
# - One JAX persistent compilation cache for the whole run (workers and subprocesses): a program one
#   process compiled is loaded by the others (about 4x cheaper than compiling it), in a fresh folder per
#   run, removed by the process that made it.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache = tempfile.mkdtemp(prefix="polyloss-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

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

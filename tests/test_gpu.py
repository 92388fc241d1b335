"""CPU and GPU give the same results within the dtype's tolerance (bit-equality is not possible:
reduction orders differ). Each case also runs on every GPU in test_conformance.py; this file
compares the two devices directly. Without a visible GPU these tests are skipped, with the reason."""

from __future__ import annotations

import numpy as np
import pytest

from polyloss.conformance import cases_for, relative_error, tolerance
from polyloss.conformance.runner import library_call

from helpers import INSTALLED, gpu_targets

TARGETS = gpu_targets()


def _cases():
    return [c for c in cases_for() if not c.exact]


@pytest.mark.gpu
@pytest.mark.skipif(not TARGETS, reason="no GPU visible to torch, jax or tensorflow")
@pytest.mark.parametrize("name, label, device", TARGETS, ids=[f"{name}-{label}" for name, label, _ in TARGETS])
def test_cpu_and_gpu_agree(name, label, device):
    be = INSTALLED[name]
    failures = []
    for case in _cases():
        for dtype in case.dtypes:
            if dtype not in be.dtypes(device):
                continue
            args, kwargs = case.inputs(np.random.default_rng(case.seed), dtype)
            outs = []
            for dev in (None, device):
                conv = [be.from_numpy(a, dtype=dtype if np.issubdtype(a.dtype, np.floating) else None, device=dev)
                        if isinstance(a, np.ndarray) else a for a in args]
                kw = {k: be.from_numpy(v, dtype=dtype if np.issubdtype(v.dtype, np.floating) else None, device=dev)
                      if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
                outs.append(be.to_numpy(library_call(case)(*conv, **kw, **case.options)))
            err = relative_error(outs[1], outs[0], elementwise=True, floor=1e-30)
            if err > 2 * tolerance(case, dtype, "value"):
                failures.append(f"{case.name} {dtype}: {err:.2e}")
    assert not failures, failures

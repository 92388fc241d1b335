"""CuPy: NumPy's API on NVIDIA (and AMD) GPUs, through array-api-compat's namespace. No autograd (like
NumPy): the losses' values and the metrics run on it, gradients need torch, JAX or TensorFlow.

A GPU-only backend: registered, so that a CuPy array is recognised and ``polyloss check --backends cupy``
runs it, but left out of ``BACKEND_NAMES`` (the matrix every machine runs; see ``backends/__init__.py``):
a machine without CuPy is not missing a backend. Imported only when ``cupy`` is already in
``sys.modules``, as every adapter.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from ._base import Backend


class CuPyBackend(Backend):
    name = "cupy"
    gpu_only = True

    def is_array(self, x) -> bool:
        return isinstance(x, cp.ndarray)

    @property
    def namespace(self):
        import array_api_compat.cupy as xp

        return xp

    def device(self, x):
        return x.device

    def index_dtype(self):
        return cp.int64

    def _from_host(self, obj, *, like, dtype=None):
        with like.device:
            out = cp.asarray(obj)
        if dtype is not None and np.issubdtype(out.dtype, np.floating):
            out = out.astype(dtype)
        return out

    def index_mask(self, indices, n, valid):
        mask = cp.zeros(indices.shape[:-1] + (n + 1,), dtype=bool)
        # invalid entries write into the spare column n, which is dropped
        cp.put_along_axis(mask, cp.where(valid, indices, cp.int64(n)), True, axis=-1)
        return mask[..., :n]

    # --- performance hooks (see Backend) ------------------------------------------------------------
    def bitcast(self, x, dtype):
        return x.view(dtype)

    # --- conformance support ---------------------------------------------------------------------------
    def devices(self):
        try:
            count = cp.cuda.runtime.getDeviceCount()
        except cp.cuda.runtime.CUDARuntimeError:  # CuPy installed, but no driver or no device
            count = 0
        return [(f"cuda:{i}", cp.cuda.Device(i)) for i in range(count)]

    def dtypes(self, device=None):
        return ("float64", "float32", "float16")

    def dtype(self, name):
        return np.dtype(name)

    def from_numpy(self, a, *, dtype=None, device=None):
        a = np.array(a, copy=True)
        if dtype is not None and np.issubdtype(a.dtype, np.floating):
            a = a.astype(dtype)
        with device if device is not None else cp.cuda.Device(0):
            return cp.asarray(a)

    def to_numpy(self, x):
        return cp.asnumpy(x) if self.is_array(x) else np.asarray(x)

"""NumPy: the embedded default. No autograd; ``stop_gradient`` is the identity."""

from __future__ import annotations

import numpy as np

from ._base import Backend, cpu_block_rows


class NumPyBackend(Backend):
    name = "numpy"

    def is_array(self, x) -> bool:
        return isinstance(x, (np.ndarray, np.generic)) and not isinstance(x, (np.str_, np.bytes_))

    @property
    def namespace(self):
        import array_api_compat.numpy as xp

        return xp

    def device(self, x):
        return "cpu"

    def index_dtype(self):
        return np.int64

    def _from_host(self, obj, *, like, dtype=None):
        out = np.asarray(obj)
        if dtype is not None and np.issubdtype(out.dtype, np.floating):
            out = out.astype(dtype)
        return out

    def log_scan(self, x, *, reverse=False):
        if reverse:
            return np.flip(np.logaddexp.accumulate(np.flip(x, axis=-1), axis=-1), axis=-1)
        return np.logaddexp.accumulate(x, axis=-1)

    def block_rows(self, x):
        return cpu_block_rows(x)

    def index_mask(self, indices, n, valid):
        mask = np.zeros(indices.shape[:-1] + (n + 1,), dtype=bool)
        # invalid entries write into the spare column n, which is dropped
        np.put_along_axis(mask, np.where(valid, indices, np.int64(n)), True, axis=-1)
        return mask[..., :n]

    # --- performance hooks (see Backend) ------------------------------------------------------------
    def bitcast(self, x, dtype):
        return x.view(dtype)

    def dtypes(self, device=None):
        return ("float64", "float32", "float16")

    def dtype(self, name):
        return np.dtype(name)

    def from_numpy(self, a, *, dtype=None, device=None):
        a = np.array(a, copy=True)
        return a.astype(dtype) if dtype is not None else a

    def to_numpy(self, x):
        return np.asarray(x)

"""Dask arrays through array-api-compat: lazy, chunked NumPy. For the metrics (their counts and
values are sums and sorts that Dask evaluates chunk by chunk); the losses are not run on Dask.

Nothing is evaluated until you call ``dask.compute`` / ``.compute()``: value checks (NaN scores,
label values) would force an evaluation, so they do not run on Dask arrays, as under ``jax.jit``.
"""

from __future__ import annotations

import math

import dask.array as _da
import numpy as np

from ._base import Backend

# the functions that run on Dask in the conformance matrix
METRICS = frozenset({"precision_recall_f1", "accuracy", "best_threshold", "global_pointer_f1", "pearson",
                     "spearman", "leaderboard_mean"})


class DaskBackend(Backend):
    name = "dask"

    def is_array(self, x) -> bool:
        return isinstance(x, _da.Array)

    @property
    def namespace(self):
        import array_api_compat.dask.array as xp

        return xp

    def asarray(self, obj, *, like, dtype=None, name: str = "an input"):
        if self.is_array(obj) and any(isinstance(d, float) and math.isnan(d) for d in obj.shape):
            raise ValueError(f"{name} is a Dask array of unknown chunk sizes (shape {obj.shape}, e.g. after "
                             f"boolean indexing); call {name}.compute_chunk_sizes() first")
        return super().asarray(obj, like=like, dtype=dtype, name=name)

    def device(self, x):
        return "cpu"

    def is_eager(self, x) -> bool:
        return False  # a check would compute the graph

    def supports(self, function: str) -> bool:
        return function in METRICS

    def _from_host(self, obj, *, like, dtype=None):
        a = np.asarray(obj)
        if dtype is not None and np.issubdtype(a.dtype, np.floating):
            a = a.astype(dtype)
        return _da.from_array(a)

    def index_dtype(self):
        return np.int64

    def from_numpy(self, a, *, dtype=None, device=None):
        a = np.array(a, copy=True)
        if dtype is not None:
            a = a.astype(dtype)
        # two chunks along the first axis, so that every case crosses a chunk boundary
        chunks = tuple(max(1, -(-n // 2)) if i == 0 else n for i, n in enumerate(a.shape)) or ()
        return _da.from_array(a, chunks=chunks)

    def to_numpy(self, x):
        return np.asarray(x.compute() if self.is_array(x) else x)

"""Backend adapters: what the array API standard lacks, one small class per framework.

Shipped inside the wheel as ``polyloss.backends``. Adapters supply primitives and no numerics (the
numerics are composed in ``polyloss._ops``); they never import the rest of polyloss. Each supplies

- ``namespace``: the array API namespace of its arrays; ``device``, ``shape``, ``index_dtype`` and
  ``asarray`` (secondary inputs onto the first array's framework and device);
- autograd hooks: ``stop_gradient``, ``value_and_grad``, ``grad`` and ``custom_vjp``;
- gradients of a user's function nested in the user's own differentiation, ``value_and_grad_nested``
  (``create_graph`` semantics), and ``random_normal`` (keys, generators, seeds): the gradient-based
  regularisers;
- ``scan`` (a loop over a leading axis, compiled under ``jax.jit`` / ``tf.function``) and
  ``tree_flatten`` (nested containers of arrays);
- optional fused kernels: ``softplus``, ``logsumexp``, ``log_scan``, ``sigmoid``, ``log_softmax``,
  ``max_with_indices``; ``bitcast`` (the bits of a float array as integers);
- ``index_mask`` (a scatter the standard has no word for), ``block_rows`` (the row-blocking policy);
- ``is_eager`` / ``may_need_grad`` (whether data-dependent value checks may run);
- collectives: ``all_gather``, ``all_reduce``, ``all_gather_varying``;
- for the conformance matrix: ``modes``, ``devices``, ``dtypes``, ``from_numpy``, ``to_numpy``,
  ``compile``, ``supports``, ``prepare_conformance``.

``docs/design.md`` states what each hook must do; ``docs/contributing.md`` how to add a hook or a
backend.

Adapters are looked up lazily, as einops and array-api-compat do: an adapter is only
asked about an array when its framework is already in ``sys.modules``, so importing
polyloss never imports torch, jax or tensorflow.
"""

from __future__ import annotations

import sys

from ._base import DTYPE_NAMES, Backend

__all__ = ["Backend", "backend_for", "get_backend", "BACKEND_NAMES", "GPU_BACKEND_NAMES", "DTYPE_NAMES",
           "available_backends", "preload"]

# name -> (framework module checked in sys.modules, adapter module, adapter class)
_REGISTRY = {
    "numpy": ("numpy", "numpy", "NumPyBackend"),
    "array_api_strict": ("array_api_strict", "array_api_strict", "ArrayAPIStrictBackend"),
    "torch": ("torch", "torch", "TorchBackend"),
    "jax": ("jax", "jax", "JaxBackend"),
    "tensorflow": ("tensorflow", "tensorflow", "TensorFlowBackend"),
    "dask": ("dask", "dask", "DaskBackend"),  # metrics only (Backend.supports)
    # --- GPU-only backends (see GPU_BACKEND_NAMES) ---
    "cupy": ("cupy", "cupy", "CuPyBackend"),
}
# Backends whose framework runs only on a GPU (the adapter declares ``gpu_only = True``): registered, so that
# their arrays are recognised and ``get_backend`` / ``polyloss check --backends cupy`` reach them, but not in
# BACKEND_NAMES, the matrix that every machine runs (the CPU test matrix, CI's required backends): a machine
# without a GPU is not missing them. The GPU matrix (``polyloss check --devices cuda``, tests/test_gpu.py,
# benchmarks/gpu.sh) adds those that import.
GPU_BACKEND_NAMES = ("cupy",)
BACKEND_NAMES = tuple(name for name in _REGISTRY if name not in GPU_BACKEND_NAMES)

_instances: dict[str, Backend] = {}
_by_type: dict[type, Backend] = {}


def get_backend(name: str) -> Backend:
    """The adapter called ``name``; imports its framework (ImportError if it is not installed)."""
    try:
        _, module, cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(_REGISTRY)}") from None
    if name not in _instances:
        # __import__, a builtin, rather than importlib: the first call may come from inside a
        # tf.function trace, where AutoGraph would try (and fail, noisily) to convert importlib
        # (torch.compile(fullgraph=True) cannot trace this import: see preload at the end of this module)
        __import__(f"{__name__}.{module}")  # under torch.compile: import polyloss.torch first (preload)
        _instances[name] = getattr(sys.modules[f"{__name__}.{module}"], cls)()
    return _instances[name]


def backend_for(x) -> Backend | None:
    """The adapter whose framework owns ``x``, or None when no imported framework does."""
    cached = _by_type.get(type(x))
    if cached is not None:
        return cached
    for name, (framework, _, _) in _REGISTRY.items():
        if framework not in sys.modules:
            continue
        adapter = get_backend(name)
        if adapter.is_array(x):
            _by_type[type(x)] = adapter
            return adapter
    return None


def available_backends() -> dict[str, str | None]:
    """Each known backend (the GPU-only ones included) mapped to None when importable, else the import
    error's text."""
    status = {}
    for name in _REGISTRY:
        try:
            get_backend(name).namespace  # noqa: B018 - importing is the check
            status[name] = None
        except ImportError as exc:
            status[name] = str(exc) or type(exc).__name__
    return status


# --------------------------------------------------------------------------------------------
# Preloading (polyloss.torch, polyloss.keras): the adapters of the frameworks imported so far, loaded
# now. A tracer that cannot import (torch.compile(fullgraph=True): __import__ is not traceable) then
# finds every adapter that backend_for may ask on the first call.
# --------------------------------------------------------------------------------------------
def preload() -> tuple[str, ...]:
    """Load the adapter of every framework already in ``sys.modules``; returns their names."""
    loaded = []
    for name, (framework, _, _) in _REGISTRY.items():
        if framework in sys.modules:
            get_backend(name)
            loaded.append(name)
    return tuple(loaded)

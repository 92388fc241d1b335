"""The one way to get a namespace: ``get_namespace(*arrays) -> (xp, backend)``.

Mixed-input policy (``docs/design.md``, "Inputs"): the first argument must be an array and decides the
framework and the device. The others may be None, Python scalars or sequences, NumPy
arrays (all converted later with ``backend.asarray(x, like=first)``), or arrays of the same
framework. Arrays of two different frameworks together are a ``TypeError`` naming both.
"""

from __future__ import annotations

import numbers

import numpy as np

from polyloss import backends as _backends

__all__ = ["get_namespace", "namespace_of", "framework_name"]


def framework_name(x) -> str:
    """The framework of an array or value, by its module (``jaxlib`` is ``jax``)."""
    module = type(x).__module__.split(".")[0]
    return {"jaxlib": "jax"}.get(module, module)


def _is_host_value(x) -> bool:
    """Python scalars, sequences and NumPy arrays: converted onto the first array's framework."""
    return isinstance(x, (numbers.Number, bool, list, tuple, np.ndarray, np.generic))


def namespace_of(**named):
    """``(xp, backend)`` of the first named argument; the names appear in error messages."""
    items = list(named.items())
    first_name, first = items[0]
    backend = _backends.backend_for(first)
    if backend is None:
        raise TypeError(
            f"{first_name} must be an array of a supported framework "
            f"({', '.join(_backends.BACKEND_NAMES)}); got {type(first).__module__}.{type(first).__qualname__}"
        )
    for name, value in items[1:]:
        if value is None or (backend.name != "numpy" and _is_host_value(value)):
            continue
        other = _backends.backend_for(value)
        if other is backend:
            continue
        if other is None and _is_host_value(value):
            continue  # Python values next to a NumPy array
        what = other.name if other is not None else f"{framework_name(value)} ({type(value).__qualname__})"
        raise TypeError(
            f"{first_name} is a {backend.name} array but {name} is a {what} array; "
            f"pass {name} as a {backend.name} array (or as a Python/NumPy value to be converted)"
        )
    return backend.namespace, backend


def get_namespace(*arrays):
    """Return ``(xp, backend)`` for ``arrays``: the array API namespace and the adapter.

    The first argument must be an array; it decides the framework. ``None`` entries, Python
    scalars and sequences, and NumPy arrays are accepted beside it (they are converted to the
    first array's framework, dtype and device by the functions that take them). Arrays of two
    different frameworks raise ``TypeError``.

    >>> import numpy as np
    >>> xp, backend = get_namespace(np.zeros(3))
    >>> backend.name
    'numpy'
    """
    if not arrays:
        raise TypeError("get_namespace needs at least one array")
    return namespace_of(**{f"argument {i}": a for i, a in enumerate(arrays)})

"""Testing helpers for checking an implementation of a loss or a metric, yours or ours.

:func:`assert_close` compares an array of any supported framework with expected values, checking
the framework, the dtype and the shape as well as the values, with a tolerance that comes from the
dtype. polyloss's own tests use it; so can yours::

    >>> import numpy as np, polyloss
    >>> from polyloss.testing import assert_close
    >>> logits, labels = np.array([[2.0, -1.0]]), np.array([[1, 0]])
    >>> assert_close(polyloss.multilabel_crossentropy(logits, labels),
    ...              polyloss.reference.multilabel_crossentropy(logits, labels))
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["assert_close", "RTOL", "default_rtol"]

#: The default relative tolerance by dtype: a few units in the last place of float64, and for the
#: narrower dtypes a small multiple of their epsilon (float32 ``2^-23 ≈ 1.2e-7``, float16 ``2^-10``,
#: bfloat16 ``2^-7``) that covers the rounding of the inputs and of a float32 computation.
RTOL = {"float64": 1e-12, "float32": 2e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def _dtype_name(dtype) -> str:
    """``"float32"`` for ``np.float32``, ``torch.float32``, ``jnp.float32``, ``tf.float32``, ``"float32"``."""
    if isinstance(dtype, str):
        return dtype
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    return str(dtype).rsplit(".", 1)[-1].replace("'>", "")


def default_rtol(dtype) -> float:
    """:data:`RTOL` of a floating dtype (any framework's dtype object or its name); float64's for
    integers, booleans and unknown dtypes."""
    return RTOL.get(_dtype_name(dtype), RTOL["float64"])


def _framework(x) -> str | None:
    """The framework of an array (``"numpy"``, ``"torch"``, ...), or None for Python values."""
    if isinstance(x, (bool, int, float, list, tuple)) or x is None:
        return None
    from polyloss import backends

    backend = backends.backend_for(x)
    return backend.name if backend is not None else type(x).__module__.split(".")[0]


def _host(x) -> np.ndarray:
    """``x`` as a NumPy array (float64 for floating values), on the host."""
    from polyloss import backends

    backend = backends.backend_for(x) if _framework(x) is not None else None
    a = backend.to_numpy(x) if backend is not None else np.asarray(x)
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def assert_close(actual, desired, *, rtol: float | None = None, atol: float = 0.0, dtype=None,
                 equal_nan: bool = True, err_msg: str = "") -> None:
    """Assert that ``actual`` equals ``desired`` within ``atol + rtol·|desired|``, entry by entry.

    Checked, in order:

    1. the framework: ``desired`` may be a Python value or a NumPy array (expected values, such as the
       reference's) or an array of ``actual``'s framework; an array of another framework is an error;
    2. the dtype: ``actual.dtype`` must be ``dtype`` when it is given (a dtype object of any framework,
       or a name such as ``"float32"``), else ``desired``'s dtype when both are arrays of the same
       framework other than NumPy (a NumPy ``desired`` is read as expected values, often float64);
    3. the shape: equal shapes, no broadcasting; a Python number as ``desired`` is the expected value
       of every entry;
    4. the values: NaN matches NaN (when ``equal_nan``), infinities must match exactly, and every other
       entry must lie within ``atol + rtol·|desired|``.

    ``rtol`` defaults to :func:`default_rtol` of ``actual``'s dtype (``dtype`` when given).

    Raises:
      AssertionError: naming what differs (framework, dtype, shape, or the worst entry and its error).
    """
    prefix = f"{err_msg}: " if err_msg else ""
    frame_a, frame_d = _framework(actual), _framework(desired)
    if frame_d not in (None, "numpy", frame_a):
        raise AssertionError(f"{prefix}actual is a {frame_a} array but desired is a {frame_d} array")
    actual_dtype = getattr(actual, "dtype", None)
    if dtype is not None:
        if actual_dtype is None or _dtype_name(actual_dtype) != _dtype_name(dtype):
            raise AssertionError(f"{prefix}actual has dtype {actual_dtype}, expected {_dtype_name(dtype)}")
    elif (
        frame_d == frame_a
        and frame_a not in (None, "numpy")
        and _dtype_name(actual_dtype) != _dtype_name(desired.dtype)
    ):
        raise AssertionError(f"{prefix}actual has dtype {actual_dtype} but desired has dtype {desired.dtype}")
    a, d = _host(actual), _host(desired)
    if isinstance(desired, (int, float)):
        d = np.full(a.shape, d, dtype=d.dtype)
    if a.shape != d.shape:
        raise AssertionError(f"{prefix}actual has shape {a.shape} but desired has shape {d.shape}")
    if rtol is None:
        rtol = default_rtol(dtype if dtype is not None else (actual_dtype if actual_dtype is not None else a.dtype))
    if a.dtype.kind not in "fc" or d.dtype.kind not in "fc":
        if not np.array_equal(a, d):
            bad = np.argwhere(a != d)[0] if a.shape else ()
            raise AssertionError(
                f"{prefix}values differ at {tuple(int(i) for i in bad)}: {a[tuple(bad)]!r} != {d[tuple(bad)]!r}"
            )
        return
    nan_a, nan_d = np.isnan(a), np.isnan(d)
    if equal_nan and not np.array_equal(nan_a, nan_d):
        where = tuple(int(i) for i in np.argwhere(nan_a != nan_d)[0])
        raise AssertionError(f"{prefix}NaN differs at {where}: actual {a[where]!r}, desired {d[where]!r}")
    inf = np.isinf(d) | np.isinf(a)
    if not np.array_equal(a[inf], d[inf]):
        where = tuple(int(i) for i in np.argwhere(inf & (a != d))[0])
        raise AssertionError(f"{prefix}infinities differ at {where}: actual {a[where]!r}, desired {d[where]!r}")
    finite = ~(inf | nan_a | nan_d) if equal_nan else ~inf
    with np.errstate(invalid="ignore"):
        excess = np.abs(a - d) - (atol + rtol * np.abs(d))
    bad = finite & ~(excess <= 0.0)
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[np.argmax(excess[bad])])
        error = abs(a[where] - d[where])
        relative = error / abs(d[where]) if d[where] != 0 else math.inf
        raise AssertionError(
            f"{prefix}{int(np.sum(bad))} of {a.size} entries differ beyond rtol={rtol:g}, atol={atol:g}; worst at "
            f"{where}: actual {a[where]!r}, desired {d[where]!r} (absolute {error:.3g}, relative {relative:.3g})"
        )

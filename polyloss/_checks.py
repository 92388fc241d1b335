"""Input validation shared by every public function.

Shapes and dtypes are checked always. Value checks (labels in range, duplicate indices) need
the data, so they run only on concrete arrays: never inside ``jax.jit``, ``tf.function`` or
``torch.compile``, and not at all after ``polyloss.value_checks(False)``. On a GPU a value
check costs one device synchronisation per call.
"""

from __future__ import annotations

import threading

__all__ = [
    "value_checks",
    "values_checked",
    "require_floating",
    "require_integer",
    "require_same_shape",
    "broadcast_where",
    "fail_if_any",
    "normalize_axes",
]

_state = threading.local()


def _enabled() -> bool:
    return getattr(_state, "enabled", True)


class value_checks:
    """Turn the data-dependent value checks on or off, for this thread.

    Use it as a call (``polyloss.value_checks(False)``) or as a context manager
    (``with polyloss.value_checks(False): ...``, which restores the previous setting).
    Shape and dtype checks always run.
    """

    def __init__(self, enabled: bool):
        self._previous = _enabled()
        _state.enabled = bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False


def values_checked(backend, x) -> bool:
    """Whether the value checks run for ``x``: enabled, and ``x`` holds concrete values."""
    return _enabled() and backend.is_eager(x)


def _shape(x) -> tuple:
    return tuple(x.shape)


def require_floating(xp, x, name: str) -> None:
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must be a real floating-point array, got dtype {x.dtype}")


def require_integer(xp, x, name: str) -> None:
    if not xp.isdtype(x.dtype, "integral"):
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype}")


def require_same_shape(a, b, name_a: str, name_b: str) -> None:
    sa, sb = _shape(a), _shape(b)
    if len(sa) != len(sb) or any(p is not None and q is not None and p != q for p, q in zip(sa, sb)):
        raise ValueError(f"{name_b} has shape {sb} but {name_a} has shape {sa}; they must be equal")


def broadcast_where(xp, where, shape: tuple, name_of_shape: str):
    """``where`` as a boolean array broadcast to ``shape`` (None stays None)."""
    if where is None:
        return None
    if where.dtype != xp.bool:
        raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
    ws = _shape(where)
    padded = (1,) * (len(shape) - len(ws)) + ws
    if len(ws) > len(shape) or any(w not in (1, s) and None not in (w, s) for w, s in zip(padded, shape)):
        raise ValueError(f"where has shape {ws}, which does not broadcast to {name_of_shape} shape {tuple(shape)}")
    if ws == tuple(shape):
        return where
    return xp.broadcast_to(where, tuple(shape))


def fail_if_any(xp, backend, bad, like, message) -> None:
    """Raise ``ValueError(message())`` when any element of the boolean array ``bad`` is True.

    Runs only when ``values_checked(backend, like)``; ``message`` is called only on failure.
    """
    if values_checked(backend, like) and bool(xp.any(bad)):
        raise ValueError(message())


def normalize_axes(axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """``axis`` (an int or a tuple of ints) as sorted, non-negative, distinct axes."""
    if isinstance(axis, int) and not isinstance(axis, bool):
        axes = (axis,)
    elif isinstance(axis, (tuple, list)):
        axes = tuple(axis)
    else:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {axis!r}")
    if not axes:
        raise ValueError(f"{name} must name at least one axis")
    out = []
    for a in axes:
        if not isinstance(a, int) or isinstance(a, bool):
            raise TypeError(f"{name} must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}={a} is out of range for an array with {ndim} dimensions")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={axis!r} repeats an axis")
    return tuple(sorted(out))


def describe(xp, x, mask) -> str:
    """``"lo .. hi"``: the range of the integer array ``x`` over the True entries of ``mask``
    (for error messages; call it only once a check has failed)."""
    info = xp.iinfo(x.dtype)
    lo = int(xp.min(xp.where(mask, x, info.max)))
    hi = int(xp.max(xp.where(mask, x, info.min)))
    return f"{lo}" if lo == hi else f"{lo} .. {hi}"

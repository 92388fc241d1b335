"""Input validation and preparation shared by every public function.

Shapes and dtypes are checked always. Value checks (labels in range, repeated indices) need the
data, so they run only when every array involved holds concrete values: never inside
``jax.jit``, ``jax.vmap``, ``tf.function``, ``torch.compile`` or ``torch.func`` transforms, and not
at all after ``polyloss.value_checks(False)``. On a GPU a value check costs one device
synchronisation per call.
"""

from __future__ import annotations

import math
import operator
import threading

import numpy as np

from polyloss import _ops

__all__ = [
    "value_checks",
    "values_checked",
    "fail_if_any",
    "describe",
    "require_floating",
    "require_integer",
    "require_same_shape",
    "same_dims",
    "as_index_array",
    "broadcast_like",
    "prepare_where",
    "normalize_axes",
    "size",
    "prepare_floating",
    "check_label_values",
    "refuse_keras_caller",
    "SWAP_HINT",
    "single_axis",
    "hyperparameter",
    "refuse_text_and_bool",
    "real_number",
    "integer",
    "optional_int",
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


def values_checked(backend, *arrays) -> bool:
    """Whether value checks run: enabled, and every one of ``arrays`` holds concrete values."""
    return _enabled() and all(backend.is_eager(a) for a in arrays if a is not None)


def fail_if_any(xp, bad, message) -> None:
    """Raise ``ValueError(message())`` when any element of the boolean array ``bad`` is True.

    Call it only where :func:`values_checked` holds; ``message`` is called only on failure.
    """
    if bool(xp.any(bad)):
        raise ValueError(message())


def describe(xp, x, mask) -> str:
    """``"lo .. hi"``: the range of the integer array ``x`` over the True entries of ``mask``
    (for error messages; call it only once a check has failed)."""
    info = xp.iinfo(x.dtype)
    lo = int(xp.min(xp.where(mask, x, info.max)))
    hi = int(xp.max(xp.where(mask, x, info.min)))
    return f"{lo}" if lo == hi else f"{lo} .. {hi}"


def describe_values(xp, x, mask, what: str = "values") -> str:
    """``"values from lo to hi"`` of the floating array ``x`` over the True entries of ``mask``, or
    ``"NaN"`` (for error messages, after a check has failed)."""
    if bool(xp.any(xp.isnan(x) & mask)):
        return "NaN"
    # no gradient: turning an array that requires one into a Python float warns in torch (labels that
    # require grad, or the model's output passed as labels)
    from polyloss._namespace import namespace_of

    x = namespace_of(x=x)[1].stop_gradient(x)
    lo = float(xp.min(xp.where(mask, x, math.inf)))
    hi = float(xp.max(xp.where(mask, x, -math.inf)))
    return f"{what} from {lo} to {hi}"


def _shape(x) -> tuple:
    return tuple(x.shape)


def _require_kind(xp, x, name: str, kind: str, what: str) -> None:
    try:
        ok = bool(xp.isdtype(x.dtype, kind))
    except (TypeError, ValueError):  # a dtype the namespace does not know (NumPy's ml_dtypes bfloat16)
        raise TypeError(f"{name} has dtype {x.dtype}, which this backend does not support") from None
    if not ok:
        raise TypeError(f"{name} must be {what} array, got dtype {x.dtype}")


def require_floating(xp, x, name: str) -> None:
    _require_kind(xp, x, name, "real floating", "a real floating-point")


def require_integer(xp, x, name: str) -> None:
    _require_kind(xp, x, name, "integral", "an integer")


def same_dims(sa, sb) -> bool:
    """Whether two shapes agree, a dimension unknown until run time (None) agreeing with any."""
    sa, sb = tuple(sa), tuple(sb)
    return len(sa) == len(sb) and all(p is None or q is None or p == q for p, q in zip(sa, sb))


def require_same_shape(a, b, name_a: str, name_b: str) -> None:
    if not same_dims(_shape(a), _shape(b)):
        raise ValueError(f"{name_b} has shape {_shape(b)} but {name_a} has shape {_shape(a)}; they must be equal")


def as_index_array(xp, backend, x, like, name: str):
    """``x`` (class ids, spans) as an integer array of the namespace's indexing dtype (int64, or
    int32 for JAX without x64): narrow dtypes would wrap the sentinel values and the ``i·L + j``
    arithmetic of span ids."""
    x = backend.asarray(x, like=like, name=name)
    if xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype} (Keras casts y_true to floating "
                        f"point: cast it back, keras.ops.cast(y_true, 'int32'), or use the polyloss.keras "
                        f"class, which does)")
    require_integer(xp, x, name)
    target = backend.index_dtype()
    return x if x.dtype == target else xp.astype(x, target)


def broadcast_like(xp, backend, x, like, name: str, name_of_shape: str):
    """``x`` broadcast to ``like``'s shape, or a ValueError naming both shapes."""
    shape, xs = _shape(like), _shape(x)
    padded = (1,) * (len(shape) - len(xs)) + xs
    if len(xs) > len(shape) or any(a not in (1, b) and None not in (a, b) for a, b in zip(padded, shape)):
        raise ValueError(f"{name} has shape {xs}, which does not broadcast to {name_of_shape} shape {shape}")
    return x if xs == shape and None not in shape else xp.broadcast_to(x, backend.shape(like))


def prepare_where(xp, backend, where, like, name_of_shape: str = "logits"):
    """``where`` (an array, or Python/NumPy booleans) as a boolean array of ``like``'s framework,
    broadcast to ``like``'s shape; None stays None."""
    if where is None:
        return None
    where = backend.asarray(where, like=like, name="where")
    if where.dtype != xp.bool:
        raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
    return broadcast_like(xp, backend, where, like, "where", name_of_shape)


def refuse_text_and_bool(value, message: str) -> None:
    """``TypeError(message)`` for strings and booleans, where a number (or an array) is expected:
    ``float("0.5")``, ``float(True)`` and ``operator.index(True)`` would pass them."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise TypeError(message)


def real_number(value, message: str) -> float:
    """``value`` as a Python float, or ``TypeError(message)`` for strings, booleans and non-numbers."""
    refuse_text_and_bool(value, message)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(message) from None


def integer(value, message: str) -> int:
    """``value`` as a Python int (Python and NumPy integers), or ``TypeError(message)`` for strings,
    booleans, floats and non-numbers."""
    refuse_text_and_bool(value, message)
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(message) from None


def optional_int(value, message: str) -> int | None:
    """None, or :func:`integer`."""
    return None if value is None else integer(value, message)


def normalize_axes(axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """``axis`` (an int or a tuple of ints) as sorted, non-negative, distinct axes."""
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    axes = []
    for a in items:
        a = integer(a, f"{name} must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}={a} is out of range for an array with {ndim} dimensions")
        axes.append(a % ndim)
    if not axes:
        raise ValueError(f"{name} must name at least one axis")
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name}={axis!r} repeats an axis")
    return tuple(sorted(axes))


def size(shape) -> int | None:
    """The number of elements of a static ``shape``, or None when a dimension is unknown."""
    n = 1
    for d in shape:
        if d is None or not isinstance(d, int):
            return None
        n *= d
    return n


def prepare_floating(xp, backend, x, name: str = "logits"):
    """``(x, x_compute)``: ``x`` as a native array of the framework, checked to be real floating,
    and the same values in the compute dtype (half precision goes to float32)."""
    x = backend.asarray(x, like=x, name=name)
    require_floating(xp, x, name)
    return x, _ops.upcast(xp, x)


# what a label check adds when the labels hold values that look like scores
SWAP_HINT = ("; the arguments may be swapped: polyloss takes (logits, labels), Keras passes (y_true, y_pred) "
             "(use the classes of polyloss.keras, which pass them on in polyloss's order)")


def check_label_values(xp, labels, valid=None, name: str = "labels") -> None:
    """Raise ValueError unless integer ``labels`` are 0 or 1 and floating ones lie in [0, 1] (NaN
    passes: NaN in, NaN out), on the entries where ``valid`` holds. Call it only where
    :func:`values_checked` holds."""
    if xp.isdtype(labels.dtype, "bool"):
        return
    # two reductions pass every valid input (NaN fails them, and the entrywise check below decides):
    # cheaper than the comparisons of every entry, which run only when the range is exceeded
    if valid is None and math.prod(labels.shape) > 0 and bool(xp.min(labels) >= 0) and bool(xp.max(labels) <= 1):
        return
    integral = xp.isdtype(labels.dtype, "integral")
    bad = (labels != 0) & (labels != 1) if integral else (labels < 0.0) | (labels > 1.0)
    if valid is not None:
        bad = bad & valid

    def message():
        if integral:
            return (f"integer {name} must be 0 or 1 (use float {name} for soft targets in [0, 1]); "
                    f"found {describe(xp, labels, bad)}")
        return f"soft {name} must lie in [0, 1]; found {describe_values(xp, labels, bad)}{SWAP_HINT}"

    fail_if_any(xp, bad, message)


def single_axis(axis, ndim: int, name: str = "axis") -> int:
    """``axis`` (one int) as a non-negative axis; a tuple is a TypeError."""
    if isinstance(axis, (tuple, list)):
        raise TypeError(f"{name} must be a single int (the class axis), got {axis!r}")
    (a,) = normalize_axes(axis, ndim, name)
    return a


def hyperparameter(value, name: str, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """``value`` as a Python float, or a ValueError naming it when it is not a finite number in
    the interval (``low``/``high`` None: unbounded; ``*_open``: the bound excluded)."""
    v = real_number(value, f"{name} must be a real number, got {value!r}")
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if not math.isfinite(v) or too_low or too_high:
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {lo}, {hi}; got {value!r}")
    return v


# --------------------------------------------------------------------------------------------
# A polyloss function handed to Keras as a loss or metric function
# --------------------------------------------------------------------------------------------
# Keras calls a loss function as fn(y_true, y_pred) (LossFunctionWrapper.call) and a metric function
# likewise (MeanMetricWrapper.update_state): polyloss's (logits, labels) order would be swapped, and under
# jax.jit / tf.function no value check can see it, so training would run on swapped arguments.
_KERAS_CALLERS = {("keras.src.losses.losses", "call"), ("keras.src.metrics.reduction_metrics", "update_state")}


def refuse_keras_caller(backend, first) -> None:
    """Raise TypeError when the caller of the public polyloss function being run is Keras's wrapper of a
    plain loss or metric function. A look at the call stack, at trace time: nothing runs per step, and
    a lambda or class in between (which chose the order itself) passes. Skipped inside torch.compile,
    which cannot trace it (Keras's torch backend runs eagerly, where the value checks speak)."""
    import sys

    if "keras" not in sys.modules or (backend.name == "torch" and not backend.is_eager(first)):
        return
    frame, public = sys._getframe(1), None
    while frame is not None and frame.f_globals.get("__name__", "").startswith("polyloss."):
        public, frame = frame.f_code.co_name, frame.f_back
    if frame is None or (frame.f_globals.get("__name__"), frame.f_code.co_name) not in _KERAS_CALLERS:
        return
    from polyloss import _wrappers

    classes = [line.keras_name for line in _wrappers.LOSSES if line.function.split(".")[-1] == public and line.keras]
    instead = (f"use polyloss.keras.{classes[0]}()" if classes
               else "wrap it in a registered keras.losses.Loss / keras.metrics.Metric, or use polyloss.keras")
    raise TypeError(
        f"polyloss.{public} was passed to Keras as a plain function: Keras calls it as fn(y_true, y_pred), but it "
        f"takes (logits, labels), so the arguments would be swapped (and a lambda that swaps them cannot be saved "
        f"with the model); {instead}, which passes them on in polyloss's order and saves and reloads"
    )

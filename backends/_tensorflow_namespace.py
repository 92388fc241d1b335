"""An array API namespace for TensorFlow, written from plain TF ops.

array-api-compat has no TensorFlow support, and ``tf.experimental.numpy`` needs its global
"NumPy behaviour" switch, which changes type promotion for the whole process, so polyloss
carries its own namespace. It covers the subset of the standard the library uses;
every function works eagerly and inside ``tf.function``, casts its operands to the
standard's promotion result (Python scalars take the array's dtype, as "weak" scalars do in
the standard), and never uses boolean-mask indexing. Mixed-kind promotion (bool with int,
int with float) is a TypeError, as in array-api-strict.
"""

from __future__ import annotations

import builtins
import math
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

__array_api_version__ = "2024.12"

# --- dtypes -------------------------------------------------------------------------------------
bool = tf.bool  # noqa: A001 - the standard's name
int8, int16, int32, int64 = tf.int8, tf.int16, tf.int32, tf.int64
uint8, uint16, uint32, uint64 = tf.uint8, tf.uint16, tf.uint32, tf.uint64
float16, bfloat16, float32, float64 = tf.float16, tf.bfloat16, tf.float32, tf.float64

e, pi, inf, nan = math.e, math.pi, math.inf, math.nan
newaxis = None

_SIGNED = (int8, int16, int32, int64)
_UNSIGNED = (uint8, uint16, uint32, uint64)
_FLOATING = (float16, bfloat16, float32, float64)
_KINDS = {
    "bool": (tf.bool,),
    "signed integer": _SIGNED,
    "unsigned integer": _UNSIGNED,
    "integral": _SIGNED + _UNSIGNED,
    "real floating": _FLOATING,
    "complex floating": (tf.complex64, tf.complex128),
    "numeric": _SIGNED + _UNSIGNED + _FLOATING + (tf.complex64, tf.complex128),
}


def isdtype(dtype, kind) -> builtins.bool:
    if isinstance(kind, tuple):
        return builtins.any(isdtype(dtype, k) for k in kind)
    if isinstance(kind, str):
        try:
            return tf.as_dtype(dtype) in _KINDS[kind]
        except KeyError:
            raise ValueError(f"unknown dtype kind {kind!r}") from None
    return tf.as_dtype(dtype) == tf.as_dtype(kind)


def _bits(dtype) -> int:
    return tf.as_dtype(dtype).size * 8


def _kind(dtype) -> str:
    dtype = tf.as_dtype(dtype)
    for kind in ("bool", "signed integer", "unsigned integer", "real floating"):
        if dtype in _KINDS[kind]:
            return kind
    raise TypeError(f"unsupported dtype {dtype!r}")


def _promote_pair(a, b):
    a, b = tf.as_dtype(a), tf.as_dtype(b)
    if a == b:
        return a
    ka, kb = _kind(a), _kind(b)
    if ka == kb == "real floating":
        if {a, b} == {float16, bfloat16}:
            return float32
        return a if _bits(a) >= _bits(b) else b
    if ka == kb:
        return a if _bits(a) >= _bits(b) else b
    if {ka, kb} == {"signed integer", "unsigned integer"}:
        signed, unsigned = (a, b) if ka == "signed integer" else (b, a)
        if _bits(signed) > _bits(unsigned):
            return signed
        wider = {8: int16, 16: int32, 32: int64}.get(_bits(unsigned))
        if wider is not None:
            return wider
    raise TypeError(f"{a.name} and {b.name} cannot be type promoted together")


def result_type(*arrays_and_dtypes):
    """The standard's promotion; Python scalars are "weak" (they take the other operands' dtype)."""
    python = (builtins.bool, int, float, complex)
    scalars = [x for x in arrays_and_dtypes if isinstance(x, python)]
    dtypes = [x.dtype if hasattr(x, "dtype") else tf.as_dtype(x) for x in arrays_and_dtypes
              if not isinstance(x, python)]
    if not dtypes:
        raise TypeError("result_type needs at least one array or dtype")
    out = dtypes[0]
    for d in dtypes[1:]:
        out = _promote_pair(out, d)
    for x in scalars:
        _check_scalar(x, out)
    return out


def _check_scalar(x, dtype) -> None:
    if isinstance(x, builtins.bool):
        if dtype != tf.bool:
            raise TypeError(f"a Python bool cannot be combined with a {dtype.name} array")
    elif dtype == tf.bool:
        raise TypeError(f"a Python {type(x).__name__} cannot be combined with a bool array")
    elif isinstance(x, float) and not dtype.is_floating:
        raise TypeError(f"a Python float cannot be combined with a {dtype.name} array")


def _is_tensor(x) -> builtins.bool:
    return isinstance(x, (tf.Tensor, tf.Variable))


def _operands(*xs):
    """Cast tensor operands to their promoted dtype; Python scalars take that dtype."""
    tensors = [x for x in xs if _is_tensor(x)]
    if not tensors:
        raise TypeError("at least one operand must be an array")
    dtype = result_type(*tensors)
    out = []
    for x in xs:
        if _is_tensor(x):
            out.append(x if x.dtype == dtype else tf.cast(x, dtype))
        else:
            _check_scalar(x, dtype)
            out.append(tf.constant(x, dtype=dtype))
    return out


# --- creation -------------------------------------------------------------------------------------
def _placed(device):
    return tf.device(device) if device else _NoDevice()


class _NoDevice:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def asarray(obj, /, *, dtype=None, device=None, copy=None):
    if _is_tensor(obj):
        out = tf.convert_to_tensor(obj)
        if dtype is not None and out.dtype != tf.as_dtype(dtype):
            out = tf.cast(out, dtype)
        if device:
            with tf.device(device):
                out = tf.identity(out)
        return out
    with _placed(device):
        return tf.constant(np.asarray(obj), dtype=dtype)


def astype(x, dtype, /, *, copy=True, device=None):
    return x if x.dtype == tf.as_dtype(dtype) and not copy else tf.cast(x, dtype)


def arange(start, /, stop=None, step=1, *, dtype=None, device=None):
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        dtype = float64 if builtins.any(isinstance(v, float) for v in (start, stop, step)) else int64
    with _placed(device):
        return tf.range(start, stop, step, dtype=dtype)


def zeros(shape, *, dtype=None, device=None):
    with _placed(device):
        return tf.zeros(shape, dtype=dtype or float64)


def ones(shape, *, dtype=None, device=None):
    with _placed(device):
        return tf.ones(shape, dtype=dtype or float64)


def full(shape, fill_value, *, dtype=None, device=None):
    if dtype is None:
        if isinstance(fill_value, builtins.bool):
            dtype = tf.bool
        else:
            dtype = float64 if isinstance(fill_value, float) else int64
    with _placed(device):
        return tf.fill(shape, tf.constant(fill_value, dtype=dtype))


def zeros_like(x, /, *, dtype=None, device=None):
    return tf.zeros_like(x, dtype=dtype)


def ones_like(x, /, *, dtype=None, device=None):
    return tf.ones_like(x, dtype=dtype)


def full_like(x, /, fill_value, *, dtype=None, device=None):
    return tf.fill(tf.shape(x), tf.constant(fill_value, dtype=dtype or x.dtype))


# --- element-wise ---------------------------------------------------------------------------------
def _unary(op):
    def f(x, /):
        return op(x)

    f.__name__ = op.__name__
    return f


def _binary(op, name):
    def f(x1, x2, /):
        a, b = _operands(x1, x2)
        return op(a, b)

    f.__name__ = name
    return f


exp = _unary(tf.exp)
expm1 = _unary(tf.math.expm1)
log = _unary(tf.math.log)
log1p = _unary(tf.math.log1p)
sqrt = _unary(tf.sqrt)
square = _unary(tf.square)
abs = _unary(tf.abs)  # noqa: A001
negative = _unary(tf.negative)
sign = _unary(tf.sign)
tanh = _unary(tf.tanh)
logical_not = _unary(tf.logical_not)

add = _binary(tf.add, "add")
subtract = _binary(tf.subtract, "subtract")
multiply = _binary(tf.multiply, "multiply")
divide = _binary(tf.divide, "divide")
pow = _binary(tf.pow, "pow")  # noqa: A001
maximum = _binary(tf.maximum, "maximum")
minimum = _binary(tf.minimum, "minimum")
equal = _binary(tf.equal, "equal")
not_equal = _binary(tf.not_equal, "not_equal")
less = _binary(tf.less, "less")
less_equal = _binary(tf.less_equal, "less_equal")
greater = _binary(tf.greater, "greater")
greater_equal = _binary(tf.greater_equal, "greater_equal")
logical_and = _binary(tf.logical_and, "logical_and")
logical_or = _binary(tf.logical_or, "logical_or")
logical_xor = _binary(tf.math.logical_xor, "logical_xor")
nextafter = _binary(tf.math.nextafter, "nextafter")


def _logaddexp(a, b):
    m = tf.maximum(a, b)
    # equal infinities: the result is that infinity (inf - inf would give NaN)
    same_inf = tf.logical_and(tf.math.is_inf(m), tf.equal(a, b))
    return tf.where(same_inf, m, m + tf.math.log1p(tf.exp(-tf.abs(tf.where(same_inf, tf.zeros_like(a), a - b)))))


logaddexp = _binary(_logaddexp, "logaddexp")


def _float_or(x, op, fallback):
    return op(x) if x.dtype.is_floating else fallback(tf.shape(x), dtype=tf.bool)


def isfinite(x, /):
    return _float_or(x, tf.math.is_finite, tf.ones)


def isinf(x, /):
    return _float_or(x, tf.math.is_inf, tf.zeros)


def isnan(x, /):
    return _float_or(x, tf.math.is_nan, tf.zeros)


def where(condition, x1, x2, /):
    a, b = _operands(x1, x2)
    return tf.where(condition, a, b)


def clip(x, /, min=None, max=None):  # noqa: A002
    if min is not None:
        x = maximum(x, min)
    if max is not None:
        x = minimum(x, max)
    return x


# --- reductions -------------------------------------------------------------------------------------
def _reduce(op, x, axis, keepdims):
    return op(x, axis=list(axis) if isinstance(axis, tuple) else axis, keepdims=keepdims)


def _accumulation_dtype(x, dtype):
    """The standard's default for sums and products: narrow signed integers (and bool) accumulate in
    int64, unsigned ones in uint64; floating dtypes keep their own."""
    if dtype is not None:
        return tf.as_dtype(dtype)
    if x.dtype == tf.bool or x.dtype in _SIGNED:
        return int64
    if x.dtype in _UNSIGNED:
        return uint64
    return x.dtype


def _cast_for(x, dtype):
    target = _accumulation_dtype(x, dtype)
    return x if x.dtype == target else tf.cast(x, target)


def sum(x, /, *, axis=None, dtype=None, keepdims=False):  # noqa: A001
    return _reduce(tf.reduce_sum, _cast_for(x, dtype), axis, keepdims)


def prod(x, /, *, axis=None, dtype=None, keepdims=False):
    return _reduce(tf.reduce_prod, _cast_for(x, dtype), axis, keepdims)


def mean(x, /, *, axis=None, keepdims=False):
    return _reduce(tf.reduce_mean, x, axis, keepdims)


def max(x, /, *, axis=None, keepdims=False):  # noqa: A001
    return _reduce(tf.reduce_max, x, axis, keepdims)


def min(x, /, *, axis=None, keepdims=False):  # noqa: A001
    return _reduce(tf.reduce_min, x, axis, keepdims)


def _as_bool(x):
    return x if x.dtype == tf.bool else tf.not_equal(x, tf.zeros((), x.dtype))


def any(x, /, *, axis=None, keepdims=False):  # noqa: A001
    return _reduce(tf.reduce_any, _as_bool(x), axis, keepdims)


def all(x, /, *, axis=None, keepdims=False):  # noqa: A001
    return _reduce(tf.reduce_all, _as_bool(x), axis, keepdims)


def count_nonzero(x, /, *, axis=None, keepdims=False):
    # the standard's default index dtype; axis=() counts nothing away (each entry: 0 or 1)
    if axis == ():
        return tf.cast(_as_bool(x), int64)
    return _reduce(lambda v, **kw: tf.math.count_nonzero(v, dtype=int64, **kw), x, axis, keepdims)


def argmax(x, /, *, axis=None, keepdims=False):
    if axis is None:
        out = tf.argmax(tf.reshape(x, [-1]), axis=0, output_type=int64)
        return tf.reshape(out, [1] * x.shape.rank) if keepdims else out
    out = tf.argmax(x, axis=axis, output_type=int64)
    return tf.expand_dims(out, axis) if keepdims else out


def cumulative_sum(x, /, *, axis=None, dtype=None, include_initial=False):
    if axis is None:
        x, axis = tf.reshape(x, [-1]), 0
    x = _cast_for(x, dtype)
    out = tf.cumsum(x, axis=axis)
    if include_initial:
        axis %= x.shape.rank
        shape = tf.tensor_scatter_nd_update(tf.shape(x), [[axis]], [1])  # works for an empty axis too
        out = tf.concat([tf.zeros(shape, dtype=out.dtype), out], axis=axis)
    return out


# --- shapes and indexing ---------------------------------------------------------------------------------
def reshape(x, /, shape, *, copy=None):
    return tf.reshape(x, shape)


def permute_dims(x, /, axes):
    return tf.transpose(x, perm=list(axes))


def moveaxis(x, source, destination, /):
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    ndim = x.shape.rank
    src = [s % ndim for s in src]
    dst = [d % ndim for d in dst]
    order = [a for a in range(ndim) if a not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return tf.transpose(x, perm=order)


def expand_dims(x, /, *, axis=0):
    return tf.expand_dims(x, axis)


def squeeze(x, /, axis):
    axes = list(axis) if isinstance(axis, tuple) else [axis]
    return tf.squeeze(x, axis=axes) if axes else x  # tf.squeeze(axis=[]) would squeeze every size-1 axis


def broadcast_to(x, /, shape):
    return tf.broadcast_to(x, shape)


def concat(arrays, /, *, axis=0):
    arrays = _operands(*arrays)
    if axis is None:
        return tf.concat([tf.reshape(a, [-1]) for a in arrays], axis=0)
    return tf.concat(arrays, axis=axis)


def stack(arrays, /, *, axis=0):
    return tf.stack(_operands(*arrays), axis=axis)


def take(x, indices, /, *, axis=None):
    if axis is None:
        x, axis = tf.reshape(x, [-1]), 0
    return tf.gather(x, indices, axis=axis)


def take_along_axis(x, indices, /, *, axis=-1):
    ndim = x.shape.rank
    axis %= ndim
    # broadcast every axis but ``axis`` between x and indices, as the standard does
    xs, ix = tf.unstack(tf.shape(x)), tf.unstack(tf.shape(indices))
    common = [tf.maximum(a, b) for a, b in zip(xs, ix)]
    x = tf.broadcast_to(x, tf.stack([xs[axis] if i == axis else c for i, c in enumerate(common)]))
    indices = tf.broadcast_to(indices, tf.stack([ix[axis] if i == axis else c for i, c in enumerate(common)]))
    if axis != ndim - 1:
        perm = [a for a in range(ndim) if a != axis] + [axis]
        inverse = np.argsort(perm).tolist()
        out = take_along_axis(tf.transpose(x, perm), tf.transpose(indices, perm), axis=-1)
        return tf.transpose(out, inverse)
    return tf.gather(x, indices, axis=-1, batch_dims=ndim - 1)


def flip(x, /, *, axis=None):
    axes = list(range(x.shape.rank)) if axis is None else [axis] if isinstance(axis, int) else list(axis)
    return tf.reverse(x, axis=axes)


def searchsorted(x1, x2, /, *, side="left", sorter=None):
    if sorter is not None:
        x1 = tf.gather(x1, sorter)
    a, v = _operands(x1, x2)
    flat = tf.searchsorted(a, tf.reshape(v, [-1]), side=side, out_type=int64)
    return tf.reshape(flat, tf.shape(v))


def sort(x, /, *, axis=-1, descending=False, stable=True):
    return tf.sort(x, axis=axis, direction="DESCENDING" if descending else "ASCENDING")


def argsort(x, /, *, axis=-1, descending=False, stable=True):
    out = tf.argsort(x, axis=axis, direction="DESCENDING" if descending else "ASCENDING", stable=stable)
    return tf.cast(out, int64)  # the standard's index dtype, as argmax


def matmul(x1, x2, /):
    """The standard's matmul: a 1-D first operand is a row (its axis removed from the result), a 1-D
    second operand a column (likewise); two vectors give their 0-d dot product."""
    a, b = _operands(x1, x2)
    row, column = a.shape.rank == 1, b.shape.rank == 1
    out = tf.linalg.matmul(a[None, :] if row else a, b[:, None] if column else b)
    if column:
        out = tf.squeeze(out, axis=-1)
    if row:
        out = tf.squeeze(out, axis=-1 if column else -2)
    return out


def vecdot(x1, x2, /, *, axis=-1):
    a, b = _operands(x1, x2)
    return tf.reduce_sum(a * b, axis=axis)


# --- data-type information ------------------------------------------------------------------------------
def finfo(type, /):  # noqa: A002
    dtype = tf.as_dtype(type.dtype if hasattr(type, "dtype") else type)
    if dtype == bfloat16:
        import ml_dtypes

        info = ml_dtypes.finfo(ml_dtypes.bfloat16)
    else:
        info = np.finfo(dtype.as_numpy_dtype)
    return SimpleNamespace(
        bits=int(info.bits),
        eps=float(info.eps),
        max=float(info.max),
        min=float(info.min),
        smallest_normal=float(info.tiny),
        dtype=dtype,
    )


def iinfo(type, /):  # noqa: A002
    dtype = tf.as_dtype(type.dtype if hasattr(type, "dtype") else type)
    info = np.iinfo(dtype.as_numpy_dtype)
    return SimpleNamespace(bits=int(info.bits), max=int(info.max), min=int(info.min), dtype=dtype)

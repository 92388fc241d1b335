"""Helpers shared by the reference modules: argument conversion and checks, exactly rounded sums.

Private to ``polyloss.reference``; like the rest of the reference, plain NumPy and Python ``math``,
sharing nothing with the array-API core.
"""

import math
import numbers

import numpy as np

__all__ = [
    "real_array",
    "label_array",
    "int_array",
    "where_array",
    "same_shape",
    "class_axes",
    "as_rows",
    "fsum",
    "number",
    "single_axis",
    "class_ids",
]


def real_array(x, name):
    """``x`` as a float64 NumPy array; bool, complex and non-numeric inputs are a TypeError."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real (integer or floating) array, got dtype {x.dtype}")
    return x.astype(np.float64)


def label_array(labels):
    """Labels as float64: bool, integer 0/1, or float in [0, 1] (checked later, where included)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biuf":
        raise TypeError(f"labels must be bool, integer or floating, got dtype {labels.dtype}")
    return labels.astype(np.float64)


def int_array(x, name):
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype}")
    return x.astype(np.int64)


def where_array(where, shape, against="logits"):
    """``where`` broadcast to ``shape`` (all True when None)."""
    if where is None:
        return np.ones(shape, dtype=bool)
    where = np.asarray(where)
    if where.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
    try:
        return np.broadcast_to(where, shape)
    except ValueError:
        raise ValueError(
            f"where of shape {where.shape} does not broadcast to {against} of shape {shape}"
        ) from None


def same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}")


def class_axes(axis, ndim):
    """Normalise an int or a tuple of ints to a sorted tuple of distinct non-negative axes."""
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    result = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for an array with {ndim} dimensions")
        a = int(a) % ndim
        if a in result:
            raise ValueError(f"axis {axis!r} names the same axis twice")
        result.append(a)
    return tuple(sorted(result))


def as_rows(x, axes):
    """Move ``axes`` to the end and flatten: returns (rows [N, C], shape of the kept axes)."""
    kept = [a for a in range(x.ndim) if a not in axes]
    out_shape = tuple(x.shape[a] for a in kept)
    n_rows = math.prod(out_shape)
    n_classes = math.prod(x.shape[a] for a in axes)
    return np.transpose(x, kept + list(axes)).reshape(n_rows, n_classes), out_shape


def fsum(values):
    """Σ values, exactly rounded (fsum), with the IEEE answers for NaN and infinities."""
    if any(math.isnan(v) for v in values):
        return math.nan
    has_pos_inf = any(v == math.inf for v in values)
    has_neg_inf = any(v == -math.inf for v in values)
    if has_pos_inf and has_neg_inf:
        return math.nan
    if has_pos_inf:
        return math.inf
    if has_neg_inf:
        return -math.inf
    try:
        return math.fsum(values)
    except OverflowError:  # the exact partial sums overflowed: the true sum does too
        return sum(values)


def number(value, name):
    """A real Python/NumPy scalar (or 0-d array) as float; TypeError otherwise."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
        return float(value)
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def single_axis(axis, ndim, name="logits"):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the class axis)")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array with {ndim} dimensions")
    return int(axis) % ndim


def class_ids(labels, *, shape, out_shape, axis, n_classes, name="logits", labels_name="labels",
               ignore_index=None):
    """Integer class ids (``labels.ndim == len(shape) - 1``) as a flat list of ints, checked: an
    integer dtype, the scores' ``shape`` without ``axis`` (``out_shape``), every id in
    ``[0, n_classes)`` or equal to ``ignore_index``."""
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"class-id {labels_name} (ndim {labels.ndim} = {name}.ndim - 1) must be integers, "
            f"got dtype {labels.dtype}"
        )
    if labels.shape != out_shape:
        raise ValueError(
            f"class-id {labels_name} have shape {labels.shape} but {name} of shape {shape} "
            f"without axis {axis} have shape {out_shape}"
        )
    ids = [int(y) for y in labels.reshape(-1)]
    for y in ids:
        if ignore_index is not None and y == ignore_index:
            continue
        if not 0 <= y < n_classes:
            raise ValueError(f"class id {y} in {labels_name} is outside [0, {n_classes})"
                             + ("" if ignore_index is None else f" and is not ignore_index ({ignore_index!r})"))
    return ids


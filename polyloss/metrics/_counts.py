"""What every counting metric shares: the decisions (elementwise threshold or argmax), the counts,
and ratios of counts with a defined 0/0.

Counts are integer arrays of the namespace's indexing dtype (int64; int32 for JAX without x64):
exact, and summable across batches, processes and Dask chunks, so a metric computed from merged
counts equals the one-shot metric bit for bit. Ratios are taken in the scores' compute dtype
(float64 for float64 scores, float32 otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import array_api_compat.numpy as _host_xp

from polyloss import _checks
from polyloss._namespace import namespace_of

__all__ = [
    "METRICS",
    "CLASS_ID_HINT",
    "check_metric",
    "Decisions",
    "decisions",
    "settings_key",
    "check_threshold_kind",
    "class_counts",
    "correct_counts",
    "ratio",
    "fraction",
    "filled",
    "zero_division_value",
    "threshold_value",
    "as_count",
    "total",
    "check_average",
    "precision_recall_f1_from_counts",
    "elementwise_truth",
    "class_histogram",
    "id_counts",
]

AVERAGES = ("micro", "macro", "none")
METRICS = ("f1", "accuracy")  # what a threshold search optimises
# the end of a threshold search's error for class-id labels
CLASS_ID_HINT = " (for multi-class scores see best_threshold_vector)"


def check_metric(metric) -> str:
    """``metric`` of a threshold search, checked to be one of :data:`METRICS`."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(map(repr, METRICS))}; got {metric!r}")
    return metric


def settings_key(value):
    """A value as it is compared when merging metric objects: NaN equals NaN (a pickled copy's NaN
    is another object), 0-d arrays compare by value."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ("object", id(value))
    return "nan" if math.isnan(v) else v


def check_threshold_kind(threshold) -> None:
    """Strings and booleans are not thresholds."""
    _checks.refuse_text_and_bool(threshold, f"threshold must be a real number or a 0-d array, got {threshold!r}")


def zero_division_value(zero_division) -> float:
    """``zero_division`` as a Python float: any real number, or NaN (never guessed)."""
    value = _checks.real_number(zero_division, f"zero_division must be a real number or nan, got {zero_division!r}")
    if math.isinf(value):
        raise ValueError(f"zero_division must be finite or nan, got {zero_division!r}")
    return value


def threshold_value(xp, backend, threshold, scores_c, name: str = "threshold"):
    """The threshold as a Python float, or as a 0-d array of the scores' framework, in the scores'
    compute dtype (a threshold returned by :func:`best_threshold` reproduces its decisions exactly).

    A threshold that the compute dtype cannot hold (``0.1`` next to float32 scores) is rounded
    toward -inf, not to nearest: for a float32 score ``x`` and the largest float32 ``d <= t``,
    ``x > t`` exactly when ``x > d`` (rounding to nearest could go above ``t`` and turn
    ``float32(0.1) > 0.1`` false)."""
    if backend.is_array(threshold):
        if threshold.ndim != 0:
            raise ValueError(f"{name} must be a scalar (0-d), got shape {tuple(threshold.shape)}")
        _checks.require_floating(xp, threshold, name)
        if _checks.values_checked(backend, threshold):
            _checks.fail_if_any(xp, xp.isnan(threshold), lambda: f"{name} is NaN")
        if threshold.dtype == scores_c.dtype:
            return threshold
        if xp.finfo(threshold.dtype).bits <= xp.finfo(scores_c.dtype).bits:
            return xp.astype(threshold, scores_c.dtype)  # a widening conversion is exact
        return _round_down(xp, threshold, scores_c.dtype)
    value = _checks.real_number(threshold, f"{name} must be a real number or a 0-d array, got {threshold!r}")
    if math.isnan(value):
        raise ValueError(f"{name} is NaN")
    if scores_c.dtype == xp.float64:
        return value
    # a Python float stays one (a weakly typed scalar under jit), rounded by the same rule
    return float(_round_down(_host_xp, _host_xp.asarray(value, dtype=_host_xp.float64), _host_xp.float32))


def _round_down(xp, t, dtype):
    """The 0-d floating ``t`` rounded toward -inf into the narrower floating ``dtype``. Beyond the
    range, ``t`` is clipped to +-largest first (no overflow warning), which the step down turns into
    -inf below -largest; infinite values stay as they are."""
    big = xp.finfo(dtype).max
    rounded = xp.astype(xp.where(xp.isinf(t), t, xp.clip(t, -big, big)), dtype)
    above = xp.astype(rounded, t.dtype) > t
    below = xp.where(rounded == -big, -math.inf, xp.nextafter(rounded, xp.full_like(rounded, -big)))
    return xp.where(above, below, rounded)


@dataclass
class Decisions:
    """The predictions and the truth of one call, ready to count (``pred`` None when no decision
    was asked for).

    ``elementwise``: ``pred`` and ``truth`` are boolean arrays of the scores' shape (binary when
    ``binary``, else classes on the last axis). Class-id mode: ``pred`` and ``truth`` are class ids
    ``[...]`` and ``n_classes`` is the size of the scores' last axis.
    """

    xp: object
    backend: object
    pred: object
    truth: object
    elementwise: bool
    binary: bool
    n_classes: object
    scores: object  # the scores in their compute dtype


def _check_no_nan(xp, backend, x, name):
    if _checks.values_checked(backend, x):
        _checks.fail_if_any(
            xp, xp.isnan(x), lambda: f"{name} contains NaN; a score must be a number to be compared with a threshold"
        )


def elementwise_truth(xp, backend, labels, scores, name: str = "labels"):
    """Labels of the scores' shape as booleans; values must be exactly 0 or 1 (bool, int or float)."""
    labels = backend.asarray(labels, like=scores, name=name)
    if xp.isdtype(labels.dtype, "bool"):
        return labels
    if not xp.isdtype(labels.dtype, ("integral", "real floating")):
        raise TypeError(f"{name} must be a bool, integer or floating array of 0/1, got dtype {labels.dtype}")
    if _checks.values_checked(backend, labels):
        bad = (labels != 0) & (labels != 1)

        def message():
            if xp.isdtype(labels.dtype, "integral"):
                found = _checks.describe(xp, labels, bad)
            else:
                found = _checks.describe_values(xp, labels, bad)
            return f"{name} must be 0 or 1 (a metric counts hard labels); found {found}"

        _checks.fail_if_any(xp, bad, message)
    return labels != 0


def decisions(
    scores,
    labels,
    *,
    threshold=0.0,
    caller: str,
    names=("scores", "labels"),
    allow_class_ids: bool = True,
    class_id_hint: str = "",
    decide: bool = True,
) -> Decisions:
    """Check ``scores`` and ``labels`` and turn them into predictions and truth.

    The mode comes from the shapes, never from the values: labels of the scores' shape are 0/1
    per entry (threshold ``scores > threshold``); integer labels of shape ``scores.shape[:-1]``
    are class ids (prediction ``argmax`` over the last axis). ``decide=False``: the inputs are
    checked and converted but nothing is predicted (``pred`` is None), for the functions that
    search the decision themselves."""
    s_name, l_name = names
    check_threshold_kind(threshold)
    xp, backend = namespace_of(**{s_name: scores, l_name: labels, "threshold": threshold})
    _checks.refuse_keras_caller(backend, scores)
    scores, scores_c = _checks.prepare_floating(xp, backend, scores, s_name)
    if scores.ndim == 0:
        raise ValueError(f"{caller}: {s_name} must have at least one dimension, got a 0-d array")
    labels_arr = backend.asarray(labels, like=scores, name=l_name)
    s_shape, l_shape = tuple(scores.shape), tuple(labels_arr.shape)
    if _checks.same_dims(s_shape, l_shape):
        if scores.ndim >= 2 and s_shape[-1] == 0:
            raise ValueError(f"{caller}: {s_name} has shape {s_shape}, with no classes on its last axis")
        pred = scores_c > threshold_value(xp, backend, threshold, scores_c) if decide else None
        _check_no_nan(xp, backend, scores, s_name)
        truth = elementwise_truth(xp, backend, labels_arr, scores, l_name)
        return Decisions(xp, backend, pred, truth, True, scores.ndim == 1, s_shape[-1], scores_c)
    if allow_class_ids and _checks.same_dims(s_shape[:-1], l_shape):
        if not xp.isdtype(labels_arr.dtype, "integral"):
            raise TypeError(
                f"{caller}: {l_name} of shape {l_shape} next to {s_name} {s_shape} are class ids and must "
                f"be integers, got dtype {labels_arr.dtype}"
            )
        if s_shape[-1] == 0:
            raise ValueError(f"{caller}: {s_name} has shape {s_shape}, with no classes on its last axis")
        if backend.is_array(threshold) or threshold != 0.0:
            raise ValueError(
                f"{caller}: with class-id {l_name} the prediction is the argmax over the classes; "
                f"threshold is not used and must be left at 0.0 (got {threshold!r})"
            )
        ids = _checks.as_index_array(xp, backend, labels_arr, scores, l_name)
        n_classes = backend.shape(scores)[-1]
        if _checks.values_checked(backend, ids):
            bad = (ids < 0) | (ids >= n_classes)
            _checks.fail_if_any(
                xp,
                bad,
                lambda: (
                    f"{caller}: class ids in {l_name} must lie in [0, {n_classes}); "
                    f"found {_checks.describe(xp, ids, bad)}"
                ),
            )
        _check_no_nan(xp, backend, scores, s_name)
        pred = None
        if decide:
            pred = xp.argmax(scores_c, axis=-1)
            pred = pred if pred.dtype == ids.dtype else xp.astype(pred, ids.dtype)
        return Decisions(xp, backend, pred, ids, False, False, n_classes, scores_c)
    expected = f"{s_shape} (0/1 per entry)"
    if allow_class_ids:
        expected += f" or integer class ids of shape {s_shape[:-1]}"
    elif _checks.same_dims(s_shape[:-1], l_shape):
        expected += f"; class ids are not accepted here{class_id_hint}"
    raise ValueError(f"{caller}: {l_name} has shape {l_shape}; for {s_name} of shape {s_shape} it must be {expected}")


def as_count(xp, backend, mask, axis=None):
    """The number of True entries of ``mask`` (over ``axis``), as an exact integer array."""
    return _as_index(xp, backend, xp.count_nonzero(mask, axis=axis))  # no integer copy of the mask


def _as_index(xp, backend, counts):
    """Integer ``counts`` in the namespace's indexing dtype, the dtype of every count."""
    return counts if counts.dtype == backend.index_dtype() else xp.astype(counts, backend.index_dtype())


def class_counts(d: Decisions):
    """``(tp, fp, fn)``: per class ``[C]`` (0-d for binary), exact integers."""
    xp, backend = d.xp, d.backend
    if d.elementwise:
        axes = tuple(range(d.pred.ndim - 1)) if not d.binary else None
        tp = as_count(xp, backend, d.pred & d.truth, axes)
        predicted = as_count(xp, backend, d.pred, axes)
        actual = as_count(xp, backend, d.truth, axes)
        return tp, predicted - tp, actual - tp
    tp, predicted = id_counts(xp, backend, d.pred, d.truth, d.n_classes)
    return tp, predicted - tp, class_histogram(xp, backend, d.truth, d.n_classes) - tp


def id_counts(xp, backend, pred, ids, n_classes):
    """``(tp, predicted)`` per class ``[C]`` of predicted class ids ``pred`` against true ``ids``:
    histograms by sorting, not a one-hot ``[N, C]`` (no ``N·C`` memory or time)."""
    hits = xp.where(pred == ids, ids, filled(xp, ids, n_classes))  # a miss becomes C: not counted
    return class_histogram(xp, backend, hits, n_classes), class_histogram(xp, backend, pred, n_classes)


def class_histogram(xp, backend, ids, n_classes):
    """``[C]``: how many entries of the integer array ``ids`` equal each class ``0 .. C-1`` (others,
    e.g. ``C``, are not counted). One sort; the boundaries of the classes are searches into it."""
    ranked = xp.sort(xp.reshape(ids, (-1,)))
    bounds = xp.arange(n_classes + 1, dtype=ranked.dtype, device=backend.device(ranked))
    edges = xp.searchsorted(ranked, bounds, side="left")  # edges[c]: entries below class c
    return _as_index(xp, backend, edges[1:] - edges[:-1])


def correct_counts(d: Decisions):
    """``(correct, total)`` for accuracy: entries (binary), rows whose every entry is right
    (multi-label: subset accuracy) or rows whose argmax is the class id."""
    xp, backend = d.xp, d.backend
    right = d.pred == d.truth
    if d.elementwise and not d.binary:
        right = xp.all(right, axis=-1)
    return as_count(xp, backend, right), total(backend, right)


def total(backend, x):
    """The number of entries of ``x``, as a Python int (or a 0-d array when only known at run time)."""
    n = 1
    for dim in backend.shape(x):
        n = n * dim
    return n


def filled(xp, like, n):
    """``n`` (a Python int, or a 0-d count when the shape is only known at run time, e.g. under
    ``tf.function`` with ``None`` dimensions) as an array of ``like``'s shape and dtype."""
    return xp.full_like(like, n) if isinstance(n, int) else xp.zeros_like(like) + n


def fraction(xp, count, n, dtype):
    """``count / n`` for a count out of ``n > 0`` (a Python int, or a 0-d count known at run time)."""
    return ratio(xp, count, filled(xp, count, n), dtype, math.nan)


def ratio(xp, numerator, denominator, dtype, zero_division: float):
    """``numerator / denominator`` of integer counts, in ``dtype``; ``zero_division`` where the
    denominator is 0."""
    empty = denominator == 0
    num = xp.astype(numerator, dtype)
    den = xp.astype(xp.where(empty, xp.ones_like(denominator), denominator), dtype)
    return xp.where(empty, zero_division, num / den)


def check_average(average) -> str:
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(map(repr, AVERAGES))}; got {average!r}")
    return average


def precision_recall_f1_from_counts(xp, tp, fp, fn, *, dtype, average: str, zero_division: float):
    """``(precision, recall, f1)`` from per-class counts (``[C]``, or 0-d for binary)."""
    if average == "micro" and tp.ndim > 0:
        tp, fp, fn = xp.sum(tp), xp.sum(fp), xp.sum(fn)
    precision = ratio(xp, tp, tp + fp, dtype, zero_division)
    recall = ratio(xp, tp, tp + fn, dtype, zero_division)
    f1 = ratio(xp, 2 * tp, 2 * tp + fp + fn, dtype, zero_division)
    if average == "macro" and tp.ndim > 0:
        precision, recall, f1 = xp.mean(precision), xp.mean(recall), xp.mean(f1)
    return precision, recall, f1

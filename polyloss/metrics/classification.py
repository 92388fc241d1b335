r"""Thresholded precision, recall, F1 and accuracy, and the exact best threshold (``docs/metrics.md``).

Scores are never interpreted from their range: the decision is ``scores > threshold`` with an
explicit ``threshold`` (0 for logits and for ZLPR-trained scores, 0.5 for probabilities), or the
argmax over the classes when the labels are class ids. Which of the two applies is read from the
shapes: labels of the scores' shape hold 0/1 per entry; integer labels of shape
``scores.shape[:-1]`` are class ids.

Every result is a ratio of exact integer counts (``polyloss.metrics.PrecisionRecallF1`` and
friends keep those counts, so batches, processes and Dask chunks merge exactly), taken in the
scores' compute dtype. ``zero_division`` is the value of a ratio whose denominator is 0 (a class
never predicted has no precision): 0 by default, as scikit-learn (without its warning).

Sources: kexue.fm/archives/8860 (fitting the threshold after training; Powell search there,
an exact sweep here); scikit-learn's ``precision_recall_fscore_support`` and ``accuracy_score``
for the averaging conventions.
"""

from __future__ import annotations

import math

from polyloss import _checks, _ops
from polyloss.metrics import _counts

__all__ = ["precision_recall_f1", "accuracy", "best_threshold", "best_threshold_vector"]



def precision_recall_f1(scores, labels, *, threshold=0.0, average="micro", zero_division=0.0):
    r"""Precision, recall and F1 of thresholded (or argmax) predictions.

    .. math::

        P = \frac{TP}{TP + FP}, \qquad R = \frac{TP}{TP + FN}, \qquad
        F_1 = \frac{2\,TP}{2\,TP + FP + FN}

    Three kinds of input, told apart by shapes:

    - **binary**: ``scores [N]`` and ``labels [N]`` (0/1, bool, int or float): predicted positive
      iff ``scores > threshold``;
    - **multi-label**: ``scores [..., C]`` and ``labels [..., C]``: the same per entry, classes on
      the last axis (``threshold=0`` for ZLPR / GlobalPointer logits);
    - **multi-class**: ``scores [..., C]`` and integer class ids ``labels [...]``: the prediction
      is ``argmax`` over the classes (the first maximum on ties); ``threshold`` must stay 0.

    ``average``: ``"micro"`` pools the counts of all classes (for multi-class input it equals the
    accuracy); ``"macro"`` is the unweighted mean over the ``C`` classes of each class's P, R and
    F1 (as scikit-learn with ``labels=range(C)``); ``"none"`` returns them per class (``[C]``; a
    0-d array for binary input). A ratio whose denominator is 0 is ``zero_division`` (a class
    never predicted has no precision; no examples at all give ``zero_division`` everywhere).

    Returns ``(precision, recall, f1)``, arrays of the scores' framework in their compute dtype
    (float32 for half precision). Scores must not be NaN (checked eagerly).

    >>> import numpy as np
    >>> from polyloss.metrics import precision_recall_f1
    >>> scores = np.array([2.0, -1.0, 0.5, -3.0])        # logits: positive iff > 0
    >>> labels = np.array([1, 1, 0, 0])
    >>> [float(v) for v in precision_recall_f1(scores, labels)]  # TP=1, FP=1, FN=1
    [0.5, 0.5, 0.5]
    """
    average = _counts.check_average(average)
    zd = _counts.zero_division_value(zero_division)
    d = _counts.decisions(scores, labels, threshold=threshold, caller="precision_recall_f1")
    tp, fp, fn = _counts.class_counts(d)
    return _counts.precision_recall_f1_from_counts(d.xp, tp, fp, fn, dtype=d.scores.dtype, average=average,
                                                   zero_division=zd)


def accuracy(scores, labels, *, threshold=0.0):
    r"""The fraction of correct predictions.

    Binary ``scores [N]``: entries with ``(scores > threshold) == labels``. Multi-label
    ``scores [..., C]`` with 0/1 ``labels [..., C]``: **subset accuracy**, the fraction of rows whose
    ``C`` decisions are all right (scikit-learn's ``accuracy_score`` on indicator matrices).
    Multi-class with class ids ``labels [...]``: rows whose argmax is the label. No rows at all is a
    ValueError. Returns a 0-d array in the scores' compute dtype.

    >>> import numpy as np
    >>> from polyloss.metrics import accuracy
    >>> float(accuracy(np.array([[3.0, -1.0], [0.2, 0.1]]), np.array([0, 1])))   # argmax 0, 0
    0.5
    """
    d = _counts.decisions(scores, labels, threshold=threshold, caller="accuracy")
    correct, total = _counts.correct_counts(d)
    if isinstance(total, int) and total == 0:
        raise ValueError(f"accuracy: no examples (scores have shape {tuple(d.scores.shape)})")
    return _counts.fraction(d.xp, correct, total, d.scores.dtype)


def _one(xp, backend, value, like):
    return xp.full((1,), value, dtype=like.dtype, device=backend.device(like))


def _at(xp, x, index):
    """``x[index]`` for a 0-d integer array ``index`` (the standard indexes with Python ints only)."""
    return xp.reshape(xp.take(x, xp.reshape(index, (1,))), ())


def _midpoint_threshold(xp, backend, low, high):
    """A threshold ``t`` with ``low <= t < high``: the midpoint where it is one, else ``low`` (an
    infinite end has no midpoint: ``low``, the only end that works, e.g. ``-inf`` below everything)."""
    finite = xp.isfinite(low) & xp.isfinite(high)
    mid = xp.where(finite, low, 0.0) / 2 + xp.where(finite, high, 0.0) / 2  # never overflows
    return xp.where(finite & (low <= mid) & (mid < high), mid, low)


def best_threshold(scores, labels, *, metric="f1", zero_division=0.0):
    r"""The threshold that maximises F1 or accuracy of ``scores > threshold``, found exactly.

    Kexue 8860 fits the threshold with Powell's search; the exact answer costs one sort. The
    decisions change only at the score values, so with the distinct scores
    :math:`u_1 < \dots < u_m` the candidates are "every entry positive" and, for each
    :math:`u_j`, "positive iff score :math:`> u_j`" (equal scores always move together). After
    sorting, the counts of every candidate are a cumulative sum of the labels, and the metric of
    every candidate follows in O(n):

    .. math::

        TP_k = P - FN_k,\qquad F_1(k) = \frac{2\,TP_k}{P + (n - k)}

    for the candidate whose ``k`` lowest entries are negative (``P`` positives, ``FN_k`` of them
    among those ``k``). ``metric="accuracy"`` is :func:`accuracy` at the threshold: per entry for
    ``scores [N]``; for ``scores [..., C]``, subset accuracy, where a row is right for thresholds
    in ``[max negative score, min positive score)`` (two more sorts count the rows).

    Among equally good candidates the lowest threshold wins; candidates are ranked in float64 where
    the target has it (values that round to the same float32 still rank apart; JAX without x64 ranks
    in the scores' dtype), the value returned is in the compute dtype. The threshold returned for candidate
    ``u_j`` is the midpoint ``(u_j + u_{j+1}) / 2`` (or ``u_j`` when rounding would leave the
    interval), which generalises better than the edge; for "every entry positive" it is the float
    just below the smallest score (``-smallest_normal`` when that float would be subnormal, which
    JAX and TensorFlow flush to zero); for "every entry negative" the largest score.

    ``scores`` and ``labels`` (0/1, same shape, ``ndim >= 1``; class ids are a ValueError: see
    :func:`best_threshold_vector`). Returns ``(threshold, value)``, 0-d arrays in the scores'
    compute dtype: ``precision_recall_f1(scores, labels, threshold=threshold)[2]`` (or
    ``accuracy(...)``) equals ``value``. O(n log n); 10^7 scores take a few seconds on a CPU.

    >>> import numpy as np
    >>> from polyloss.metrics import best_threshold
    >>> scores = np.array([0.1, 0.4, 0.35, 0.8])
    >>> labels = np.array([0, 0, 1, 1])
    >>> t, f1 = best_threshold(scores, labels)           # positive iff > 0.225: TP=2, FP=1
    >>> round(float(t), 3), round(float(f1), 4)
    (0.225, 0.8)
    """
    _counts.check_metric(metric)
    zd = _counts.zero_division_value(zero_division)
    d = _counts.decisions(scores, labels, decide=False, caller="best_threshold", allow_class_ids=False,
                          class_id_hint=_counts.CLASS_ID_HINT)
    xp, backend, s = d.xp, d.backend, d.scores
    n = _counts.total(backend, s)
    if isinstance(n, int) and n == 0:
        raise ValueError(f"best_threshold: no scores (shape {tuple(s.shape)})")
    flat, truth = xp.reshape(s, (-1,)), xp.reshape(d.truth, (-1,))
    if metric == "f1" or d.binary:
        keys = _packed_keys(xp, backend, flat, truth)
        if keys is not None:
            found = _packed_sweep(xp, backend, keys, n, metric, zd, s.dtype)
            if found is not None:
                best, value = found
                return _threshold_of(xp, backend, best, n, s.dtype, _packed_score_at(xp, backend, keys)), value
    idx = backend.index_dtype()
    # ranked: the sorted scores, or keys that order and compare as they do (decode gives the scores)
    ranked, positive, decode = _sorted_with_labels(xp, backend, flat, truth)
    missed = xp.cumulative_sum(positive, include_initial=True)  # FN_k: positives among the k lowest
    total_pos = missed[-1]
    k = xp.arange(n + 1, dtype=idx, device=backend.device(s))
    true = xp.ones((1,), dtype=xp.bool, device=backend.device(s))
    # candidate k is real when k = 0 ("every entry positive": impossible with a -inf score) or
    # when the k-th lowest score ends a run of equal scores
    valid = xp.concat([decode(ranked[:1]) > -math.inf, ranked[:-1] != ranked[1:], true])
    # candidates are ranked in float64 where the target has it (the packed sweep's order, and the reference's:
    # F1 values a float32 rounds together still rank apart), else in the scores' dtype
    exact = xp.float64 if "float64" in backend.dtypes(backend.device(s)) else s.dtype
    # the value returned is computed, in the compute dtype, at the winner only
    if metric == "f1":
        true_positives, denominator = total_pos - missed, total_pos + (n - k)
        order = _counts.ratio(xp, 2 * true_positives, denominator, exact, zd)

        def value_at(i):
            return _counts.ratio(xp, 2 * _at(xp, true_positives, i), _at(xp, denominator, i), s.dtype, zd)
    elif d.binary:
        correct = (total_pos - missed) + (k - missed)  # TP + TN
        order = xp.astype(correct, exact)

        def value_at(i):
            return _counts.fraction(xp, _at(xp, correct, i), n, s.dtype)
    else:
        order = _subset_accuracy_sweep(xp, backend, d, decode(ranked))

        def value_at(i):
            return _at(xp, order, i)
    # NaN (zero_division=nan) never wins; it can only be F1's 0/0 at the last candidate, "every entry
    # negative" with no positives, always real: that one is chosen when no other is real
    rank = xp.where(valid & ~xp.isnan(order), order, -math.inf)
    best = xp.argmax(rank)
    best = xp.where(_at(xp, rank, best) == -math.inf, n, best)
    return _threshold_of(xp, backend, best, n, s.dtype, lambda i: decode(_at(xp, ranked, i))), value_at(best)


def _threshold_of(xp, backend, best, n, dtype, score_at):
    """The threshold of candidate ``best`` (a 0-d index; ``score_at(i)`` is the ``i``-th lowest score, a 0-d
    array): the midpoint ``(u_j + u_{j+1}) / 2`` of candidate ``k = j`` (or ``u_j``, see
    :func:`_midpoint_threshold`), the largest score for ``k = n``, and for ``k = 0`` the float just below the
    smallest score; below a score within the subnormal range the normal ``-smallest_normal`` instead (JAX and
    TensorFlow flush subnormals to zero: ``nextafter(0, -inf)`` is ``-0``)."""
    low = score_at(xp.clip(best - 1, 0, n - 1))  # u_j for candidate k = j
    high = score_at(xp.clip(best, 0, n - 1))
    high = xp.where(best == n, xp.full_like(high, math.inf), high)
    tiny = xp.finfo(dtype).smallest_normal
    lowest = score_at(xp.zeros_like(best))
    below_all = xp.where(xp.abs(lowest) < tiny, -tiny, xp.nextafter(lowest, xp.full_like(lowest, -math.inf)))
    return xp.where(best == 0, below_all, _midpoint_threshold(xp, backend, low, high))


def _sorted_with_labels(xp, backend, flat, truth):
    """``(ranked, positive, decode)``: the scores in ascending order, or integer keys that order and compare
    equal exactly as they do (:func:`_packed_keys`; ``decode`` turns keys, or a slice of them, back into the
    scores), and the labels in the same order as integers (0/1) of the indexing dtype."""
    idx = backend.index_dtype()
    keys = _packed_keys(xp, backend, flat, truth)
    if keys is None:  # elsewhere (jit, graphs, GPUs) the compiler's sort
        order = xp.argsort(flat)
        return xp.take(flat, order), xp.astype(xp.take(truth, order), idx), lambda ranked: ranked

    def decode(ordered):
        ordered = xp.astype(ordered, xp.int32)
        return backend.bitcast(ordered ^ ((ordered >> 31) & 0x7FFFFFFF), xp.float32)  # the involution again

    return keys >> 1, keys & 1, decode


def _packed_keys(xp, backend, flat, truth):
    """float32 scores and their 0/1 labels as sorted int64 keys ``(order-preserving bits of the score) << 1 |
    label``, eager on the CPU where the adapter can bitcast (``Backend.bitcast``) and the indexing dtype is
    int64; None elsewhere (``jit``, graphs and GPUs sort with the compiler's sort). One integer sort, which
    NumPy and PyTorch run several times faster than an argsort followed by two gathers
    (``benchmarks/README.md``). ``s + 0.0`` turns ``-0.0`` into ``0.0`` first (equal scores must share a run);
    IEEE sign-magnitude bits order like two's-complement integers once a negative float's low 31 bits are
    flipped (an involution, undone by :func:`_packed_score_at`). The sweep reads only the ends of runs of
    equal scores, so the order within a run does not matter (no stable sort needed)."""
    if not (backend.bitcast is not None and flat.dtype == xp.float32 and backend.index_dtype() == xp.int64
            and _ops.cheap_branch(backend, flat)):
        return None
    bits = backend.bitcast(flat + 0.0, xp.int32)
    keys = xp.astype(bits ^ ((bits >> 31) & 0x7FFFFFFF), xp.int64) << 1
    return xp.sort(keys | xp.astype(truth, xp.int64), stable=False)  # the array API sorts stably by default


def _packed_score_at(xp, backend, keys):
    """``score_at(i)`` of :func:`_threshold_of` for sorted packed keys: only the candidates are decoded."""

    def score_at(i):
        ordered = xp.astype(_at(xp, keys, i) >> 1, xp.int32)
        return backend.bitcast(ordered ^ ((ordered >> 31) & 0x7FFFFFFF), xp.float32)

    return score_at


def _packed_sweep(xp, backend, keys, n, metric, zero_division, dtype):
    """``(best, value)`` of the F1 or binary-accuracy sweep over sorted packed keys in a handful of passes
    (eager on the CPU), or None where the general sweep decides (no positives: F1's 0/0 and its
    ``zero_division`` rule). The candidates are ranked exactly: F1's ``TP_k / (P + n - k)`` in float64 (counts
    below 2^53 are exact there, and the quotient is correctly rounded, so a float32 ratio cannot tie
    candidates that differ; the factor 2 of ``2 TP`` changes no order), accuracy's ``P + k - 2 FN_k`` in
    integers. Candidate ``k`` (``1 <= k < n``) is real where its score differs from the next one: packed keys
    of equal scores differ by at most 1. The value returned is the metric of the best candidate computed as
    :func:`polyloss.metrics.precision_recall_f1` (or :func:`accuracy`) computes it, in ``dtype``."""
    missed = xp.cumulative_sum(keys & 1)  # missed[k - 1] = FN_k for k = 1 .. n
    total_pos = int(missed[-1])
    if metric == "f1" and total_pos == 0:
        return None
    device = backend.device(keys)
    if metric == "f1":
        den = xp.arange(total_pos + n - 1, total_pos - 1, -1, dtype=xp.float64, device=device)  # P + n - k
        score = xp.astype(total_pos - missed, xp.float64) / den
        first = total_pos / (total_pos + n)  # k = 0: every entry positive
    else:
        k = xp.arange(1, n + 1, dtype=xp.int64, device=device)
        score = (k + total_pos) - 2 * missed  # TP + TN
        first = total_pos
    # candidates 1 .. n - 1 are real where the score changes (packed keys of equal scores differ by at most
    # 1); candidate n ("every entry negative") always is, and candidate 0 unless the lowest score is -inf.
    # The first of equal ranks wins.
    best, top = n, float(score[n - 1])
    if n > 1:
        ranked = xp.where((keys[1:] - keys[:-1]) >= 2, score[:-1], -1)
        middle = int(xp.argmax(ranked))
        if float(ranked[middle]) >= top:
            best, top = middle + 1, float(ranked[middle])
    if first >= top and bool(_packed_score_at(xp, backend, keys)(xp.asarray(0)) > -math.inf):
        best = 0
    fn = 0 if best == 0 else int(missed[best - 1])
    idx = backend.index_dtype()
    tp, k = xp.asarray(total_pos - fn, dtype=idx, device=device), xp.asarray(best, dtype=idx, device=device)
    if metric == "f1":
        value = _counts.ratio(xp, 2 * tp, total_pos + (n - k), dtype, zero_division)
    else:
        value = _counts.fraction(xp, tp + (k - fn), n, dtype)
    return k, value


def _subset_accuracy_sweep(xp, backend, d, ranked):
    """Subset accuracy of every candidate threshold (``t = -inf`` then each sorted score): row ``r``
    is right for ``lo_r <= t < hi_r``, with ``lo`` its largest negative score and ``hi`` its smallest
    positive one, so the count at ``t`` is ``#{lo <= t} - #{hi <= t}`` over rows with ``lo < hi``."""
    s, truth = d.scores, d.truth
    n_classes = backend.shape(s)[-1]
    rows_s = xp.reshape(s, (-1, n_classes))
    rows_t = xp.reshape(truth, (-1, n_classes))
    lo = xp.max(xp.where(rows_t, -math.inf, rows_s), axis=-1)
    hi = xp.min(xp.where(rows_t, rows_s, math.inf), axis=-1)
    # a row without positives is right from lo on, up to and including t = +inf: it never leaves
    never_leaves = ~xp.any(rows_t, axis=-1)
    possible = (lo < hi) | never_leaves
    # a row that is never right enters and leaves at the same place: it adds 0 everywhere
    lo = xp.where(possible, lo, -math.inf)
    hi = xp.where(possible & ~never_leaves, hi, xp.where(possible, xp.full_like(hi, math.inf), -math.inf))
    at = xp.concat([_one(xp, backend, -math.inf, ranked), ranked])
    left = xp.searchsorted(xp.sort(hi), at, side="right")
    # hi = +inf of those rows counts as "left" at t = +inf: it must not
    stay = _counts.as_count(xp, backend, possible & never_leaves)
    left = left - xp.where(at == math.inf, stay, xp.zeros_like(stay))
    right = xp.searchsorted(xp.sort(lo), at, side="right") - left
    return _counts.fraction(xp, right, _counts.total(backend, lo), s.dtype)


def best_threshold_vector(scores, labels, *, metric="f1", rounds=3):
    r"""A per-class offset vector ``b`` for multi-class predictions ``argmax(scores + b)`` that
    improves macro F1 (``metric="f1"``) or accuracy: a **heuristic** (coordinate ascent).

    Kexue 8860 moves the decision of a multi-class model with a threshold vector ``t``,
    predicting :math:`\arg\max_i p_i t_i`; on logits this is :math:`\arg\max_i (s_i + b_i)` with
    :math:`b = \log t`. The joint optimum has no sweep; this function improves one class at a time:
    with the other offsets fixed, example ``n`` moves to class ``k`` exactly when
    :math:`b_k > d_n = \max_{j \ne k}(s_{nj} + b_j) - s_{nk}`, so one sort of ``d`` and cumulative
    sums of the per-class counts evaluate every ``b_k`` exactly (midpoints between consecutive
    ``d``; one logit beyond the extremes). ``rounds`` passes over the classes. The value never
    decreases (a step is kept only if it does not lower the metric recomputed from
    ``argmax(scores + b)``), but the result is a local optimum, not the global one. For a validation
    set of ``N`` rows a round costs ``O(C·(N log N + N·C))``.

    ``scores [N, C]`` (finite; logits or log-probabilities, not probabilities) and class ids
    ``labels [N]``. Returns ``(offsets [C], value)``; ``value`` is the macro F1 (or accuracy) of
    ``argmax(scores + offsets)``. Micro F1 of multi-class predictions is the accuracy.

    >>> import numpy as np
    >>> from polyloss.metrics import accuracy, best_threshold_vector
    >>> scores = np.array([[1.0, 0.5], [1.0, 0.2], [1.0, 0.9], [0.0, 1.0]])
    >>> labels = np.array([0, 0, 1, 1])
    >>> float(accuracy(scores, labels))
    0.75
    >>> offsets, value = best_threshold_vector(scores, labels, metric="accuracy")
    >>> float(value), float(accuracy(scores + offsets, labels))
    (1.0, 1.0)
    """
    _counts.check_metric(metric)
    message = f"rounds must be a positive int, got {rounds!r}"
    try:
        rounds = _checks.integer(rounds, message)
    except TypeError:
        raise ValueError(message) from None
    if rounds < 1:
        raise ValueError(message)
    d = _counts.decisions(scores, labels, decide=False, caller="best_threshold_vector")
    xp, backend, s = d.xp, d.backend, d.scores
    if d.elementwise or s.ndim != 2:
        raise ValueError(f"best_threshold_vector needs scores [N, C] and integer class ids [N]; got scores "
                         f"{tuple(s.shape)} and labels {tuple(d.truth.shape)} (for 0/1 labels use best_threshold)")
    if _checks.values_checked(backend, s):
        _checks.fail_if_any(xp, ~xp.isfinite(s), lambda: "best_threshold_vector: scores must be finite")
    n_rows, n_classes = backend.shape(s)
    if isinstance(n_rows, int) and n_rows == 0:
        raise ValueError("best_threshold_vector: no examples (scores have shape (0, C))")
    classes = xp.arange(n_classes, dtype=d.truth.dtype, device=backend.device(s))
    support = _counts.class_histogram(xp, backend, d.truth, n_classes)
    offsets = xp.zeros((n_classes,), dtype=s.dtype, device=backend.device(s))
    current = _class_metric(xp, backend, xp.argmax(s + offsets, axis=-1), d.truth, n_classes, support, metric, s.dtype)
    for _ in range(rounds):
        for k in range(n_classes):
            candidate, pred = _line_search(xp, backend, s, offsets, k, d.truth, classes, support, metric)
            value = _class_metric(xp, backend, pred, d.truth, n_classes, support, metric, s.dtype)
            keep = value >= current
            offsets = xp.where(keep, candidate, offsets)
            current = xp.where(keep, value, current)
    return offsets, current


def _class_metric(xp, backend, pred, ids, n_classes, support, metric, dtype):
    pred = xp.astype(pred, ids.dtype) if pred.dtype != ids.dtype else pred
    if metric == "accuracy":
        n = _counts.total(backend, ids)
        correct = _counts.as_count(xp, backend, pred == ids)
        return _counts.fraction(xp, correct, n, dtype)
    tp, predicted = _counts.id_counts(xp, backend, pred, ids, n_classes)
    return xp.mean(_counts.ratio(xp, 2 * tp, predicted + support, dtype, 0.0))


def _line_search(xp, backend, s, offsets, k, ids, classes, support, metric):
    """``(offsets, pred)``: ``offsets`` with ``offsets[k]`` replaced by the best value for the others fixed, in
    O(N log N) past the rivals (one pass over ``[N, C]`` for each example's best other class), and
    ``argmax(s + offsets)`` under the new offsets, found from the rivals without another pass over ``[N, C]``.

    Sorted by ``gap``, the examples move to ``k`` one by one; a move changes two classes only: ``k`` gains a
    prediction (and a true positive if the example is of class ``k``), its rival loses one. The metric of
    every prefix is then a cumulative sum: for accuracy of ``±1`` per move; for macro F1 of the change of
    ``F1_k`` (from cumulative counts) and of the rival's ``F1_c``, whose counts before the move are the moves
    of the same rival earlier in the order (grouped by a stable sort by rival). The sums run in float64 where
    the backend has it: a float32 sum of thousands of steps could misorder near-equal candidates."""
    idx = backend.index_dtype()
    is_k = classes == k
    others = s + xp.where(is_k, -math.inf, offsets)  # -inf in column k (s is finite): one [C] where, not [N, C]
    rival_n = xp.argmax(others, axis=-1)  # what each example predicts while k is out of the race
    top_n = xp.max(others, axis=-1)  # its entry
    rival_n = rival_n if rival_n.dtype == ids.dtype else xp.astype(rival_n, ids.dtype)
    s_k = s[:, k]
    gap = top_n - s_k
    order = xp.argsort(gap)  # example n moves to k when offsets[k] > gap[n]
    gap, rival, truth = xp.take(gap, order), xp.take(rival_n, order), xp.take(ids, order)
    n = backend.shape(gap)[0]
    to_k = xp.astype(truth == k, idx)
    hit = xp.astype(truth == rival, idx)  # the example was a true positive of its rival
    if metric == "accuracy":
        correct = _counts.as_count(xp, backend, hit == 1) + xp.cumulative_sum(to_k - hit, include_initial=True)
        value = _counts.fraction(xp, correct, n, _accumulation_dtype(xp, backend, s))
    else:
        value = _macro_f1_prefixes(xp, backend, s, rival, to_k, hit, k, support)
    true = xp.ones((1,), dtype=xp.bool, device=backend.device(s))
    valid = xp.concat([true, gap[:-1] != gap[1:], true])  # j moved: only where the run of equal gaps ends
    best = xp.argmax(xp.where(valid, value, -math.inf))
    low = _at(xp, gap, xp.clip(best - 1, 0, n - 1))
    high = _at(xp, gap, xp.clip(best, 0, n - 1))
    # offsets[k] in (gap[j-1], gap[j]]: the midpoint; one logit past the ends for none / all moved
    mid = low / 2 + high / 2
    inner = xp.where((low < mid) & (mid <= high), mid, high)
    choice = xp.where(best == 0, gap[0] - 1.0, xp.where(best == n, gap[n - 1] + 1.0, inner))
    # a single class has no rival (every gap is -inf): its offset cannot matter, it stays
    choice = xp.where(xp.isfinite(choice), choice, xp.sum(xp.where(is_k, offsets, 0.0)))
    # argmax(s + new offsets) row by row: the other entries are those of ``others``, whose first maximum is
    # ``top_n`` at ``rival_n``; k's entry is the same float sum as in ``s + offsets``. k wins above that maximum,
    # and at a tie when its index is the lower one (argmax takes the first maximum)
    mine = s_k + choice
    wins = (mine > top_n) | ((mine == top_n) & (rival_n > k))
    pred = xp.where(wins, xp.asarray(k, dtype=rival_n.dtype, device=backend.device(s)), rival_n)
    return xp.where(is_k, choice, offsets), pred


def _accumulation_dtype(xp, backend, s):
    """float64 where the backend computes in it (JAX without x64 does not), else ``s``' dtype."""
    return xp.float64 if "float64" in backend.dtypes() else s.dtype


def _macro_f1_prefixes(xp, backend, s, rival, to_k, hit, k, support):
    """Macro F1 after each prefix of moves (``[N + 1]``, see :func:`_line_search`)."""
    idx = backend.index_dtype()
    acc = _accumulation_dtype(xp, backend, s)
    n_classes = backend.shape(s)[-1]
    n = backend.shape(rival)[0]
    predicted0 = _counts.class_histogram(xp, backend, rival, n_classes)  # nobody has moved yet
    tp0 = _counts.class_histogram(xp, backend, xp.where(hit == 1, rival, _counts.filled(xp, rival, n_classes)),
                                  n_classes)

    def f1(predicted, tp, sup):
        den = predicted + sup
        return xp.where(den > 0, xp.astype(2 * tp, acc) / xp.astype(xp.where(den > 0, den, 1), acc), 0.0)

    base = xp.sum(f1(predicted0, tp0, support))  # k predicts nothing at the start: F1_k = 0
    # the rivals: the moves of each rival in the order of the gaps, grouped by a stable sort
    by_rival = xp.argsort(rival, stable=True)
    grouped = xp.take(rival, by_rival)
    grouped_hit = xp.take(hit, by_rival)
    start = xp.searchsorted(grouped, grouped, side="left")  # the first move of the same rival
    earlier = xp.arange(n, dtype=idx, device=backend.device(s)) - xp.astype(start, idx)
    hits = xp.cumulative_sum(grouped_hit, include_initial=True)
    earlier_hits = xp.take(hits, xp.arange(n, dtype=idx, device=backend.device(s))) - xp.take(hits, start)
    pred_c, tp_c, sup_c = (xp.take(a, grouped) for a in (predicted0, tp0, support))
    pred_c, tp_c = pred_c - earlier, tp_c - earlier_hits
    change = f1(pred_c - 1, tp_c - grouped_hit, sup_c) - f1(pred_c, tp_c, sup_c)
    change = xp.take(change, xp.argsort(by_rival))  # back to the order of the gaps
    rivals = base + xp.cumulative_sum(change, include_initial=True)
    moved = xp.arange(n + 1, dtype=idx, device=backend.device(s))
    own = f1(moved, xp.cumulative_sum(to_k, include_initial=True), xp.take(support, xp.reshape(
        xp.asarray(k, dtype=idx, device=backend.device(s)), (1,))))
    return (rivals + own) / n_classes

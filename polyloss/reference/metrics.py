"""Reference (oracle) versions of the metrics (``docs/metrics.md``): evaluation metrics.

Plain Python loops over the entries, exact integer counts, and ``fractions.Fraction`` for every
ratio, mean and comparison, so that each value is the exactly rounded float64 of the rational number
the definition asks for (a single rounding at the end). Obviously right, not fast: use test-sized
inputs. No code is shared with the array-API core.

Conventions (the contract of the library's ``polyloss.metrics``):

* Scores are raw scores (logits) and a prediction is ``score > threshold`` (strict), with an explicit
  threshold (0 for ZLPR / GlobalPointer scores). Nothing is ever guessed from the value range.
* Two modes, decided by the shapes only. Elementwise: ``labels.shape == scores.shape``, labels are
  exactly 0 or 1 (1-D: binary; ``ndim >= 2``: multi-label, classes on the last axis). Class ids:
  integer ``labels`` of shape ``scores.shape[:-1]``, the prediction is the first maximum of the row.
* A ratio whose denominator is 0 takes the value ``zero_division`` (default 0.0, any float incl.
  NaN), as scikit-learn's ``zero_division``; ``F1 = 2TP / (2TP + FP + FN)`` as in scikit-learn >= 1.3.
  Macro averages substitute ``zero_division`` per class and then take the plain mean over all
  classes (scikit-learn instead skips NaN classes when ``zero_division=nan``).
* NaN scores are a ``ValueError``; ``±inf`` scores are ordinary extreme values.
* Results are float64 NumPy arrays (0-d for one number); ``span_f1`` and the mapping form of
  ``leaderboard_mean`` return Python floats.

Sources: Su Jianlin's posts on kexue.fm (https://kexue.fm/archives/N): 8373 (GlobalPointer and the
entity-level ``F1 = 2X/(Y+Z)``, ``P = X/Y``, ``R = X/Z``), 8860 (fitting the decision threshold on
validation data; here solved exactly by trying every cut between distinct scores), 8847 (CoSENT,
evaluated with Spearman correlation), 8783 (arithmetic, geometric and harmonic means of leaderboard
scores, and systems compared on different task sets). Precision / recall / F1 / accuracy follow
scikit-learn's ``precision_recall_fscore_support`` and ``accuracy_score`` (subset accuracy for
multi-label); Spearman follows ``scipy.stats.spearmanr`` with ``rankdata(method="average")`` ranks.
"""

import math
from collections.abc import Mapping
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

from polyloss.reference import _common

__all__ = [
    "precision_recall_f1",
    "accuracy",
    "best_threshold",
    "best_threshold_vector",
    "global_pointer_f1",
    "span_f1",
    "spearman",
    "pearson",
    "leaderboard_mean",
]

_INF = math.inf
_NAN = math.nan
_AVERAGES = ("micro", "macro", "none")
_KINDS = ("arithmetic", "geometric", "harmonic")


# ---------------------------------------------------------------------------------------------
# argument checks and conversions
# ---------------------------------------------------------------------------------------------


def _threshold(threshold):
    t = _common.number(threshold, "threshold")
    if math.isnan(t):
        raise ValueError("threshold must not be NaN")
    return t


def _scores(x, name, *, kinds="fiu"):
    """``x`` as a float64 array without NaN; other dtypes are a TypeError."""
    x = np.asarray(x)
    if x.dtype.kind not in kinds:
        raise TypeError(f"{name} must be a real array, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN (shape {x.shape})")
    return x


def _binary_labels(labels, name="labels"):
    """Elementwise labels (bool, integer or float, every value exactly 0 or 1) as a bool array."""
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be bool, integer or floating 0/1 values, got dtype {labels.dtype}")
    out = np.zeros(labels.shape, dtype=bool)
    for index in np.ndindex(*labels.shape):
        v = labels[index]
        if v == 1:
            out[index] = True
        elif v != 0:  # also NaN
            raise ValueError(f"{name} must be exactly 0 or 1, found {v!r} (shape {labels.shape})")
    return out


def _argmax(row):
    """Index of the FIRST maximum of a list of floats (no NaN)."""
    best = 0
    for k in range(1, len(row)):
        if row[k] > row[best]:
            best = k
    return best


def _rows_of(array):
    """An array [..., C] as a list of rows (lists of Python scalars), one per leading position."""
    c = array.shape[-1]
    return [[v.item() for v in row] for row in array.reshape(-1, c)]


def _prediction_rows(scores, labels, threshold, *, what):
    """Parse (scores, labels) into predicted and true 0/1 rows.

    Returns ``(pred_rows, true_rows, C, binary)``; each row is a list of C bools. Elementwise 1-D
    input gives rows of length 1 (``binary=True``); class-id input gives one-hot rows (argmax, label).
    """
    scores = _scores(scores, "scores")
    labels = np.asarray(labels)
    if scores.ndim == 0:
        raise ValueError(f"{what}: scores must have at least one dimension, got shape {scores.shape}")
    if labels.shape == scores.shape:  # elementwise mode
        if scores.ndim >= 2 and scores.shape[-1] == 0:
            raise ValueError(f"{what}: scores of shape {scores.shape} have no class (last axis of size 0)")
        truth = _binary_labels(labels)
        t = _threshold(threshold)
        if scores.ndim == 1:
            pred_rows = [[s > t] for s in scores.tolist()]
            true_rows = [[bool(y)] for y in truth.tolist()]
            return pred_rows, true_rows, 1, True
        pred_rows = [[s > t for s in row] for row in _rows_of(scores)]
        true_rows = [[bool(y) for y in row] for row in _rows_of(truth)]
        return pred_rows, true_rows, scores.shape[-1], False
    if labels.dtype.kind in "iu" and labels.shape == scores.shape[:-1]:  # class-id mode
        n_classes = scores.shape[-1]
        if n_classes == 0:
            raise ValueError(f"{what}: scores of shape {scores.shape} have no class (last axis of size 0)")
        if _threshold(threshold) != 0.0:
            raise ValueError(
                f"{what}: threshold must be 0.0 with class-id labels (the prediction is the argmax, "
                f"no threshold is used), got {threshold!r}"
            )
        ids = [int(y) for y in labels.reshape(-1).tolist()]
        for y in ids:
            if not 0 <= y < n_classes:
                raise ValueError(f"{what}: class id {y} in labels is outside [0, {n_classes})")
        pred_rows, true_rows = [], []
        for row, y in zip(_rows_of(scores), ids):
            k = _argmax(row)
            pred_rows.append([j == k for j in range(n_classes)])
            true_rows.append([j == y for j in range(n_classes)])
        return pred_rows, true_rows, n_classes, False
    raise ValueError(
        f"{what}: labels of shape {labels.shape} (dtype {labels.dtype}) do not fit scores of shape "
        f"{scores.shape}: labels must have the scores' shape (0/1 labels) or be integer class ids of "
        f"shape {scores.shape[:-1]}"
    )


# ---------------------------------------------------------------------------------------------
# exact arithmetic helpers
# ---------------------------------------------------------------------------------------------


def _zero_division(value):
    """zero_division as an exact Fraction when finite, else the float itself (inf or NaN)."""
    v = _common.number(value, "zero_division")
    return Fraction(v) if math.isfinite(v) else v


def _ratio(num, den, zero_division):
    """num / den as an exact Fraction; ``zero_division`` when den == 0."""
    return zero_division if den == 0 else Fraction(num, den)


def _mean(values):
    """Exact mean of Fractions; a non-finite float among them (zero_division = inf or NaN) decides
    the result alone, as every other value lies in [0, 1]."""
    for v in values:
        if isinstance(v, float):
            return v
    return sum(values, Fraction(0)) / len(values)


def _float(value):
    """A Fraction (or a float) as a 0-d float64 array, rounded once."""
    return np.array(float(value), dtype=np.float64)


def _counts(pred_rows, true_rows, n_classes):
    """Per class k: TP_k, FP_k, FN_k (Python ints) over all rows."""
    tp, fp, fn = [0] * n_classes, [0] * n_classes, [0] * n_classes
    for pred, true in zip(pred_rows, true_rows):
        for k in range(n_classes):
            if pred[k] and true[k]:
                tp[k] += 1
            elif pred[k]:
                fp[k] += 1
            elif true[k]:
                fn[k] += 1
    return tp, fp, fn


def _prf(tp, fp, fn, zero_division):
    """(P, R, F1) of one set of counts, exact (Fraction or zero_division)."""
    return (
        _ratio(tp, tp + fp, zero_division),
        _ratio(tp, tp + fn, zero_division),
        _ratio(2 * tp, 2 * tp + fp + fn, zero_division),
    )


def _micro_f1(pred_rows, true_rows, n_classes, zero_division):
    tp, fp, fn = _counts(pred_rows, true_rows, n_classes)
    return _prf(sum(tp), sum(fp), sum(fn), zero_division)[2]


def _subset_accuracy(pred_rows, true_rows):
    """Fraction of rows whose entries are all right; ValueError without rows."""
    if not pred_rows:
        raise ValueError("accuracy: there are no examples (0 rows)")
    right = sum(1 for pred, true in zip(pred_rows, true_rows) if pred == true)
    return Fraction(right, len(pred_rows))


def _sqrt(q):
    """Correctly rounded float sqrt of a Fraction q > 0.

    s = isqrt(floor(q·4^k)) = floor(sqrt(q)·2^k) with k chosen so that s has at least 64 bits; when
    sqrt(q)·2^k is not an integer, s + 1/2 stands in for it: it lies strictly between s and s + 1,
    where no float64 rounding boundary can be at that size, so float() rounds it like the true value.
    """
    a, b = q.numerator, q.denominator
    k = max(0, (130 - (a.bit_length() - b.bit_length())) // 2)
    scaled, rest = divmod(a << (2 * k), b)
    s = math.isqrt(scaled)
    exact = rest == 0 and s * s == scaled
    return float(Fraction(2 * s + (0 if exact else 1), 1 << (k + 1)))


def _correlation(xs, ys):
    """Pearson r of two equally long lists of Fractions, exact up to one rounding; NaN if constant.

    r = Sxy / sqrt(Sxx·Syy) = sign(Sxy)·sqrt(Sxy² / (Sxx·Syy)), clipped to [-1, 1] (Cauchy-Schwarz
    holds exactly here, so the clip never changes anything).
    """
    n = len(xs)
    mx = sum(xs, Fraction(0)) / n
    my = sum(ys, Fraction(0)) / n
    sxy = sum(((x - mx) * (y - my) for x, y in zip(xs, ys)), Fraction(0))
    sxx = sum(((x - mx) ** 2 for x in xs), Fraction(0))
    syy = sum(((y - my) ** 2 for y in ys), Fraction(0))
    if sxx == 0 or syy == 0:
        return _NAN
    if sxy == 0:
        return 0.0
    r = _sqrt(sxy * sxy / (sxx * syy))
    r = min(r, 1.0)
    return r if sxy > 0 else -r


def _pair(x, y, what, *, finite):
    """(x, y) as float64 lists for pearson/spearman: 1-D, equal length N >= 2, no NaN (and no inf if
    ``finite``)."""
    x = _scores(x, "x", kinds="fiu")
    y = _scores(y, "y", kinds="biuf")
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"{what}: x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{what}: needs at least 2 pairs, got x and y of shape {x.shape}")
    if finite:
        for name, v in (("x", x), ("y", y)):
            if not np.isfinite(v).all():
                raise ValueError(f"{what}: {name} contains inf (shape {v.shape})")
    return x.tolist(), y.tolist()


def _average_ranks(values):
    """1-based ranks, ties get the mean of the ranks they occupy: rank_i = #{v < v_i} + (#{v == v_i} + 1)/2."""
    ranks = []
    for v in values:
        smaller = sum(1 for w in values if w < v)
        equal = sum(1 for w in values if w == v)  # includes v itself
        ranks.append(smaller + Fraction(equal + 1, 2))
    return ranks


# ---------------------------------------------------------------------------------------------
# E1. precision, recall, F1, accuracy
# ---------------------------------------------------------------------------------------------


def precision_recall_f1(scores, labels, *, threshold=0.0, average="micro", zero_division=0.0):
    """Precision, recall and F1 (reference).

    Per class k: P_k = TP/(TP+FP), R_k = TP/(TP+FN), F1_k = 2TP/(2TP+FP+FN); a zero denominator gives
    ``zero_division``.

    Modes (by shapes only):

    * ``labels.shape == scores.shape``: prediction ``scores > threshold``; 0/1 labels. 1-D is binary
      (one class); ``ndim >= 2`` is multi-label with the C classes on the last axis, counts summed over
      every leading position.
    * integer ``labels`` of shape ``scores.shape[:-1]``: class ids in [0, C), prediction = the first
      maximum of the last axis; ``threshold`` must be 0.0.

    ``average``: "micro" pools TP, FP, FN over the classes; "macro" is the mean over the C classes of
    the per-class values (binary: same as micro); "none" gives the per-class arrays of shape [C]
    (binary: 0-d). No examples at all is allowed (every count is 0).

    Returns
    -------
    (precision, recall, f1): float64 NumPy arrays.

    Examples
    --------
    >>> import numpy as np
    >>> p, r, f = precision_recall_f1([2.0, -1.0, 0.5, -3.0], [1, 1, 0, 0])  # TP=1, FP=1, FN=1
    >>> float(p), float(r), float(f)
    (0.5, 0.5, 0.5)
    >>> s = [[3.0, 1.0], [0.0, 2.0], [1.0, 1.0]]          # argmax (first maximum): 0, 1, 0
    >>> p, r, f = precision_recall_f1(s, [0, 0, 1], average="none")
    >>> [round(v, 6) for v in f.tolist()]                # class 0: 2·1/(2+1+1); class 1: 0/(0+1+1)
    [0.5, 0.0]
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    zd = _zero_division(zero_division)
    pred_rows, true_rows, n_classes, binary = _prediction_rows(
        scores, labels, threshold, what="precision_recall_f1"
    )
    tp, fp, fn = _counts(pred_rows, true_rows, n_classes)
    if average == "micro" or (binary and average == "macro"):
        return tuple(_float(v) for v in _prf(sum(tp), sum(fp), sum(fn), zd))
    per_class = [_prf(tp[k], fp[k], fn[k], zd) for k in range(n_classes)]  # [(P_k, R_k, F1_k)]
    if average == "macro":
        return tuple(_float(_mean([pc[i] for pc in per_class])) for i in range(3))
    if binary:
        return tuple(_float(v) for v in per_class[0])
    return tuple(np.array([float(pc[i]) for pc in per_class], dtype=np.float64) for i in range(3))


def accuracy(scores, labels, *, threshold=0.0):
    """Accuracy (reference).

    Same two modes as ``precision_recall_f1``. Elementwise 1-D: the fraction of positions with
    ``(scores > threshold) == labels``. Elementwise ``ndim >= 2``: subset accuracy, the fraction of
    rows (leading positions) whose C entries are all right (scikit-learn's multi-label
    ``accuracy_score``). Class ids: the fraction of rows whose first argmax equals the label.
    No rows is a ValueError.

    Returns
    -------
    numpy.ndarray, float64, 0-d.

    Examples
    --------
    >>> float(accuracy([2.0, -1.0, 0.5, -3.0], [1, 1, 0, 0]))
    0.5
    >>> float(accuracy([[2.0, -1.0], [0.5, 0.5]], [[1, 0], [1, 0]]))   # row 2 has a wrong entry
    0.5
    >>> float(accuracy([[1.0, 1.0], [0.0, 2.0]], [0, 1]))   # ties: the first maximum
    1.0
    """
    pred_rows, true_rows, _, _ = _prediction_rows(scores, labels, threshold, what="accuracy")
    return _float(_subset_accuracy(pred_rows, true_rows))


# ---------------------------------------------------------------------------------------------
# E2. the best threshold
# ---------------------------------------------------------------------------------------------


def best_threshold(scores, labels, *, metric="f1", zero_division=0.0):
    """The threshold that maximises micro F1 or accuracy on (scores, labels), exactly (reference).

    Elementwise mode only (``labels.shape == scores.shape``, 0/1 labels). With u_1 < ... < u_m the
    distinct score values, the candidates, in this order, are: c_0 = below all (every entry positive;
    only if u_1 > -inf), then c_j = u_j for j = 1..m (positive iff score > u_j: equal scores move
    together; c_m makes everything negative). Each candidate's metric is evaluated by brute force
    (micro F1 with ``zero_division``, or accuracy, subset accuracy when ``ndim >= 2``), exactly; the
    largest value wins and among equal values the first candidate (the lowest threshold). A NaN value
    (``zero_division=nan``) is never larger than another, so it only wins as the only candidate.

    The threshold returned for the chosen candidate: c_0 -> nextafter(u_1, -inf), or minus the
    smallest normal float when ``|u_1|`` is below it (a subnormal threshold is flushed to 0 by JAX and
    TensorFlow); c_j with j < m ->
    the midpoint u_j/2 + u_{j+1}/2 if u_j <= mid < u_{j+1} (else u_j); c_m -> u_m. kexue 8860 fits
    such a threshold with a numerical search; trying every cut is exact.

    Returns
    -------
    (threshold, value): two 0-d float64 arrays.

    Examples
    --------
    >>> t, v = best_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])   # F1 = 2/3, 4/5, 1/2, 2/3, 0
    >>> round(float(t), 6), round(float(v), 6)
    (0.225, 0.8)
    >>> t, v = best_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], metric="accuracy")
    >>> round(float(t), 6), float(v)
    (0.225, 0.75)
    """
    if metric not in ("f1", "accuracy"):
        raise ValueError(f"metric must be 'f1' or 'accuracy', got {metric!r}")
    zd = _zero_division(zero_division)
    scores = _scores(scores, "scores")
    labels = np.asarray(labels)
    if scores.ndim == 0 or labels.shape != scores.shape:
        raise ValueError(
            f"best_threshold: labels of shape {labels.shape} must have the shape of scores "
            f"{scores.shape} (0/1 labels, ndim >= 1); class-id labels are not supported"
        )
    if scores.size == 0:
        raise ValueError(f"best_threshold: scores of shape {scores.shape} have no entries")
    truth = _binary_labels(labels)
    if scores.ndim == 1:
        score_rows = [[s] for s in scores.tolist()]
        true_rows = [[bool(y)] for y in truth.tolist()]
    else:
        score_rows = _rows_of(scores)
        true_rows = [[bool(y) for y in row] for row in _rows_of(truth)]
    n_classes = len(score_rows[0])

    def value_at(cut):
        """The metric with ``score > cut`` positive; cut None = every entry positive."""
        pred_rows = [[cut is None or s > cut for s in row] for row in score_rows]
        if metric == "f1":
            return _micro_f1(pred_rows, true_rows, n_classes, zd)
        return _subset_accuracy(pred_rows, true_rows)

    distinct = sorted(set(scores.ravel().tolist()))  # u_1 < ... < u_m (Python floats = float64)
    m = len(distinct)
    # candidate j = 0 is "below all" (only if u_1 > -inf), j = 1..m is "score > u_j"
    candidates = ([0] if distinct[0] > -_INF else []) + list(range(1, m + 1))
    best, best_value = None, None
    for j in candidates:
        v = value_at(None if j == 0 else distinct[j - 1])
        if best is None or v > best_value:  # strictly better only: the first (lowest) one wins ties
            best, best_value = j, v

    if best == 0:
        tiny = float(np.finfo(np.float64).tiny)  # the smallest normal: never a subnormal threshold
        threshold = -tiny if abs(distinct[0]) < tiny else float(np.nextafter(distinct[0], -_INF))
    elif best < m:
        lo, hi = distinct[best - 1], distinct[best]
        mid = lo / 2 + hi / 2  # NaN for -inf/+inf, +-inf next to an infinity: then the fallback
        threshold = mid if lo <= mid < hi else lo
    else:
        threshold = distinct[-1]
    return np.array(threshold, dtype=np.float64), _float(best_value)


def best_threshold_vector(scores, labels, *, metric="f1", rounds=3):
    """Per-class offsets ``b`` for multi-class predictions ``argmax(scores + b)`` by coordinate ascent
    (kexue 8860's threshold vector on logits) (reference).

    ``scores [N, C]`` (finite), class ids ``labels [N]``. The metric of offsets ``b`` is macro F1
    (``2 TP_k / (predicted_k + true_k)``, 0 for a class with a zero denominator, averaged over all C
    classes) or accuracy of ``argmax_k (s_nk + b_k)`` (the first maximum), exactly. Starting from
    ``b = 0``, ``rounds`` passes over the classes k = 0..C-1: with the other offsets fixed, example n
    predicts k exactly when ``b_k > d_n = max_{j != k}(s_nj + b_j) - s_nk``; with d_(1) < ... < d_(m)
    the distinct values, the candidates for ``b_k`` are, in this order, ``d_(1) - 1``, the midpoints
    ``d_(i)/2 + d_(i+1)/2`` (or ``d_(i+1)`` if the midpoint rounds outside ``(d_(i), d_(i+1)]``), and
    ``d_(m) + 1``. Each candidate's metric is evaluated by brute force; the largest wins (the first,
    i.e. the smallest offset, among equal values), and it replaces ``b_k`` if its metric is not below
    the current one. One class has no rival: its offset stays 0.

    Returns
    -------
    (offsets, value): a float64 array [C] and a 0-d float64 array.

    Examples
    --------
    >>> scores = [[1.0, 0.5], [1.0, 0.25], [1.0, 0.75], [0.0, 1.0]]
    >>> offsets, value = best_threshold_vector(scores, [0, 0, 1, 1], metric="accuracy")
    >>> offsets.tolist(), float(value)   # b_0 in (-0.5, -0.25): rows 0, 1 stay 0, row 2 moves to 1
    ([-0.375, 0.0], 1.0)
    """
    if metric not in ("f1", "accuracy"):
        raise ValueError(f"metric must be 'f1' or 'accuracy', got {metric!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    scores = _scores(scores, "scores")
    labels = np.asarray(labels)
    if scores.ndim != 2 or labels.shape != scores.shape[:1] or labels.dtype.kind not in "iu":
        raise ValueError(f"best_threshold_vector: needs scores [N, C] and integer class ids [N], got scores "
                         f"{scores.shape} and labels {labels.shape} of dtype {labels.dtype}")
    if scores.shape[0] == 0 or not np.isfinite(scores).all():
        raise ValueError(f"best_threshold_vector: scores {scores.shape} must be non-empty and finite")
    rows, ids = _rows_of(scores), [int(y) for y in labels.tolist()]
    n_classes = len(rows[0])
    if any(not 0 <= y < n_classes for y in ids):
        raise ValueError(f"best_threshold_vector: class ids must lie in [0, {n_classes})")

    def value_of(offsets):
        pred = [_argmax([s + b for s, b in zip(row, offsets)]) for row in rows]
        if metric == "accuracy":
            return Fraction(sum(p == y for p, y in zip(pred, ids)), len(ids))
        f1 = [_ratio(2 * sum(p == y == k for p, y in zip(pred, ids)), pred.count(k) + ids.count(k), Fraction(0))
              for k in range(n_classes)]
        return _mean(f1)

    offsets = [0.0] * n_classes
    current = value_of(offsets)
    for _ in range(rounds):
        for k in range(n_classes if n_classes > 1 else 0):
            gaps = sorted({max(row[j] + offsets[j] for j in range(n_classes) if j != k) - row[k] for row in rows})
            candidates = [gaps[0] - 1.0]
            for low, high in zip(gaps, gaps[1:]):
                mid = low / 2 + high / 2
                candidates.append(mid if low < mid <= high else high)
            candidates.append(gaps[-1] + 1.0)
            best, best_value = None, None
            for b in candidates:
                v = value_of(offsets[:k] + [b] + offsets[k + 1:])
                if best_value is None or v > best_value:
                    best, best_value = b, v
            if best_value >= current:
                offsets[k], current = best, best_value
    return np.array(offsets, dtype=np.float64), _float(current)


# ---------------------------------------------------------------------------------------------
# E3. entity / span F1
# ---------------------------------------------------------------------------------------------


def global_pointer_f1(logits, labels, *, threshold=0.0, zero_division=0.0):
    """Entity-level precision, recall, F1 from GlobalPointer logits (kexue 8373) (reference).

    logits and labels of shape [..., L, L] (0/1 labels); pooled over everything:
    X = #{logits > threshold and label = 1}, Y = #{logits > threshold}, Z = #{label = 1};
    P = X/Y, R = X/Z, F1 = 2X/(Y+Z), a zero denominator gives ``zero_division``. -inf logits (masked
    spans) are never predicted.

    Returns
    -------
    (precision, recall, f1): three 0-d float64 arrays.

    Examples
    --------
    >>> logits = [[[1.0, -2.0], [-float("inf"), 3.0]]]           # Y = 2 predicted spans
    >>> labels = [[[1, 1], [0, 0]]]                              # Z = 2 true spans, X = 1
    >>> [float(v) for v in global_pointer_f1(logits, labels)]
    [0.5, 0.5, 0.5]
    """
    zd = _zero_division(zero_division)
    t = _threshold(threshold)
    logits = _scores(logits, "logits")
    labels = np.asarray(labels)
    if logits.ndim < 2 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"global_pointer_f1: logits must have shape [..., L, L], got {logits.shape}")
    if labels.shape != logits.shape:
        raise ValueError(
            f"global_pointer_f1: labels have shape {labels.shape} but logits have shape {logits.shape}"
        )
    truth = _binary_labels(labels)
    x = y = z = 0
    for s, true in zip(logits.ravel().tolist(), truth.ravel().tolist()):
        predicted = s > t
        if predicted and true:
            x += 1
        if predicted:
            y += 1
        if true:
            z += 1
    return _float(_ratio(x, y, zd)), _float(_ratio(x, z, zd)), _float(_ratio(2 * x, y + z, zd))


def span_f1(pred_spans, true_spans, *, zero_division=0.0):
    """Entity-level precision, recall, F1 from span sets (kexue 8373) (reference).

    ``pred_spans[s]`` and ``true_spans[s]`` are the spans (hashable, e.g. ``(type, start, end)``) of
    sentence s, each treated as a set; ``X = Σ_s |P_s ∩ T_s|``, ``Y = Σ_s |P_s|``, ``Z = Σ_s |T_s|``;
    P = X/Y, R = X/Z, F1 = 2X/(Y+Z), a zero denominator gives ``zero_division``.

    Returns
    -------
    (precision, recall, f1): Python floats.

    Examples
    --------
    >>> pred = [[("PER", 0, 1), ("LOC", 3, 3)], []]
    >>> true = [[("PER", 0, 1)], [("ORG", 2, 4)]]
    >>> span_f1(pred, true)     # X = 1, Y = 2, Z = 2
    (0.5, 0.5, 0.5)
    """
    zd = _zero_division(zero_division)
    pred_spans, true_spans = list(pred_spans), list(true_spans)
    if len(pred_spans) != len(true_spans):
        raise ValueError(
            f"span_f1: pred_spans has {len(pred_spans)} entries but true_spans has {len(true_spans)} entries "
            "(one per sentence each)"
        )
    x = y = z = 0
    for pred, true in zip(pred_spans, true_spans):
        pred, true = set(pred), set(true)
        x += len(pred & true)
        y += len(pred)
        z += len(true)
    return float(_ratio(x, y, zd)), float(_ratio(x, z, zd)), float(_ratio(2 * x, y + z, zd))


# ---------------------------------------------------------------------------------------------
# E4. correlations
# ---------------------------------------------------------------------------------------------


def pearson(x, y):
    """Pearson correlation (reference).

    r = Σ(x - mx)(y - my) / sqrt(Σ(x - mx)² · Σ(y - my)²), computed exactly on the float inputs
    (Fractions) with one final rounding. x, y: 1-D of one length N >= 2; y may be bool or integer.
    A constant x or y gives NaN (undefined); NaN or inf in x or y is a ValueError.

    Returns
    -------
    numpy.ndarray, float64, 0-d.

    Examples
    --------
    >>> round(float(pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0])), 12)   # 5 / sqrt(2 · 114/9)
    0.993399267799
    >>> float(pearson([1.0, 2.0, 3.0], [3, 2, 1]))
    -1.0
    """
    xs, ys = _pair(x, y, "pearson", finite=True)
    return _float(_correlation([Fraction(v) for v in xs], [Fraction(v) for v in ys]))


def spearman(x, y):
    """Spearman rank correlation (reference): the Pearson correlation of the average ranks.

    Ranks are 1-based, ties get the mean of the ranks they occupy (``scipy.stats.rankdata``'s
    "average"); ±inf are ordinary extreme values. Same argument rules as ``pearson`` except that inf
    is allowed; a constant x or y gives NaN.

    Returns
    -------
    numpy.ndarray, float64, 0-d.

    Examples
    --------
    >>> import math
    >>> float(spearman([0.1, 0.5, 0.3, 0.9], [1.0, 20.0, 3.0, 400.0]))   # same order
    1.0
    >>> r = spearman([1.0, 2.0, 2.0, 3.0], [0, 0, 1, 1])   # ranks [1, 2.5, 2.5, 4], [1.5, 1.5, 3.5, 3.5]
    >>> round(float(r), 12) == round(1 / math.sqrt(2.0), 12)     # 3 / sqrt(4.5 · 4)
    True
    """
    xs, ys = _pair(x, y, "spearman", finite=False)
    return _float(_correlation(_average_ranks(xs), _average_ranks(ys)))


# ---------------------------------------------------------------------------------------------
# E5. leaderboard means
# ---------------------------------------------------------------------------------------------


def _mean_of(values, kind):
    """The ``kind`` mean of a non-empty list of floats (no NaN) as a Python float.

    arithmetic: exact Σ s / T (IEEE rules when a score is ±inf); harmonic: exact T / Σ 1/s (a +inf
    score adds 1/inf = 0); geometric: exp(Σ ln s / T) in 60-digit decimal arithmetic (``Decimal.ln``
    and ``exp`` are correctly rounded there), rounded once to float64.
    """
    t = len(values)
    if kind == "arithmetic":
        if _INF in values and -_INF in values:
            return _NAN
        if _INF in values:
            return _INF
        if -_INF in values:
            return -_INF
        return float(sum((Fraction(v) for v in values), Fraction(0)) / t)
    if any(not v > 0.0 for v in values):
        raise ValueError(f"the {kind} mean needs positive scores, got non-positive values in {values}")
    if kind == "harmonic":
        reciprocals = sum((1 / Fraction(v) for v in values if v < _INF), Fraction(0))
        return _INF if reciprocals == 0 else float(t / reciprocals)
    if _INF in values:
        return _INF
    with localcontext() as ctx:
        ctx.prec = 60
        log_mean = sum(Decimal(v).ln() for v in values) / t
        return float(log_mean.exp())


def leaderboard_mean(scores, *, kind="arithmetic"):
    """Arithmetic, geometric or harmonic mean of per-task scores (kexue 8783) (reference).

    arithmetic = Σ s / T, geometric = exp(Σ log s / T), harmonic = T / Σ 1/s (the last two need
    every score > 0).

    * array form: ``scores`` [..., T], the mean over the last axis, float64 of shape
      ``scores.shape[:-1]``; T == 0 or NaN is a ValueError.
    * mapping form: ``{system: {task: score}}`` gives ``{system: mean}`` (Python floats, input
      order). Every system must have been scored on exactly the same tasks (comparing means over
      different task sets is meaningless), else ValueError naming the systems and missing tasks.

    Examples
    --------
    >>> import numpy as np
    >>> leaderboard_mean([[1.0, 4.0], [2.0, 2.0]], kind="geometric").tolist()
    [2.0, 2.0]
    >>> leaderboard_mean({"A": {"t1": 1.0, "t2": 4.0}, "B": {"t2": 2.0, "t1": 2.0}}, kind="harmonic")
    {'A': 1.6, 'B': 2.0}
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if isinstance(scores, Mapping):
        if not scores:
            raise ValueError("leaderboard_mean: the mapping of systems is empty")
        tables = {}
        for system, table in scores.items():
            if not isinstance(table, Mapping):
                raise TypeError(f"leaderboard_mean: scores[{system!r}] must be a mapping {{task: score}}")
            tables[system] = table
        all_tasks = []
        for table in tables.values():
            for task in table:
                if task not in all_tasks:
                    all_tasks.append(task)
        missing = {s: [task for task in all_tasks if task not in table] for s, table in tables.items()}
        missing = {s: m for s, m in missing.items() if m}
        if missing:
            detail = "; ".join(f"{s!r} lacks {m!r}" for s, m in missing.items())
            raise ValueError(f"leaderboard_mean: systems were scored on different task sets: {detail}")
        if not all_tasks:
            raise ValueError("leaderboard_mean: the systems have no task scores (T == 0)")
        out = {}
        for system, table in tables.items():
            values = [_common.number(table[task], f"scores[{system!r}][{task!r}]") for task in all_tasks]
            if any(math.isnan(v) for v in values):
                raise ValueError(f"leaderboard_mean: scores[{system!r}] contains NaN")
            try:
                out[system] = _mean_of(values, kind)
            except ValueError as exc:
                raise ValueError(f"leaderboard_mean: scores[{system!r}]: {exc}") from None
        return out
    array = _scores(scores, "scores")
    if array.ndim == 0:
        raise ValueError(f"leaderboard_mean: scores must have a task axis (ndim >= 1), got shape {array.shape}")
    if array.shape[-1] == 0:
        raise ValueError(f"leaderboard_mean: scores of shape {array.shape} have no task (T == 0)")
    out = np.empty(array.shape[:-1], dtype=np.float64)
    for index, row in zip(np.ndindex(*array.shape[:-1]), array.reshape(-1, array.shape[-1])):
        try:
            out[index] = _mean_of(row.tolist(), kind)
        except ValueError as exc:
            raise ValueError(f"leaderboard_mean: scores of shape {array.shape}: {exc}") from None
    return out

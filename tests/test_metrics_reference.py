"""Tests of the float64 oracle for the metrics (polyloss.reference.metrics) itself.

The expected values come from scikit-learn (precision_recall_fscore_support, f1_score,
accuracy_score), SciPy (pearsonr, spearmanr, rankdata, gmean, hmean), independent brute force
(every threshold of a fine grid, high-precision decimal arithmetic) and hand-derived small examples,
so that a wrong oracle fails here before it is used to judge the library. CPU only, fast.
"""

from __future__ import annotations

import doctest
import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest

from polyloss import reference as R
from polyloss.reference import metrics
from polyloss.testing import assert_close

EXACT = dict(rtol=4 * float(np.finfo(np.float64).eps), atol=0.0)  # the oracle's own closed forms: a few ulps

sklearn_metrics = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")

EPS = float(np.finfo(np.float64).eps)
INF = math.inf
NAN = math.nan
ZERO_DIVISIONS = [0.0, 1.0, NAN]


def same(a, b):
    """Bitwise-equal float64 values (NaN equals NaN)."""
    np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


def test_docstring_examples():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 15 and result.failed == 0


def test_exported():
    for name in metrics.__all__:
        assert getattr(R, name) is getattr(metrics, name)
        assert name in R.__all__
    assert len(set(R.__all__)) == len(R.__all__)


# ---------------------------------------------------------------------------------------------
# E1 precision / recall / F1 / accuracy against scikit-learn
# ---------------------------------------------------------------------------------------------


def sk_prf(y_true, y_pred, *, labels, average, zero_division):
    p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=average, zero_division=zero_division
    )
    return p, r, f


def tied_scores(rng, shape):
    """Scores with many ties and some exactly at the thresholds used (-1, 0, 0.5)."""
    return rng.choice([-INF, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, INF], size=shape)


@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS)
@pytest.mark.parametrize("seed", range(6))
def test_binary_against_sklearn(seed, zero_division):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    scores = tied_scores(rng, n) if seed % 2 else rng.normal(size=n)
    labels = rng.integers(0, 2, size=n) if seed != 4 else np.zeros(n, dtype=np.int64)
    for threshold in (0.0, -1.0, 0.5):
        pred = (scores > threshold).astype(int)
        p, r, f = sk_prf(labels, pred, labels=[1], average=None, zero_division=zero_division)
        for average in ("micro", "macro", "none"):
            got = R.precision_recall_f1(scores, labels, threshold=threshold, average=average,
                                        zero_division=zero_division)
            assert all(g.shape == () and g.dtype == np.float64 for g in got)
            same(got, [p[0], r[0], f[0]])
        same(R.accuracy(scores, labels, threshold=threshold), sklearn_metrics.accuracy_score(labels, pred))
        f1_sk = sklearn_metrics.f1_score(labels, pred, labels=[1], average="micro", zero_division=zero_division)
        same(R.precision_recall_f1(scores, labels, threshold=threshold, zero_division=zero_division)[2], f1_sk)


@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS)
@pytest.mark.parametrize("shape", [(7, 3), (4, 5, 2), (1, 6), (25, 4)])
def test_multilabel_against_sklearn(shape, zero_division):
    rng = np.random.default_rng(sum(shape))
    scores = tied_scores(rng, shape)
    labels = rng.integers(0, 2, size=shape)
    labels[..., 0] = 0  # a class without support
    scores[..., -1] = -1.0  # a class that is never predicted at threshold >= -1
    c = shape[-1]
    for threshold in (0.0, -1.0):
        pred = (scores > threshold).astype(int).reshape(-1, c)
        flat = labels.reshape(-1, c)
        for average in ("micro", "macro", "none"):
            got = R.precision_recall_f1(scores, labels, threshold=threshold, average=average,
                                        zero_division=zero_division)
            if average == "macro" and math.isnan(zero_division):
                continue  # scikit-learn skips NaN classes in the mean; the contract does not (below)
            want = sk_prf(flat, pred, labels=list(range(c)), average=None if average == "none" else average,
                          zero_division=zero_division)
            if average == "none":
                assert all(g.shape == (c,) for g in got)
            assert_close(got, want, **EXACT)
        same(R.accuracy(scores, labels, threshold=threshold), sklearn_metrics.accuracy_score(flat, pred))
        # the macro mean is the exact mean of the rational per-class values, rounded once
        if math.isfinite(zero_division):
            truth = flat.astype(bool)
            predicted = pred.astype(bool)
            tp = np.sum(predicted & truth, axis=0)
            fp = np.sum(predicted & ~truth, axis=0)
            fn = np.sum(~predicted & truth, axis=0)
            f1 = [Fraction(2 * int(a), int(2 * a + b + d)) if 2 * a + b + d else Fraction(zero_division)
                  for a, b, d in zip(tp, fp, fn)]
            got = R.precision_recall_f1(scores, labels, threshold=threshold, average="macro",
                                        zero_division=zero_division)[2]
            same(got, float(sum(f1) / c))


@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS)
@pytest.mark.parametrize("seed", range(5))
def test_class_ids_against_sklearn(seed, zero_division):
    rng = np.random.default_rng(100 + seed)
    c = int(rng.integers(1, 6))
    lead = [(9,), (3, 4), (1,), (30,), (2, 2, 3)][seed]
    scores = tied_scores(rng, (*lead, c)) if seed % 2 == 0 else rng.normal(size=(*lead, c))
    labels = rng.integers(0, c, size=lead)
    pred = np.argmax(scores, axis=-1).ravel()  # NumPy's argmax: the first maximum, like the contract
    flat = labels.ravel()
    for average in ("micro", "macro", "none"):
        got = R.precision_recall_f1(scores, labels, average=average, zero_division=zero_division)
        if average == "macro" and math.isnan(zero_division):
            continue
        want = sk_prf(flat, pred, labels=list(range(c)), average=None if average == "none" else average,
                      zero_division=zero_division)
        assert_close(got, want, **EXACT)
        if average != "none":
            assert_close(got[2], sklearn_metrics.f1_score(flat, pred, labels=list(range(c)), average=average,
                                                   zero_division=zero_division), **EXACT)
    same(R.accuracy(scores, labels), sklearn_metrics.accuracy_score(flat, pred))


def test_argmax_takes_first_maximum_and_infinities():
    # rows: tie 0/1 -> 0; tie 1/2 -> 1; +inf beats everything; all -inf -> 0
    scores = [[2.0, 2.0, 1.0], [0.0, 5.0, 5.0], [INF, INF, 0.0], [-INF, -INF, -INF], [1.0, 0.0, INF]]
    same(R.accuracy(scores, [0, 1, 0, 0, 2]), 1.0)
    same(R.accuracy(scores, [1, 2, 1, 1, 0]), 0.0)


# ---------------------------------------------------------------------------------------------
# E1 hand-derived examples
# ---------------------------------------------------------------------------------------------


def test_prf_hand_examples():
    # binary, threshold 0 strict: pred = [1, 0, 0, 1, 0] for scores [2, 0, -1, 0.5, -inf]
    # labels [1, 1, 0, 0, 0]: TP = 1, FP = 1 (0.5), FN = 1 (the 0.0 on the threshold is negative)
    # P = 1/2, R = 1/2, F1 = 2/(2+1+1) = 1/2; accuracy = 3/5
    s, y = [2.0, 0.0, -1.0, 0.5, -INF], [1, 1, 0, 0, 0]
    same(R.precision_recall_f1(s, y), [0.5, 0.5, 0.5])
    same(R.accuracy(s, y), 0.6)
    # a threshold of -inf: everything but the -inf score is positive: TP 2, FP 2, FN 0
    same(R.precision_recall_f1(s, y, threshold=-INF), [0.5, 1.0, 2 / 3])

    # multi-label 2x3, threshold 0:
    # scores [[1, -1, 2], [3, 1, -2]] -> pred [[1,0,1],[1,1,0]]; labels [[1,0,0],[1,0,0]]
    # class 0: TP 2 -> P=R=F1=1; class 1: FP 1 -> P=0, R=zd(0/0), F1 = 0/(0+1+0) = 0;
    # class 2: FP 1 -> same as class 1.  micro: TP 2, FP 2, FN 0 -> P 1/2, R 1, F1 4/6
    s = [[1.0, -1.0, 2.0], [3.0, 1.0, -2.0]]
    y = np.array([[1, 0, 0], [1, 0, 0]], dtype=bool)
    p, r, f = R.precision_recall_f1(s, y, average="none", zero_division=0.25)
    same(p, [1.0, 0.0, 0.0])
    same(r, [1.0, 0.25, 0.25])
    same(f, [1.0, 0.0, 0.0])
    same(R.precision_recall_f1(s, y, average="micro"), [0.5, 1.0, 2 / 3])
    # macro: P = 1/3, R = (1 + 0.25 + 0.25)/3 = 1/2, F1 = 1/3 (exact mean, rounded once)
    same(R.precision_recall_f1(s, y, average="macro", zero_division=0.25), [1 / 3, 0.5, 1 / 3])
    # zero_division NaN / inf enters the macro mean as is
    same(R.precision_recall_f1(s, y, average="macro", zero_division=NAN), [1 / 3, NAN, 1 / 3])
    same(R.precision_recall_f1(s, y, average="macro", zero_division=INF), [1 / 3, INF, 1 / 3])
    same(R.accuracy(s, y), 0.0)  # row 1 has class 2 wrong, row 2 has class 1 wrong

    # class ids: scores [[1,2,0],[3,1,0],[0,0,1],[2,2,0]] -> argmax [1, 0, 2, 0]; labels [1, 1, 2, 2]
    # class 0: TP 0, FP 2, FN 0 -> P 0, R zd, F1 0; class 1: TP 1, FN 1 -> P 1, R 1/2, F1 2/3;
    # class 2: TP 1, FN 1 -> P 1, R 1/2, F1 2/3. micro: TP 2, FP 2, FN 2 -> 1/2 each = accuracy
    s = [[1.0, 2.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.0, 1.0], [2.0, 2.0, 0.0]]
    y = [1, 1, 2, 2]
    p, r, f = R.precision_recall_f1(s, y, average="none", zero_division=0.5)
    same(p, [0.0, 1.0, 1.0])
    same(r, [0.5, 0.5, 0.5])
    same(f, [0.0, 2 / 3, 2 / 3])
    same(R.precision_recall_f1(s, y), [0.5, 0.5, 0.5])
    same(R.accuracy(s, y), 0.5)
    # macro F1 = (0 + 2/3 + 2/3)/3 = 4/9
    same(R.precision_recall_f1(s, y, average="macro")[2], 4 / 9)


def test_prf_label_kinds_and_no_examples():
    s = np.array([[0.5, -0.5], [-1.0, 2.0]])
    ints = [[1, 0], [0, 0]]
    for y in (ints, np.array(ints, dtype=bool), np.array(ints, dtype=np.float32), np.array(ints, dtype=np.uint8)):
        same(R.precision_recall_f1(s, y), [0.5, 1.0, 2 / 3])
    # integer labels of the scores' own shape are 0/1 labels (shapes decide, never values)
    same(R.precision_recall_f1([1.0, -1.0], np.array([1, 0])), [1.0, 1.0, 1.0])
    # no examples: every count 0 -> zero_division everywhere
    for zd in (0.0, 0.75, NAN):
        same(R.precision_recall_f1(np.zeros(0), np.zeros(0), zero_division=zd), [zd] * 3)
        got = R.precision_recall_f1(np.zeros((0, 3)), np.zeros((0, 3)), average="none", zero_division=zd)
        same(got, np.full((3, 3), zd))
        got = R.precision_recall_f1(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), average="macro",
                                    zero_division=zd)
        same(got, [zd] * 3)
    # a 0-d class-id label for a single [C] row
    same(R.accuracy([0.0, 1.0, 0.5], np.int64(1)), 1.0)


def test_prf_errors():
    s = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)|\(2, 3\).*\(3, 2\)"):
        R.precision_recall_f1(s, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        R.precision_recall_f1(s, np.zeros(3))  # float labels of shape [..., ] are not class ids
    with pytest.raises(ValueError):
        R.precision_recall_f1(s, np.zeros(3, dtype=bool))  # neither are bool labels
    with pytest.raises(ValueError, match="0 or 1"):
        R.precision_recall_f1(s, np.full((3, 2), 2))
    with pytest.raises(ValueError, match="0 or 1"):
        R.precision_recall_f1(s, np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="0 or 1"):
        R.precision_recall_f1(s, np.full((3, 2), NAN))
    with pytest.raises(ValueError, match="NaN"):
        R.precision_recall_f1(np.array([[0.0, NAN]]), [[0, 1]])
    with pytest.raises(ValueError, match="NaN"):
        R.precision_recall_f1(np.array([[0.0, NAN]]), [1])
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        R.precision_recall_f1(s, [0, 1, 2])
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        R.accuracy(s, [0, -1, 1])
    with pytest.raises(ValueError, match="threshold"):
        R.precision_recall_f1(s, [0, 1, 1], threshold=0.5)
    with pytest.raises(ValueError, match="threshold"):
        R.accuracy(s, [0, 1, 1], threshold=-1.0)
    R.accuracy(s, [0, 1, 1], threshold=-0.0)  # -0.0 == 0.0 is allowed
    with pytest.raises(ValueError, match="no class"):
        R.precision_recall_f1(np.zeros((3, 0)), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="no class"):
        R.precision_recall_f1(np.zeros((3, 0)), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="no class"):
        R.accuracy(np.zeros((3, 0)), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="average"):
        R.precision_recall_f1(s, [0, 1, 1], average="weighted")
    with pytest.raises(ValueError, match="average"):
        R.precision_recall_f1(s, [0, 1, 1], average=None)
    with pytest.raises(ValueError, match="dimension"):
        R.precision_recall_f1(np.float64(1.0), 1)
    with pytest.raises(ValueError, match="threshold"):
        R.precision_recall_f1([1.0], [1], threshold=NAN)
    with pytest.raises(TypeError):
        R.precision_recall_f1([1.0], [1], zero_division="warn")


def test_accuracy_errors():
    for s, y in ((np.zeros(0), np.zeros(0)), (np.zeros((0, 3)), np.zeros((0, 3))),
                 (np.zeros((0, 3)), np.zeros(0, dtype=np.int64))):
        with pytest.raises(ValueError, match="no examples"):
            R.accuracy(s, y)
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)|\(3,\).*\(2,\)"):
        R.accuracy([1.0, 2.0, 3.0], [1, 0])
    with pytest.raises(ValueError, match="0 or 1"):
        R.accuracy([1.0, 2.0], [1, 3])
    with pytest.raises(ValueError, match="NaN"):
        R.accuracy([NAN, 2.0], [1, 0])


# ---------------------------------------------------------------------------------------------
# E2 best threshold: brute force over a fine grid
# ---------------------------------------------------------------------------------------------


def grid_thresholds(scores):
    """Far below, every distinct value, two versions of every midpoint, just below/above the
    extremes, far above, and the infinities."""
    u = np.unique(scores)
    grid = [-INF, INF, np.nextafter(u[0], -INF), np.nextafter(u[-1], INF)]
    finite = u[np.isfinite(u)]
    if finite.size:
        lo, hi = finite.min(), finite.max()
        grid += [lo - 1.0, lo - abs(lo) - 1.0, hi + 1.0, hi + abs(hi) + 1.0, -np.finfo(np.float64).max,
                 np.finfo(np.float64).max]
    for a, b in zip(u[:-1], u[1:]):
        with np.errstate(invalid="ignore", over="ignore"):
            grid += [a / 2 + b / 2, (a + b) / 2, np.nextafter(b, -INF), np.nextafter(a, INF)]
    grid += list(u)
    return [float(t) for t in grid if not math.isnan(t)]


def brute_value(scores, labels, t, metric, zero_division):
    """The exact metric at threshold t, with NumPy counts (independent of the module)."""
    pred = scores > t
    truth = labels.astype(bool)
    if metric == "f1":
        tp = int(np.sum(pred & truth))
        fp = int(np.sum(pred & ~truth))
        fn = int(np.sum(~pred & truth))
        den = 2 * tp + fp + fn
        return Fraction(2 * tp, den) if den else Fraction(zero_division)
    if scores.ndim == 1:
        right = pred == truth
    else:
        right = np.all(pred == truth, axis=-1)
    return Fraction(int(np.sum(right)), right.size)


def check_best_threshold(scores, labels, metric, zero_division):
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    t, v = R.best_threshold(scores, labels, metric=metric, zero_division=zero_division)
    assert t.shape == () and v.shape == () and t.dtype == np.float64 and v.dtype == np.float64
    t, v = float(t), float(v)
    values = {g: brute_value(scores, labels, g, metric, zero_division) for g in grid_thresholds(scores)}
    best = max(values.values())
    # no threshold of the grid is better, the best one is reached
    assert v == float(best)
    # the returned threshold reproduces the value (brute force, and the module's own metric)
    assert brute_value(scores, labels, t, metric, zero_division) == best
    if metric == "f1":
        same(R.precision_recall_f1(scores, labels, threshold=t, zero_division=zero_division)[2], v)
    else:
        same(R.accuracy(scores, labels, threshold=t), v)
    # ties: the lowest threshold among the best, i.e. the largest set of positives
    n_pos = int(np.sum(scores > t))
    for g, value in values.items():
        if value == best:
            assert int(np.sum(scores > g)) <= n_pos, (g, t)
    return t, v


@pytest.mark.parametrize("metric", ["f1", "accuracy"])
@pytest.mark.parametrize("seed", range(12))
def test_best_threshold_brute_force(seed, metric):
    rng = np.random.default_rng(200 + seed)
    shape = [(1,), (2,), (9,), (40,), (6, 3), (3, 2, 4), (30,), (5, 1), (12,), (8, 2), (20,), (4,)][seed]
    if seed % 3 == 0:
        scores = rng.normal(size=shape)
    elif seed % 3 == 1:
        scores = tied_scores(rng, shape)
    else:
        scores = rng.integers(-3, 4, size=shape).astype(np.float64)
    labels = rng.integers(0, 2, size=shape)
    if seed == 10:
        labels[:] = 0
    if seed == 11:
        labels[:] = 1
    for zd in (0.0, 0.5, 1.0):
        check_best_threshold(scores, labels, metric, zd)


def test_best_threshold_hand_examples():
    # u = 0.1, 0.35, 0.4, 0.8 with labels of 0.35 and 0.8 positive:
    # F1 at c_0 (all): 2·2/(4+2+0) = 2/3; > 0.1: 4/5; > 0.35: 2/4; > 0.4: 2/3; > 0.8: 0 -> c_1
    s, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    same(R.best_threshold(s, y), [0.1 / 2 + 0.35 / 2, 0.8])
    # accuracy: 2/4, 3/4, 2/4, 3/4, 2/4: the first of the two 3/4 (the lower threshold)
    same(R.best_threshold(s, y, metric="accuracy"), [0.1 / 2 + 0.35 / 2, 0.75])
    # all labels 1: everything positive is best (F1 = 1): c_0 -> nextafter(u_1, -inf)
    same(R.best_threshold([0.3, 0.2], [1, 1]), [np.nextafter(0.2, -INF), 1.0])
    # all labels 0: F1 is 0 everywhere except 0/0 at "all negative" -> zero_division decides
    same(R.best_threshold([0.3, 0.2], [0, 0]), [np.nextafter(0.2, -INF), 0.0])
    same(R.best_threshold([0.3, 0.2], [0, 0], zero_division=1.0), [0.3, 1.0])
    # NaN never beats a number: the first candidate with value 0 is kept
    same(R.best_threshold([0.3, 0.2], [0, 0], zero_division=NAN), [np.nextafter(0.2, -INF), 0.0])
    # accuracy with all labels 0: everything negative, threshold u_m
    same(R.best_threshold([0.3, 0.2, 0.3], [0, 0, 0], metric="accuracy"), [0.3, 1.0])
    # ties move together: scores [1, 1, 2], labels [0, 1, 1]: > below: F1 4/5, > 1: 2/3, > 2: 0
    same(R.best_threshold([1.0, 1.0, 2.0], [0, 1, 1]), [np.nextafter(1.0, -INF), 0.8])
    # u_1 = -inf: no c_0; c_1 = -inf (> -inf: only 0.0 positive, F1 = 2/3); mid = -inf/2 + 0/2 = -inf
    same(R.best_threshold([-INF, 0.0], [1, 1]), [-INF, 2 / 3])
    # u_m = +inf: c_1 = 0 keeps only +inf positive (F1 = 1); the midpoint is inf -> fallback u_1 = 0
    same(R.best_threshold([0.0, INF], [0, 1]), [0.0, 1.0])
    # -inf and +inf only: c_1 = -inf keeps +inf positive (F1 = 1); the midpoint is NaN -> u_1 = -inf
    same(R.best_threshold([-INF, INF], [0, 1]), [-INF, 1.0])
    # all +inf: c_0 = nextafter(inf, -inf) = the largest float
    same(R.best_threshold([INF, INF], [1, 1]), [np.finfo(np.float64).max, 1.0])
    # adjacent floats: 1+eps and 1+2eps; the midpoint 1 + 1.5 eps rounds (to even) to 1+2eps = u_2,
    # which is not < u_2 -> fallback u_1 = 1+eps
    a = 1.0 + EPS
    b = np.nextafter(a, 2.0)
    assert a / 2 + b / 2 == b
    same(R.best_threshold([a, b], [0, 1]), [a, 1.0])
    # 1 and 1+eps: the midpoint 1 + eps/2 rounds to 1 = u_1 -> returned (u_1 <= mid)
    same(R.best_threshold([1.0, 1.0 + EPS], [0, 1]), [1.0, 1.0])
    # multi-label accuracy is subset accuracy: rows [[0.9, 0.1], [0.8, 0.7]], labels [[1, 0], [1, 1]]
    # > below all: row 1 wrong -> 1/2; > 0.1: both right -> 1 -> threshold (0.1 + 0.7)/2
    same(R.best_threshold([[0.9, 0.1], [0.8, 0.7]], [[1, 0], [1, 1]], metric="accuracy"),
         [0.1 / 2 + 0.7 / 2, 1.0])
    # a single entry
    check_best_threshold([0.0], [1], "f1", 0.0)
    check_best_threshold([0.0], [0], "accuracy", 0.0)
    same(R.best_threshold([5.0], [0], metric="accuracy"), [5.0, 1.0])


def test_best_threshold_errors():
    with pytest.raises(ValueError, match="metric"):
        R.best_threshold([0.0, 1.0], [0, 1], metric="precision")
    with pytest.raises(ValueError, match="class-id"):
        R.best_threshold(np.zeros((3, 2)), [0, 1, 1])  # class ids
    with pytest.raises(ValueError, match=r"\(3,\)"):
        R.best_threshold([0.0, 1.0, 2.0], [0, 1])
    with pytest.raises(ValueError, match="no entries"):
        R.best_threshold(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="no entries"):
        R.best_threshold(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="0 or 1"):
        R.best_threshold([0.0, 1.0], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        R.best_threshold([0.0, NAN], [0, 1])
    with pytest.raises(ValueError):
        R.best_threshold(np.float64(1.0), 1)


# ---------------------------------------------------------------------------------------------
# E3 entity / span F1
# ---------------------------------------------------------------------------------------------


def test_global_pointer_f1_against_spans_and_sklearn():
    rng = np.random.default_rng(7)
    b, h, n = 3, 2, 5
    logits = rng.normal(size=(b, h, n, n))
    lower = np.tril(np.ones((n, n), dtype=bool), -1)
    logits[..., lower] = -INF  # masked spans (start > end)
    labels = (rng.random((b, h, n, n)) < 0.3) & ~lower
    for threshold in (0.0, 0.5, -INF):
        for zd in (0.0, 1.0):
            got = R.global_pointer_f1(logits, labels, threshold=threshold, zero_division=zd)
            pred_spans = [{(k, i, j) for k, i, j in zip(*np.nonzero(logits[s] > threshold))} for s in range(b)]
            true_spans = [{(k, i, j) for k, i, j in zip(*np.nonzero(labels[s]))} for s in range(b)]
            same(got, R.span_f1(pred_spans, true_spans, zero_division=zd))
            want = sk_prf(labels.ravel().astype(int), (logits > threshold).ravel().astype(int), labels=[1],
                          average=None, zero_division=zd)
            same(got, [w[0] for w in want])


def test_global_pointer_f1_hand_and_errors():
    # X = 1 ((0,0) predicted and true), Y = 2 ((0,0), (1,1)), Z = 3 -> P 1/2, R 1/3, F1 2/5
    logits = [[[1.0, -2.0], [-INF, 3.0]]]
    labels = [[[1, 1], [1, 0]]]
    same(R.global_pointer_f1(logits, labels), [0.5, 1 / 3, 0.4])
    # nothing predicted, nothing true -> zero_division
    same(R.global_pointer_f1(np.full((2, 2), -INF), np.zeros((2, 2)), zero_division=0.5), [0.5] * 3)
    same(R.global_pointer_f1(np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), zero_division=NAN), [NAN] * 3)
    # threshold is strict
    same(R.global_pointer_f1([[0.5]], [[1]], threshold=0.5), [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        R.global_pointer_f1(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="L, L"):
        R.global_pointer_f1(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        R.global_pointer_f1(np.zeros((2, 3, 3)), np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="0 or 1"):
        R.global_pointer_f1(np.zeros((3, 3)), np.full((3, 3), 2))
    with pytest.raises(ValueError, match="NaN"):
        R.global_pointer_f1(np.full((3, 3), NAN), np.zeros((3, 3)))


def test_span_f1():
    # duplicates count once: X = 1 + 1 = 2, Y = 2 + 1 = 3, Z = 1 + 2 = 3 -> 2/3 each
    pred = [[("PER", 0, 1), ("PER", 0, 1), ("LOC", 4, 5)], [("ORG", 2, 2)]]
    true = [[("PER", 0, 1)], [("ORG", 2, 2), ("ORG", 3, 3)]]
    got = R.span_f1(pred, true)
    assert all(type(v) is float for v in got)
    assert got == (2 / 3, 2 / 3, 2 / 3)
    # spans are matched per sentence: the same span in another sentence is not a hit
    assert R.span_f1([[(0, 1)], []], [[], [(0, 1)]]) == (0.0, 0.0, 0.0)
    # X = 1, Y = 1, Z = 4: P 1, R 1/4, F1 2/5
    assert R.span_f1([{"a"}], [{"a", "b", "c", "d"}]) == (1.0, 0.25, 0.4)
    assert R.span_f1([[], []], [[], []], zero_division=1.0) == (1.0, 1.0, 1.0)
    assert R.span_f1([], []) == (0.0, 0.0, 0.0)
    p, r, f = R.span_f1([[("x",)]], [[]], zero_division=NAN)  # Y = 1, Z = 0
    assert (p, f) == (0.0, 0.0) and math.isnan(r)
    with pytest.raises(ValueError, match="1 entries.*2 entries"):
        R.span_f1([[]], [[], []])


# ---------------------------------------------------------------------------------------------
# E4 correlations
# ---------------------------------------------------------------------------------------------


def decimal_pearson(x, y):
    """Pearson r in 100-digit decimal arithmetic (independent of the module's Fractions)."""
    with localcontext() as ctx:
        ctx.prec = 100
        xs = [Decimal(float(v)) for v in x]
        ys = [Decimal(float(v)) for v in y]
        mx = sum(xs) / len(xs)
        my = sum(ys) / len(ys)
        sxy = sum((a - mx) * (b - my) for a, b in zip(xs, ys))
        sxx = sum((a - mx) ** 2 for a in xs)
        syy = sum((b - my) ** 2 for b in ys)
        return float(sxy / (sxx * syy).sqrt())


@pytest.mark.parametrize("seed", range(8))
def test_pearson_against_scipy_and_decimal(seed):
    rng = np.random.default_rng(300 + seed)
    n = int(rng.integers(2, 60))
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n) if seed % 2 else rng.integers(-3, 4, size=n)
    if np.ptp(y) == 0:
        y[0] += 1
    r = R.pearson(x, y)
    assert r.shape == () and r.dtype == np.float64
    assert_close(r, stats.pearsonr(x, y).statistic, rtol=16 * EPS, atol=16 * EPS)
    same(r, decimal_pearson(x, y))  # correctly rounded: equal to a 100-digit computation
    same(R.pearson(y.astype(np.float64), x), r)  # symmetric
    same(R.pearson(list(x), list(y)), r)  # nested lists


def test_pearson_ill_conditioned_and_hand():
    # a huge offset and tiny spread: naive float formulas lose every digit here
    rng = np.random.default_rng(11)
    base = 2.0**40
    x = base + rng.integers(0, 64, size=20) * 2.0**-8
    y = -(2.0**30) + rng.normal(size=20)
    same(R.pearson(x, y), decimal_pearson(x, y))
    # exactly linear -> exactly ±1
    x = np.array([0.1, 0.7, 0.3, 1.9, 2.2])
    same(R.pearson(x, 3 * x + 1), 1.0)
    same(R.pearson(x, -x), -1.0)
    # x = [1, 2, 3], y = [2, 4, 7]: Sxy = 5, Sxx = 2, Syy = 114/9 -> 5 / sqrt(2 · 114/9) = 15 / sqrt(228)
    same(R.pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]), decimal_pearson([1, 2, 3], [2, 4, 7]))
    assert_close(R.pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]), 15 / math.sqrt(228.0), **EXACT)
    # bool y: point-biserial; uncorrelated -> exactly 0
    same(R.pearson([1.0, 2.0, 3.0, 4.0], [True, False, False, True]), 0.0)
    scipy_r = stats.pearsonr([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]).statistic
    assert_close(R.pearson([1.0, 2.0, 3.0, 4.0], np.array([0, 0, 1, 1], dtype=bool)), scipy_r, **EXACT)
    # constant -> NaN
    same(R.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), NAN)
    same(R.pearson([1.0, 2.0, 3.0], [5, 5, 5]), NAN)
    # N = 2: ±1
    same(R.pearson([0.0, 1.0], [3.0, -2.0]), -1.0)


def test_correctly_rounded_sqrt():
    # sqrt(q) slightly above / below a rounding midpoint m = r + ulp(r)/2 must round up / down; a
    # square root that only looks at a truncated value would round m itself (ties to even)
    rng = np.random.default_rng(13)
    for r in np.concatenate([rng.uniform(0.01, 1.0, size=20), [0.5, 1.0 - EPS / 2, 2.0**-600]]):
        r = float(r)
        up = float(np.nextafter(r, INF))
        m = (Fraction(r) + Fraction(up)) / 2
        tiny = m * m / 2**300  # far below the resolution of float64, relative to m²
        assert metrics._sqrt(m * m + tiny) == up
        assert metrics._sqrt(m * m - tiny) == r
        assert metrics._sqrt(Fraction(r) ** 2) == r
    assert metrics._sqrt(Fraction(1, 2)) == math.sqrt(0.5)
    assert metrics._sqrt(Fraction(2)) == math.sqrt(2.0)


@pytest.mark.parametrize("fn", [R.pearson, R.spearman])
def test_correlation_errors(fn):
    with pytest.raises(ValueError, match="2 pairs"):
        fn([1.0], [1.0])
    with pytest.raises(ValueError, match="2 pairs"):
        fn(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        fn([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="1-D"):
        fn(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        fn([1.0, NAN, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        fn([1.0, 2.0, 3.0], [1.0, NAN, 3.0])


def test_pearson_rejects_inf():
    with pytest.raises(ValueError, match="inf"):
        R.pearson([1.0, INF, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="inf"):
        R.pearson([1.0, 2.0, 3.0], [-INF, 2.0, 3.0])


@pytest.mark.parametrize("seed", range(8))
def test_spearman_against_scipy(seed):
    rng = np.random.default_rng(400 + seed)
    n = int(rng.integers(2, 50))
    if seed % 2:
        x, y = rng.integers(0, 4, size=n).astype(np.float64), rng.integers(0, 3, size=n)  # many ties
    else:
        x, y = rng.normal(size=n), rng.normal(size=n)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        x[0], y[0] = -1.0, -1
    r = R.spearman(x, y)
    assert r.shape == () and r.dtype == np.float64
    assert_close(r, stats.spearmanr(x, y).statistic, rtol=16 * EPS, atol=16 * EPS)
    # exactly the Pearson correlation of SciPy's average ranks (half-integers are exact floats)
    same(r, R.pearson(stats.rankdata(x, method="average"), stats.rankdata(y, method="average")))


def test_spearman_hand_and_infinities():
    # x ranks [1, 2.5, 2.5, 4], y ranks [1.5, 1.5, 3.5, 3.5]: Sxy = 3, Sxx = 4.5, Syy = 4 -> 1/sqrt 2
    same(R.spearman([1.0, 2.0, 2.0, 3.0], [0, 0, 1, 1]), math.sqrt(0.5))  # correctly rounded
    # monotone transforms do not matter, infinities are extreme values
    x = [-INF, -3.0, 0.5, 2.0, INF]
    same(R.spearman(x, [-1000.0, -1.0, 0.0, 7.0, 8.0]), 1.0)
    same(R.spearman(x, [INF, 4.0, 3.0, 2.0, -INF]), -1.0)
    same(
        R.spearman([INF, INF, 1.0, 0.0], [1.0, 2.0, 3.0, 4.0]),
        R.pearson(stats.rankdata([INF, INF, 1.0, 0.0]), [1.0, 2.0, 3.0, 4.0]),
    )
    # constant ranks -> NaN
    same(R.spearman([1.0, 2.0, 3.0], [INF, INF, INF]), NAN)
    same(R.spearman([2.0, 2.0], [1.0, 3.0]), NAN)


# ---------------------------------------------------------------------------------------------
# E5 leaderboard means
# ---------------------------------------------------------------------------------------------


def test_leaderboard_mean_against_scipy():
    rng = np.random.default_rng(5)
    scores = rng.uniform(0.05, 1.0, size=(3, 4, 6))
    a = R.leaderboard_mean(scores)
    assert a.shape == (3, 4) and a.dtype == np.float64
    assert_close(a, np.mean(scores, axis=-1), rtol=4 * EPS, atol=0.0)
    assert_close(R.leaderboard_mean(scores, kind="geometric"), stats.gmean(scores, axis=-1), rtol=32 * EPS, atol=0.0)
    assert_close(R.leaderboard_mean(scores, kind="harmonic"), stats.hmean(scores, axis=-1), rtol=16 * EPS, atol=0.0)
    # exact arithmetic mean: the float of the rational mean
    row = scores[1, 2]
    same(R.leaderboard_mean(row), float(sum(Fraction(v) for v in row) / len(row)))
    # geometric: the float nearest exp(mean log) in high precision
    with localcontext() as ctx:
        ctx.prec = 80
        g = (sum(Decimal(float(v)).ln() for v in row) / len(row)).exp()
    same(R.leaderboard_mean(row, kind="geometric"), float(g))


def test_leaderboard_mean_hand_examples():
    # [1, 4]: arithmetic 5/2, geometric sqrt(4) = 2, harmonic 2/(1 + 1/4) = 8/5
    same(R.leaderboard_mean([1.0, 4.0]), 2.5)
    same(R.leaderboard_mean([1.0, 4.0], kind="geometric"), 2.0)
    same(R.leaderboard_mean([1.0, 4.0], kind="harmonic"), 1.6)
    assert R.leaderboard_mean([1.0, 4.0]).shape == ()
    # geometric of [2, 8, 4] = 64^(1/3) = 4 exactly (correct rounding)
    same(R.leaderboard_mean([2.0, 8.0, 4.0], kind="geometric"), 4.0)
    # arithmetic 0.1, 0.2, 0.3: the exact mean of the three floats, rounded once
    same(R.leaderboard_mean([0.1, 0.2, 0.3]), float((Fraction(0.1) + Fraction(0.2) + Fraction(0.3)) / 3))
    # integers, and negatives are fine for the arithmetic mean
    same(R.leaderboard_mean([[1, 2], [-3, 3]]), [1.5, 0.0])
    # infinities follow IEEE
    same(R.leaderboard_mean([INF, 1.0]), INF)
    same(R.leaderboard_mean([INF, -INF]), NAN)
    same(R.leaderboard_mean([INF, 2.0], kind="geometric"), INF)
    same(R.leaderboard_mean([INF, 2.0], kind="harmonic"), 4.0)  # 2 / (0 + 1/2)
    # mapping form: the same numbers, Python floats, input order
    board = {"B": {"t1": 1.0, "t2": 4.0}, "A": {"t2": 2.0, "t1": 2.0}}
    for kind, want in (("arithmetic", 2.5), ("geometric", 2.0), ("harmonic", 1.6)):
        out = R.leaderboard_mean(board, kind=kind)
        assert list(out) == ["B", "A"]
        assert out == {"B": want, "A": 2.0}
        assert all(type(v) is float for v in out.values())


def test_leaderboard_mean_errors():
    with pytest.raises(ValueError, match="kind"):
        R.leaderboard_mean([1.0], kind="median")
    with pytest.raises(ValueError, match="T == 0"):
        R.leaderboard_mean(np.zeros((3, 0)))
    with pytest.raises(ValueError, match="ndim"):
        R.leaderboard_mean(np.float64(1.0))
    with pytest.raises(ValueError, match="NaN"):
        R.leaderboard_mean([1.0, NAN])
    for kind in ("geometric", "harmonic"):
        with pytest.raises(ValueError, match="non-positive"):
            R.leaderboard_mean([[1.0, 2.0], [0.0, 1.0]], kind=kind)
        with pytest.raises(ValueError, match="non-positive"):
            R.leaderboard_mean([1.0, -2.0], kind=kind)
        with pytest.raises(ValueError, match="non-positive"):
            R.leaderboard_mean({"A": {"t": 1.0}, "B": {"t": 0.0}}, kind=kind)
    with pytest.raises(ValueError, match="empty"):
        R.leaderboard_mean({})
    with pytest.raises(ValueError, match="T == 0"):
        R.leaderboard_mean({"A": {}, "B": {}})
    with pytest.raises(ValueError, match="NaN"):
        R.leaderboard_mean({"A": {"t": NAN}})
    board = {"A": {"t1": 1.0, "t2": 2.0}, "B": {"t1": 1.0, "t3": 3.0}, "C": {"t1": 1.0, "t2": 1.0, "t3": 1.0}}
    with pytest.raises(ValueError, match="scored on different task sets") as info:
        R.leaderboard_mean(board)
    message = str(info.value)
    assert "'A'" in message and "'t3'" in message and "'B'" in message and "'t2'" in message
    assert "'C' lacks" not in message


# --------------------------------------------------------------------------------------------
# best_threshold_vector (reference): coordinate ascent, checked against scikit-learn and brute force
# --------------------------------------------------------------------------------------------
def test_best_threshold_vector_value_is_the_metric_of_its_offsets():
    """The value returned is macro F1 (or accuracy) of argmax(scores + offsets), as scikit-learn
    computes it, and never below the value at zero offsets (a step is kept only if it does not drop)."""
    from sklearn.metrics import accuracy_score, f1_score

    from polyloss.reference import best_threshold_vector

    rng = np.random.default_rng(3)
    for trial in range(6):
        n, c = 40, 2 + trial % 3
        labels = rng.integers(0, c, n)
        scores = rng.normal(size=(n, c)) + 0.7 * (labels[:, None] == np.arange(c))
        for metric in ("f1", "accuracy"):
            offsets, value = best_threshold_vector(scores, labels, metric=metric)
            pred, before = (scores + offsets).argmax(-1), scores.argmax(-1)
            if metric == "f1":
                score = f1_score(labels, pred, average="macro", labels=range(c), zero_division=0)
                start = f1_score(labels, before, average="macro", labels=range(c), zero_division=0)
            else:
                score, start = accuracy_score(labels, pred), accuracy_score(labels, before)
            assert_close(value, float(score), rtol=0.0, atol=1e-12)
            assert float(value) >= start - 1e-12


def test_best_threshold_vector_is_the_global_optimum_for_two_classes():
    """With two classes only ``b_0 - b_1`` matters: the first pass over class 0 is a 1-D exact search,
    so the result must equal the brute-force best over every cut of the margins ``s_1 - s_0``."""
    from polyloss.reference import best_threshold_vector

    rng = np.random.default_rng(5)
    for _ in range(5):
        labels = rng.integers(0, 2, 30)
        scores = rng.normal(size=(30, 2)) + 0.5 * (labels[:, None] == np.arange(2))
        _, value = best_threshold_vector(scores, labels, metric="accuracy", rounds=1)
        margins = np.sort(scores[:, 1] - scores[:, 0])
        cuts = np.concatenate([[margins[0] - 1], (margins[1:] + margins[:-1]) / 2, [margins[-1] + 1]])
        brute = max(np.mean(np.where(scores[:, 0] + cut > scores[:, 1], 0, 1) == labels) for cut in cuts)
        assert_close(value, float(brute), rtol=0.0, atol=1e-12)

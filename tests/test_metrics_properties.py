"""Properties and identities of the metrics (``docs/metrics.md``) that a wrong implementation breaks.

- Counting metrics: micro F1 (and P, R) of class ids is the accuracy; binary macro = micro = the
  per-class value; F1 is the harmonic mean of P and R; permuting the examples changes nothing (bit
  for bit: the results are ratios of integer counts); the counts behind ``average="none"`` pool to
  the micro result and split over batches.
- ``best_threshold``: the exact optimum of a brute force over every threshold (every distinct
  score, midpoints, below the minimum) evaluated by ``precision_recall_f1`` / ``accuracy`` with
  ``threshold=t``; equal scores are never split (a case where a split would win is built); the
  lowest threshold wins among equal values; ±inf scores; 1-D and ``[N, C]`` (subset accuracy);
  ``zero_division`` without positives; the returned threshold, as the 0-d array and as a Python
  float, reproduces the value on every backend.
- ``best_threshold_vector`` (a heuristic): its value is the metric of ``argmax(scores + offsets)``
  computed independently (macro F1 for ``"f1"``), never below ``offsets = 0``, and no single
  offset can be moved on a fine grid to a better value (coordinate-wise optimality).
- ``pearson``: affine maps (sign flips for a negative slope), symmetry, ±1 for linear data, NaN for
  a constant input, and the gradient against the closed form
  ``dr/dx_i = dy_i / (|dx| |dy|) - r dx_i / |dx|^2`` (centred ``dx``, ``dy``) under torch, JAX and
  TensorFlow autograd.
- ``spearman``: invariant to strictly increasing maps; Pearson of ``scipy.stats.rankdata`` ranks.
- ``leaderboard_mean``: arithmetic >= geometric >= harmonic; equal for a constant row; the mapping
  form equals the array form whatever the task order.
"""

from __future__ import annotations

import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

import polyloss.metrics as M
from polyloss.reference import metrics as reference
from polyloss.testing import assert_close

from helpers import get, grid, host, hosts, tolerance

stats = pytest.importorskip("scipy.stats")
skm = pytest.importorskip("sklearn.metrics")

DTYPES = ("float32", "float64")
TOL = {"float32": dict(rtol=1e-6, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-12)}
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}
N = 40
ROWS, C = 8, 5


def same(a, b):
    """Bitwise-equal float64 values."""
    np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


# ============================================================================================
# counting metrics: identities
# ============================================================================================
def multiclass_case(seed=1, shape=(N, C)):
    rng = np.random.default_rng(seed)
    return grid(rng, shape, step=1.0), rng.integers(0, shape[-1], shape[:-1])


def multilabel_case(seed=2):
    rng = np.random.default_rng(seed)
    return grid(rng, (ROWS, C)), rng.integers(0, 2, (ROWS, C))


@pytest.mark.parametrize("dtype", DTYPES)
def test_micro_equals_accuracy_for_class_ids(metric_backend, dtype):
    be = metric_backend
    for shape in ((N, C), (2, N // 2, C)):
        s, ids = multiclass_case(shape=shape)
        sb, ib = be.from_numpy(s, dtype=dtype), be.from_numpy(ids)
        p, r, f, acc = hosts(be, (*M.precision_recall_f1(sb, ib, average="micro"), M.accuracy(sb, ib)))
        assert 0.0 < acc < 1.0
        same(p, acc)
        same(r, acc)
        same(f, acc)
        # and not the macro value, which differs on this data
        assert abs(host(be, M.precision_recall_f1(sb, ib, average="macro")[2]) - acc) > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_macro_equals_micro(metric_backend, dtype):
    be = metric_backend
    rng = np.random.default_rng(3)
    s, y = grid(rng, (N,)), rng.integers(0, 2, N)
    results = []
    for t, zd, labels in ((0.0, 0.0, y), (0.5, 1.0, y), (0.0, 1.0, np.zeros_like(y))):
        sb, yb = be.from_numpy(s, dtype=dtype), be.from_numpy(labels)
        micro, macro, none = (hosts(be, M.precision_recall_f1(sb, yb, threshold=t, average=a, zero_division=zd))
                              for a in ("micro", "macro", "none"))
        same(macro, micro)
        same(none, micro)
        results.append(micro)
    # not a trivial identity: P != R on the random labels, and zero_division shows without positives
    assert results[0][0] != results[0][1] and results[1][0] != results[1][1]
    assert results[2][1] == 1.0 and results[2][0] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_f1_is_the_harmonic_mean_of_precision_and_recall(metric_backend, dtype):
    be = metric_backend
    s_ml, y_ml = multilabel_case()
    s_mc, ids = multiclass_case()
    checked = 0
    for s, y in ((s_ml, y_ml), (s_mc, ids)):
        sb, yb = be.from_numpy(s, dtype=dtype), be.from_numpy(y)
        for average in ("none", "micro"):
            p, r, f = hosts(be, M.precision_recall_f1(sb, yb, average=average))
            p, r, f = np.atleast_1d(p), np.atleast_1d(r), np.atleast_1d(f)
            both = (p > 0) & (r > 0)
            checked += int(np.sum(both & (np.abs(p - r) > 0.05)))
            assert_close(f[both], 2 * p[both] * r[both] / (p[both] + r[both]), **tolerance(TOL, dtype))
            assert np.all(f[~both] == 0.0)  # zero_division=0 and TP = 0: F1 = 0
    assert checked >= 3  # enough classes with P != R that the identity is not trivially P = R = F1


@pytest.mark.parametrize("dtype", DTYPES)
def test_precision_recall_f1_invariant_to_permuting_examples(metric_backend, dtype):
    be = metric_backend
    rng = np.random.default_rng(4)
    s1, y1 = grid(rng, (N,)), rng.integers(0, 2, N)
    s_ml, y_ml = multilabel_case()
    s_mc, ids = multiclass_case()
    for s, y in ((s1, y1), (s_ml, y_ml), (s_mc, ids)):
        perm = rng.permutation(s.shape[0])
        assert not np.array_equal(s[perm], s)
        for average in ("micro", "macro", "none"):
            a = hosts(be, M.precision_recall_f1(be.from_numpy(s, dtype=dtype), be.from_numpy(y), average=average,
                                                threshold=0.0))
            b = hosts(be, M.precision_recall_f1(be.from_numpy(s[perm], dtype=dtype), be.from_numpy(y[perm]),
                                                average=average, threshold=0.0))
            same(a, b)


def numpy_counts(s, y, threshold=0.0):
    """Per-class TP, FP, FN counted by hand (elementwise 0/1 labels or class ids)."""
    if y.shape == s.shape:
        pred, truth = (s > threshold).reshape(-1, s.shape[-1]), y.reshape(-1, s.shape[-1]).astype(bool)
    else:
        c = s.shape[-1]
        pred = np.eye(c, dtype=bool)[np.argmax(s.reshape(-1, c), axis=-1)]
        truth = np.eye(c, dtype=bool)[y.reshape(-1)]
    return (np.sum(pred & truth, axis=0), np.sum(pred & ~truth, axis=0), np.sum(~pred & truth, axis=0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_counts_of_average_none_pool_to_micro(metric_backend, dtype):
    be = metric_backend
    for s, y in (multilabel_case(), multiclass_case()):
        sb, yb = be.from_numpy(s, dtype=dtype), be.from_numpy(y)
        m = M.PrecisionRecallF1(average="none").update(sb, yb)
        tp, fp, fn = hosts(be, (m.state["tp"], m.state["fp"], m.state["fn"]))
        want = numpy_counts(s, y)
        for got, expected in zip((tp, fp, fn), want):
            same(got, expected)
        # per class, the ratios of these counts are the average="none" result
        none = hosts(be, M.precision_recall_f1(sb, yb, average="none"))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = (tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn))
        for got, expected in zip(none, per_class):
            assert_close(got, np.nan_to_num(expected, nan=0.0), **tolerance(TOL, dtype))
        # pooled, they are the micro result
        TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
        micro = hosts(be, M.precision_recall_f1(sb, yb, average="micro"))
        assert_close(micro, (TP / (TP + FP), TP / (TP + FN), 2 * TP / (2 * TP + FP + FN)), **tolerance(TOL, dtype))
        # and over two batches the counts add up to the same
        half = s.shape[0] // 2
        m2 = M.PrecisionRecallF1(average="micro").update(be.from_numpy(s[:half], dtype=dtype),
                                                         be.from_numpy(y[:half]))
        m2.update(be.from_numpy(s[half:], dtype=dtype), be.from_numpy(y[half:]))
        same(hosts(be, m2.compute()), micro)


# ============================================================================================
# best_threshold: the exact optimum
# ============================================================================================
def evaluate(s, y, t, metric, zd):
    """The library's own metric at threshold ``t`` (the evaluator of the brute force)."""
    if metric == "f1":
        return float(M.precision_recall_f1(s, y, threshold=t, average="micro", zero_division=zd)[2])
    return float(M.accuracy(s, y, threshold=t))


def every_threshold(s):
    """Every distinct score, every midpoint of neighbours and a value below the minimum, ascending
    (a ``-inf`` minimum has nothing below it: every entry positive is impossible then)."""
    u = np.unique(s)
    mids = [m for m in (u[:-1] / 2 + u[1:] / 2) if np.isfinite(m)]
    below = [np.nextafter(u[0], -np.inf)] if u[0] > -np.inf else []
    return np.sort(np.concatenate([below, u, mids]))


def brute_force(s, y, metric, zd):
    """``(best value, decisions of the lowest threshold reaching it)`` over every threshold."""
    values = [(evaluate(s, y, t, metric, zd), t) for t in every_threshold(s)]
    best = max(v for v, _ in values if not math.isnan(v))
    lowest = min(t for v, t in values if v == best)
    return best, s > lowest


def check_against_brute_force(s, y, metric, zd=0.0):
    t, value = M.best_threshold(s, y, metric=metric, zero_division=zd)
    best, decisions = brute_force(s, y, metric, zd)
    assert float(value) == best, (metric, zd, float(t))
    assert evaluate(s, y, t, metric, zd) == best  # the 0-d array
    assert evaluate(s, y, float(t), metric, zd) == best  # and the Python float
    # the same decisions as the LOWEST threshold reaching the best value
    np.testing.assert_array_equal(s > t, decisions)
    return t, value


def random_threshold_case(rng):
    shape = [(int(rng.integers(1, 25)),), (int(rng.integers(1, 8)), int(rng.integers(1, 5)))][int(rng.integers(2))]
    s = grid(rng, shape, step=float(rng.choice([0.25, 0.5, 1.0])))
    if rng.random() < 0.3:
        s = np.where(rng.random(shape) < 0.2, rng.choice([-np.inf, np.inf], shape), s)
    y = (rng.random(shape) < rng.random()).astype(np.int64)
    return s, y


def test_best_threshold_is_the_brute_force_optimum():
    rng = np.random.default_rng(5)
    splits = checked = 0
    for _ in range(60):
        s, y = random_threshold_case(rng)
        for metric, zd in (("f1", 0.0), ("f1", 1.0), ("accuracy", 0.0)):
            check_against_brute_force(s, y, metric, zd)
            checked += 1
        # over these cases, splitting some tie would often have helped: the rule is exercised
        flat_s, flat_y = s.reshape(-1), y.reshape(-1)
        splits += any(len(set(flat_y[flat_s == v])) == 2 for v in np.unique(flat_s))
    assert splits >= 20 and checked == 180


def test_best_threshold_float32_is_the_brute_force_optimum(metric_backend):
    """float32 scores: on NumPy and eager torch the packed-key sort and the sweep that ranks candidates in
    float64 (``_packed_sweep``); elsewhere the general sweep. Both reach the brute-force optimum (float64 F1 of
    every threshold) with the decisions of the lowest threshold reaching it, ties and infinite scores
    included. The grid's values are exact in float32."""
    be = metric_backend
    rng = np.random.default_rng(11)
    for _ in range(30):
        s, y = random_threshold_case(rng)
        s32 = s.astype(np.float32)
        for metric, zd in (("f1", 0.0), ("f1", 1.0), ("accuracy", 0.0)):
            t, value = M.best_threshold(be.from_numpy(s32), be.from_numpy(y), metric=metric, zero_division=zd)
            best, decisions = brute_force(s32.astype(np.float64), y, metric, zd)
            assert_close(float(host(be, value)), best, rtol=1e-6, atol=0.0)
            np.testing.assert_array_equal(s32 > host(be, t), decisions)


def test_best_threshold_ranks_f1_values_that_float32_rounds_together(metric_backend):
    """Two candidates whose F1 values differ but round to the same float32 (the first, "all but the 5
    lowest scores positive", has F1_A = 2P / (2P + f) with f = 646 false positives; the second, B, keeps
    only the T = 11387 highest of the P = 12000 positives and no negative: F1_B = 2T / (P + T); the
    fractions below verify F1_B > F1_A and float32(F1_A) == float32(F1_B)). Every target picks B, as the
    exact reference does: the general sweep ranks in float64 like the packed one (found by the review of
    the packed sweep, where the two paths disagreed)."""
    from fractions import Fraction

    be = metric_backend
    p, f, t, low = 12000, 646, 11387, 5
    f1_a, f1_b = Fraction(2 * p, 2 * p + f), Fraction(2 * t, p + t)
    assert f1_b > f1_a and np.float32(2 * p) / np.float32(2 * p + f) == np.float32(2 * t) / np.float32(p + t)
    y = np.array([0] * low + [1] * (p - t) + [0] * f + [1] * t)
    s = (np.arange(y.size) / y.size).astype(np.float32)  # increasing, distinct
    threshold, value = M.best_threshold(be.from_numpy(s), be.from_numpy(y))
    np.testing.assert_array_equal(s > host(be, threshold), np.arange(y.size) >= y.size - t)
    assert_close(float(host(be, value)), float(np.float32(float(f1_b))), rtol=1e-7, atol=0.0)


def split_oracle_f1(s, y):
    """The best F1 when equal scores MAY be split (rank by score, then positives first): what a
    wrong sweep over the sorted entries would report."""
    order = np.lexsort((-y, -s))  # score descending, positives first among equal scores
    yy = y[order]
    tp = np.concatenate([[0], np.cumsum(yy)])
    k = np.arange(len(yy) + 1)
    return np.max(2 * tp / (k + yy.sum()))


def test_best_threshold_never_splits_a_tie():
    s = np.array([0.0, 1.0, 1.0, 2.0])
    y = np.array([0, 1, 0, 1])
    # positive iff > 0: TP 2, FP 1 -> F1 0.8; splitting the two 1.0s would give F1 1
    assert split_oracle_f1(s, y) == 1.0
    t, f1 = check_against_brute_force(s, y, "f1")
    assert float(f1) == 0.8 and 0.0 <= float(t) < 1.0
    # accuracy: a split would get every entry right; the best without one is 3/4
    t, acc = check_against_brute_force(s, y, "accuracy")
    assert float(acc) == 0.75
    # a larger tie group in the middle, on the grid, in every dtype path of NumPy
    rng = np.random.default_rng(6)
    s = np.concatenate([np.full(10, 0.5), grid(rng, (20,))])
    y = np.concatenate([np.tile([1, 0], 5), rng.integers(0, 2, 20)])
    assert split_oracle_f1(s, y) > check_against_brute_force(s, y, "f1")[1]
    for dtype in ("float32", "float64"):
        t, v = M.best_threshold(s.astype(dtype), y)
        assert_close(v, check_against_brute_force(s, y, "f1")[1], **tolerance(TOL, dtype))
        assert len(set((s > float(t))[:10])) == 1  # the tie group moves as one


def test_best_threshold_lowest_threshold_wins():
    # F1: "every entry positive" (2/3) ties with "positive iff > 2" (2/3): the lowest wins
    s, y = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1, 0, 0, 1])
    assert evaluate(s, y, -1.0, "f1", 0.0) == evaluate(s, y, 2.5, "f1", 0.0) == 2 / 3
    t, v = check_against_brute_force(s, y, "f1")
    assert float(v) == 2 / 3 and float(t) < 0.0 and np.all(s > t)
    # accuracy: "> 0" (3/4) ties with "> 2" (3/4): the threshold lies in [0, 1)
    y = np.array([0, 1, 0, 1])
    t, v = check_against_brute_force(s, y, "accuracy")
    assert float(v) == 0.75 and 0.0 <= float(t) < 1.0


def test_best_threshold_infinite_scores():
    inf = np.inf
    cases = [
        (np.array([-inf, -inf, 0.0, 1.0, inf, inf]), np.array([0, 0, 1, 0, 1, 1])),
        (np.array([-inf, 0.0, 1.0, inf]), np.array([1, 1, 1, 0])),  # the -inf positive cannot be predicted
        (np.array([-inf, -inf, 2.0]), np.array([1, 1, 0])),
        (np.array([-inf, -inf]), np.array([1, 0])),
        (np.array([inf, inf, 3.0]), np.array([1, 1, 0])),
        (np.array([inf, inf]), np.array([0, 0])),
        (np.array([[-inf, 1.0], [inf, 0.0], [0.5, -inf]]), np.array([[0, 1], [1, 0], [1, 0]])),
    ]
    for s, y in cases:
        for metric, zd in (("f1", 0.0), ("f1", 1.0), ("accuracy", 0.0)):
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # -inf next to +inf: no NaN midpoint
                t, v = check_against_brute_force(s, y, metric, zd)
            assert not math.isnan(float(t)) and math.isfinite(float(v))
    # -inf scores are never predicted: the best F1 misses that positive
    t, v = M.best_threshold(cases[1][0], cases[1][1])
    assert float(v) == 2 * 2 / (2 * 2 + 1 + 1) and float(t) < 0.0


def test_best_threshold_subset_accuracy_plus_inf_row(metric_backend):
    """``scores [[inf, 0]]``, ``labels [[0, 0]]``: at ``t = +inf`` nothing is predicted and the row is
    right (``accuracy(s, l, threshold=inf) == 1``), so the answer is ``(inf, 1.0)``, also with a
    second row ``[1, -1]`` (labels 0). A sweep that gives such a row the interval
    ``[inf, inf)`` (empty) returns ``(5e-324 below 0, 0.0)`` and ``(1.0, 0.5)``."""
    be = metric_backend
    for s in ([[np.inf, 0.0]], [[np.inf, 0.0], [1.0, -1.0]]):
        s = np.array(s)
        y = np.zeros(s.shape, dtype=np.int64)
        assert float(M.accuracy(s, y, threshold=np.inf)) == 1.0
        t, v = hosts(be, M.best_threshold(be.from_numpy(s, dtype="float64"), be.from_numpy(y), metric="accuracy"))
        assert float(v) == 1.0 and float(t) == np.inf


@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "dask"])
def test_best_threshold_no_runtime_warning_for_infinite_scores(name):
    be = get(name)
    for s, y in (([-np.inf, -np.inf], [1, 0]), ([-np.inf, np.inf], [0, 0])):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            t, v = hosts(be, M.best_threshold(be.from_numpy(np.array(s), dtype="float64"), be.from_numpy(np.array(y))))
        assert float(t) == -np.inf and float(v) == 0.0


def test_best_threshold_infinite_scores_no_warning_autograd_backends(autograd_backend):
    """The same inputs on torch, JAX and TensorFlow: no warning, the right answer."""
    be = autograd_backend
    for s, y in (([-np.inf, -np.inf], [1, 0]), ([-np.inf, np.inf], [0, 0])):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            t, v = hosts(be, M.best_threshold(be.from_numpy(np.array(s), dtype="float64"), be.from_numpy(np.array(y))))
        assert float(t) == -np.inf and float(v) == 0.0


def test_best_threshold_subset_accuracy_rows():
    rng = np.random.default_rng(7)
    for _ in range(20):
        s = grid(rng, (6, 3), step=0.25)
        # rows that are right for some band of thresholds, and rows that never are
        y = (s > rng.choice([-0.5, 0.0, 0.5], (6, 1))).astype(np.int64)
        y[0] = [1, 0, 1]
        s[0] = [0.0, 1.0, 2.0]  # needs 0 > t >= 1: never right
        t, v = check_against_brute_force(s, y, "accuracy")
        # subset accuracy, not the per-entry accuracy
        assert float(v) == np.mean(np.all((s > float(t)) == y, axis=1))


@pytest.mark.parametrize("zd", [0.0, 0.5, 1.0])
def test_best_threshold_no_positive_labels(zd):
    s, y = np.array([-1.0, 0.0, 0.0, 2.0, 3.5]), np.zeros(5, dtype=np.int64)
    t, v = check_against_brute_force(s, y, "f1", zd)
    if zd == 0.0:  # every candidate is 0: the lowest, every entry positive
        assert float(v) == 0.0 and float(t) < -1.0
    else:  # nothing predicted, nothing true: zero_division
        assert float(v) == zd and float(t) >= 3.5
    t, v = check_against_brute_force(s, y, "accuracy")
    assert float(v) == 1.0 and float(t) >= 3.5


def test_best_threshold_nan_zero_division_with_no_real_number():
    """Scores all -inf and no positives: the only real candidate is "every entry negative", whose
    F1 is 0/0 = zero_division (NaN); it is returned, and its threshold reproduces it."""
    s, y = np.full(4, -np.inf), np.zeros(4, dtype=np.int64)
    t, value = M.best_threshold(s, y, zero_division=math.nan)
    assert math.isnan(float(value)) and float(t) == -np.inf
    assert math.isnan(float(M.precision_recall_f1(s, y, threshold=t, zero_division=math.nan)[2]))
    ref_t, ref_value = reference.best_threshold(s, y, zero_division=math.nan)
    assert math.isnan(float(ref_value)) and float(ref_t) == float(t)
    # a real number elsewhere still wins over the NaN
    s[0] = 1.0
    t, value = M.best_threshold(s, y, zero_division=math.nan)
    assert float(value) == 0.0 and float(t) == -np.inf


def threshold_backend_cases():
    rng = np.random.default_rng(8)
    s1 = grid(rng, (N,))
    s1[:3] = -np.inf
    s_ml = grid(rng, (ROWS, C))
    y_ml = (s_ml > rng.choice([-0.5, 0.0, 0.5], (ROWS, 1))).astype(np.int64)
    y_ml[:2] = rng.integers(0, 2, (2, C))
    # every entry positive wins below a smallest score of 0: the float just below 0 is subnormal,
    # which JAX and TensorFlow flush to -0 (and 0 > -0 is false)
    s0 = np.abs(grid(rng, (N,)))
    s0[0] = 0.0
    return [(s1, rng.integers(0, 2, N)), (s_ml, y_ml), (s0, np.ones(N, dtype=np.int64))]


@pytest.mark.parametrize("kind", ["python float", "float64 0-d array"])
def test_threshold_that_float32_cannot_hold(metric_backend, kind):
    """``scores > threshold`` is decided on the real numbers: float32(0.1) lies above 0.1, so it is
    predicted positive (rounding 0.1 to the nearest float32 would make it equal, hence negative)."""
    be = metric_backend
    thresholds = [0.1, 1 / 3, -0.1, 0.7, 1e39, -1e39]
    near = [np.nextafter(np.float32(t), np.float32(d)) for t in thresholds[:4] for d in (-np.inf, np.inf)]
    s = np.resize(np.array([np.float32(t) for t in thresholds[:4]] + near + [0.0, np.inf, -np.inf], np.float32), N)
    sb = be.from_numpy(s)
    for t in thresholds:
        y = s.astype(np.float64) > t  # exact: every float32 is a float64
        threshold = t if kind == "python float" else be.from_numpy(np.array(t, dtype=np.float64))
        p, r, f1 = hosts(be, M.precision_recall_f1(sb, be.from_numpy(y), threshold=threshold, zero_division=1.0))
        assert (p, r, f1) == (1.0, 1.0, 1.0), (t, p, r)
        assert float(host(be, M.accuracy(sb, be.from_numpy(y), threshold=threshold))) == 1.0, t


@pytest.mark.parametrize("dtype", DTYPES)
def test_best_threshold_round_trip_every_backend(metric_backend, dtype):
    """The threshold, passed back as the returned 0-d array and as ``float(t)``, reproduces the value
    exactly; the value is the brute-force optimum of the float64 evaluator on the same values."""
    be = metric_backend
    for (s, y), metric in itertools.product(threshold_backend_cases(), ("f1", "accuracy")):
        s_d = s.astype(dtype)
        sb, yb = be.from_numpy(s_d, dtype=dtype), be.from_numpy(y)
        t, v = M.best_threshold(sb, yb, metric=metric)
        t_host, v_host = hosts(be, (t, v))
        best, decisions = brute_force(s_d.astype(np.float64), y, metric, 0.0)
        assert_close(v_host, best, **tolerance(TOL, dtype))
        np.testing.assert_array_equal(s_d > t_host.astype(dtype), decisions)
        if metric == "f1":
            again = M.precision_recall_f1(sb, yb, threshold=t)[2]
            again_float = M.precision_recall_f1(sb, yb, threshold=float(t_host))[2]
        else:
            again, again_float = M.accuracy(sb, yb, threshold=t), M.accuracy(sb, yb, threshold=float(t_host))
        a, b = hosts(be, (again, again_float))
        same(a, v_host)
        same(b, v_host)


# ============================================================================================
# best_threshold_vector: a heuristic with checkable guarantees
# ============================================================================================
def macro_f1_of(pred, ids, c):
    tp = np.array([np.sum((pred == k) & (ids == k)) for k in range(c)])
    predicted = np.array([np.sum(pred == k) for k in range(c)])
    support = np.array([np.sum(ids == k) for k in range(c)])
    den = predicted + support
    return float(np.mean(np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)))


def vector_metric(s, offsets, ids, metric):
    pred = np.argmax(s + offsets, axis=-1)
    if metric == "accuracy":
        return float(np.mean(pred == ids))
    return macro_f1_of(pred, ids, s.shape[-1])


def vector_case(seed=9, n=60, c=4):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, c, n)
    ids[:c] = np.arange(c)  # every class has support
    bias = np.array([1.0, 0.0, -0.5, -1.0][:c])  # a miscalibrated model: offsets help
    s = rng.normal(size=(n, c)) + bias + 1.2 * np.eye(c)[ids]
    return s, ids


@pytest.mark.parametrize("dtype", DTYPES)
def test_best_threshold_vector_value_is_the_metric_of_its_offsets(metric_backend, dtype):
    be = metric_backend
    s, ids = vector_case(c=3, n=30)
    s_d = s.astype(dtype)
    for metric in ("f1", "accuracy"):
        offsets, value = M.best_threshold_vector(be.from_numpy(s_d, dtype=dtype), be.from_numpy(ids),
                                                 metric=metric, rounds=2)
        o, v = hosts(be, (offsets, value))
        assert o.shape == (3,) and np.all(np.isfinite(o))
        pred = np.argmax(s_d + o.astype(dtype), axis=-1)  # in the dtype, as the library adds them
        if metric == "f1":
            expected = skm.f1_score(ids, pred, average="macro", labels=list(range(3)), zero_division=0.0)
        else:
            expected = skm.accuracy_score(ids, pred)
        assert_close(v, expected, **tolerance(TOL, dtype))
        assert_close(v, vector_metric(s_d, o.astype(dtype), ids, metric), **tolerance(TOL, dtype))
        assert v >= vector_metric(s_d, np.zeros(3, dtype=dtype), ids, metric)


@pytest.mark.parametrize("metric", ["f1", "accuracy"])
@pytest.mark.parametrize("seed, tied", [(9, False), (10, False), (11, False), (12, True)])
def test_best_threshold_vector_improves_and_is_coordinatewise_optimal(metric, seed, tied):
    s, ids = vector_case(seed)
    if tied:  # scores on a grid: equal gaps, and moves of several examples at once
        s = np.round(s * 2) / 2
    c = s.shape[-1]
    offsets, value = M.best_threshold_vector(s, ids, metric=metric, rounds=10)
    offsets, value = np.asarray(offsets), float(value)
    start = vector_metric(s, np.zeros(c), ids, metric)
    assert value == vector_metric(s, offsets, ids, metric)
    assert value >= start
    assert value > start + 0.01  # on a miscalibrated model the search finds something
    for k in range(c):
        # every place where an example can change its prediction: the gaps, their midpoints, and a
        # fine grid; exact gaps are avoided (there the argmax tie rule decides)
        others = np.delete(s + offsets, k, axis=1)
        gaps = np.unique(np.max(others, axis=1) - s[:, k])
        trial = np.concatenate([(gaps[:-1] + gaps[1:]) / 2, [gaps[0] - 1.0, gaps[-1] + 1.0],
                                np.linspace(-5.0, 5.0, 2001) + 1e-7 * math.pi])
        trial = trial[~np.isin(trial, gaps)]
        best = 0.0
        for b in trial:
            moved = offsets.copy()
            moved[k] = b
            best = max(best, vector_metric(s, moved, ids, metric))
        assert best <= value + 1e-12, (k, best, value)


def test_best_threshold_vector_f1_is_macro_not_micro():
    """On a case where the two disagree, ``metric="f1"`` maximises macro F1 and ``"accuracy"`` the
    accuracy (= micro F1): the two offset vectors differ and each wins on its own metric."""
    s, ids = vector_case(12, n=80)
    o_f1, v_f1 = M.best_threshold_vector(s, ids, metric="f1", rounds=5)
    o_acc, v_acc = M.best_threshold_vector(s, ids, metric="accuracy", rounds=5)
    o_f1, o_acc = np.asarray(o_f1), np.asarray(o_acc)
    assert float(v_f1) == pytest.approx(skm.f1_score(ids, np.argmax(s + o_f1, axis=-1), average="macro"), abs=1e-12)
    assert float(v_acc) == pytest.approx(float(M.precision_recall_f1(s + o_acc, ids)[2]), abs=1e-12)
    assert float(v_f1) >= vector_metric(s, o_acc, ids, "f1")
    assert float(v_acc) >= vector_metric(s, o_f1, ids, "accuracy")
    assert float(v_f1) != pytest.approx(vector_metric(s, o_f1, ids, "accuracy"), abs=1e-3)


# ============================================================================================
# pearson
# ============================================================================================
def pearson_pair(seed=13, n=N):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, 0.5 * x + rng.normal(size=n)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pearson_affine_invariance_and_symmetry(metric_backend, dtype):
    be = metric_backend
    x, y = pearson_pair()
    r = host(be, M.pearson(be.from_numpy(x, dtype=dtype), be.from_numpy(y, dtype=dtype)))
    assert 0.2 < r < 0.9
    tol = dict(rtol=0, atol=2e-6 if dtype == "float32" else 1e-13)
    # large offsets only where the dtype keeps the digits of the scaled data (float32 rounds
    # 1e-3 x - 7 to ~5e-4 of its spread, which changes r itself)
    offset = -7.0 if dtype == "float64" else -7e-3
    maps = ((2.5, 0.0), (1e-3, offset), (1e3, 1e3), (-2.5, 0.0), (-1e3, 3.0))
    values = []
    for a, b in maps:
        xa = (a * x.astype(dtype) + b).astype(dtype)
        values.append(M.pearson(be.from_numpy(xa, dtype=dtype), be.from_numpy(y, dtype=dtype)))
        values.append(M.pearson(be.from_numpy(y, dtype=dtype), be.from_numpy(xa, dtype=dtype)))  # swapped
    got = hosts(be, values)
    for (a, _), xy, yx in zip(maps, got[::2], got[1::2]):
        assert_close(xy, math.copysign(1.0, a) * r, **tolerance(TOL, dtype, **tol))
        assert_close(yx, xy, **tolerance(TOL, dtype, rtol=0, atol=4 * EPS[dtype]))  # symmetric


@pytest.mark.parametrize("dtype", DTYPES)
def test_pearson_is_plus_or_minus_one_on_linear_data(metric_backend, dtype):
    be = metric_backend
    rng = np.random.default_rng(14)
    x_int = np.arange(N, dtype=np.float64)
    x_rand = rng.normal(size=N)
    pairs = [(x_int, 3 * x_int - 2, 1.0), (x_int, -0.5 * x_int + 7, -1.0), (x_rand, 2 * x_rand, 1.0),
             (x_rand, -4 * x_rand, -1.0), (x_int, x_int, 1.0)]
    got = hosts(be, [M.pearson(be.from_numpy(x, dtype=dtype), be.from_numpy(y, dtype=dtype)) for x, y, _ in pairs])
    for r, (_, _, sign) in zip(got, pairs):
        assert abs(r - sign) <= 4 * EPS[dtype], (r, sign)
        assert -1.0 <= r <= 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_pearson_constant_input_is_nan(metric_backend, dtype):
    be = metric_backend
    x, y = pearson_pair()
    c = np.full(N, 0.3)
    cases = [(c, y), (x, c), (c, c), (np.full(N, 1e4), y)]
    got = hosts(be, [M.pearson(be.from_numpy(a, dtype=dtype), be.from_numpy(b, dtype=dtype)) for a, b in cases]
                + [M.pearson(be.from_numpy(x, dtype=dtype), be.from_numpy(np.full(N, 3)))])  # integer constant y
    assert all(math.isnan(float(v)) for v in got), got
    # and a nearly constant input is not NaN
    nearly = c.astype(dtype)
    nearly[5] = np.nextafter(nearly[5], np.inf, dtype=nearly.dtype)
    r = host(be, M.pearson(be.from_numpy(nearly, dtype=dtype), be.from_numpy(x, dtype=dtype)))
    assert math.isfinite(float(r))


def exact_pearson(x, y):
    """r of the given float values in exact rational arithmetic (one rounding in the square root)."""
    x = [Fraction(float(v)) for v in x]
    y = [Fraction(float(v)) for v in y]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return math.copysign(math.sqrt(float(sxy * sxy / (sxx * syy))), 1.0 if sxy >= 0 else -1.0)


# magnitudes whose reciprocal is subnormal (|x| > 1 / tiny): the docstring promises that values
# near the dtype's overflow keep their digits
NEAR_OVERFLOW = {"float32": 1e38, "float64": 5e307}


def extreme_pairs(dtype):
    rng = np.random.default_rng(19)
    u = rng.uniform(1.0, 2.0, N) * rng.choice([-1.0, 1.0], N)
    y = (0.3 * u + rng.normal(size=N)).astype(dtype)
    big = (u * NEAR_OVERFLOW[dtype]).astype(dtype)
    small = (u * 4 * float(np.finfo(dtype).tiny)).astype(dtype)  # normal numbers near the underflow
    assert np.all(np.isfinite(big)) and np.all(np.abs(small) >= np.finfo(dtype).tiny)
    return [(big, y), (small, y), (y, big)]


def check_extreme_magnitudes(be, dtype):
    for x, y in extreme_pairs(dtype):
        r = host(be, M.pearson(be.from_numpy(x, dtype=dtype), be.from_numpy(y, dtype=dtype)))
        assert_close(r, exact_pearson(x, y), **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "torch", "tensorflow", "dask"])
def test_pearson_extreme_magnitudes(name, dtype):
    check_extreme_magnitudes(get(name), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pearson_extreme_magnitudes_jax(dtype):
    check_extreme_magnitudes(get("jax"), dtype)


def closed_form_gradient(x, y):
    dx, dy = x - x.mean(), y - y.mean()
    nx, ny = np.linalg.norm(dx), np.linalg.norm(dy)
    r = dx @ dy / (nx * ny)
    return r, dy / (nx * ny) - r * dx / nx**2, dx / (nx * ny) - r * dy / ny**2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["random", "offset 1e4", "scaled"])
def test_pearson_gradient_closed_form(autograd_backend, dtype, case):
    be = autograd_backend
    x, y = pearson_pair(15, n=24)
    if case == "offset 1e4":
        x = 1e4 + x
    elif case == "scaled":
        x, y = 1e-3 * x, 1e5 * y
    x, y = x.astype(dtype).astype(np.float64), y.astype(dtype).astype(np.float64)
    xb, yb = be.from_numpy(x, dtype=dtype), be.from_numpy(y, dtype=dtype)
    r, gx, gy = closed_form_gradient(x, y)
    value, (grad_x, grad_y) = be.value_and_grad(M.pearson, argnums=(0, 1))(xb, yb)
    rel = 1e-4 if dtype == "float32" and case == "offset 1e4" else (2e-5 if dtype == "float32" else 1e-10)
    assert_close(host(be, value), r, **tolerance(TOL, dtype))
    for got, want in ((grad_x, gx), (grad_y, gy)):
        got = host(be, got)
        np.testing.assert_allclose(got, want, rtol=0, atol=rel * np.max(np.abs(want)))
        # r does not change when every x_i moves by the same amount: the gradient sums to 0
        assert abs(np.sum(got)) <= rel * np.sum(np.abs(got))


# ============================================================================================
# spearman
# ============================================================================================
def spearman_cases():
    rng = np.random.default_rng(16)
    x = rng.normal(size=N)
    xt = grid(rng, (N,))
    yt = np.clip(xt + grid(rng, (N,), step=1.0), -2.0, 2.0)
    return {"random": (x, x + rng.normal(size=N)), "tied": (xt, yt)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_spearman_invariant_to_increasing_maps(metric_backend, dtype):
    be = metric_backend
    maps = {"exp": np.exp, "cube": lambda v: v**3, "affine": lambda v: 3 * v + 10, "arctan": np.arctan}
    for name, (x, y) in spearman_cases().items():
        xd = x.astype(dtype)
        rs = [M.spearman(be.from_numpy(xd, dtype=dtype), be.from_numpy(y, dtype=dtype))]
        for f in maps.values():
            fx = f(xd.astype(np.float64)).astype(dtype)
            # precondition: the map kept the order and the ties of x in this dtype
            assert np.array_equal(np.sign(fx[:, None] - fx[None, :]), np.sign(xd[:, None] - xd[None, :]))
            rs.append(M.spearman(be.from_numpy(fx, dtype=dtype), be.from_numpy(y, dtype=dtype)))
        rs.append(M.spearman(be.from_numpy(-xd, dtype=dtype), be.from_numpy(y, dtype=dtype)))
        got = hosts(be, rs)
        assert abs(float(got[0])) > 0.2
        for v in got[1:-1]:
            same(v, got[0])
        assert_close(got[-1], -got[0], **tolerance(TOL, dtype, rtol=0, atol=4 * EPS[dtype]))
        # Pearson itself is NOT invariant to these maps on this data: the test can tell them apart
        if name == "random":
            assert abs(float(M.pearson(np.exp(x), y)) - float(M.pearson(x, y))) > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_spearman_is_pearson_of_rankdata(metric_backend, dtype):
    be = metric_backend
    for x, y in spearman_cases().values():
        xd, yd = x.astype(dtype), y.astype(dtype)
        rx, ry = stats.rankdata(xd), stats.rankdata(yd)
        got = hosts(be, (M.spearman(be.from_numpy(xd, dtype=dtype), be.from_numpy(yd, dtype=dtype)),
                         M.pearson(be.from_numpy(rx, dtype=dtype), be.from_numpy(ry, dtype=dtype))))
        assert_close(got[0], got[1], **tolerance(TOL, dtype, rtol=0, atol=8 * EPS[dtype]))
        assert_close(got[0], stats.pearsonr(rx, ry).statistic, **tolerance(TOL, dtype))


def test_spearman_ranks_y_in_its_own_dtype(metric_backend):
    """Integers above 2^24 differ by 1 but are equal in float32: ``y`` is ranked as it is, not
    after a cast to ``x``'s dtype (which would tie them). Also float64 ``y`` next to float32 ``x``,
    and bool ``y``."""
    be = metric_backend
    rng = np.random.default_rng(14)
    x = rng.normal(size=N).astype(np.float32)
    cases = {"int64 above 2^24": 2**25 + rng.permutation(N),
             "float64 1 + k ulp": 1.0 + rng.permutation(N) * 2.0**-52,
             "bool": rng.random(N) < 0.5}
    for name, y in cases.items():
        assert len(np.unique(y.astype(np.float32))) < len(np.unique(y)) or y.dtype == bool, name
        expected = stats.spearmanr(x.astype(np.float64), y).statistic
        got = host(be, M.spearman(be.from_numpy(x), be.from_numpy(y)))
        assert_close(got, expected, **tolerance(TOL, "float32"), err_msg=name)
        state = M.Spearman()
        for part in (slice(0, 17), slice(17, N)):
            state.update(be.from_numpy(x[part]), be.from_numpy(y[part]))
        same(host(be, state.compute()), got)


# ============================================================================================
# leaderboard_mean
# ============================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
def test_leaderboard_means_ordered_and_equal_on_constant_rows(metric_backend, dtype):
    be = metric_backend
    rng = np.random.default_rng(17)
    board = rng.uniform(0.1, 1.0, (5, 6))
    board[2] = 0.625  # a constant row
    b = be.from_numpy(board, dtype=dtype)
    a, g, h = hosts(be, [M.leaderboard_mean(b, kind=k) for k in ("arithmetic", "geometric", "harmonic")])
    varied = np.arange(5) != 2
    assert np.all(a[varied] > g[varied]) and np.all(g[varied] > h[varied])
    assert np.all(a[varied] - h[varied] > 1e-3)
    for v in (a[2], g[2], h[2]):
        assert abs(v - 0.625) <= 4 * EPS[dtype] * 0.625


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaderboard_arithmetic_mean_near_the_largest_float(metric_backend, dtype):
    """Scores whose sum overflows still have a finite mean; infinite scores stay infinite; ordinary
    scores give NumPy's mean bit for bit (the scaling is by a power of two)."""
    be = metric_backend
    big = np.finfo(dtype).max
    scores = np.array([[big, big, big], [big, big / 2, 0.0], [0.7, 0.81, 0.93], [np.inf, 1.0, 2.0]], dtype=dtype)
    got = host(be, M.leaderboard_mean(be.from_numpy(scores, dtype=dtype)))
    assert_close(got[:2], [big, big / 2], **tolerance(TOL, dtype))
    own = host(be, be.namespace.mean(be.from_numpy(scores[2:3], dtype=dtype), axis=-1))  # the framework's own mean
    assert got[2] == own[0] and got[3] == np.inf, (got, own)


def test_leaderboard_mapping_equals_array_and_ignores_task_order():
    rng = np.random.default_rng(18)
    tasks = ["afqmc", "tnews", "iflytek", "cmnli", "wsc", "csl"]
    board = rng.uniform(0.2, 0.95, (4, 6))
    systems = [f"system {i}" for i in range(4)]
    mapping = {s: dict(zip(tasks, map(float, row))) for s, row in zip(systems, board)}
    shuffled = {}
    for s in systems[::-1]:  # systems in another order, each with its tasks in another order
        order = rng.permutation(len(tasks))
        shuffled[s] = {tasks[i]: mapping[s][tasks[i]] for i in order}
    assert list(shuffled[systems[0]]) != tasks
    for kind in ("arithmetic", "geometric", "harmonic"):
        as_array = np.asarray(M.leaderboard_mean(board, kind=kind))
        got = M.leaderboard_mean(mapping, kind=kind)
        assert list(got) == systems
        same([got[s] for s in systems], as_array)
        got_shuffled = M.leaderboard_mean(shuffled, kind=kind)
        assert list(got_shuffled) == systems[::-1]
        for s in systems:
            assert abs(got_shuffled[s] - got[s]) <= 4 * EPS["float64"] * got[s]

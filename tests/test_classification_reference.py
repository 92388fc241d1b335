"""Tests of the float64 oracle for the classification family (polyloss.reference.classification) itself.

Every expected value is a hand-derived closed form or an identity between the functions, so a
wrong oracle fails here before it is used to judge the backends. NumPy only, fast.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from polyloss import reference as R
from polyloss.reference import classification
from polyloss.testing import assert_close

EXACT = dict(rtol=1e-14, atol=0.0)  # the oracle's own closed forms: a few ulps

LOG2 = math.log(2.0)
INF = math.inf


def sp(x):
    """softplus, for closed forms (moderate x only)"""
    return math.log1p(math.exp(x))


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_docstring_examples():
    result = doctest.testmod(classification, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0


def test_exported():
    for name in classification.__all__:
        assert getattr(R, name) is getattr(classification, name)
        assert name in R.__all__


# ---------------------------------------------------------------------------------------------
# B1 softmax cross-entropy
# ---------------------------------------------------------------------------------------------


def test_softmax_ce_closed_forms():
    assert_close(R.softmax_crossentropy([[0.0, 0.0, 0.0]], [1]), [math.log(3.0)], **EXACT)
    # p = [1/4, 3/4]
    s = [[0.0, math.log(3.0)], [0.0, math.log(3.0)]]
    assert_close(R.softmax_crossentropy(s, [0, 1]), [math.log(4.0), math.log(4.0 / 3.0)], **EXACT)
    # probability labels (need not sum to 1) = Σ t_k (-log p_k)
    assert_close(
        R.softmax_crossentropy(s, [[0.5, 0.5], [1.0, 1.0]]),
        [0.5 * math.log(4.0) + 0.5 * math.log(4 / 3), math.log(4.0) + math.log(4 / 3)],
        **EXACT,
    )
    # one-hot bool / int labels equal class ids
    assert_close(
        R.softmax_crossentropy(s, np.array([[True, False], [False, True]])),
        R.softmax_crossentropy(s, [0, 1]),
        rtol=0,
        atol=0.0,
    )
    out = R.softmax_crossentropy(s, [0, 1])
    assert out.dtype == np.float64 and out.shape == (2,)


def test_softmax_ce_label_smoothing():
    # uniform logits: Σ t' = 1, so the loss is log C for every ε
    for eps in (0.0, 0.1, 1.0):
        assert_close(R.softmax_crossentropy([[1.0, 1.0, 1.0, 1.0]], [2], label_smoothing=eps), [math.log(4.0)], **EXACT)
    # p = [1/4, 3/4], y = 0, ε = 0.5: t' = [3/4, 1/4]
    s = [[0.0, math.log(3.0)]]
    expected = 0.75 * math.log(4.0) + 0.25 * math.log(4.0 / 3.0)
    assert_close(R.softmax_crossentropy(s, [0], label_smoothing=0.5), [expected], **EXACT)
    # = (1-ε) CE + ε mean(-lp)
    ce = R.softmax_crossentropy(s, [0])
    mean_nll = 0.5 * (math.log(4.0) + math.log(4.0 / 3.0))
    assert_close(R.softmax_crossentropy(s, [0], label_smoothing=0.3), 0.7 * ce + 0.3 * mean_nll, **EXACT)


def test_softmax_ce_where_and_neg_inf():
    s = np.array([[0.0, 0.0, 5.0]])
    w = np.array([True, True, False])
    # K = 2 valid classes: p = [1/2, 1/2]; smoothing spreads over the valid ones only
    assert_close(R.softmax_crossentropy(s, [0], where=w), [LOG2], **EXACT)
    assert_close(R.softmax_crossentropy(s, [0], where=w, label_smoothing=0.5), [LOG2], **EXACT)
    assert R.softmax_crossentropy(s, [2], where=w)[0] == INF  # label on a removed class
    assert R.softmax_crossentropy(s, [2], where=w, label_smoothing=0.5)[0] == INF
    assert_close(
        R.softmax_crossentropy(s, [2], where=w, label_smoothing=1.0), [LOG2], **EXACT
    )  # mass (1-ε)·1 = 0 there
    # -inf logits are removed classes
    s2 = np.array([[-INF, 0.0, 0.0]])
    assert_close(R.softmax_crossentropy(s2, [1]), [LOG2], **EXACT)
    assert R.softmax_crossentropy(s2, [0])[0] == INF
    assert_close(R.softmax_crossentropy(s2, [[0.0, 1.0, 0.0]]), [LOG2], **EXACT)
    assert R.softmax_crossentropy(s2, [[0.1, 0.9, 0.0]])[0] == INF
    # NaN at a removed position does not propagate; rows with no valid class give 0
    assert_close(
        R.softmax_crossentropy([[np.nan, 0.0, 0.0]], [1], where=np.array([False, True, True])), [LOG2], **EXACT
    )
    assert_close(
        R.softmax_crossentropy([[-INF, -INF], [3.0, 1.0]], [0, 0], where=np.array([[True, True], [False, False]])),
        [0.0, 0.0],
        **EXACT,
    )


def test_softmax_ce_ignore_index_and_axis():
    s = np.array([[0.0, math.log(3.0)], [1.0, 2.0], [np.nan, 1.0]])
    out = R.softmax_crossentropy(s, [0, -100, -100], ignore_index=-100)
    assert_close(out, [math.log(4.0), 0.0, 0.0], **EXACT)
    # ignore_index inside [0, C) is a valid ignore value too
    assert_close(R.softmax_crossentropy(s[:2], [0, 1], ignore_index=1), [math.log(4.0), 0.0], **EXACT)
    with pytest.raises(ValueError, match="class id 5"):
        R.softmax_crossentropy(s, [0, 5, 1], ignore_index=-100)
    # axis: classes on axis 0 of a [C, N] array, and on the middle axis of a [N, C, M] array
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3))
    y = np.array([0, 2, 1, 1])
    assert_close(R.softmax_crossentropy(x.T, y, axis=0), R.softmax_crossentropy(x, y), rtol=0, atol=0.0)
    x3 = rng.normal(size=(2, 3, 5))
    y3 = rng.integers(0, 3, size=(2, 5))
    ref = R.softmax_crossentropy(np.moveaxis(x3, 1, -1), y3)
    assert_close(R.softmax_crossentropy(x3, y3, axis=1), ref, rtol=0, atol=0.0)
    assert_close(R.softmax_crossentropy(x3, y3, axis=-2), ref, rtol=0, atol=0.0)


def test_softmax_ce_extreme_and_tiny():
    assert_close(
        R.softmax_crossentropy([[1e4, -1e4], [1e4, -1e4], [1e38, -1e38]], [0, 1, 1]), [0.0, 2e4, 2e38], **EXACT
    )
    # loss near 0 keeps its relative precision: log1p(e^-40)
    assert_close(R.softmax_crossentropy([[40.0, 0.0]], [0]), [math.log1p(math.exp(-40.0))], rtol=1e-15, atol=0.0)
    assert_close(R.softmax_crossentropy([[1e4 + 40.0, 1e4]], [0]), [math.log1p(math.exp(-40.0))], rtol=1e-15, atol=0.0)
    # shift invariance, with very large shifts
    s = np.array([[0.3, -1.2, 2.5]])
    assert_close(R.softmax_crossentropy(s + 1e4, [1]), R.softmax_crossentropy(s, [1]), rtol=1e-11, atol=0.0)


def test_softmax_ce_gradient_by_finite_differences():
    # ∂L/∂s = p - t: the oracle is smooth and accurate enough for central differences
    s = np.array([0.7, -1.3, 2.1, 0.0])
    y = 1
    p = np.exp(s - s.max())
    p /= p.sum()
    grad = p - np.eye(4)[y]
    h = 6e-6
    fd = []
    for k in range(4):
        e = np.zeros(4)
        e[k] = h
        fd.append((R.softmax_crossentropy([s + e], [y])[0] - R.softmax_crossentropy([s - e], [y])[0]) / (2 * h))
    assert_close(fd, grad, rtol=1e-8, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# B2 sigmoid cross-entropy
# ---------------------------------------------------------------------------------------------


def test_sigmoid_ce():
    assert_close(R.sigmoid_crossentropy([0.0, 0.0, 0.0], [0, 1, 0.25]), [LOG2, LOG2, LOG2], **EXACT)
    s = np.array([-3.0, -0.5, 0.0, 1.5, 4.0])
    t = np.array([0.0, 0.3, 1.0, 0.8, 1.0])
    assert_close(R.sigmoid_crossentropy(s, t), [sp(x) - tt * x for x, tt in zip(s, t)], rtol=1e-13, atol=0.0)
    # symmetry L(s, t) = L(-s, 1 - t)
    assert_close(R.sigmoid_crossentropy(-s, 1 - t), R.sigmoid_crossentropy(s, t), rtol=1e-15, atol=0.0)
    # extremes: sp(1e4) = 1e4, sp(-40) = log1p(e^-40) (relative precision kept), infinite logits
    assert_close(
        R.sigmoid_crossentropy([1e4, -1e4, 1e38, 40.0], [0, 1, 0, 1]),
        [1e4, 1e4, 1e38, math.log1p(math.exp(-40.0))],
        rtol=1e-15,
        atol=0.0,
    )
    assert R.sigmoid_crossentropy([-1e4], [0])[0] == 0.0
    out = R.sigmoid_crossentropy([INF, INF, -INF, -INF, np.nan], [1, 0, 0, 1, 1])
    assert list(out[:4]) == [0.0, INF, 0.0, INF] and math.isnan(out[4])
    assert R.sigmoid_crossentropy(2.0, 1).shape == ()


# ---------------------------------------------------------------------------------------------
# B3 focal loss
# ---------------------------------------------------------------------------------------------


def test_focal_gamma_zero_is_cross_entropy():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(5, 4)) * 3
    t = rng.random((5, 4))
    assert_close(R.focal_loss(s, t, gamma=0.0), R.sigmoid_crossentropy(s, t), rtol=1e-15, atol=0.0)
    y = rng.integers(0, 4, size=5)
    assert_close(
        R.focal_loss(s, y, gamma=0.0, activation="softmax"), R.softmax_crossentropy(s, y), rtol=1e-15, atol=0.0
    )
    # γ = 0 also where p = 1 exactly: (1 - 1)^0 = 1, times -log 1 = 0
    assert_close(R.focal_loss([[0.0, -INF]], [0], gamma=0.0, activation="softmax"), [0.0], **EXACT)


def test_focal_closed_forms():
    # s = 0, t = 1: α (1/2)^γ log 2
    assert_close(
        R.focal_loss([0.0, 0.0], [1, 0], gamma=2.0, alpha=0.25), [0.25 * 0.25 * LOG2, 0.75 * 0.25 * LOG2], **EXACT
    )
    assert_close(R.focal_loss([2.0], [1], gamma=1.5), [sig(-2.0) ** 1.5 * sp(-2.0)], **EXACT)
    # soft label: t·L(1) + (1-t)·L(0)
    l1 = R.focal_loss([0.7], [1.0], gamma=2.0, alpha=0.3)
    l0 = R.focal_loss([0.7], [0.0], gamma=2.0, alpha=0.3)
    assert_close(R.focal_loss([0.7], [0.4], gamma=2.0, alpha=0.3), 0.4 * l1 + 0.6 * l0, **EXACT)
    # softmax: p = [1/4, 3/4]
    s = [[0.0, math.log(3.0)]]
    assert_close(R.focal_loss(s, [0], gamma=2.0, activation="softmax"), [(0.75**2) * math.log(4.0)], **EXACT)
    assert_close(
        R.focal_loss(s, [1], gamma=2.0, alpha=[0.1, 0.9], activation="softmax"),
        [0.9 * 0.25**2 * math.log(4 / 3)],
        **EXACT,
    )
    assert_close(
        R.focal_loss(s, [[0.5, 0.5]], gamma=1.0, alpha=2.0, activation="softmax"),
        [2.0 * (0.5 * 0.75 * math.log(4.0) + 0.5 * 0.25 * math.log(4 / 3))],
        **EXACT,
    )
    # where / removed classes
    w = np.array([[True, True, False]])
    assert_close(R.focal_loss([[0.0, 0.0, 9.0]], [0], gamma=2.0, activation="softmax", where=w), [0.25 * LOG2], **EXACT)
    assert R.focal_loss([[0.0, 0.0, 9.0]], [2], activation="softmax", where=w)[0] == INF


def test_focal_extremes():
    # s = -1e4, t = 1: σ(1e4)^γ sp(1e4) = 1e4; s = 1e4, t = 1: 0 (no NaN for γ < 1)
    assert_close(R.focal_loss([-1e4, 1e4, 1e4, -1e4], [1, 1, 0, 0], gamma=0.5), [1e4, 0.0, 1e4, 0.0], **EXACT)
    # tiny: σ(-40)^2 sp(-40) ≈ e^-120 keeps its relative precision
    e = math.exp(-40.0)
    assert_close(R.focal_loss([40.0], [1], gamma=2.0), [(e / (1 + e)) ** 2 * math.log1p(e)], **EXACT)
    # softmax, 1 - p_0 = e^-40/(1 + e^-40) without cancellation
    assert_close(
        R.focal_loss([[40.0, 0.0]], [0], gamma=2.0, activation="softmax"), [(e / (1 + e)) ** 2 * math.log1p(e)], **EXACT
    )
    out = R.focal_loss([[1e4, -1e4], [-1e4, 1e4]], [0, 0], gamma=0.5, activation="softmax")
    assert_close(out, [0.0, 2e4], **EXACT)


# ---------------------------------------------------------------------------------------------
# B4 truncation
# ---------------------------------------------------------------------------------------------


def test_hard_truncation_sigmoid():
    # m = 1/2, s = 0, t = 1: λ = 1 - θ(1/2)θ(0) - θ(-1/2)θ(0) = 1 - 1/2 = 1/2
    assert_close(R.hard_truncation_loss([0.0], [1], m=0.5), [0.5 * LOG2], **EXACT)
    assert_close(R.hard_truncation_loss([0.0], [0], m=0.5), [0.5 * LOG2], **EXACT)
    # soft label 1/2 at m = 1/2, s = 0: λ = 1 - 1/4 - 1/4
    assert_close(R.hard_truncation_loss([0.0], [0.5], m=0.5), [0.5 * LOG2], **EXACT)
    # m = 0.6: positives with p > 0.6 and negatives with p < 0.4 are dropped
    s = np.array([1.0, 0.1, -1.0, 0.0, -0.1])
    t = np.array([1, 1, 0, 0, 0])
    assert_close(R.hard_truncation_loss(s, t, m=0.6), [0.0, sp(-0.1), 0.0, LOG2, sp(-0.1)], **EXACT)
    # m = 1: never truncates finite logits
    assert_close(R.hard_truncation_loss(s, t, m=1.0), R.sigmoid_crossentropy(s, t), rtol=0, atol=0.0)
    assert R.hard_truncation_loss([-1e4], [1])[0] == 1e4
    assert R.hard_truncation_loss([INF], [0.9])[0] == 0.0  # λ = 0 removes the +inf part


def test_hard_truncation_softmax():
    assert_close(
        R.hard_truncation_loss([[0.0, 0.0]], [0], m=0.5, activation="softmax"), [0.5 * LOG2], **EXACT
    )  # θ(0) = 1/2
    assert_close(R.hard_truncation_loss([[0.0, 0.0, 0.0]], [0], m=0.6, activation="softmax"), [math.log(3.0)], **EXACT)
    assert_close(R.hard_truncation_loss([[2.0, 0.0]], [0], m=0.6, activation="softmax"), [0.0], **EXACT)
    assert_close(R.hard_truncation_loss([[0.0, 2.0]], [0], m=0.6, activation="softmax"), [sp(2.0)], **EXACT)
    # m = 1 and a single valid class: p = 1 = m, θ(0) = 1/2, times -log 1 = 0
    assert_close(R.hard_truncation_loss([[3.0, -INF]], [0], m=1.0, activation="softmax"), [0.0], **EXACT)
    assert R.hard_truncation_loss([[3.0, -INF]], [1], activation="softmax")[0] == INF
    with pytest.raises(ValueError, match="class ids"):  # probability labels are not accepted
        R.hard_truncation_loss([[0.0, 1.0]], [[1.0, 0.0]], activation="softmax")
    with pytest.raises(TypeError):  # class ids must be integers
        R.hard_truncation_loss([[0.0, 1.0]], [1.0], activation="softmax")


def test_softened_truncation():
    rng = np.random.default_rng(3)
    s = np.concatenate([rng.normal(size=20) * 5, [1e4, -1e4, 0.0]])
    t = np.concatenate([rng.random(20), [1.0, 1.0, 0.5]])
    assert_close(
        R.softened_truncation_loss(s, t, k=1.0), R.focal_loss(s, t, gamma=1.0, alpha=None), rtol=1e-15, atol=0.0
    )
    assert_close(R.softened_truncation_loss(s, t, k=0.0), 0.5 * R.sigmoid_crossentropy(s, t), rtol=1e-15, atol=0.0)
    assert_close(R.softened_truncation_loss([2.0], [1], k=3.0), [sig(-6.0) * sp(-2.0)], **EXACT)
    assert_close(R.softened_truncation_loss([INF, -INF], [0, 1], k=0.0), [INF, INF], **EXACT)


# ---------------------------------------------------------------------------------------------
# B5 logit adjustment
# ---------------------------------------------------------------------------------------------


def test_logit_adjustment():
    rng = np.random.default_rng(4)
    s = rng.normal(size=(6, 3))
    y = rng.integers(0, 3, size=6)
    assert_close(R.logit_adjusted_crossentropy(s, y, [1 / 3] * 3), R.softmax_crossentropy(s, y), **EXACT)
    assert_close(R.logit_adjusted_crossentropy(s, y, [2.0, 2.0, 2.0], tau=0.7), R.softmax_crossentropy(s, y), **EXACT)
    prior = np.array([0.5, 0.3, 0.2])
    assert_close(R.logit_adjusted_crossentropy(s, y, prior, tau=0.0), R.softmax_crossentropy(s, y), rtol=0, atol=0.0)
    assert_close(
        R.logit_adjusted_crossentropy(s, y, prior, tau=1.5, label_smoothing=0.1),
        R.softmax_crossentropy(s + 1.5 * np.log(prior), y, label_smoothing=0.1),
        **EXACT,
    )
    # s = [0, 0], π = [3/4, 1/4]: adjusted logits [log 3/4, log 1/4] -> -log 3/4, -log 1/4
    assert_close(
        R.logit_adjusted_crossentropy([[0.0, 0.0]] * 2, [0, 1], [0.75, 0.25]), [-math.log(0.75), math.log(4.0)], **EXACT
    )
    assert_close(R.adjust_logits([[0.0, 1.0]], [0.5, 0.25], tau=2.0), [[2 * LOG2, 1.0 + 4 * LOG2]], **EXACT)
    assert_close(R.adjust_logits(s.T, prior, axis=0), R.adjust_logits(s, prior).T, rtol=0, atol=0.0)
    assert_close(R.adjust_logits(s + np.log(prior), prior), s, rtol=1e-14, atol=1e-15)
    adj = R.adjust_logits([[-INF, 0.0]], [0.5, 0.5])
    assert adj[0, 0] == -INF
    with pytest.raises(ValueError, match="prior"):
        R.adjust_logits(s, [0.5, 0.5])
    with pytest.raises(ValueError, match="prior"):
        R.logit_adjusted_crossentropy(s, y, [0.5, 0.0, 0.5])


# ---------------------------------------------------------------------------------------------
# B6 smoothed F1
# ---------------------------------------------------------------------------------------------


def test_smoothed_f1():
    # p = [1/2, 1/2], t = [1, 0]: F = 2·(1/2)/2 = 1/2
    assert_close(R.smoothed_f1_weighted_crossentropy([0.0, 0.0], [1, 0]), [0.75 * LOG2, 0.25 * LOG2], **EXACT)
    # p = [3/4, 1/4], t = [1, 0]: F = 2·(3/4)/2 = 3/4
    lg = math.log(3.0)
    assert_close(
        R.smoothed_f1_weighted_crossentropy([[lg, -lg]], [[1, 0]]),
        [[(1 - 3 / 8) * math.log(4 / 3), (3 / 8) * math.log(4 / 3)]],
        **EXACT,
    )
    # soft labels: p = [1/2, 3/4], t = [0.5, 0.2]: Σtp = 0.25 + 0.15, Σ(t+p) = 0.7 + 1.25
    f = 2 * 0.4 / 1.95
    expected = [
        0.5 * (1 - f / 2) * LOG2 + 0.5 * (f / 2) * LOG2,
        0.2 * (1 - f / 2) * math.log(4 / 3) + 0.8 * (f / 2) * math.log(4.0),
    ]
    assert_close(R.smoothed_f1_weighted_crossentropy([0.0, lg], [0.5, 0.2]), expected, **EXACT)
    # given F
    assert_close(R.smoothed_f1_weighted_crossentropy([0.0, 0.0], [1, 0], f1=1.0), [0.5 * LOG2, 0.5 * LOG2], **EXACT)
    assert_close(R.smoothed_f1_weighted_crossentropy([0.0, 0.0], [1, 0], f1=0.0), [LOG2, 0.0], **EXACT)
    # Σ(t + p) = 0: F = 0
    assert_close(R.smoothed_f1_weighted_crossentropy([-INF, -INF], [0, 0]), [0.0, 0.0], **EXACT)
    with pytest.raises(ValueError):
        R.smoothed_f1_weighted_crossentropy([0.0], [1], f1=1.5)


# ---------------------------------------------------------------------------------------------
# B7 PolyLoss
# ---------------------------------------------------------------------------------------------


def test_poly1_crossentropy():
    rng = np.random.default_rng(5)
    s = rng.normal(size=(4, 5))
    y = rng.integers(0, 5, size=4)
    assert_close(R.poly1_crossentropy(s, y, epsilon=0.0), R.softmax_crossentropy(s, y), rtol=0, atol=0.0)
    p = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    assert_close(
        R.poly1_crossentropy(s, y, epsilon=2.0),
        R.softmax_crossentropy(s, y) + 2 * (1 - p[np.arange(4), y]),
        rtol=1e-13,
        atol=0.0,
    )
    assert_close(R.poly1_crossentropy([[0.0, 0.0]], [0]), [LOG2 + 0.5], **EXACT)
    # smoothing: p = [1/4, 3/4], t' = [3/4, 1/4]: 1 - Σ t'p = 1 - 3/8
    s2 = [[0.0, math.log(3.0)]]
    assert_close(
        R.poly1_crossentropy(s2, [0], epsilon=1.0, label_smoothing=0.5),
        R.softmax_crossentropy(s2, [0], label_smoothing=0.5) + 0.625,
        **EXACT,
    )
    # 1 - p_0 tiny, no cancellation
    e = math.exp(-40.0)
    assert_close(R.poly1_crossentropy([[40.0, 0.0]], [0]), [math.log1p(e) + e / (1 + e)], rtol=1e-15, atol=0.0)
    assert_close(R.poly1_crossentropy([[1.0, 2.0]], [-1], ignore_index=-1), [0.0], **EXACT)
    assert R.poly1_crossentropy([[-INF, 0.0]], [0])[0] == INF


def test_poly1_focal():
    assert_close(
        R.poly1_focal_loss([0.0], [1], epsilon=1.0, gamma=2.0, alpha=0.25), [0.25 * 0.25 * LOG2 + 0.125], **EXACT
    )
    rng = np.random.default_rng(6)
    s = rng.normal(size=8) * 4
    t = rng.random(8)
    assert_close(
        R.poly1_focal_loss(s, t, epsilon=0.0, gamma=1.5, alpha=0.4),
        R.focal_loss(s, t, gamma=1.5, alpha=0.4),
        rtol=0,
        atol=0.0,
    )
    poly = np.array([tt * sig(-x) ** 3 + (1 - tt) * sig(x) ** 3 for x, tt in zip(s, t)])
    assert_close(
        R.poly1_focal_loss(s, t, epsilon=-0.5, gamma=2.0, alpha=None),
        R.focal_loss(s, t, gamma=2.0) - 0.5 * poly,
        rtol=1e-13,
        atol=0.0,
    )
    # softmax: p = [1/4, 3/4], y = 0
    s2 = [[0.0, math.log(3.0)]]
    assert_close(
        R.poly1_focal_loss(s2, [0], epsilon=1.0, gamma=2.0, alpha=None, activation="softmax"),
        [0.75**2 * math.log(4.0) + 0.75**3],
        **EXACT,
    )
    assert_close(
        R.poly1_focal_loss(s2, [0], epsilon=1.0, gamma=0.0, alpha=None, activation="softmax"),
        R.poly1_crossentropy(s2, [0], epsilon=1.0),
        **EXACT,
    )
    assert_close(R.poly1_focal_loss([1e4, -1e4], [1, 1], gamma=0.5), [0.0, 0.25 * 1e4 + 1.0], **EXACT)


# ---------------------------------------------------------------------------------------------
# B8 flooding
# ---------------------------------------------------------------------------------------------


def test_flooding():
    out = R.flooding([0.5, 0.9], 0.5)
    assert out.shape == () and out.dtype == np.float64
    assert_close(out, 0.7, **EXACT)  # above the level: the mean
    assert_close(R.flooding([0.1, 0.3], 0.5), 0.8, **EXACT)  # below: 2b - mean
    assert_close(R.flooding([[0.2, 5.0], [0.4, 7.0]], 0.5, where=np.array([True, False])), 0.7, **EXACT)
    assert_close(R.flooding([1.0, 2.0], 0.5, where=np.array([False, False])), 1.0, **EXACT)  # no entries: mean 0 -> 2b
    assert_close(R.flooding([0.25], 0.0), 0.25, **EXACT)
    with pytest.raises(ValueError, match="level"):
        R.flooding([1.0], -0.1)


# ---------------------------------------------------------------------------------------------
# B9 R-Drop
# ---------------------------------------------------------------------------------------------


def _direct_rdrop(a, b):
    pa = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
    pb = np.exp(b - b.max()) / np.exp(b - b.max()).sum()
    return 0.5 * (np.sum(pa * np.log(pa / pb)) + np.sum(pb * np.log(pb / pa)))


def test_rdrop_divergence_values():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(5, 4))
    b = rng.normal(size=(5, 4))
    d = R.rdrop_divergence(a, b)
    assert_close(d, [_direct_rdrop(x, y) for x, y in zip(a, b)], rtol=1e-12, atol=0.0)
    assert_close(R.rdrop_divergence(b, a), d, rtol=1e-15, atol=0.0)  # symmetric
    assert np.all(R.rdrop_divergence(a, a) == 0.0)  # 0 at equality, exactly
    assert_close(R.rdrop_divergence(a + 3.0, b - 1e4), d, rtol=1e-10, atol=0.0)  # softmax is shift invariant
    # hand value: p_a = [1/2, 1/2], p_b = [3/4, 1/4]
    assert_close(R.rdrop_divergence([[0.0, 0.0]], [[math.log(3.0), 0.0]]), [0.125 * (math.log(1.5) + LOG2)], **EXACT)
    # nearly equal inputs: D ≈ ½ δᵀ(diag p - p pᵀ) δ, relative error O(|δ|)
    delta = rng.normal(size=4) * 1e-6
    p = np.exp(a[0]) / np.exp(a[0]).sum()
    quad = 0.5 * (np.sum(p * delta**2) - np.sum(p * delta) ** 2)
    assert_close(R.rdrop_divergence(a[:1], a[:1] + delta), [quad], rtol=1e-4, atol=0.0)


def test_rdrop_divergence_masks():
    a = np.array([[0.5, -INF, 1.0]])
    b = np.array([[-0.5, -INF, 2.0]])
    assert_close(R.rdrop_divergence(a, b), R.rdrop_divergence(a[:, [0, 2]], b[:, [0, 2]]), rtol=0, atol=0.0)
    assert R.rdrop_divergence([[0.0, -INF]], [[0.0, 1.0]])[0] == INF
    w = np.array([True, False, True])
    assert_close(
        R.rdrop_divergence([[0.5, 9.0, 1.0]], [[-0.5, -9.0, 2.0]], where=w), R.rdrop_divergence(a, b), rtol=0, atol=0.0
    )
    assert_close(
        R.rdrop_divergence(
            [[-INF, -INF], [1.0, 2.0]], [[-INF, -INF], [3.0, 4.0]], where=np.array([[True, True], [False, False]])
        ),
        [0.0, 0.0],
        **EXACT,
    )
    assert math.isnan(R.rdrop_divergence([[np.nan, 0.0]], [[0.0, 0.0]])[0])
    assert_close(R.rdrop_divergence([[1e4, -1e4]], [[-1e4, 1e4]]), [2e4], **EXACT)


def test_rdrop_loss():
    rng = np.random.default_rng(8)
    a = rng.normal(size=(3, 4))
    b = rng.normal(size=(3, 4))
    y = np.array([0, 3, 2])
    expected = R.softmax_crossentropy(a, y) + R.softmax_crossentropy(b, y) + 4.0 * R.rdrop_divergence(a, b)
    assert_close(R.rdrop_loss(a, b, y), expected, rtol=1e-15, atol=0.0)
    assert_close(
        R.rdrop_loss(a, b, y, alpha=0.0), R.softmax_crossentropy(a, y) + R.softmax_crossentropy(b, y), rtol=0, atol=0.0
    )
    out = R.rdrop_loss(a, b, np.array([0, -1, 2]), ignore_index=-1, label_smoothing=0.2)
    assert out[1] == 0.0
    assert_close(
        out[[0, 2]],
        (
            R.softmax_crossentropy(a, y, label_smoothing=0.2)
            + R.softmax_crossentropy(b, y, label_smoothing=0.2)
            + 4.0 * R.rdrop_divergence(a, b)
        )[[0, 2]],
        rtol=1e-15,
        atol=0.0,
    )
    assert_close(R.rdrop_loss([[0.0, 0.0]], [[0.0, 0.0]], [1]), [2 * LOG2], **EXACT)


# ---------------------------------------------------------------------------------------------
# B10 squareplus
# ---------------------------------------------------------------------------------------------


def test_squareplus():
    assert_close(R.squareplus(0.0, b=4.0), 1.0, **EXACT)
    assert_close(R.squareplus([0.0, 3.0, -3.0], b=16.0), [2.0, 4.0, 1.0], **EXACT)  # (±3 + 5)/2
    x = np.concatenate([np.linspace(-30, 30, 601), [-1e30, -1e4, 1e4, 1e30, -1e300, 1e300]])
    y = R.squareplus(x)
    assert np.all(y > 0) and np.all(np.isfinite(y))
    assert_close(y * R.squareplus(-x), np.ones_like(x), rtol=1e-15, atol=0.0)  # sq(x)·sq(-x) = b/4
    assert_close(y[:601] - R.squareplus(-x[:601]), x[:601], rtol=1e-14, atol=1e-14)  # sq(x) - sq(-x) = x
    assert_close(R.squareplus([-1e30, 1e30, -1e300]), [1e-30, 1e30, 1e-300], rtol=1e-15, atol=0.0)
    # b ≥ 4 ln²2 makes it ≥ softplus (touching at 0); b ≈ 1.52382 is within 0.0759 of it
    g = np.linspace(-20, 20, 4001)
    soft = np.array([sp(v) for v in g])
    assert np.all(R.squareplus(g, b=4 * LOG2**2) >= soft * (1 - 1e-15))
    err = np.max(np.abs(R.squareplus(g, b=1.52382) - soft))
    assert abs(err - 0.0759) < 5e-4
    assert R.squareplus(-np.inf)[()] == 0.0 and R.squareplus(np.inf)[()] == INF


# ---------------------------------------------------------------------------------------------
# NaN, validation
# ---------------------------------------------------------------------------------------------


def test_nan_inputs_give_nan():
    row = [[np.nan, 0.0]]
    for f in (R.softmax_crossentropy, R.poly1_crossentropy):
        assert math.isnan(f(row, [1])[0])
    for act in ("sigmoid", "softmax"):
        x, lab = (row, [1]) if act == "softmax" else ([np.nan], [1])
        assert math.isnan(R.focal_loss(x, lab, activation=act)[0])
        assert math.isnan(R.hard_truncation_loss(x, lab, activation=act)[0])
        assert math.isnan(R.poly1_focal_loss(x, lab, activation=act)[0])
    assert math.isnan(R.sigmoid_crossentropy([0.0], [np.nan])[0])
    assert math.isnan(R.softened_truncation_loss([np.nan], [1])[0])
    assert np.all(np.isnan(R.smoothed_f1_weighted_crossentropy([np.nan, 0.0], [1, 0])))
    assert math.isnan(R.flooding([np.nan, 1.0], 0.5)[()])
    assert math.isnan(R.squareplus(np.nan)[()])


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: R.focal_loss([0.0], [1], gamma=-1.0), ValueError),
        (lambda: R.focal_loss([0.0], [1], alpha=1.5), ValueError),
        (lambda: R.focal_loss([[0.0, 1.0]], [0], alpha=[0.5], activation="softmax"), ValueError),
        (lambda: R.focal_loss([0.0], [1], activation="relu"), ValueError),
        (lambda: R.focal_loss([0.0], [1], where=np.array([True])), ValueError),
        (lambda: R.hard_truncation_loss([0.0], [1], m=0.4), ValueError),
        (lambda: R.hard_truncation_loss([0.0], [1], m=1.1), ValueError),
        (lambda: R.softened_truncation_loss([0.0], [1], k=-1.0), ValueError),
        (lambda: R.softmax_crossentropy([[0.0, 1.0]], [0], label_smoothing=1.5), ValueError),
        (lambda: R.softmax_crossentropy([[0.0, 1.0]], [2]), ValueError),
        (lambda: R.softmax_crossentropy([[0.0, 1.0]], [-1]), ValueError),
        (lambda: R.softmax_crossentropy([[0.0, 1.0]], [[0.5, 1.5]]), ValueError),
        (lambda: R.softmax_crossentropy([[0.0, 1.0]], [[[1.0, 0.0]]]), ValueError),
        (lambda: R.softmax_crossentropy([[0.0, 1.0]], [0.0]), TypeError),
        (lambda: R.softmax_crossentropy([[True, False]], [0]), TypeError),
        (lambda: R.softmax_crossentropy([[0.0, 1.0]], [0], where=np.array([1, 0])), TypeError),
        (lambda: R.softmax_crossentropy([[0.0, 1.0]], [0], axis=2), ValueError),
        (lambda: R.sigmoid_crossentropy([0.0], [2.0]), ValueError),
        (lambda: R.sigmoid_crossentropy([0.0, 1.0], [1]), ValueError),
        (lambda: R.sigmoid_crossentropy(["a"], [1]), TypeError),
        (lambda: R.flooding([1.0], -1.0), ValueError),
        (lambda: R.squareplus([1.0], b=0.0), ValueError),
        (lambda: R.squareplus([1.0], b=-4.0), ValueError),
        (lambda: R.squareplus([1.0], b="4"), TypeError),
        (lambda: R.adjust_logits([[0.0, 1.0]], [0.5, -0.5]), ValueError),
        (lambda: R.rdrop_divergence([[0.0, 1.0]], [[0.0, 1.0, 2.0]]), ValueError),
    ],
)
def test_invalid_arguments(call, error):
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------------------------------------
# accuracy against high precision (mpmath), when available
# ---------------------------------------------------------------------------------------------


def test_accuracy_against_mpmath():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 400
    rng = np.random.default_rng(9)
    eps64 = 2.0**-52

    def rel(got, want):
        want = mp.mpf(want)
        if abs(want) < mp.mpf("1e-290"):
            return 0.0 if abs(got) < 1e-290 else 1.0
        return float(abs((mp.mpf(float(got)) - want) / want))

    worst = 0.0
    for trial in range(40):
        scale = (1.0, 30.0, 300.0, 1e-3)[trial % 4]
        c = int(rng.integers(2, 5))
        s = rng.normal(size=c) * scale
        b = s + rng.normal(size=c) * (1.0, 1e-4)[trial % 2]
        y = int(rng.integers(0, c))
        lse = mp.log(mp.fsum(mp.exp(mp.mpf(v)) for v in s))
        lp = [mp.mpf(v) - lse for v in s]
        p = [mp.exp(v) for v in lp]
        lseb = mp.log(mp.fsum(mp.exp(mp.mpf(v)) for v in b))
        lpb = [mp.mpf(v) - lseb for v in b]
        pb = [mp.exp(v) for v in lpb]
        x = mp.mpf(float(s[0]))
        sp_mp = lambda v: mp.log1p(mp.exp(v))  # noqa: E731
        checks = [
            (R.softmax_crossentropy([s], [y])[0], -lp[y]),
            (R.focal_loss([s], [y], gamma=2.0, activation="softmax")[0], (1 - p[y]) ** 2 * -lp[y]),
            (R.poly1_crossentropy([s], [y])[0], -lp[y] + 1 - p[y]),
            (R.rdrop_divergence([s], [b])[0], mp.fsum((u - v) * (lu - lv) for u, v, lu, lv in zip(p, pb, lp, lpb)) / 2),
            (
                R.focal_loss([float(x)], [1], gamma=0.5, alpha=0.25)[0],
                mp.mpf("0.25") * (1 / (1 + mp.exp(x))) ** mp.mpf("0.5") * sp_mp(-x),
            ),
            (R.sigmoid_crossentropy([float(x)], [0.0])[0], sp_mp(x)),
            (R.squareplus([float(x)])[0], (x + mp.sqrt(x * x + 4)) / 2),
        ]
        for got, want in checks:
            worst = max(worst, rel(got, want))
    assert worst < 8 * eps64, worst / eps64

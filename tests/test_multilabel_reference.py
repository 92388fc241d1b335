"""Tests of the float64 oracle for the multi-label family (polyloss.reference.multilabel) itself.

Every expected value is a closed form derived by hand (written beside it) or an identity between the
functions, so a wrong oracle fails here before it judges the backends. NumPy only, fast.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from polyloss import reference as R
from polyloss.reference import multilabel
from polyloss.testing import assert_close

EXACT = dict(rtol=1e-14, atol=0.0)  # the oracle's own closed forms: a few ulps
INF = math.inf


def log1p_exp_sum(*exponents):
    """log(1 + Σ e^x) for moderate x, written out."""
    return math.log1p(sum(math.exp(x) for x in exponents))


def test_docstring_examples():
    result = doctest.testmod(multilabel, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_exported():
    for name in multilabel.__all__:
        assert getattr(R, name) is getattr(multilabel, name)


def test_hard_labels_closed_form():
    # row 0: positives {2.0, 0.5}, negative {-1.0}: log(1 + e^{-1}) + log(1 + e^{-2} + e^{-0.5})
    # row 1: positive {4.0}, negatives {-3.0, -2.0}: log(1 + e^{-3} + e^{-2}) + log(1 + e^{-4})
    s = [[2.0, -1.0, 0.5], [-3.0, 4.0, -2.0]]
    y = [[1, 0, 1], [0, 1, 0]]
    want = [log1p_exp_sum(-1.0) + log1p_exp_sum(-2.0, -0.5), log1p_exp_sum(-3.0, -2.0) + log1p_exp_sum(-4.0)]
    assert_close(R.multilabel_crossentropy(s, y), want, **EXACT)
    assert_close(R.multilabel_crossentropy(s, np.array(y, dtype=bool)), want, **EXACT)
    # no positive: only the negative term; no negative: only the positive term
    assert_close(R.multilabel_crossentropy([[1.0, 2.0]], [[0, 0]]), [log1p_exp_sum(1.0, 2.0)], **EXACT)
    assert_close(R.multilabel_crossentropy([[1.0, 2.0]], [[1, 1]]), [log1p_exp_sum(-1.0, -2.0)], **EXACT)


def test_soft_labels_closed_form_and_hard_limit():
    # s = 0 everywhere, t = 1/2 on C = 4 classes: both sums are Σ 1/2 = 2, so L = 2 log 3
    assert_close(R.multilabel_crossentropy(np.zeros((1, 4)), np.full((1, 4), 0.5)), [2 * math.log(3.0)], **EXACT)
    # t = 0.25 on one class at s = 1: log(1 + 0.75 e^{1}) + log(1 + 0.25 e^{-1})
    assert_close(R.multilabel_crossentropy([[1.0]], [[0.25]]),
                 [math.log1p(0.75 * math.e) + math.log1p(0.25 / math.e)], **EXACT)
    # labels 0 and 1 as floats give the hard values exactly
    s = np.random.default_rng(0).normal(0, 3, (4, 6))
    y = np.random.default_rng(1).random((4, 6)) < 0.4
    assert_close(R.multilabel_crossentropy(s, y.astype(float)), R.multilabel_crossentropy(s, y), rtol=0.0, atol=0.0)


def test_soft_loss_is_minimised_at_sigmoid_of_twice_the_logit():
    # d/ds [log(1 + (1 - t) e^s) + log(1 + t e^{-s})] = 0 at t = σ(2s) for one class
    for t in (0.1, 0.5, 0.9):
        s = 0.5 * math.log(t / (1 - t))
        h = 1e-5
        left = R.multilabel_crossentropy([[s - h]], [[t]])[0]
        right = R.multilabel_crossentropy([[s + h]], [[t]])[0]
        centre = R.multilabel_crossentropy([[s]], [[t]])[0]
        assert abs(right - left) < 1e-9 and centre <= min(left, right)


def test_masks_and_padding_drop_entries():
    s = [[2.0, -1.0, 0.5]]
    y = [[1, 0, 1]]
    # where=False on class 1 removes the only negative: log(1 + e^{-2} + e^{-0.5})
    assert_close(R.multilabel_crossentropy(s, y, where=np.array([True, False, True])), [log1p_exp_sum(-2.0, -0.5)],
                 **EXACT)
    # a -inf logit is padding: dropped even with a positive label, and NaN labels under it are ignored
    assert_close(R.multilabel_crossentropy([[2.0, -INF, 0.5]], [[1, 1, 1]]), [log1p_exp_sum(-2.0, -0.5)], **EXACT)
    # a fully masked row gives 0
    assert_close(R.multilabel_crossentropy(s, y, where=np.zeros((1, 3), bool)), [0.0], rtol=0.0, atol=0.0)
    # garbage under the mask does not leak
    assert_close(R.multilabel_crossentropy([[2.0, math.nan, 0.5]], [[1, 0, 1]], where=np.array([True, False, True])),
                 [log1p_exp_sum(-2.0, -0.5)], **EXACT)


def test_nan_in_nan_out_and_extreme_logits():
    assert math.isnan(R.multilabel_crossentropy([[math.nan, 0.0]], [[1, 0]])[0])
    # log(1 + e^{1e4}) = 1e4 + log1p(e^{-1e4}) = 1e4 exactly in float64, twice
    assert R.multilabel_crossentropy([[1e4, -1e4]], [[0, 1]])[0] == 2e4
    # a loss near 0 keeps its digits: log1p(e^{-40}) + log1p(e^{-40})
    assert_close(R.multilabel_crossentropy([[40.0, -40.0]], [[1, 0]]), [2 * math.log1p(math.exp(-40.0))], **EXACT)


def test_class_axes():
    s = np.random.default_rng(2).normal(size=(2, 5, 3))
    y = np.random.default_rng(3).random((2, 5, 3)) < 0.5
    moved = R.multilabel_crossentropy(np.moveaxis(s, 1, -1), np.moveaxis(y, 1, -1))
    assert_close(R.multilabel_crossentropy(s, y, axis=1), moved, rtol=0.0, atol=0.0)
    flat = R.multilabel_crossentropy(s.reshape(2, 15), y.reshape(2, 15))
    assert_close(R.multilabel_crossentropy(s, y, axis=(1, 2)), flat, rtol=0.0, atol=0.0)


def test_sparse_equals_dense():
    s = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, -2.0]])
    dense = R.multilabel_crossentropy(s, [[1, 0, 1], [0, 1, 0]])
    assert_close(R.sparse_multilabel_crossentropy(s, [[0, 2], [1, -1]], pad_index=-1), dense, **EXACT)
    assert_close(R.sparse_multilabel_crossentropy(s, [[2, 0], [1, -1]], pad_index=-1), dense, **EXACT)  # any order
    with pytest.raises(ValueError):
        R.sparse_multilabel_crossentropy(s, [[0, 0], [1, -1]], pad_index=-1)  # a class listed twice
    with pytest.raises(ValueError):
        R.sparse_multilabel_crossentropy(s, [[0, 3], [1, -1]], pad_index=-1)  # out of range


def test_global_pointer_closed_form_and_sparse():
    # one sentence of 3 tokens, L = 4: 6 valid spans scored 0; type 0 has the gold span (0, 1):
    # log(1 + 5) + log(1 + 1); type 1 has none: log(1 + 6)
    seq = np.array([[True, True, True, False]])
    mask = R.global_pointer_mask(seq)
    assert mask.shape == (1, 1, 4, 4) and int(mask.sum()) == 6
    logits = np.where(mask, np.zeros((1, 2, 4, 4)), -np.inf)
    labels = np.zeros((1, 2, 4, 4))
    labels[0, 0, 0, 1] = 1
    want = [[math.log(6.0) + math.log(2.0), math.log(7.0)]]
    assert_close(R.global_pointer_crossentropy(logits, labels), want, **EXACT)
    spans = np.array([[[[0, 1]], [[-1, -1]]]])
    assert_close(R.sparse_global_pointer_crossentropy(logits, spans, pad_index=-1), want, **EXACT)


def test_global_pointer_mask():
    mask = R.global_pointer_mask(np.array([[True, True, False]]))[0, 0].astype(int)
    np.testing.assert_array_equal(mask, [[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    both = R.global_pointer_mask(np.array([[True, True, False]]), lower_triangle=True)[0, 0].astype(int)
    np.testing.assert_array_equal(both, [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_divergence_closed_form_and_properties():
    # one class: (σ(1) - σ(0)) (1 - 0)
    sig1 = 1 / (1 + math.exp(-1.0))
    assert_close(R.multilabel_divergence([[1.0, -2.0]], [[0.0, -2.0]]), [(sig1 - 0.5) * 1.0], **EXACT)
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 3, (5, 7)), rng.normal(0, 3, (5, 7))
    d_ab, d_ba = R.multilabel_divergence(a, b), R.multilabel_divergence(b, a)
    assert_close(d_ab, d_ba, rtol=1e-15, atol=0.0)
    assert np.all(d_ab > 0) and np.all(R.multilabel_divergence(a, a) == 0.0)
    # the sum over classes of the symmetric binary KL between [σ(s), 1 - σ(s)] and [σ(t), 1 - σ(t)]
    p, q = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b))
    kl_pq = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    kl_qp = q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))
    kl = kl_pq + kl_qp
    assert_close(d_ab, kl.sum(-1), rtol=1e-12, atol=0.0)
    # equal -inf padding contributes 0; -inf on one side only is +inf
    assert_close(R.multilabel_divergence([[1.0, -INF]], [[0.0, -INF]]), [(sig1 - 0.5)], **EXACT)
    assert R.multilabel_divergence([[1.0, -INF]], [[0.0, 2.0]])[0] == INF


def test_reduce():
    assert R.reduce(np.array([1.0, 2.0, 30.0]), where=np.array([True, True, False])) == 1.5
    assert R.reduce(np.array([1.0, 2.0]), weights=np.array([3.0, 1.0])) == 1.25  # (3 + 2) / 4
    assert R.reduce(np.array([1.0, 2.0]), "sum") == 3.0
    assert R.reduce(np.array([5.0]), where=np.array([False])) == 0.0  # no valid entry: 0

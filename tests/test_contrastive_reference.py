"""Tests of the float64 oracle for the contrastive family (polyloss.reference.contrastive) itself.

Every expected value is a hand-derived closed form, an identity between the functions, or a
high-precision mpmath evaluation of the formula, so a wrong oracle fails here before it is used to
judge the backends. NumPy only, fast.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from polyloss import reference as R
from polyloss.reference import contrastive
from polyloss.testing import assert_close

EXACT = dict(rtol=1e-14, atol=0.0)  # the oracle's own closed forms: a few ulps

INF = math.inf
NAN = math.nan
LOG2 = math.log(2.0)
LOG3 = math.log(3.0)
EPS64 = 2.0**-52


def log1p_sum_exp(xs):
    """log(1 + Σ e^x) for moderate x (closed forms in the tests)."""
    return math.log1p(math.fsum(math.exp(x) for x in xs))


def test_docstring_examples():
    result = doctest.testmod(contrastive, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0


def test_exported():
    assert len(contrastive.__all__) == 8
    for name in contrastive.__all__:
        assert getattr(R, name) is getattr(contrastive, name)
        assert name in R.__all__
    assert len(set(R.__all__)) == len(R.__all__)


# ---------------------------------------------------------------------------------------------
# C1 InfoNCE
# ---------------------------------------------------------------------------------------------


def test_infonce_closed_forms():
    assert_close(R.infonce([[0.0, 0.0, 0.0]], [1]), [LOG3], **EXACT)
    s = [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.5, -0.5, 0.0]]
    expected = [
        log1p_sum_exp([1.0, 2.0]),  # t = 0: e^{2-1}, e^{3-1}
        log1p_sum_exp([-1.0, 1.0]),
        log1p_sum_exp([1.0, 0.5]),  # t = 1: e^{0.5-(-0.5)}, e^{0-(-0.5)}
    ]
    out = R.infonce(s, [0, 1, 1])
    assert_close(out, expected, **EXACT)
    assert out.dtype == np.float64 and out.shape == (3,)
    # = -log softmax
    z = math.exp(1.0) + math.exp(2.0) + math.exp(3.0)
    assert_close(R.infonce([[1.0, 2.0, 3.0]], [2]), [-math.log(math.exp(3.0) / z)], **EXACT)
    # 1-D scores, 0-d index -> 0-d result
    out0 = R.infonce([0.0, math.log(3.0)], 0)
    assert out0.shape == () and out0.dtype == np.float64
    assert_close(out0, math.log(4.0), **EXACT)
    # a single candidate: the loss is 0
    assert_close(R.infonce([[7.0]], [0]), [0.0], rtol=1e-14, atol=0)


def test_infonce_axis_and_batch_shape():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(2, 5, 3))
    t = rng.integers(0, 5, size=(2, 3))
    got = R.infonce(s, t, axis=1)
    assert got.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            row = s[i, :, j]
            k = t[i, j]
            assert_close(got[i, j], log1p_sum_exp([row[c] - row[k] for c in range(5) if c != k]), **EXACT)
    assert_close(R.infonce(np.moveaxis(s, 1, -1), t), got, rtol=0, atol=0.0)
    assert_close(R.infonce(s, t, axis=-2), got, rtol=0, atol=0.0)


def test_infonce_where_neg_inf_nan_empty():
    s = [[0.0, 0.0, 5.0]]
    # removing the 5.0 leaves two equal candidates
    assert_close(R.infonce(s, [0], where=np.array([True, True, False])), [LOG2], **EXACT)
    assert_close(R.infonce([[0.0, 0.0, -INF]], [0]), [LOG2], **EXACT)
    # NaN / +inf under a False where are ignored
    for bad in (NAN, INF, -INF):
        assert_close(R.infonce([[0.0, 0.0, bad]], [0], where=np.array([True, True, False])), [LOG2], **EXACT)
    # where broadcasts
    w = np.array([[True, True, False]])
    assert_close(R.infonce([[0.0, 0.0, 5.0], [0.0, 0.0, 9.0]], [0, 1], where=w), [LOG2, LOG2], **EXACT)
    # positive removed -> +inf; no valid entry -> 0
    assert R.infonce(s, [2], where=np.array([True, True, False]))[0] == INF
    assert R.infonce([[0.0, -INF]], [1])[0] == INF
    assert R.infonce([[1.0, 2.0]], [0], where=np.array([False, False]))[0] == 0.0
    assert R.infonce([[-INF, -INF]], [0])[0] == 0.0
    # NaN / +inf participating -> NaN
    assert math.isnan(R.infonce([[NAN, 0.0]], [1])[0])
    assert math.isnan(R.infonce([[0.0, NAN]], [1])[0])
    assert math.isnan(R.infonce([[INF, 0.0]], [1])[0])
    # empty batch, empty class axis with no rows
    assert R.infonce(np.zeros((0, 3)), np.zeros((0,), dtype=int)).shape == (0,)


# ---------------------------------------------------------------------------------------------
# C1 in-batch InfoNCE from embeddings
# ---------------------------------------------------------------------------------------------


def test_infonce_from_embeddings_diagonal():
    e = np.eye(3)
    for tau in (1.0, 0.05, 0.5):
        # orthogonal unit vectors: S = I / τ, loss = log(e^{1/τ} + 2) - 1/τ = log1p(2 e^{-1/τ})
        want = math.log1p(2.0 * math.exp(-1.0 / tau))
        assert_close(R.infonce_from_embeddings(e[:2], e, temperature=tau), [want, want], **EXACT)
        # scaling the rows does not matter when normalising
        assert_close(
            R.infonce_from_embeddings(3.0 * e[:2], np.diag([0.5, 7.0, 2.0]), temperature=tau), [want, want], **EXACT
        )
    # N = B = 2 with cosine 1/√2 between a_0 and b_1:
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [0.0, 5.0]])
    # row 0: cos(a0, b0) = 1, cos(a0, b1) = 0; row 1: cos(a1, b0) = cos(a1, b1) = 1/√2
    assert_close(R.infonce_from_embeddings(a, b, temperature=1.0), [math.log1p(math.exp(-1.0)), LOG2], **EXACT)
    assert_close(R.infonce_from_embeddings(a, b, temperature=0.25), [math.log1p(math.exp(-4.0)), LOG2], **EXACT)
    # normalize=False: raw dot products / τ
    a = np.array([[2.0, 0.0], [0.0, 1.0]])
    b = np.array([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # S (τ = 1) = [[6, 0, 2], [0, 1, 1]]
    want = [math.log1p(math.exp(-6.0) + math.exp(-4.0)), math.log1p(math.exp(-1.0) + 1.0)]
    assert_close(R.infonce_from_embeddings(a, b, temperature=1.0, normalize=False), want, **EXACT)
    want_half = [math.log1p(math.exp(-12.0) + math.exp(-8.0)), math.log1p(math.exp(-2.0) + 1.0)]
    assert_close(R.infonce_from_embeddings(a, b, temperature=0.5, normalize=False), want_half, **EXACT)
    # equals infonce of the similarity matrix
    assert_close(
        R.infonce_from_embeddings(a, b, temperature=1.0, normalize=False),
        R.infonce([[6.0, 0.0, 2.0], [0.0, 1.0, 1.0]], [0, 1]),
        **EXACT,
    )


def test_infonce_from_embeddings_zero_row():
    e = np.eye(3)
    a = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # the zero row has cosine 0 with every candidate: loss log N
    out = R.infonce_from_embeddings(a, e, temperature=0.05)
    assert_close(out, [math.log(3.0), math.log1p(2.0 * math.exp(-20.0))], **EXACT)
    # a zero candidate: its similarity is 0 for every row
    b = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert_close(
        R.infonce_from_embeddings(np.array([[1.0, 0.0]]), b, temperature=1.0), [math.log1p(math.exp(-1.0))], **EXACT
    )
    # zero dim: every row is the zero vector
    assert_close(R.infonce_from_embeddings(np.zeros((2, 0)), np.zeros((3, 0))), [math.log(3.0)] * 2, **EXACT)


def test_infonce_from_embeddings_simcse():
    e = np.eye(3)
    # rows (0, 1) = e0 twice, (2, 3) = e1 twice
    a = np.array([e[0], e[0], e[1], e[1]])
    for tau in (1.0, 0.05):
        # row i: candidates j ≠ i, S = 1/τ for j = i^1, 0 for the two others
        want = math.log1p(2.0 * math.exp(-1.0 / tau))
        assert_close(R.infonce_from_embeddings(a, temperature=tau, pairing="simcse"), [want] * 4, **EXACT)
    # the self-similarity is removed, not masked with a constant: with 2 rows the only candidate is
    # the positive, whatever the similarities
    two = np.array([[1.0, 0.0], [0.3, 0.7]])
    assert_close(R.infonce_from_embeddings(two, pairing="simcse"), [0.0, 0.0], rtol=1e-14, atol=0)
    # equals infonce with the diagonal removed by where
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4))
    xh = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = (xh @ xh.T) / 0.1
    want = R.infonce(s, [1, 0, 3, 2, 5, 4], where=~np.eye(6, dtype=bool))
    assert_close(R.infonce_from_embeddings(x, temperature=0.1, pairing="simcse"), want, rtol=1e-13, atol=0.0)
    # the hand value of a non-orthogonal case: rows e0, (e0+e1)/√2 ... positives pairwise
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 2.0]])
    r = 1.0 / math.sqrt(2.0)
    # row 0: j=1 (pos) r, j=2 0, j=3 0; row 1: j=0 (pos) r, j=2 r, j=3 r
    # row 2: j=3 (pos) 1, j=0 0, j=1 r;  row 3: j=2 (pos) 1, j=0 0, j=1 r
    want = [
        math.log(math.exp(r) + 2.0) - r,
        math.log(3.0),
        math.log(math.exp(1.0) + 1.0 + math.exp(r)) - 1.0,
        math.log(math.exp(1.0) + 1.0 + math.exp(r)) - 1.0,
    ]
    assert_close(R.infonce_from_embeddings(a, temperature=1.0, pairing="simcse"), want, **EXACT)
    assert R.infonce_from_embeddings(np.zeros((0, 3)), pairing="simcse").shape == (0,)


def test_infonce_from_embeddings_nan():
    a = np.array([[NAN, 0.0], [0.0, 1.0]])
    b = np.eye(2)
    out = R.infonce_from_embeddings(a, b)
    assert math.isnan(out[0]) and out[1] == pytest.approx(math.log1p(math.exp(-20.0)), rel=1e-14)
    # a NaN candidate makes every row NaN (it takes part in every row)
    assert np.all(np.isnan(R.infonce_from_embeddings(b, np.array([[1.0, 0.0], [0.0, NAN]]))))


# ---------------------------------------------------------------------------------------------
# C2 FlatNCE
# ---------------------------------------------------------------------------------------------


def test_flatnce_forms():
    s = [[1.0, 2.0, 3.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    t = [0, 0, 0]
    # log form: log Σ_{i≠t} e^{s_i} - s_t
    want = [
        math.log(math.exp(2.0) + math.exp(3.0)) - 1.0,
        LOG2 - 3.0,  # negative
        LOG2,
    ]
    got = R.flatnce(s, t)
    assert_close(got, want, **EXACT)
    assert got[1] < 0
    assert_close(R.flatnce(s, t, form="paper"), [1.0, 1.0, 1.0], rtol=1e-14, atol=0)
    # identity: infonce = log(1 + e^{flatnce_log})
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 6)) * 3
    y = rng.integers(0, 6, size=20)
    f = R.flatnce(x, y)
    assert_close(R.infonce(x, y), [math.log1p(math.exp(v)) for v in f], **EXACT)
    # = infonce's lse minus the positive, with the positive removed from the lse
    w = np.ones((20, 6), dtype=bool)
    w[np.arange(20), y] = False
    for i in range(20):
        assert_close(
            f[i], math.log(math.fsum(math.exp(v) for v, k in zip(x[i], w[i]) if k)) - x[i, y[i]], rtol=1e-13, atol=1e-15
        )
    # paper form at extreme scores is still exactly 1
    assert_close(R.flatnce([[1e4, -1e4, 0.0]], [1], form="paper"), [1.0], rtol=1e-14, atol=0)
    assert_close(R.flatnce([[1e4, -1e4, 0.0]], [0], form="paper"), [1.0], rtol=1e-14, atol=0)


def test_flatnce_edge_cases():
    for form in ("log", "paper"):
        # only the positive is valid: 0
        assert R.flatnce([[2.0, 5.0]], [0], form=form, where=np.array([True, False]))[0] == 0.0
        assert R.flatnce([[2.0, -INF]], [0], form=form)[0] == 0.0
        assert R.flatnce([[2.0]], [0], form=form)[0] == 0.0
        # no valid entry: 0
        assert R.flatnce([[2.0, 5.0]], [0], form=form, where=np.array([False, False]))[0] == 0.0
        # positive removed: +inf
        assert R.flatnce([[2.0, 5.0]], [1], form=form, where=np.array([True, False]))[0] == INF
        assert R.flatnce([[2.0, -INF]], [1], form=form)[0] == INF
        # NaN participating; NaN removed
        assert math.isnan(R.flatnce([[2.0, NAN]], [0], form=form)[0])
        assert_close(
            R.flatnce([[0.0, 0.0, NAN]], [0], form=form, where=np.array([True, True, False])),
            [0.0 if form == "log" else 1.0],
            rtol=1e-14,
            atol=0,
        )


# ---------------------------------------------------------------------------------------------
# C3 AM-Softmax, ArcFace
# ---------------------------------------------------------------------------------------------


def test_am_softmax_values():
    # z = [30·(0.5 - 0.35), 30·0.2] = [4.5, 6]
    assert_close(R.am_softmax([[0.5, 0.2]], [0]), [math.log1p(math.exp(1.5))], **EXACT)
    assert_close(
        R.am_softmax([[0.5, 0.2, -0.1]], [1], scale=10.0, margin=0.2),
        [math.log1p(math.exp(10 * (0.5 - 0.2 + 0.2)) + math.exp(10 * (-0.1 - 0.2 + 0.2)))],
        **EXACT,
    )
    # margin 0 is infonce(scale·c)
    rng = np.random.default_rng(2)
    c = rng.uniform(-1, 1, size=(10, 5))
    y = rng.integers(0, 5, size=10)
    assert_close(R.am_softmax(c, y, scale=16.0, margin=0.0), R.infonce(16.0 * c, y), **EXACT)
    # one-hot labels (bool / int / float) equal class ids
    oh = np.eye(5)[y]
    ids = R.am_softmax(c, y)
    for lab in (oh, oh.astype(bool), oh.astype(int)):
        assert_close(R.am_softmax(c, lab), ids, rtol=0, atol=0.0)
    # cosines as given: > 1 is not clipped
    assert_close(R.am_softmax([[1.5, 0.0]], [0], scale=1.0, margin=0.0), [math.log1p(math.exp(-1.5))], **EXACT)
    # where, positive removed
    assert_close(
        R.am_softmax([[0.5, 0.2, 0.9]], [0], where=np.array([True, True, False])), [math.log1p(math.exp(1.5))], **EXACT
    )
    assert R.am_softmax([[0.5, 0.2]], [[0, 1]], where=np.array([True, False]))[0] == INF
    assert math.isnan(R.am_softmax([[0.5, NAN]], [0])[0])


def test_arcface_target_formula():
    for c in np.linspace(-1.0, 1.0, 401):
        for m in (0.0, 0.1, 0.5, 1.0, 2.5, -0.3):
            want = math.cos(math.acos(c) + m)
            assert abs(contrastive._arcface_target(float(c), m) - want) <= 8 * EPS64
    # near c = ±1 (where 1 - c² cancels) against mpmath
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    for k in range(1, 53):
        for c in (1.0 - 2.0**-k, -1.0 + 2.0**-k, 1.0 - 3.0 * 2.0 ** -(k + 2)):
            for m in (0.5, 0.1, 2.0):
                want = mp.cos(mp.acos(mp.mpf(c)) + mp.mpf(m))
                assert abs(mp.mpf(contrastive._arcface_target(c, m)) - want) <= 3 * EPS64
    # exactly at c = ±1 and clipped beyond
    for m in (0.5, 0.35):
        assert contrastive._arcface_target(1.0, m) == math.cos(m)
        assert contrastive._arcface_target(-1.0, m) == -math.cos(m)
        assert contrastive._arcface_target(1.5, m) == math.cos(m)
        assert contrastive._arcface_target(-7.0, m) == -math.cos(m)


def test_arcface_values():
    s, m = 64.0, 0.5
    # c_t = 1: z_t = s·cos m; other cosine 0
    assert_close(R.arcface([[1.0, 0.0]], [0]), [math.log1p(math.exp(-s * math.cos(m)))], **EXACT)
    assert_close(R.arcface([[1.0, 0.0]], [0], scale=1.0), [math.log1p(math.exp(-math.cos(0.5)))], **EXACT)
    # c_t = -1: z_t = -s·cos m
    assert_close(R.arcface([[-1.0, 0.0]], [0], scale=1.0, margin=0.3), [math.log1p(math.exp(math.cos(0.3)))], **EXACT)
    # clipped target: 1.7 acts like 1
    assert_close(R.arcface([[1.7, 0.2]], [0], scale=2.0), R.arcface([[1.0, 0.2]], [0], scale=2.0), rtol=0, atol=0.0)
    # raw non-target cosines: 1.7 elsewhere is not clipped
    assert_close(
        R.arcface([[0.3, 1.7]], [0], scale=2.0, margin=0.1),
        [math.log1p(math.exp(2.0 * 1.7 - 2.0 * math.cos(math.acos(0.3) + 0.1)))],
        **EXACT,
    )
    # θ + m > π: plain cos(θ + m) (no easy margin, no fix-up)
    c, m = -0.99, 0.5
    assert_close(
        R.arcface([[c, 0.1]], [0], scale=3.0, margin=m),
        [math.log1p(math.exp(3.0 * 0.1 - 3.0 * math.cos(math.acos(c) + m)))],
        **EXACT,
    )
    # margin 0 equals am_softmax margin 0 at the same scale (|c| <= 1)
    rng = np.random.default_rng(4)
    cos = rng.uniform(-1, 1, size=(10, 4))
    y = rng.integers(0, 4, size=10)
    assert_close(
        R.arcface(cos, y, scale=30.0, margin=0.0), R.am_softmax(cos, y, scale=30.0, margin=0.0), rtol=1e-13, atol=0.0
    )
    # general margin against the acos form
    for i in range(10):
        zt = 30.0 * math.cos(math.acos(cos[i, y[i]]) + 0.5)
        want = math.log1p(math.fsum(math.exp(30.0 * cos[i, k] - zt) for k in range(4) if k != y[i]))
        assert_close(R.arcface(cos[i : i + 1], y[i : i + 1], scale=30.0, margin=0.5), [want], rtol=1e-12, atol=0.0)
    # one-hot labels, where, NaN, -inf target
    assert_close(R.arcface(cos, np.eye(4)[y]), R.arcface(cos, y), rtol=0, atol=0.0)
    assert R.arcface([[-INF, 0.2]], [0])[0] == INF
    assert math.isnan(R.arcface([[NAN, 0.2]], [0])[0])
    assert math.isnan(R.arcface([[0.5, NAN]], [0])[0])
    assert_close(R.arcface([[0.5, NAN]], [0], where=np.array([True, False])), [0.0], rtol=1e-14, atol=0)


# ---------------------------------------------------------------------------------------------
# C4 CoSENT
# ---------------------------------------------------------------------------------------------


def test_cosent_by_hand():
    s = [0.9, 0.5, 0.1]
    y = [2, 1, 0]
    # pairs (a, b) with y_a > y_b: (0, 1), (0, 2), (1, 2): e^{λ(s_b - s_a)}
    for lam in (1.0, 20.0):
        want = math.log1p(math.exp(lam * -0.4) + math.exp(lam * -0.8) + math.exp(lam * -0.4))
        out = R.cosent_loss(s, y, scale=lam)
        assert out.shape == () and out.dtype == np.float64
        assert_close(out, want, **EXACT)
    assert_close(R.cosent_loss(s, y), R.cosent_loss(s, y, scale=20.0), rtol=0, atol=0.0)
    # ties are ignored: y = [1, 1, 0] -> pairs (0, 2), (1, 2)
    assert_close(R.cosent_loss(s, [1, 1, 0], scale=1.0), math.log1p(math.exp(-0.8) + math.exp(-0.4)), **EXACT)
    assert_close(R.cosent_loss(s, [True, True, False], scale=1.0), math.log1p(math.exp(-0.8) + math.exp(-0.4)), **EXACT)
    # graded float labels: only the order matters
    assert_close(
        R.cosent_loss(s, [0.3, 4.5, 0.2], scale=1.0),
        math.log1p(math.exp(0.9 - 0.5) + math.exp(0.1 - 0.5) + math.exp(0.1 - 0.9)),
        **EXACT,
    )
    # wrongly ordered similarities give a large loss
    assert_close(R.cosent_loss([0.1, 0.9], [1, 0], scale=20.0), math.log1p(math.exp(16.0)), **EXACT)


def test_cosent_where_and_empty():
    s = [0.9, 0.5, 0.1]
    y = [2, 1, 0]
    # removing item 1 leaves the pair (0, 2)
    assert_close(
        R.cosent_loss(s, y, scale=1.0, where=np.array([True, False, True])), math.log1p(math.exp(-0.8)), **EXACT
    )
    assert_close(R.cosent_loss([0.9, -INF, 0.1], y, scale=1.0), math.log1p(math.exp(-0.8)), **EXACT)
    assert_close(
        R.cosent_loss([0.9, NAN, 0.1], y, scale=1.0, where=np.array([True, False, True])),
        math.log1p(math.exp(-0.8)),
        **EXACT,
    )
    # no pairs: 0
    assert R.cosent_loss(s, [1, 1, 1])[()] == 0.0
    assert R.cosent_loss([0.3], [1])[()] == 0.0
    assert R.cosent_loss(np.zeros(0), np.zeros(0))[()] == 0.0
    assert R.cosent_loss(s, y, where=np.array([False, False, True]))[()] == 0.0
    # NaN participating
    assert math.isnan(R.cosent_loss([0.9, NAN, 0.1], y)[()])


# ---------------------------------------------------------------------------------------------
# C5 unified pairwise loss, Circle loss
# ---------------------------------------------------------------------------------------------


def test_unified_pairwise_one_positive():
    rng = np.random.default_rng(5)
    s = rng.normal(size=(8, 5))
    t = rng.integers(0, 5, size=8)
    for gamma, m in ((1.0, 0.0), (2.5, 0.3), (30.0, -0.1)):
        got = R.unified_pairwise_loss(s, t, gamma=gamma, margin=m)
        for i in range(8):
            want = log1p_sum_exp([gamma * (s[i, k] - s[i, t[i]] + m) for k in range(5) if k != t[i]])
            assert_close(got[i], want, rtol=1e-13, atol=0.0)
        # one-hot rows are the same
        assert_close(R.unified_pairwise_loss(s, np.eye(5)[t], gamma=gamma, margin=m), got, rtol=0, atol=0.0)
    # γ = 1, m = 0 is infonce
    assert_close(R.unified_pairwise_loss(s, t), R.infonce(s, t), **EXACT)


def test_unified_pairwise_multi_hot():
    s = [[2.0, 1.0, 0.5, -1.0]]
    lab = [[1, 1, 0, 0]]
    # neg {0.5, -1}, pos {2, 1}: e^{γ(s_i - s_j + m)}
    g, m = 2.0, 0.25
    want = log1p_sum_exp([g * (si - sj + m) for si in (0.5, -1.0) for sj in (2.0, 1.0)])
    assert_close(R.unified_pairwise_loss(s, lab, gamma=g, margin=m), [want], **EXACT)
    # no positive / no negative -> 0
    assert R.unified_pairwise_loss(s, [[0, 0, 0, 0]])[0] == 0.0
    assert R.unified_pairwise_loss(s, [[1, 1, 1, 1]])[0] == 0.0
    assert R.unified_pairwise_loss(s, lab, where=np.array([True, True, False, False]))[0] == 0.0
    assert R.unified_pairwise_loss([[2.0, -INF]], [0])[0] == 0.0
    # the positive removed (class id): no positive -> 0
    assert R.unified_pairwise_loss([[2.0, 1.0]], [0], where=np.array([False, True]))[0] == 0.0
    # where removes entries
    assert_close(
        R.unified_pairwise_loss(s, lab, gamma=g, margin=m, where=np.array([True, False, True, True])),
        [log1p_sum_exp([g * (si - 2.0 + m) for si in (0.5, -1.0)])],
        **EXACT,
    )
    # NaN participating, NaN removed
    assert math.isnan(R.unified_pairwise_loss([[2.0, NAN, 0.0]], [[1, 0, 0]])[0])
    assert_close(
        R.unified_pairwise_loss([[2.0, NAN, 0.0]], [[1, 0, 0]], where=np.array([True, False, True])),
        [math.log1p(math.exp(-2.0))],
        **EXACT,
    )
    # +inf: a +inf negative gives +inf, a +inf positive makes its pairs vanish
    assert R.unified_pairwise_loss([[0.0, INF]], [0])[0] == INF
    assert R.unified_pairwise_loss([[INF, 0.0]], [0])[0] == 0.0
    assert math.isnan(R.unified_pairwise_loss([[INF, INF]], [0])[0])


def test_circle_loss_by_hand():
    g, m = 80.0, 0.4
    # 1 positive (0.8), 2 negatives (0.3, -0.5)
    # pos: α_p = 1.4 - 0.8 = 0.6, s - Δ_p = 0.8 - 0.6 = 0.2: 0.12
    # neg 0.3: α_n = 0.7, s - Δ_n = -0.1: -0.07;  neg -0.5: α_n = max(0, -0.1) = 0: 0
    want = math.log1p(math.exp(g * (-0.07 - 0.12)) + math.exp(g * (0.0 - 0.12)))
    assert_close(R.circle_loss([[0.8, 0.3, -0.5]], [0]), [want], rtol=1e-13, atol=0.0)
    assert_close(R.circle_loss([[0.3, 0.8, -0.5]], [[0, 1, 0]], gamma=g, margin=m), [want], rtol=1e-13, atol=0.0)
    # α_p clamps at 0 for s_j >= 1 + m (here the exponent is α_n·(s_i - Δ_n) = 1.15·0.65);
    # α_n clamps at 0 for s_i <= -m
    assert_close(R.circle_loss([[2.0, 0.9]], [0], gamma=1.0, margin=0.25), [math.log1p(math.exp(1.15 * 0.65))], **EXACT)
    assert_close(R.circle_loss([[2.0, -0.9]], [0], gamma=1.0, margin=0.25), [LOG2], **EXACT)
    # m = 0: exponent γ(s_i² - (1 - s_j)(s_j - 1)) = γ(s_i² + (1 - s_j)²) for s_i >= 0, s_j <= 1
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 1, size=(5, 4))
    lab = np.array([[1, 0, 1, 0]] * 5)
    got = R.circle_loss(x, lab, gamma=3.0, margin=0.0)
    for i in range(5):
        want = log1p_sum_exp([3.0 * (x[i, a] ** 2 + (1 - x[i, b]) ** 2) for a in (1, 3) for b in (0, 2)])
        assert_close(got[i], want, rtol=1e-13, atol=0.0)
    # multi-hot, where, empty cases
    assert R.circle_loss([[0.5, 0.5]], [[1, 1]])[0] == 0.0
    assert R.circle_loss([[0.5, 0.5]], [[0, 0]])[0] == 0.0
    assert R.circle_loss([[0.5, 0.5]], [0], where=np.array([False, False]))[0] == 0.0
    assert math.isnan(R.circle_loss([[0.5, NAN]], [0])[0])
    assert_close(
        R.circle_loss([[0.5, NAN, 0.1]], [0], where=np.array([True, False, True]), gamma=1.0, margin=0.0),
        [math.log1p(math.exp(0.01 + 0.25))],
        **EXACT,
    )
    # +inf positive: α_p = 0 leaves its term out (no 0·inf)
    assert_close(R.circle_loss([[INF, 0.1]], [0], gamma=1.0, margin=0.0), [math.log1p(math.exp(0.01))], **EXACT)
    assert R.circle_loss([[0.5, INF]], [0])[0] == INF


# ---------------------------------------------------------------------------------------------
# accuracy against high precision (mpmath) at large and tiny inputs
# ---------------------------------------------------------------------------------------------


def test_accuracy_against_mpmath():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 400
    M = mp.mpf

    def rel(got, want):
        want = M(want)
        if abs(want) < M("1e-300"):
            return 0.0 if abs(got) < 1e-300 else 1.0
        return float(abs((M(float(got)) - want) / want))

    def l1pse(xs):  # log(1 + Σ e^x)
        return mp.log(1 + mp.fsum(mp.exp(x) for x in xs))

    rng = np.random.default_rng(11)
    worst = 0.0
    for trial in range(60):
        scale = (1.0, 30.0, 1e4, 1e-3, 300.0)[trial % 5]
        c = int(rng.integers(2, 6))
        s = rng.normal(size=c) * scale
        if trial % 3 == 0:
            s[1] = s[0] + rng.normal() * 1e-6  # a near tie
        t = int(rng.integers(0, c))
        sm = [M(float(v)) for v in s]
        others = [k for k in range(c) if k != t]
        checks = [
            (R.infonce([s], [t])[0], l1pse([sm[k] - sm[t] for k in others])),
            (
                R.am_softmax([s], [t], scale=30.0, margin=0.35)[0],
                l1pse([30 * (sm[k] - sm[t] + M(0.35)) for k in others]),
            ),
            (
                R.unified_pairwise_loss([s], [t], gamma=2.5, margin=0.25)[0],
                l1pse([M(2.5) * (sm[k] - sm[t] + M(0.25)) for k in others]),
            ),
        ]
        # circle loss, multi-hot
        lab = (rng.random(c) < 0.5).astype(int)
        lab[0], lab[1] = 1, 0
        pos = [sm[k] for k in range(c) if lab[k]]
        neg = [sm[k] for k in range(c) if not lab[k]]
        g, m = M(80.0), M(0.4)
        checks.append(
            (
                R.circle_loss([s], [lab], gamma=80.0, margin=0.4)[0],
                l1pse(
                    [g * (max(0, si + m) * (si - m) - max(0, 1 + m - sj) * (sj - (1 - m))) for si in neg for sj in pos]
                ),
            )
        )
        # cosent over the row, graded labels
        y = rng.integers(0, 3, size=c)
        checks.append(
            (
                R.cosent_loss(s, y, scale=20.0)[()],
                l1pse([20 * (sm[b] - sm[a]) for a in range(c) for b in range(c) if y[a] > y[b]]),
            )
        )
        # flatnce (log form): relative to the larger of |result| and the size of its terms
        want = mp.log(mp.fsum(mp.exp(sm[k] - sm[t]) for k in others))
        got = R.flatnce([s], [t])[0]
        size = max(abs(want), max(abs(sm[k] - sm[t]) for k in others), 1)
        worst = max(worst, float(abs(M(float(got)) - want) / size))
        for got, want in checks:
            worst = max(worst, rel(got, want))
    assert worst < 8 * EPS64, worst / EPS64


def test_accuracy_tiny_losses_and_extremes():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 100
    # a loss near e^{-30}: log1p(e^{-30}) to full relative precision
    got = R.infonce([[1e4, 1e4 - 30.0, -1e4]], [0])[0]
    want = mp.log(1 + mp.exp(mp.mpf(1e4 - 30.0) - mp.mpf(1e4)) + mp.exp(mp.mpf(-2e4)))
    assert abs(mp.mpf(got) - want) / want < 2 * EPS64
    # a loss of 2e4
    assert_close(R.infonce([[1e4, -1e4]], [1]), [2e4], rtol=0, atol=0.0)
    assert_close(R.infonce([[-1e4, 1e4]], [1]), [0.0], rtol=1e-14, atol=0)  # log1p(e^{-2e4}) underflows to 0
    # scores whose difference overflows float64: the loss is +inf / the exact difference
    assert_close(R.infonce([[1.5e308, -1.5e308]], [1]), [INF], rtol=0, atol=0.0)
    assert_close(R.infonce([[1e308, -1e307]], [1]), [1.1e308], rtol=1e-15, atol=0.0)
    # cosent with a tiny result at scale 20
    got = R.cosent_loss([0.9, 0.1], [1, 0])[()]
    want = mp.log(1 + mp.exp(20 * (mp.mpf(0.1) - mp.mpf(0.9))))
    assert abs(mp.mpf(float(got)) - want) / want < 2 * EPS64
    # embeddings: exact dot products at huge norms
    a = np.array([[1e200, 1e200]])
    b = np.array([[1e200, 1e200], [1e200, -1e200]])
    assert_close(R.infonce_from_embeddings(a, b, temperature=1.0), [math.log1p(math.exp(-1.0))], rtol=1e-15, atol=0.0)


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: R.infonce([[0.0, 1.0]], [2]),
        lambda: R.infonce([[0.0, 1.0]], [-1]),
        lambda: R.infonce([[0.0, 1.0]], [0, 1]),
        lambda: R.infonce([[0.0, 1.0]], [[1, 0]]),  # one-hot not accepted for positive_index
        lambda: R.infonce(0.0, 0),
        lambda: R.infonce([[0.0, 1.0]], [0], axis=2),
        lambda: R.infonce([[0.0, 1.0]], [0], where=np.array([True, False, True])),
        lambda: R.flatnce([[0.0, 1.0]], [0], form="exp"),
        lambda: R.flatnce([[0.0, 1.0]], [3]),
        lambda: R.am_softmax([[0.0, 1.0]], [[1, 1]]),
        lambda: R.am_softmax([[0.0, 1.0]], [[0, 0]]),
        lambda: R.am_softmax([[0.0, 1.0]], [[0.5, 0.5]]),
        lambda: R.am_softmax([[0.0, 1.0]], [[1, 0, 0]]),
        lambda: R.am_softmax([[0.0, 1.0]], [0], scale=0.0),
        lambda: R.am_softmax([[0.0, 1.0]], [0], margin=INF),
        lambda: R.arcface([[0.0, 1.0]], [5]),
        lambda: R.arcface([[0.0, 1.0]], [[2, 0]]),
        lambda: R.arcface([[0.0, 1.0]], [0], scale=-1.0),
        lambda: R.cosent_loss([[0.1, 0.2]], [[1, 0]]),
        lambda: R.cosent_loss([0.1, 0.2], [1, 0, 1]),
        lambda: R.cosent_loss([0.1, 0.2], [1.0, NAN]),
        lambda: R.cosent_loss([0.1, 0.2], [1.0, INF]),
        lambda: R.cosent_loss([0.1, 0.2], [1, 0], where=np.array([True, False, True])),
        lambda: R.cosent_loss([0.1, 0.2], [1, 0], scale=NAN),
        lambda: R.unified_pairwise_loss([[0.0, 1.0]], [[2, 0]]),
        lambda: R.unified_pairwise_loss([[0.0, 1.0]], [[0.5, 0.0]]),
        lambda: R.unified_pairwise_loss([[0.0, 1.0]], [7]),
        lambda: R.unified_pairwise_loss([[0.0, 1.0]], [0], gamma=0.0),
        lambda: R.circle_loss([[0.0, 1.0]], [[1.0, NAN]]),
        lambda: R.circle_loss([[0.0, 1.0]], [[[1, 0]]]),
        lambda: R.circle_loss([[0.0, 1.0]], [0], margin=NAN),
        lambda: R.infonce_from_embeddings(np.eye(2)),  # diagonal needs b
        lambda: R.infonce_from_embeddings(np.eye(3), np.eye(2)),  # dims differ
        lambda: R.infonce_from_embeddings(np.eye(3), np.eye(3)[:2]),  # N < B
        lambda: R.infonce_from_embeddings(np.ones(3), np.ones(3)),  # not 2-D
        lambda: R.infonce_from_embeddings(np.eye(3), pairing="simcse"),  # odd rows
        lambda: R.infonce_from_embeddings(np.eye(2), np.eye(2), pairing="simcse"),  # b given
        lambda: R.infonce_from_embeddings(np.eye(2), np.eye(2), pairing="rows"),
        lambda: R.infonce_from_embeddings(np.eye(2), np.eye(2), temperature=0.0),
        lambda: R.infonce_from_embeddings(np.eye(2), np.eye(2), temperature=-0.05),
        lambda: R.infonce_from_embeddings(np.eye(2), np.eye(2), temperature=INF),
    ],
)
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: R.infonce([[0.0, 1.0]], [0.0]),  # float class ids
        lambda: R.infonce([[True, False]], [0]),  # bool scores
        lambda: R.infonce([[0.0, 1.0]], [0], where=np.array([1, 0])),  # non-bool where
        lambda: R.infonce([[0.0, 1.0]], [0], axis=1.0),
        lambda: R.am_softmax([[0.0, 1.0]], [0], scale="30"),
        lambda: R.infonce_from_embeddings(np.eye(2), np.eye(2), temperature=True),
        lambda: R.infonce_from_embeddings(np.eye(2), np.eye(2), normalize=1),
    ],
)
def test_bad_types_raise_type_error(call):
    with pytest.raises(TypeError):
        call()


def test_error_messages_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 2\)|\(2, 2\).*\(3,\)"):
        R.infonce(np.zeros((2, 2)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(2, 3\)"):
        R.infonce_from_embeddings(np.eye(3), np.eye(3)[:2])

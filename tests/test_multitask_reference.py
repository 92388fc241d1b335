"""Tests of the float64 oracle (docs/multitask.md; polyloss.reference.multitask) itself.

Every expected value is derived by hand (closed forms in the comments), by an identity between the
functions, or by an independent solver (SciPy's NNLS on an exact reformulation of the min-norm
problem, SciPy's NNLS on the primary/auxiliary least squares, SLSQP), and the solvers' answers are
themselves checked with an optimality certificate. NumPy + SciPy only, fast.
"""

from __future__ import annotations

import collections
import doctest
import math

import numpy as np
import pytest
from scipy.optimize import minimize, nnls

from polyloss.reference import multitask as MT

LOG2 = math.log(2.0)


def close(a, b, rtol=1e-14, atol=0.0):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol)


def random_gradients(rng, k, dim, spread=1.0):
    """K random gradients of random norms (log-normal with the given spread)."""
    return rng.normal(size=(k, dim)) * np.exp(spread * rng.normal(size=(k, 1)))


def quad(gram, w):
    w = np.asarray(w, dtype=np.float64)
    return float(w @ np.asarray(gram) @ w)


# ---------------------------------------------------------------------------------------------
# independent solvers
# ---------------------------------------------------------------------------------------------


def nnls_min_norm(grads):
    """The min-norm weights through SciPy's NNLS, an exact reformulation:

    for β ≥ 0 minimise ||Σ β_i g_i||² + w²(Σ β_i - 1)². Writing β = s·α with s = Σ β_i and α on the
    simplex, the objective is s²·α^T G α + w²(s - 1)²: for every fixed s it is minimised by the
    min-norm α*, so β*/Σβ* = α* exactly, for any w > 0 (s* = w²/(f* + w²) > 0).
    """
    a = np.asarray(grads, dtype=np.float64)
    k = a.shape[0]
    w = math.sqrt(max(float(np.max(np.sum(a * a, axis=1))), 1e-300))
    matrix = np.vstack([a.T, w * np.ones((1, k))])
    target = np.zeros(matrix.shape[0])
    target[-1] = w
    beta, _ = nnls(matrix, target, maxiter=100 * k)
    return beta / beta.sum()


def slsqp_min_norm(gram):
    gram = np.asarray(gram, dtype=np.float64)
    k = gram.shape[0]
    scale = float(np.max(np.diag(gram)))
    g = gram / scale
    best = None
    for start in [np.full(k, 1.0 / k)] + [np.eye(k)[i] for i in range(k)]:
        res = minimize(lambda x: x @ g @ x, start, jac=lambda x: 2 * g @ x, method="SLSQP",
                       bounds=[(0.0, 1.0)] * k,
                       constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0, "jac": lambda x: np.ones(k)}],
                       options={"ftol": 1e-16, "maxiter": 1000})
        x = np.clip(res.x, 0.0, None)
        x /= x.sum()
        if best is None or quad(gram, x) < quad(gram, best):
            best = x
    return best


def frank_wolfe_gap(gram, alpha):
    """max_i (α^T G α - (G α)_i): an upper bound on (α^T G α - min) / 2 for α on the simplex (the
    linear model at α lower-bounds the convex objective); 0 exactly at the optimum."""
    gram = np.asarray(gram, dtype=np.float64)
    ga = gram @ alpha
    return float(alpha @ ga - np.min(ga))


def value_close(value, expected, scale, rtol=1e-9, atol_rel=1e-12):
    assert abs(value - expected) <= rtol * abs(expected) + atol_rel * scale, (value, expected, scale)


# ---------------------------------------------------------------------------------------------
# docstrings and exports
# ---------------------------------------------------------------------------------------------


def test_docstring_examples():
    result = doctest.testmod(MT, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 20 and result.failed == 0


def test_public_names():
    assert set(MT.__all__) == {
        "gram_matrix", "min_norm_weights", "primary_weights", "combine_gradients",
        "coefficient_free_l2", "weigh_losses",
    }


# ---------------------------------------------------------------------------------------------
# gram_matrix and pytrees
# ---------------------------------------------------------------------------------------------


def test_gram_is_exactly_rounded():
    # a = 1 + 2^-30: a² = 1 + 2^-29 + 2^-60 exactly. With g1 = [a, 1 + 2^-29] and g2 = [a, -1]:
    # <g1, g2> = a² - 1 - 2^-29 = 2^-60 exactly; rounding a² first (1 + 2^-29) gives 0.
    a = 1.0 + 2.0 ** -30
    g1, g2 = np.array([a, 1.0 + 2.0 ** -29]), np.array([a, -1.0])
    assert float(g1 @ g2) == 0.0
    assert MT.gram_matrix([g1, g2])[0, 1] == 2.0 ** -60
    # cancellation in the sum: 1e16 + 1 - 1e16 = 1 exactly
    g = np.array([1e16, 1.0, -1e16])
    assert MT.gram_matrix([g, np.ones(3)])[0, 1] == 1.0


def test_gram_values_shape_and_symmetry():
    rng = np.random.default_rng(0)
    grads = random_gradients(rng, 4, 7)
    gram = MT.gram_matrix(list(grads))
    assert gram.dtype == np.float64 and gram.shape == (4, 4)
    assert np.array_equal(gram, gram.T)
    close(gram, grads @ grads.T, rtol=1e-13)
    # an array with a leading task axis is the same as the list of its rows
    assert np.array_equal(MT.gram_matrix(grads), gram)
    # one task: [[||g||²]]
    assert MT.gram_matrix([np.array([3.0, 4.0])]).tolist() == [[25.0]]


def test_gram_pytrees():
    # dicts (any key order), nested lists/tuples, scalar leaves: the dot product runs over all leaves
    g1 = {"w": [np.array([[1.0, 2.0]]), (3.0, np.array([4.0]))], "b": np.array(5.0)}
    g2 = {"b": np.array(-1.0), "w": [np.array([[0.0, 1.0]]), (1.0, np.array([1.0]))]}
    # <g1, g2> = 0 + 2 + 3 + 4 - 5 = 4; ||g1||² = 1+4+9+16+25 = 55; ||g2||² = 0+1+1+1+1 = 4
    assert MT.gram_matrix([g1, g2]).tolist() == [[55.0, 4.0], [4.0, 4.0]]
    # a named tuple is a tuple
    P = collections.namedtuple("P", "w b")
    assert MT.gram_matrix([P(np.ones(2), 1.0), P(np.ones(2), -2.0)]).tolist() == [[3.0, 0.0], [0.0, 6.0]]
    # integer leaves are converted to float64
    assert MT.gram_matrix([[1, 2], [3, 4]]).tolist() == [[5.0, 11.0], [11.0, 25.0]]
    # an empty pytree (no parameters): a zero Gram matrix
    assert MT.gram_matrix([{}, {}]).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_gram_nonfinite_follows_ieee():
    g = MT.gram_matrix([np.array([np.nan, 1.0]), np.array([1.0, 1.0])])
    assert math.isnan(g[0, 0]) and math.isnan(g[0, 1]) and g[1, 1] == 2.0
    g = MT.gram_matrix([np.array([np.inf, 0.0]), np.array([1.0, 0.0])])
    assert g[0, 0] == math.inf and g[0, 1] == math.inf


def test_gram_bad_inputs():
    with pytest.raises(ValueError, match="K = 0"):
        MT.gram_matrix([])
    with pytest.raises(ValueError, match=r"gradient 1 .* at leaf \['w'\]\[1\]: shape \(4,\)"):
        MT.gram_matrix([{"w": [np.zeros(2), np.zeros(3)]}, {"w": [np.zeros(2), np.zeros(4)]}])
    with pytest.raises(ValueError, match=r"gradient 2 .* at leaf \['w'\]: a dict with keys \['v'\]"):
        MT.gram_matrix([{"w": [1.0]}, {"w": [1.0]}, {"w": {"v": 1.0}}])
    with pytest.raises(ValueError, match=r"at the root: a dict with keys \['a', 'c'\]"):
        MT.gram_matrix([{"a": 1.0, "b": 1.0}, {"a": 1.0, "c": 1.0}])
    with pytest.raises(ValueError, match=r"leaf \[0\]: a tuple of length 2"):
        MT.gram_matrix([[[1.0, 2.0]], [(1.0, 2.0)]])  # list vs tuple: different structures (as in JAX)
    with pytest.raises(ValueError, match=r"a list of length 3 where gradient 0 has a list of length 2"):
        MT.gram_matrix([[1.0, 2.0], [1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match=r"gradient 1 at leaf \['b'\]"):
        MT.gram_matrix([{"b": np.ones(2)}, {"b": np.array([1j, 2j])}])
    with pytest.raises(TypeError, match="real"):
        MT.gram_matrix([np.array([True, False])])
    with pytest.raises(TypeError, match="list or tuple"):
        MT.gram_matrix({"a": np.ones(2)})
    with pytest.raises(ValueError, match="0-d"):
        MT.gram_matrix(np.array(1.0))
    with pytest.raises(TypeError, match="list or tuple"):
        MT.gram_matrix(np.float64(1.0))


# ---------------------------------------------------------------------------------------------
# min_norm_weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(2, 11))
def test_min_norm_against_nnls(k):
    rng = np.random.default_rng(100 + k)
    for dim in (max(1, k // 2), k, 3 * k):  # dim < K: G singular, the origin may lie in the hull
        grads = random_gradients(rng, k, dim)
        gram = MT.gram_matrix(list(grads))
        scale = float(np.max(np.diag(gram)))
        alpha = MT.min_norm_weights(gram)
        assert alpha.shape == (k,) and alpha.dtype == np.float64
        assert np.all(alpha >= 0) and abs(alpha.sum() - 1) <= 1e-15 * k
        other = nnls_min_norm(grads)
        assert frank_wolfe_gap(gram, other) <= 1e-10 * scale  # the independent answer is optimal too
        value_close(quad(gram, alpha), quad(gram, other), scale)
        # the reference's own certificate: <g_i, u> >= ||u||² for every task (common descent),
        # with equality on the support
        u = alpha @ grads
        dots = grads @ u
        assert np.all(dots >= u @ u - 1e-12 * scale)
        assert np.all(np.abs(dots[alpha > 0] - u @ u) <= 1e-10 * scale)
        # the direction is unique (nearest point of the hull to 0): the other solver's u agrees
        np.testing.assert_allclose(u, other @ grads, rtol=0, atol=1e-6 * math.sqrt(scale))


def test_min_norm_against_slsqp():
    rng = np.random.default_rng(7)
    for k in (3, 5, 7):
        grads = random_gradients(rng, k, k + 2, spread=0.5)
        gram = MT.gram_matrix(list(grads))
        ours, theirs = quad(gram, MT.min_norm_weights(gram)), quad(gram, slsqp_min_norm(gram))
        assert ours <= theirs * (1 + 1e-12)  # never worse than SLSQP
        value_close(ours, theirs, float(np.max(np.diag(gram))), rtol=1e-8)


def test_min_norm_two_tasks_closed_form():
    # α_1 = clip((G22 - G12) / (G11 - 2 G12 + G22), 0, 1)
    rng = np.random.default_rng(3)
    for _ in range(30):
        grads = random_gradients(rng, 2, 3, spread=1.5)
        gram = MT.gram_matrix(list(grads))
        g11, g12, g22 = gram[0, 0], gram[0, 1], gram[1, 1]
        a1 = min(max((g22 - g12) / (g11 - 2 * g12 + g22), 0.0), 1.0)
        close(MT.min_norm_weights(gram), [a1, 1 - a1], rtol=1e-12, atol=1e-14)
    # orthogonal: α ∝ (1/G11, 1/G22), value G11 G22/(G11 + G22)
    alpha = MT.min_norm_weights([[4.0, 0.0], [0.0, 1.0]])
    close(alpha, [0.2, 0.8])
    close(quad([[4.0, 0.0], [0.0, 1.0]], alpha), 0.8)
    # <g1, g2> >= ||g1||²: g1 itself (clipped, exactly 1 and 0)
    assert MT.min_norm_weights([[1.0, 1.0], [1.0, 3.0]]).tolist() == [1.0, 0.0]
    assert MT.min_norm_weights([[3.0, 1.0], [1.0, 1.0]]).tolist() == [0.0, 1.0]


def test_min_norm_degenerate():
    g = np.array([1.0, 2.0, 3.0])
    h = np.array([0.0, 1.0, -1.0])
    e = np.array([1.0, 0.0, 0.0])
    # identical gradients: every α gives ||g||² = 14; the tie rule takes the smallest support
    for k in (2, 3, 5):
        gram = MT.gram_matrix([g] * k)
        alpha = MT.min_norm_weights(gram)
        close(quad(gram, alpha), 14.0)
        assert alpha.tolist() == [1.0] + [0.0] * (k - 1)
    # a zero gradient: minimum 0, all the weight on it
    assert MT.min_norm_weights(MT.gram_matrix([g, 0 * g, h])).tolist() == [0.0, 1.0, 0.0]
    # every gradient zero: the first one
    assert MT.min_norm_weights(np.zeros((3, 3))).tolist() == [1.0, 0.0, 0.0]
    # exactly opposed: (1/2, 1/2), value 0
    assert MT.min_norm_weights(MT.gram_matrix([g, -g])).tolist() == [0.5, 0.5]
    alpha = MT.min_norm_weights(MT.gram_matrix([g, -3 * g, h]))  # g and -3g: α = (3/4, 1/4)
    close(alpha, [0.75, 0.25, 0.0])
    # one dominating: 1e6·g with e_1, h; the minimum of the hull of {e_1, h} is
    # ||(e_1 + h)/2||² = 3/4·... : e_1 ⊥ h, ||e_1||² = 1, ||h||² = 2 -> α ∝ (1/1, 1/2): (2/3, 1/3),
    # value 1·2/(1+2) = 2/3, and <1e6 g, u> > 0 so the big gradient gets no weight
    gram = MT.gram_matrix([1e6 * g, e, h])
    alpha = MT.min_norm_weights(gram)
    close(alpha, [0.0, 2 / 3, 1 / 3], rtol=1e-14)
    close(quad(gram, alpha), 2 / 3, rtol=1e-14)
    # near-singular: g and g + 1e-9 d with <g, d> = -1, ||d||² = 2: ||g + t·1e-9 d||² decreases on
    # [0, 1] (its minimum is at t = 5e8), so α = (0, 1) and the value is 14 - 2e-9 + 2e-18
    d = np.array([1.0, -1.0, 0.0])
    gram = MT.gram_matrix([g, g + 1e-9 * d])
    alpha = MT.min_norm_weights(gram)
    assert alpha.tolist() == [0.0, 1.0]
    # one task: [1]
    assert MT.min_norm_weights([[5.0]]).tolist() == [1.0]
    assert MT.min_norm_weights([[0.0]]).tolist() == [1.0]


def test_min_norm_singular_grams_against_nnls():
    # rank-deficient on purpose: K = 8 gradients in 2 and 3 dimensions, copies, sign flips
    rng = np.random.default_rng(11)
    for dim in (1, 2, 3):
        base = random_gradients(rng, 4, dim)
        grads = np.vstack([base, base[:2], -base[2:3], 2 * base[3:4]])
        gram = MT.gram_matrix(list(grads))
        scale = float(np.max(np.diag(gram)))
        value_close(quad(gram, MT.min_norm_weights(gram)), quad(gram, nnls_min_norm(grads)), scale)
    # the origin strictly outside the hull of nearly parallel gradients: all near-singular
    g = rng.normal(size=6)
    grads = np.vstack([g + 1e-7 * rng.normal(size=6) for _ in range(6)])
    gram = MT.gram_matrix(list(grads))
    alpha = MT.min_norm_weights(gram)
    assert frank_wolfe_gap(gram, alpha) <= 1e-13 * float(np.max(np.diag(gram)))


def test_min_norm_extreme_scales():
    # exact arithmetic: norms 1e8 and 1e-8 of opposite signs (1-D): α = (1e-8, 1e8)/(1e8 + 1e-8) and
    # u = 0 exactly; the rounded α leaves |u| at the level of the small gradient's rounding
    a, b = 1e8, -1e-8
    alpha = MT.min_norm_weights(MT.gram_matrix([np.array([a]), np.array([b])]))
    assert alpha[0] == 1e-8 / (1e8 + 1e-8) and alpha[1] == 1e8 / (1e8 + 1e-8)
    assert abs(alpha[0] * a + alpha[1] * b) <= 1e-23
    # random gradients whose norms span 1e-6 .. 1e6: the Frank-Wolfe gap is at rounding level, and
    # the value matches NNLS on the gradients themselves
    rng = np.random.default_rng(17)
    for k in (4, 7, 10):
        grads = rng.normal(size=(k, k + 3)) * np.exp(3 * rng.normal(size=(k, 1)))
        gram = MT.gram_matrix(list(grads))
        scale = float(np.max(np.diag(gram)))
        alpha = MT.min_norm_weights(gram)
        assert frank_wolfe_gap(gram, alpha) <= 1e-15 * scale
        value_close(quad(gram, alpha), quad(gram, nnls_min_norm(grads)), scale, rtol=1e-9, atol_rel=1e-15)


def test_min_norm_invariances():
    rng = np.random.default_rng(5)
    grads = random_gradients(rng, 5, 4)
    gram = MT.gram_matrix(list(grads))
    alpha = MT.min_norm_weights(gram)
    value = quad(gram, alpha)
    # scaling G scales the value, α unchanged (G non-singular here: α is unique)
    close(MT.min_norm_weights(gram * 1024.0), alpha, rtol=1e-12, atol=1e-15)
    # permuting the tasks permutes α
    perm = [3, 0, 4, 1, 2]
    close(MT.min_norm_weights(gram[np.ix_(perm, perm)]), alpha[perm], rtol=1e-12, atol=1e-15)
    close(quad(gram[np.ix_(perm, perm)], alpha[perm]), value, rtol=1e-14)


def test_min_norm_bad_inputs():
    with pytest.raises(ValueError, match="square"):
        MT.min_norm_weights(np.ones((2, 3)))
    with pytest.raises(ValueError, match="square"):
        MT.min_norm_weights(np.ones(3))
    with pytest.raises(ValueError, match="K = 0"):
        MT.min_norm_weights(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="NaN or inf"):
        MT.min_norm_weights([[1.0, np.nan], [np.nan, 1.0]])
    with pytest.raises(ValueError, match="not symmetric"):
        MT.min_norm_weights([[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="not positive semi-definite"):
        MT.min_norm_weights([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="K <= 12"):
        MT.min_norm_weights(np.eye(13))
    with pytest.raises(TypeError, match="real"):
        MT.min_norm_weights(np.eye(2, dtype=complex))
    # float32-sized rounding is tolerated (and symmetrised)
    gram = np.array([[1.0, 0.3], [0.3 + 1e-7, 2.0]])
    close(MT.min_norm_weights(gram), MT.min_norm_weights([[1.0, 0.3 + 5e-8], [0.3 + 5e-8, 2.0]]), rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# primary_weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(2, 10))
def test_primary_against_nnls(k):
    rng = np.random.default_rng(200 + k)
    for dim in (max(1, k // 2), k, 3 * k):
        grads = random_gradients(rng, k, dim)
        # bias towards conflicts: the auxiliaries partly oppose the primary
        grads[1:] -= 0.7 * grads[0] * np.abs(rng.normal(size=(k - 1, 1)))
        gram = MT.gram_matrix(list(grads))
        scale = float(np.max(np.diag(gram)))
        w = MT.primary_weights(gram)
        assert w.shape == (k,) and w[0] == 1.0 and np.all(w[1:] >= 0)
        # min_λ≥0 ||g_0 + B λ||², B = [g_1 ... g_{K-1}] as columns: nnls(B, -g_0)
        lam, _ = nnls(grads[1:].T, -grads[0], maxiter=100 * k)
        other = np.concatenate([[1.0], lam])
        value_close(quad(gram, w), quad(gram, other), scale)
        # optimality conditions: <g_0, u> = ||u||² >= 0, <g_i, u> >= 0, = 0 where λ_i > 0
        u = w @ grads
        dots = grads @ u
        assert abs(dots[0] - u @ u) <= 1e-10 * scale and dots[0] >= -1e-12 * scale
        assert np.all(dots[1:] >= -1e-10 * scale)
        assert np.all(np.abs(dots[1:][w[1:] > 0]) <= 1e-10 * scale)
        np.testing.assert_allclose(u, other @ grads, rtol=0, atol=1e-6 * math.sqrt(scale))


def test_primary_one_auxiliary_closed_form():
    # λ = relu(-G01)/G11
    rng = np.random.default_rng(9)
    for _ in range(30):
        grads = random_gradients(rng, 2, 3, spread=1.0)
        gram = MT.gram_matrix(list(grads))
        lam = max(-gram[0, 1], 0.0) / gram[1, 1]
        close(MT.primary_weights(gram), [1.0, lam], rtol=1e-13, atol=0)
    assert MT.primary_weights([[1.0, -1.0], [-1.0, 2.0]]).tolist() == [1.0, 0.5]
    assert MT.primary_weights([[1.0, 0.0], [0.0, 2.0]]).tolist() == [1.0, 0.0]  # G01 = 0: λ = 0
    assert MT.primary_weights([[1.0, 0.0], [0.0, 0.0]]).tolist() == [1.0, 0.0]  # G11 = 0: λ = 0
    # an auxiliary exactly opposed to the primary: λ = 1 gives u = 0
    g = np.array([1.0, -2.0])
    gram = MT.gram_matrix([g, -g])
    assert MT.primary_weights(gram).tolist() == [1.0, 1.0]
    # one task: [1]
    assert MT.primary_weights([[3.0]]).tolist() == [1.0]


def test_primary_degenerate():
    g = np.array([1.0, 2.0, 3.0])
    # two identical conflicting auxiliaries -g/2: λ_1 + λ_2 = 2 minimises; the tie rule takes λ = (2, 0)
    gram = MT.gram_matrix([g, -0.5 * g, -0.5 * g])
    w = MT.primary_weights(gram)
    close(w, [1.0, 2.0, 0.0], rtol=1e-14)
    close(quad(gram, w), 0.0, atol=1e-13)
    # a zero primary: u = 0 with λ = 0
    assert MT.primary_weights(MT.gram_matrix([0 * g, g, -g])).tolist() == [1.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------
# combine_gradients
# ---------------------------------------------------------------------------------------------


def flat(tree):
    if isinstance(tree, dict):
        return np.concatenate([flat(tree[k]) for k in tree]) if tree else np.zeros(0)
    if isinstance(tree, (list, tuple)):
        return np.concatenate([flat(t) for t in tree]) if tree else np.zeros(0)
    return np.asarray(tree, dtype=np.float64).reshape(-1)


@pytest.mark.parametrize("method", ["sum", "mean", "normalized", "min_norm", "primary", "pcgrad"])
def test_direction_is_the_weighted_sum(method):
    rng = np.random.default_rng(21)
    for k in (1, 2, 3, 6):
        grads = random_gradients(rng, k, 5)
        u, w = MT.combine_gradients(list(grads), method=method)
        assert isinstance(u, np.ndarray) and u.dtype == np.float64 and u.shape == (5,)
        assert w.dtype == np.float64 and w.shape == (k,)
        close(u, w @ grads, rtol=1e-12, atol=1e-14 * np.max(np.abs(grads)))


def test_combine_structure_is_kept():
    P = collections.namedtuple("P", "a b")
    g1 = {"w": [np.array([[1.0, 2.0], [3.0, 4.0]]), P(5.0, np.array([6.0]))], "b": np.array(1.0)}
    g2 = {"b": np.array(-1.0), "w": [np.array([[0.0, 0.0], [1.0, 1.0]]), P(1.0, np.array([-1.0]))]}
    u, w = MT.combine_gradients([g1, g2], method="sum")
    assert list(u) == ["w", "b"] and isinstance(u["w"], list) and isinstance(u["w"][1], P)
    assert u["w"][0].shape == (2, 2) and u["w"][1].a.shape == () and u["b"].shape == ()
    assert u["w"][0].tolist() == [[1.0, 2.0], [4.0, 5.0]]
    assert float(u["w"][1].a) == 6.0 and u["w"][1].b.tolist() == [5.0] and float(u["b"]) == 0.0
    assert w.tolist() == [1.0, 1.0]
    u, w = MT.combine_gradients([g1, g2], method="mean")
    assert u["w"][0].tolist() == [[0.5, 1.0], [2.0, 2.5]] and w.tolist() == [0.5, 0.5]
    # the pytree methods equal the flat ones
    for method in ("normalized", "min_norm", "primary", "pcgrad"):
        u_tree, w_tree = MT.combine_gradients([g1, g2], method=method)
        g2_in_g1_order = {"w": g2["w"], "b": g2["b"]}
        u_flat, w_flat = MT.combine_gradients([flat(g1), flat(g2_in_g1_order)], method=method)
        assert np.array_equal(flat(u_tree), u_flat) and np.array_equal(w_tree, w_flat)


def test_sum_and_mean_are_exact():
    g = [np.array([1e16]), np.array([1.0]), np.array([-1e16])]
    assert MT.combine_gradients(g, method="sum")[0].tolist() == [1.0]
    assert MT.combine_gradients(g, method="mean")[0].tolist() == [1.0 / 3.0]


def test_normalized():
    g1, g2 = np.array([3.0, 4.0]), np.array([0.0, -2.0])
    u, w = MT.combine_gradients([g1, g2], method="normalized")
    close(u, [0.6, -0.2])  # (3/5, 4/5) + (0, -1)
    close(w, [0.2, 0.5])
    # invariant to rescaling any single task's gradient (its loss) by c > 0
    rng = np.random.default_rng(4)
    grads = random_gradients(rng, 4, 6)
    u, _ = MT.combine_gradients(list(grads), method="normalized")
    for i in range(4):
        for c in (1e-3, 7.0, 1e5):
            scaled = grads.copy()
            scaled[i] *= c
            close(MT.combine_gradients(list(scaled), method="normalized")[0], u, rtol=1e-14, atol=1e-15)
    # a zero gradient contributes 0 (weight 0), no NaN
    u, w = MT.combine_gradients([g1, np.zeros(2)], method="normalized")
    close(u, [0.6, 0.8])
    assert w.tolist() == [0.2, 0.0]
    u, w = MT.combine_gradients([np.zeros(2), np.zeros(2)], method="normalized")
    assert u.tolist() == [0.0, 0.0] and w.tolist() == [0.0, 0.0]


def test_min_norm_direction_and_degenerate_cases():
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    # α_1 = (G22 - G12)/(G11 - 2 G12 + G22) = (2 + 1)/(1 + 2 + 2) = 3/5; u = (3/5 - 2/5, 2/5)
    u, w = MT.combine_gradients([g1, g2], method="min_norm")
    close(w, [0.6, 0.4], rtol=1e-15)
    close(u, [0.2, 0.4], rtol=1e-15)
    # Pareto-stationary point (opposed gradients): u = 0
    u, w = MT.combine_gradients([g1, -2 * g1], method="min_norm")
    close(w, [2 / 3, 1 / 3], rtol=1e-15)
    assert np.all(np.abs(u) <= 1e-16)


def test_primary_method_and_index():
    g0, g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0]), np.array([0.0, 1.0])
    # primary 0: λ minimises ||g0 + λ1 g1 + λ2 g2||²; g2 ⊥ g0... λ1 = 1/2 (closed form with g1 alone
    # gives u = (1/2, 1/2), and <g2, u> = 1/2 > 0 so λ2 = 0)
    u, w = MT.combine_gradients([g0, g1, g2], method="primary")
    close(w, [1.0, 0.5, 0.0], rtol=1e-15)
    close(u, [0.5, 0.5], rtol=1e-15)
    # primary 1 (and -2, the same task): λ_0 = relu(-<g1, g0>)/||g0||² = 1, λ_2 = 0 (<g2, g1 + g0> = 1)
    for p in (1, -2):
        u, w = MT.combine_gradients([g0, g1, g2], method="primary", primary=p)
        close(w, [1.0, 1.0, 0.0], rtol=1e-15)
        close(u, [0.0, 1.0], rtol=1e-15)
    # the same as putting the primary first
    rng = np.random.default_rng(8)
    grads = random_gradients(rng, 5, 4)
    u, w = MT.combine_gradients(list(grads), method="primary", primary=3)
    perm = [3, 0, 1, 2, 4]
    u2, w2 = MT.combine_gradients(list(grads[perm]), method="primary")
    close(u, u2, rtol=1e-13, atol=1e-15)
    close(w[perm], w2, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="primary = 3 is out of range for K = 3"):
        MT.combine_gradients([g0, g1, g2], method="primary", primary=3)
    with pytest.raises(ValueError, match="out of range"):
        MT.combine_gradients([g0, g1, g2], method="primary", primary=-4)
    with pytest.raises(TypeError, match="int"):
        MT.combine_gradients([g0, g1, g2], method="primary", primary=1.0)
    with pytest.raises(TypeError, match="int"):
        MT.combine_gradients([g0, g1, g2], method="primary", primary=True)


def pcgrad_two(g1, g2):
    """Yu et al. for K = 2 in closed form."""
    d = g1 @ g2
    if d >= 0:
        return g1 + g2, [1.0, 1.0]
    c1, c2 = d / (g2 @ g2), d / (g1 @ g1)
    return (g1 - c1 * g2) + (g2 - c2 * g1), [1.0 - c2, 1.0 - c1]


def test_pcgrad_two_tasks():
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    u, w = MT.combine_gradients([g1, g2], method="pcgrad")
    assert u.tolist() == [0.5, 1.5] and w.tolist() == [2.0, 1.5]
    # no conflict: the plain sum, weights 1
    u, w = MT.combine_gradients([g1, np.array([1.0, 1.0])], method="pcgrad")
    assert u.tolist() == [2.0, 1.0] and w.tolist() == [1.0, 1.0]
    # orthogonal: <g1, g2> = 0 is no conflict
    u, w = MT.combine_gradients([g1, np.array([0.0, 3.0])], method="pcgrad")
    assert u.tolist() == [1.0, 3.0] and w.tolist() == [1.0, 1.0]
    rng = np.random.default_rng(12)
    conflicts = 0
    for _ in range(40):
        a, b = random_gradients(rng, 2, 4)
        conflicts += a @ b < 0
        expected_u, expected_w = pcgrad_two(a, b)
        u, w = MT.combine_gradients([a, b], method="pcgrad")
        close(u, expected_u, rtol=1e-13, atol=1e-15)
        close(w, expected_w, rtol=1e-13)
        # the order does not matter for K = 2
        u2, w2 = MT.combine_gradients([a, b], method="pcgrad", order=[1, 0])
        assert np.array_equal(u, u2) and np.array_equal(w, w2)
    assert 5 < conflicts < 35
    # exactly opposed: each projection removes everything, u = 0
    u, w = MT.combine_gradients([g1, -g1], method="pcgrad")
    assert u.tolist() == [0.0, 0.0] and w.tolist() == [2.0, 2.0]
    # a zero gradient never conflicts (and is never projected on)
    u, w = MT.combine_gradients([g1, np.zeros(2)], method="pcgrad")
    assert u.tolist() == [1.0, 0.0] and w.tolist() == [1.0, 1.0]


def test_pcgrad_three_tasks_by_hand():
    # g0 = (-1,-1), g1 = (-3,-1), g2 = (2,1), fixed order (j = 0, 1, 2):
    # task 0: <g0,g1> = 4 ok; <g0,g2> = -3: g0' = g0 + 3/5 g2 = (0.2, -0.4)         c = [1, 0, 0.6]
    # task 1: <g1,g0> = 4 ok; <g1,g2> = -7: g1' = g1 + 7/5 g2 = (-0.2, 0.4)          c = [0, 1, 1.4]
    # task 2: <g2,g0> = -3: g2' = g2 + 3/2 g0 = (0.5, -0.5); <g2',g1> = -1:
    #         g2'' = g2' + 1/10 g1 = (0.2, -0.6)                                       c = [1.5, 0.1, 1]
    # (here <g2'', g2> = -0.2 < 0: an implementation that also visits j = i would project once more)
    grads = [np.array([-1.0, -1.0]), np.array([-3.0, -1.0]), np.array([2.0, 1.0])]
    u, w = MT.combine_gradients(grads, method="pcgrad", order="fixed")
    close(u, [0.2, -0.6], rtol=1e-14, atol=1e-15)
    close(w, [2.5, 1.1, 3.0], rtol=1e-15)
    # the projections use the ORIGINAL g_j: using the projected g0' = (0.2,-0.4) for task 2 instead
    # would give <g2, g0'> = 0 (no projection) -- a different result, so this pins the convention
    # order [2, 1, 0] for every task:
    # task 0: <g0,g2> = -3: g0' = (0.2,-0.4); <g0',g1> = -0.2: g0'' = g0' + 0.02 g1 = (0.14,-0.42)
    # task 1: <g1,g2> = -7: g1' = (-0.2, 0.4); <g1',g0> = -0.2: g1'' = g1' + 0.1 g0 = (-0.3, 0.3)
    # task 2: <g2,g1> = -7: g2' = g2 + 0.7 g1 = (-0.1, 0.3); <g2',g0> = -0.2: g2'' = g2' + 0.1 g0 = (-0.2, 0.2)
    # u = (0.14 - 0.3 - 0.2, -0.42 + 0.3 + 0.2); c = [1, 0.02, 0.6], [0.1, 1, 1.4], [0.1, 0.7, 1]
    u, w = MT.combine_gradients(grads, method="pcgrad", order=[2, 1, 0])
    close(u, [-0.36, 0.08], rtol=1e-14)
    close(w, [1.2, 1.72, 3.0], rtol=1e-14)
    # per-task orders: row i is task i's order; rows all equal = one permutation
    u2, w2 = MT.combine_gradients(grads, method="pcgrad", order=[[2, 1, 0]] * 3)
    assert np.array_equal(u, u2) and np.array_equal(w, w2)
    # task 2 with [2, 1, 0], the others fixed: g0' + g1' = (0, 0) as in the fixed order, g2'' = (-0.2, 0.2)
    u3, _ = MT.combine_gradients(grads, method="pcgrad", order=[[0, 1, 2], [0, 1, 2], [2, 1, 0]])
    close(u3, [-0.2, 0.2], rtol=1e-14, atol=1e-15)


def test_pcgrad_properties():
    # after PCGrad with two tasks, <g_i', g_j> >= 0; the order of the tasks only permutes the weights
    rng = np.random.default_rng(13)
    grads = random_gradients(rng, 5, 3)
    u, w = MT.combine_gradients(list(grads), method="pcgrad")
    perm = [4, 2, 0, 3, 1]
    # relabelling the tasks and passing the matching order gives the same direction
    u2, w2 = MT.combine_gradients(list(grads[perm]), method="pcgrad", order=[perm.index(i) for i in range(5)])
    close(u2, u, rtol=1e-12, atol=1e-14)
    close(w2, w[perm], rtol=1e-12, atol=1e-14)


def test_combine_bad_inputs():
    g = [np.ones(2), np.zeros(2)]
    with pytest.raises(ValueError, match="method must be one of"):
        MT.combine_gradients(g, method="mgda")
    with pytest.raises(TypeError):
        MT.combine_gradients(g)  # method is required, keyword-only
    with pytest.raises(ValueError, match="K = 0"):
        MT.combine_gradients([], method="sum")
    with pytest.raises(ValueError, match=r"gradient 1 .* leaf \['w'\]\[1\]"):
        MT.combine_gradients([{"w": [np.ones(1), np.ones(2)]}, {"w": [np.ones(1), np.ones(3)]}], method="sum")
    with pytest.raises(ValueError, match=r"gradient 1 has NaN or inf at leaf \['b'\]"):
        MT.combine_gradients([{"b": np.ones(2)}, {"b": np.array([1.0, np.nan])}], method="min_norm")
    with pytest.raises(ValueError, match="only used by method='pcgrad'"):
        MT.combine_gradients(g, method="sum", order=[1, 0])
    with pytest.raises(ValueError, match="only used by method='primary'"):
        MT.combine_gradients(g, method="sum", primary=1)
    with pytest.raises(ValueError, match="permutations"):
        MT.combine_gradients(g, method="pcgrad", order=[0, 0])
    with pytest.raises(ValueError, match="permutations"):
        MT.combine_gradients(g, method="pcgrad", order=[0, 1, 2])
    with pytest.raises(ValueError, match="no random order"):
        MT.combine_gradients(g, method="pcgrad", order="random")
    with pytest.raises(TypeError):
        MT.combine_gradients(g, method="pcgrad", key=0)  # the reference has no random PCGrad


# ---------------------------------------------------------------------------------------------
# coefficient_free_l2
# ---------------------------------------------------------------------------------------------


def test_coefficient_free_l2():
    # <g, θ> = -2, ||θ||² = 4: u = g + θ/2
    g, theta = np.array([-1.0, 1.0, 0.0]), np.array([2.0, 0.0, 0.0])
    assert MT.coefficient_free_l2(g, theta).tolist() == [0.0, 1.0, 0.0]
    # <g, θ> >= 0: g unchanged; θ = 0: g
    assert MT.coefficient_free_l2(-g, theta).tolist() == [1.0, -1.0, 0.0]
    assert MT.coefficient_free_l2(g, np.zeros(3)).tolist() == g.tolist()
    # property: <u, θ> = max(<g, θ>, 0), and u = the "primary" direction with θ as the auxiliary
    rng = np.random.default_rng(14)
    for _ in range(20):
        g, theta = rng.normal(size=(2, 6))
        u = MT.coefficient_free_l2(g, theta)
        assert abs(u @ theta - max(g @ theta, 0.0)) <= 1e-14 * np.linalg.norm(g) * np.linalg.norm(theta)
        close(u, MT.combine_gradients([g, theta], method="primary")[0], rtol=1e-13, atol=1e-15)
    # one coefficient for the whole pytree (not per leaf): <g, θ> = -1 + 3 = 2 >= 0, nothing changes
    grad = {"a": np.array([-1.0]), "b": np.array([3.0])}
    params = {"b": np.array([1.0]), "a": np.array([1.0])}
    out = MT.coefficient_free_l2(grad, params)
    assert list(out) == ["a", "b"] and out["a"].tolist() == [-1.0] and out["b"].tolist() == [3.0]
    # <g, θ> = -1 - 1 = -2 over the tree, ||θ||² = 2: u = g + θ
    out = MT.coefficient_free_l2([np.array([-1.0]), (np.array(-1.0), 0.5)], [np.array([1.0]), (np.array(1.0), 0.0)])
    assert out[0].tolist() == [0.0] and float(out[1][0]) == 0.0 and float(out[1][1]) == 0.5


def test_coefficient_free_l2_bad_inputs():
    with pytest.raises(ValueError, match=r"params .* at leaf \['w'\]: shape \(3,\)"):
        MT.coefficient_free_l2({"w": np.ones(2)}, {"w": np.ones(3)})
    with pytest.raises(ValueError, match=r"params .* at the root"):
        MT.coefficient_free_l2({"w": np.ones(2)}, {"v": np.ones(2)})
    with pytest.raises(ValueError, match="grad has NaN or inf at the root"):
        MT.coefficient_free_l2(np.array([np.inf]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"params has NaN or inf at leaf \['t'\]"):
        MT.coefficient_free_l2({"t": np.ones(1)}, {"t": np.array([np.nan])})


# ---------------------------------------------------------------------------------------------
# weigh_losses
# ---------------------------------------------------------------------------------------------


def test_weigh_losses_values():
    losses = [2.0, 6.0, 0.5]
    assert MT.weigh_losses(losses, method="sum") == 8.5
    assert MT.weigh_losses(np.array(losses), method="sum") == 8.5
    assert MT.weigh_losses([1.0, -3.0], method="sum") == -2.0  # no sign requirement
    # initial: 2/4 + 6/3 + 0.5/0.25
    assert MT.weigh_losses(losses, method="initial", initial=[4.0, 3.0, 0.25]) == 4.5
    # prior: 2/2 + 6/6 + 0.5/0.5 = 3
    assert MT.weigh_losses(losses, method="prior", prior=losses) == 3.0
    assert MT.weigh_losses([-1.0, 2.0], method="prior", prior=[1.0, 4.0]) == -0.5


def test_realtime_is_k():
    rng = np.random.default_rng(15)
    for k in (1, 2, 7):
        losses = np.exp(rng.normal(scale=50.0, size=k))  # 1e-20 .. 1e20
        assert MT.weigh_losses(losses, method="realtime") == float(k)
    assert MT.weigh_losses([5e-324, 1.7e308], method="realtime") == 2.0


def test_geometric_and_power():
    # geometric = Σ log L = log Π L: exact for powers of two (log 2^a = a log 2)
    assert MT.weigh_losses([2.0, 8.0, 0.25], method="geometric") == pytest.approx(2 * LOG2, rel=1e-15)
    losses = [0.3, 2.0, 7.5, 1e-3]
    close(MT.weigh_losses(losses, method="geometric"), math.log(math.prod(losses)), rtol=1e-15)
    # its derivative in L_i is 1/L_i (the real-time weighting's gradient): central difference
    h = 1e-6
    for i, x in enumerate(losses):
        up = [v + h * x if j == i else v for j, v in enumerate(losses)]
        down = [v - h * x if j == i else v for j, v in enumerate(losses)]
        slope = (MT.weigh_losses(up, method="geometric") - MT.weigh_losses(down, method="geometric")) / (2 * h * x)
        close(slope, 1.0 / x, rtol=1e-8)
    # power: γ = 1 arithmetic, γ = -1 harmonic, γ = 2 root mean square, γ = 0 geometric mean
    assert MT.weigh_losses([1.0, 2.0, 6.0], method="power", gamma=1.0) == 3.0
    assert MT.weigh_losses([1.0, 3.0, 6.0], method="power", gamma=-1.0) == 2.0  # 3/(1 + 1/3 + 1/6)
    assert MT.weigh_losses([1.0, 7.0], method="power", gamma=2.0) == 5.0  # sqrt((1 + 49)/2)
    assert MT.weigh_losses([1.0, 4.0], method="power", gamma=0.0) == 2.0
    close(MT.weigh_losses(losses, method="power", gamma=0.0),
          math.exp(MT.weigh_losses(losses, method="geometric") / len(losses)), rtol=1e-15)
    # γ -> 0 is continuous: ((1/K) Σ L^γ)^{1/γ} = G·(1 + γ·Var(log L)/2 + O(γ²))
    logs = np.log(losses)
    geo = MT.weigh_losses(losses, method="power", gamma=0.0)
    for gamma in (1e-6, -1e-6):
        close(MT.weigh_losses(losses, method="power", gamma=gamma), geo * (1 + gamma * np.var(logs) / 2), rtol=1e-9)
    # monotone in γ (power mean inequality)
    values = [MT.weigh_losses(losses, method="power", gamma=g) for g in (-3.0, -1.0, 0.0, 0.5, 1.0, 4.0)]
    assert values == sorted(values)
    # no overflow / underflow in the intermediate L^γ
    assert MT.weigh_losses([1e300, 1e300], method="power", gamma=4.0) == 1e300
    assert MT.weigh_losses([1e-300, 1e-300], method="power", gamma=-4.0) == 1e-300
    close(MT.weigh_losses([1e200, 3e200], method="power", gamma=1.0), 2e200, rtol=1e-15)
    # inf: +inf for γ >= 0; for γ < 0 its term inf^γ is 0: harmonic of [2, inf] is 2/(1/2) = 4
    assert MT.weigh_losses([1.0, math.inf], method="power", gamma=1.0) == math.inf
    assert MT.weigh_losses([2.0, math.inf], method="power", gamma=-1.0) == 4.0
    assert MT.weigh_losses([1.0, math.inf], method="geometric") == math.inf


def test_uncertainty():
    # Σ ½ exp(-s_i) L_i + ½ s_i
    assert MT.weigh_losses([3.0, 1.0], method="uncertainty", log_vars=[0.0, 0.0]) == 2.0
    close(MT.weigh_losses([4.0], method="uncertainty", log_vars=[LOG2]), [1.0 + LOG2 / 2], rtol=1e-15)
    # the minimiser in s is s = log L (σ² = L), where the value is ½ (1 + log L)
    for x in (0.1, 2.0, 50.0):
        s = math.log(x)
        value = MT.weigh_losses([x], method="uncertainty", log_vars=[s])
        close(value, 0.5 * (1 + s), rtol=1e-15)
        for ds in (1e-3, -1e-3):
            assert MT.weigh_losses([x], method="uncertainty", log_vars=[s + ds]) > value
    # losses need no sign; huge log-variances do not overflow
    assert MT.weigh_losses([-2.0], method="uncertainty", log_vars=[0.0]) == -1.0
    assert MT.weigh_losses([1.0], method="uncertainty", log_vars=[-800.0]) == math.inf  # ½ e^800 overflows
    close(MT.weigh_losses([1.0], method="uncertainty", log_vars=[700.0]), [350.0], rtol=1e-15)


def test_weigh_losses_nan_propagates():
    for method, kwargs in [("sum", {}), ("realtime", {}), ("geometric", {}), ("power", {"gamma": 2.0}),
                           ("initial", {"initial": [1.0, 1.0]}), ("prior", {"prior": [1.0, 1.0]}),
                           ("uncertainty", {"log_vars": [0.0, 0.0]})]:
        assert math.isnan(MT.weigh_losses([1.0, math.nan], method=method, **kwargs)), method


def test_weigh_losses_bad_inputs():
    for method, kwargs in [("initial", {"initial": [1.0, 1.0]}), ("realtime", {}), ("geometric", {}),
                           ("power", {"gamma": 1.0})]:
        with pytest.raises(ValueError, match="task 1 has -0.5"):
            MT.weigh_losses([1.0, -0.5], method=method, **kwargs)
        with pytest.raises(ValueError, match="task 0 has 0.0"):
            MT.weigh_losses([0.0, 1.0], method=method, **kwargs)
    with pytest.raises(ValueError, match="positive initial losses: task 1"):
        MT.weigh_losses([1.0, 1.0], method="initial", initial=[1.0, 0.0])
    with pytest.raises(ValueError, match="positive prior: task 0"):
        MT.weigh_losses([1.0, 1.0], method="prior", prior=[-1.0, 1.0])
    with pytest.raises(ValueError, match="K = 0"):
        MT.weigh_losses([], method="sum")
    with pytest.raises(ValueError, match="method must be one of"):
        MT.weigh_losses([1.0], method="gradnorm")
    with pytest.raises(ValueError, match="needs initial="):
        MT.weigh_losses([1.0], method="initial")
    with pytest.raises(ValueError, match="needs gamma="):
        MT.weigh_losses([1.0], method="power")
    with pytest.raises(ValueError, match="needs log_vars="):
        MT.weigh_losses([1.0], method="uncertainty")
    with pytest.raises(ValueError, match="does not use gamma="):
        MT.weigh_losses([1.0], method="geometric", gamma=0.0)
    with pytest.raises(ValueError, match="K = 2 entries"):
        MT.weigh_losses([1.0, 2.0], method="initial", initial=[1.0])
    with pytest.raises(ValueError, match="1-D"):
        MT.weigh_losses([[1.0, 2.0]], method="sum")
    with pytest.raises(ValueError, match="gamma must be finite"):
        MT.weigh_losses([1.0], method="power", gamma=math.nan)
    with pytest.raises(TypeError, match="gamma"):
        MT.weigh_losses([1.0], method="power", gamma="1")
    with pytest.raises(ValueError, match="log_vars must be finite"):
        MT.weigh_losses([1.0], method="uncertainty", log_vars=[math.inf])
    with pytest.raises(TypeError, match="real"):
        MT.weigh_losses([True, False], method="sum")

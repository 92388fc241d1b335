"""Tests of the float64 oracle for SPEC section D1-D3 (polyloss.reference.adversarial) and of the reference
model with analytic gradients (polyloss.reference._models).

Every expected value is a hand-derived closed form or an identity; the analytic gradients are checked
against finite differences, so a wrong oracle fails here before it is used to judge the backends.
NumPy only, fast.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from polyloss.reference import _models as M
from polyloss.reference import adversarial as A
from polyloss.reference import multilabel_divergence

INF = math.inf
NAN = math.nan


def close(a, b, rtol=1e-14, atol=0.0):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol)


def half_sq(z):
    """½‖z‖², gradient z."""
    return 0.5 * float(np.sum(z * z))


@pytest.mark.parametrize("module", [A, M])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# FGM perturbation
# ---------------------------------------------------------------------------------------------


def test_fgm_l2_norm_and_direction():
    g = np.array([[1.0, -2.0], [2.0, 4.0]])  # ‖g‖ = 5
    d = A.fgm_perturbation(g, epsilon=0.7)
    close(d, 0.7 * g / 5.0)
    close(np.linalg.norm(d), 0.7)
    assert d.dtype == np.float64 and d.shape == g.shape
    # 3-4-5, any epsilon; a 0-d gradient is one unit
    close(A.fgm_perturbation([3.0, 4.0], epsilon=2.0), [1.2, 1.6])
    close(A.fgm_perturbation(-3.0, epsilon=2.0), -2.0)


def test_fgm_sign_form():
    g = np.array([[0.5, -3.0, 0.0], [1e-300, -7.0, 2.0]])
    close(A.fgm_perturbation(g, epsilon=0.25, norm="sign"), 0.25 * np.sign(g), rtol=0)
    # scope does not change the sign form of finite gradients
    close(A.fgm_perturbation(g, norm="sign", scope="example"), np.sign(g), rtol=0)


def test_fgm_per_example():
    g = np.array([[[3.0, 0.0], [0.0, 4.0]], [[0.0, 0.0], [1.0, 0.0]]])  # rows of norm 5 and 1
    d = A.fgm_perturbation(g, epsilon=1.5, scope="example")
    close(d[0], 1.5 * g[0] / 5.0)
    close(d[1], 1.5 * g[1])
    close(np.linalg.norm(d.reshape(2, -1), axis=1), [1.5, 1.5])
    # global: one norm over everything (‖g‖ = √26)
    close(A.fgm_perturbation(g, epsilon=1.5), 1.5 * g / math.sqrt(26.0))


def test_fgm_where():
    g = np.array([[3.0, 4.0, 100.0], [0.0, 8.0, 6.0]])
    where = np.array([True, True, False])  # broadcast over the rows: the last column is padding
    close(A.fgm_perturbation(g, where=where, scope="example"), [[0.6, 0.8, 0.0], [0.0, 1.0, 0.0]])
    close(A.fgm_perturbation(g, where=where), np.array([[3.0, 4.0, 0.0], [0.0, 8.0, 0.0]]) / math.sqrt(89.0))
    # a NaN or inf at an excluded position is ignored
    g_bad = g.copy()
    g_bad[:, 2] = [NAN, INF]
    close(A.fgm_perturbation(g_bad, where=where, scope="example"), [[0.6, 0.8, 0.0], [0.0, 1.0, 0.0]])
    # a row with nothing included gets 0
    close(A.fgm_perturbation(g, where=np.array([[False], [True]]), scope="example"), [[0, 0, 0], [0, 0.8, 0.6]])
    # sign: excluded positions are 0 too
    close(A.fgm_perturbation(g, norm="sign", where=where), [[1, 1, 0], [0, 1, 0]], rtol=0)


def test_fgm_zero_inf_nan_gradients():
    zeros = np.zeros((2, 3))
    for norm in ("l2", "sign"):
        for scope in ("global", "example"):
            out = A.fgm_perturbation(zeros, norm=norm, scope=scope)
            assert np.all(out == 0.0) and not np.any(np.isnan(out))
    for bad in (NAN, INF, -INF):
        g = np.array([[1.0, bad], [3.0, 4.0]])
        for norm in ("l2", "sign"):
            # example scope: only the unit holding the non-finite entry gets 0
            ex = A.fgm_perturbation(g, norm=norm, scope="example")
            close(ex[0], [0.0, 0.0], rtol=0)
            close(ex[1], [0.6, 0.8] if norm == "l2" else [1.0, 1.0])
            # global scope: the whole array is one unit
            gl = A.fgm_perturbation(g, norm=norm)
            assert np.all(gl == 0.0)
    # epsilon = 0 gives exact zeros whatever the gradient
    out = A.fgm_perturbation([[NAN, -1.0], [2.0, 3.0]], epsilon=0.0, scope="example")
    assert np.all(out == 0.0) and not np.any(np.signbit(out))


def test_fgm_extreme_magnitudes():
    # the norm is the true norm: no overflow of the sum of squares, no underflow of tiny gradients
    close(A.fgm_perturbation([3e300, 4e300]), [0.6, 0.8])
    tiny = math.ldexp(1.0, -1070)  # 3·2^-1070 and 4·2^-1070 are exact subnormals
    close(A.fgm_perturbation([3 * tiny, 4 * tiny]), [0.6, 0.8])
    close(A.fgm_perturbation([[3e300, 4e300], [3 * tiny, -4 * tiny]], scope="example"), [[0.6, 0.8], [0.6, -0.8]])


# ---------------------------------------------------------------------------------------------
# adversarial loss: FGM and PGD
# ---------------------------------------------------------------------------------------------


def test_adversarial_loss_fgm_quadratic():
    # L = ½‖x‖², ∇L = x: x + δ = (1 + ε/‖x‖) x, so L(x + δ) = ½(‖x‖ + ε)²
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    r = float(np.linalg.norm(x))
    for eps in (0.0, 0.5, 2.0):
        loss, adv = A.adversarial_loss(half_sq, x, epsilon=eps, grad_fn=lambda z: z)
        close(loss, 0.5 * r * r)
        close(adv, 0.5 * (r + eps) ** 2)
        _, adv_fd = A.adversarial_loss(half_sq, x, epsilon=eps)  # finite differences
        close(adv_fd, 0.5 * (r + eps) ** 2, rtol=1e-11)
        assert loss.shape == () and adv.shape == ()
    # per example: ½ Σ_b (‖x_b‖ + ε)²
    rows = np.linalg.norm(x, axis=1)
    _, adv = A.adversarial_loss(half_sq, x, epsilon=0.3, scope="example", grad_fn=lambda z: z)
    close(adv, 0.5 * np.sum((rows + 0.3) ** 2))
    # sign: ½ Σ (|x_i| + ε)²
    _, adv = A.adversarial_loss(half_sq, x, epsilon=0.3, norm="sign", grad_fn=lambda z: z)
    close(adv, 0.5 * np.sum((np.abs(x) + 0.3) ** 2))


def test_adversarial_loss_epsilon_zero_is_the_clean_loss():
    x = np.array([1.0, -2.0, 0.5])
    loss, adv = A.adversarial_loss(lambda z: float(np.sum(np.exp(z))), x, epsilon=0.0, steps=3)
    assert float(loss) == float(adv)


def test_pgd_one_step_of_epsilon_is_fgm():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4))
    where = rng.random((3, 4)) > 0.25
    loss = lambda z: float(np.sum(np.log(np.cosh(z))) + 0.3 * z[0, 0] * z[1, 1])  # noqa: E731
    grad = A.numerical_gradient(loss, x)
    for norm in ("l2", "sign"):
        for scope in ("global", "example"):
            fgm = A.fgm_perturbation(grad, epsilon=0.7, norm=norm, scope=scope, where=where)
            for step_size in (0.7, None, 5.0):  # any α ≥ ε projects back onto ε·dir; the default is 2.5ε
                pgd = A.adversarial_perturbation(loss, x, epsilon=0.7, norm=norm, scope=scope, steps=1,
                                                 step_size=step_size, where=where)
                close(pgd, fgm, rtol=1e-15, atol=1e-16)
            if norm == "sign":  # clipping is exact
                pgd = A.adversarial_perturbation(loss, x, epsilon=0.7, norm="sign", scope=scope, where=where)
                assert np.array_equal(pgd, fgm)


def test_pgd_by_hand():
    # L = ½‖x‖², x = (1, 0): every gradient x + δ points along (1, 0), δ_t = min(t·α, ε)·(1, 0)
    x = np.array([1.0, 0.0])
    grad = lambda z: z  # noqa: E731
    close(A.adversarial_perturbation(half_sq, x, epsilon=1.0, steps=3, step_size=0.3, grad_fn=grad), [0.9, 0.0])
    close(A.adversarial_perturbation(half_sq, x, epsilon=1.0, steps=3, step_size=0.5, grad_fn=grad), [1.0, 0.0])
    # sign, linear loss a·x: δ = clip(K·α·sign a, ±ε); a zero slope stays 0
    a = np.array([2.0, -0.5, 0.0])
    lin = lambda z: float(a @ z)  # noqa: E731
    close(A.adversarial_perturbation(lin, np.zeros(3), epsilon=1.0, norm="sign", steps=2, step_size=0.25,
                                     grad_fn=lambda z: a), [0.5, -0.5, 0.0])
    close(A.adversarial_perturbation(lin, np.zeros(3), epsilon=1.0, norm="sign", steps=3, step_size=0.4,
                                     grad_fn=lambda z: a), [1.0, -1.0, 0.0], rtol=0)
    # a turn: L = x₁ on step 1 then x₂: gradient (1, 0) at δ = 0, (0, 1) afterwards; ε = 1, α = 1:
    # δ₁ = (1, 0); δ₂ = Π(1, 1) = (1, 1)/√2
    turn = lambda z: np.array([1.0, 0.0]) if np.all(z == 0) else np.array([0.0, 1.0])  # noqa: E731
    close(A.adversarial_perturbation(lambda z: 0.0, np.zeros(2), epsilon=1.0, steps=2, step_size=1.0, grad_fn=turn),
          [1 / math.sqrt(2), 1 / math.sqrt(2)])


def test_pgd_default_step_size():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3))
    loss = lambda z: float(np.sum(np.sin(z)) + z[0, 1] * z[1, 2])  # noqa: E731
    for steps in (2, 5):
        default = A.adversarial_perturbation(loss, x, epsilon=0.4, steps=steps)
        explicit = A.adversarial_perturbation(loss, x, epsilon=0.4, steps=steps, step_size=2.5 * 0.4 / steps)
        assert np.array_equal(default, explicit)


def test_pgd_stays_in_the_ball():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 5))
    where = np.ones((3, 5), dtype=bool)
    where[:, -1] = False
    loss = lambda z: float(np.sum(np.cos(3.0 * z)) + np.sum(z[:-1] * z[1:]))  # noqa: E731
    for steps in (2, 6):
        for step_size in (None, 0.05, 3.0):
            d = A.adversarial_perturbation(loss, x, epsilon=0.5, scope="global", steps=steps, step_size=step_size,
                                           where=where)
            assert np.linalg.norm(d) <= 0.5 * (1 + 1e-15)
            assert np.all(d[:, -1] == 0.0)
            d = A.adversarial_perturbation(loss, x, epsilon=0.5, scope="example", steps=steps, step_size=step_size,
                                           where=where)
            assert np.all(np.linalg.norm(d, axis=1) <= 0.5 * (1 + 1e-15))
            d = A.adversarial_perturbation(loss, x, epsilon=0.5, norm="sign", steps=steps, step_size=step_size,
                                           where=where)
            assert np.max(np.abs(d)) <= 0.5 and np.all(d[:, -1] == 0.0)
    # the default path (2.5ε) reaches the boundary of the l2 ball
    d = A.adversarial_perturbation(loss, x, epsilon=0.5, steps=4)
    close(np.linalg.norm(d), 0.5, rtol=1e-15)


def test_adversarial_loss_nan_loss():
    # a NaN loss gives a NaN gradient, hence δ = 0 (no NaN spreads into x + δ), and a NaN adversarial loss
    seen = []

    def loss(z):
        seen.append(np.all(np.isfinite(z)))
        return float(np.sum(z)) * NAN

    out = A.adversarial_loss(loss, np.ones(3), steps=2)
    assert all(seen) and math.isnan(out[0]) and math.isnan(out[1])
    assert np.all(A.adversarial_perturbation(loss, np.ones(3), steps=2) == 0.0)


# ---------------------------------------------------------------------------------------------
# gradient penalty
# ---------------------------------------------------------------------------------------------


def test_gradient_penalty_quadratic():
    # L = ½ xᵀAx (A symmetric): ∇L = Ax, penalty ½‖Ax‖², normalised ‖Ax‖
    rng = np.random.default_rng(4)
    q = rng.normal(size=(4, 4))
    a = q + q.T
    x = rng.normal(size=4)
    loss_fn = lambda z: 0.5 * float(z @ a @ z)  # noqa: E731
    ax = a @ x
    loss, pen = A.gradient_penalty(loss_fn, x, grad_fn=lambda z: a @ z)
    close(loss, 0.5 * x @ a @ x, rtol=1e-13)
    close(pen, 0.5 * ax @ ax, rtol=1e-13)
    _, pen = A.gradient_penalty(loss_fn, x, normalized=True, grad_fn=lambda z: a @ z)
    close(pen, np.linalg.norm(ax), rtol=1e-14)
    _, pen_fd = A.gradient_penalty(loss_fn, x)  # finite differences: exact for quadratics up to rounding
    close(pen_fd, 0.5 * ax @ ax, rtol=1e-10)


def test_gradient_penalty_per_example_and_batch_scale():
    # ℓ_b = ½ x_bᵀ A x_b: penalty_b = ½‖A x_b‖²;
    # the mean loss (1/B) Σ ℓ_b has the global penalty (1/B²) Σ_b ½‖A x_b‖²
    rng = np.random.default_rng(5)
    a = np.diag([1.0, 2.0, 3.0])
    x = rng.normal(size=(4, 3))
    per_example = lambda z: 0.5 * np.einsum("bi,ij,bj->b", z, a, z)  # noqa: E731
    grad_sum = lambda z: z @ a  # noqa: E731
    loss, pen = A.gradient_penalty(per_example, x, scope="example", grad_fn=grad_sum)
    close(loss, per_example(x))
    expected = 0.5 * np.sum((x @ a) ** 2, axis=1)
    close(pen, expected, rtol=1e-14)
    assert pen.shape == (4,)
    _, pen_fd = A.gradient_penalty(per_example, x, scope="example")
    close(pen_fd, expected, rtol=1e-10)
    _, mean_pen = A.gradient_penalty(lambda z: float(np.mean(per_example(z))), x, grad_fn=lambda z: grad_sum(z) / 4)
    close(mean_pen, np.sum(expected) / 16.0, rtol=1e-14)
    # where leaves positions out of the norm
    where = np.array([True, False, True])
    _, pen = A.gradient_penalty(per_example, x, scope="example", where=where, grad_fn=grad_sum)
    close(pen, 0.5 * np.sum(((x @ a) * where) ** 2, axis=1), rtol=1e-14)
    _, pen = A.gradient_penalty(per_example, x, scope="example", normalized=True, grad_fn=grad_sum)
    close(pen, np.linalg.norm(x @ a, axis=1), rtol=1e-14)


def test_gradient_penalty_nonfinite_and_exact():
    loss_fn = lambda z: 0.0  # noqa: E731
    _, pen = A.gradient_penalty(loss_fn, np.zeros(2), grad_fn=lambda z: np.array([NAN, 1.0]))
    assert math.isnan(pen)
    _, pen = A.gradient_penalty(loss_fn, np.zeros(2), grad_fn=lambda z: np.array([INF, 1.0]))
    assert pen == INF
    _, pen = A.gradient_penalty(loss_fn, np.zeros(2), normalized=True, grad_fn=lambda z: np.array([NAN, INF]))
    assert math.isnan(pen)
    # the squared norm overflows (the true value 1e400 is past float64), the norm does not
    big = lambda z: np.array([1e200, 1e200])  # noqa: E731
    assert A.gradient_penalty(loss_fn, np.zeros(2), grad_fn=big)[1] == INF
    close(A.gradient_penalty(loss_fn, np.zeros(2), normalized=True, grad_fn=big)[1], math.sqrt(2.0) * 1e200)
    # exactly rounded: ½ (1 + 2^-60 ... ) terms that a naive sum would drop
    g = np.array([1.0, 2.0 ** -30, 2.0 ** -30])  # Σ g² = 1 + 2^-59, exactly representable
    assert float(A.gradient_penalty(loss_fn, np.zeros(3), grad_fn=lambda z: g)[1]) == 0.5 * (1.0 + 2.0 ** -59)
    # a NaN at an excluded position is ignored
    _, pen = A.gradient_penalty(loss_fn, np.zeros(2), where=np.array([True, False]),
                                grad_fn=lambda z: np.array([2.0, NAN]))
    assert float(pen) == 2.0


# ---------------------------------------------------------------------------------------------
# numerical gradient
# ---------------------------------------------------------------------------------------------


def test_numerical_gradient_accuracy():
    # the step grows with |x_i|: accurate for functions that vary on the scale max(1, |x_i|)
    x = np.array([[0.3, -1.7], [12.0, -250.0]])
    scale = np.maximum(1.0, np.abs(x))
    fn = lambda z: float(np.sum(np.sin(z / scale)) + np.sum(np.exp(z / scale)))  # noqa: E731
    exact = (np.cos(x / scale) + np.exp(x / scale)) / scale
    close(A.numerical_gradient(fn, x), exact, rtol=1e-11, atol=1e-12)
    # degree ≤ 4 polynomials: exact up to rounding; several outputs are summed
    close(A.numerical_gradient(lambda z: z ** 3, np.array([0.5, 2.0])), [0.75, 12.0], rtol=1e-13)
    assert math.isnan(A.numerical_gradient(lambda z: float(np.sum(z)), np.array([1.0, INF]))[1])


# ---------------------------------------------------------------------------------------------
# the reference model
# ---------------------------------------------------------------------------------------------


def _model(seed=0, B=3, L=4, D=3, C=4, V=6):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(V, D))
    w = rng.normal(size=(D, C))
    c = rng.normal(size=C)
    ids = rng.integers(0, V, size=(B, L))
    ids[0, :2] = 1  # token 1 used twice in one example
    y = rng.integers(0, C, size=B)
    mask = np.ones((B, L), dtype=bool)
    mask[0, -1] = False
    mask[1, 2:] = False
    return emb, w, c, ids, y, mask


def test_model_loss_by_hand():
    # W = 0, c = 0: uniform softmax, CE = log C
    loss, per = M.classifier_loss(np.ones((2, 3, 2)), np.zeros((2, 5)), np.zeros(5), np.array([0, 4]))
    close(per, [math.log(5.0)] * 2)
    close(loss, math.log(5.0))
    # pooling: mean over the valid positions; a row with none pools to 0 (logits = c)
    x = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 5.0], [7.0, 7.0]]])
    z = M.pooled_logits(x, np.eye(2), np.array([0.0, 1.0]), mask=np.array([[True, True], [False, False]]))
    close(z, [[2.0, 4.0], [0.0, 1.0]])
    # the embedding lookup
    emb, w, c, ids, y, mask = _model()
    close(M.embedding_classifier_loss(emb, w, c, ids, y, mask=mask)[1],
          M.classifier_loss(emb[ids], w, c, y, mask=mask)[1], rtol=0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_model_gradients_against_finite_differences(reduction):
    emb, w, c, ids, y, mask = _model()
    x = M.embed(emb, ids)
    pick = (lambda out: out[0]) if reduction == "mean" else (lambda out: out[1])
    g = M.embedding_classifier_gradients(emb, w, c, ids, y, mask=mask, reduction=reduction)
    close(g["x"], A.numerical_gradient(lambda z: pick(M.classifier_loss(z, w, c, y, mask=mask)), x), atol=1e-10)
    close(g["weights"], A.numerical_gradient(lambda v: pick(M.classifier_loss(x, v, c, y, mask=mask)), w), atol=1e-10)
    close(g["bias"], A.numerical_gradient(lambda v: pick(M.classifier_loss(x, w, v, y, mask=mask)), c), atol=1e-10)
    close(g["embeddings"],
          A.numerical_gradient(lambda e: pick(M.embedding_classifier_loss(e, w, c, ids, y, mask=mask)), emb),
          atol=1e-10)
    assert np.all(g["x"][~mask] == 0.0)
    # the plain linear model x [B, D]
    x2 = np.random.default_rng(9).normal(size=(3, 3))
    g2 = M.classifier_gradients(x2, w, c, y, reduction=reduction)
    close(g2["x"], A.numerical_gradient(lambda z: pick(M.classifier_loss(z, w, c, y)), x2), atol=1e-10)


def test_model_embedding_gradient_is_a_scatter_sum():
    emb, w, c, ids, y, mask = _model()
    g = M.embedding_classifier_gradients(emb, w, c, ids, y, mask=mask)
    expected = np.zeros_like(emb)
    for idx in np.ndindex(*ids.shape):
        expected[ids[idx]] += g["x"][idx]
    close(g["embeddings"], expected, rtol=1e-15, atol=1e-17)
    unused = sorted(set(range(emb.shape[0])) - set(ids.ravel().tolist()))
    assert all(np.all(g["embeddings"][v] == 0.0) for v in unused)


@pytest.mark.parametrize("scope", ["global", "example"])
@pytest.mark.parametrize("normalized", [False, True])
def test_model_penalty_and_double_backprop(scope, normalized):
    emb, w, c, ids, y, mask = _model(seed=1)
    x = M.embed(emb, ids)
    where = np.random.default_rng(2).random(x.shape) > 0.3
    out = M.classifier_penalty(x, w, c, y, mask=mask, where=where, scope=scope, normalized=normalized)
    # the value equals the penalty of the adversarial reference with the analytic input gradient
    if scope == "global":
        loss_fn = lambda z: M.classifier_loss(z, w, c, y, mask=mask)[0]  # noqa: E731
        grad_fn = lambda z: M.classifier_gradients(z, w, c, y, mask=mask)["x"]  # noqa: E731
    else:
        loss_fn = lambda z: M.classifier_loss(z, w, c, y, mask=mask)[1]  # noqa: E731
        grad_fn = lambda z: M.classifier_gradients(z, w, c, y, mask=mask, reduction="sum")["x"]  # noqa: E731
    _, pen = A.gradient_penalty(loss_fn, x, scope=scope, normalized=normalized, where=where, grad_fn=grad_fn)
    close(out["penalty"], pen, rtol=1e-14)
    _, pen_fd = A.gradient_penalty(loss_fn, x, scope=scope, normalized=normalized, where=where)
    close(out["penalty"], pen_fd, rtol=1e-9)

    # its gradients (the gradient of Σ_b P_b for scope="example") against finite differences
    def total(w_=w, c_=c, x_=x):
        p = M.classifier_penalty(x_, w_, c_, y, mask=mask, where=where, scope=scope, normalized=normalized)
        return float(np.sum(p["penalty"]))

    scale = max(1.0, float(np.max(np.abs(out["weights"]))))
    close(out["weights"], A.numerical_gradient(lambda v: total(w_=v), w), atol=1e-10 * scale)
    close(out["bias"], A.numerical_gradient(lambda v: total(c_=v), c), atol=1e-10 * scale)
    close(out["x"], A.numerical_gradient(lambda v: total(x_=v), x), atol=1e-10 * scale)


def test_model_penalty_batch_scale():
    # mean loss, independent examples: global penalty = (1/B²) Σ_b per-example penalty
    emb, w, c, ids, y, mask = _model(seed=3)
    x = M.embed(emb, ids)
    glob = M.classifier_penalty(x, w, c, y, mask=mask)
    per = M.classifier_penalty(x, w, c, y, mask=mask, scope="example")
    close(glob["penalty"], np.sum(per["penalty"]) / 9.0, rtol=1e-14)
    close(glob["weights"], per["weights"] / 9.0, rtol=1e-13, atol=1e-18)


# ---------------------------------------------------------------------------------------------
# KL divergence
# ---------------------------------------------------------------------------------------------


def _naive_kl(s, t):
    ls = s - np.max(s, axis=-1, keepdims=True)
    ls = ls - np.log(np.sum(np.exp(ls), axis=-1, keepdims=True))
    lt = t - np.max(t, axis=-1, keepdims=True)
    lt = lt - np.log(np.sum(np.exp(lt), axis=-1, keepdims=True))
    return np.sum(np.exp(ls) * (ls - lt), axis=-1)


def test_kl_values_and_direction():
    rng = np.random.default_rng(6)
    s = rng.normal(size=(5, 4)) * 3
    t = rng.normal(size=(5, 4)) * 3
    kl = A.softmax_kl_divergence(s, t)
    close(kl, _naive_kl(s, t), rtol=1e-12)
    assert np.all(kl >= 0)
    # KL(p‖q), not KL(q‖p): p = (½, ½), q = (0.9, 0.1)
    q = np.log([[0.9, 0.1]])
    close(A.softmax_kl_divergence([[0.0, 0.0]], q), [0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)])
    close(A.softmax_kl_divergence(q, [[0.0, 0.0]]), [0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)])
    # zero at equal logits (exactly) and, up to rounding, under a common shift
    assert np.all(A.softmax_kl_divergence(s, s) == 0.0)
    assert np.all(A.softmax_kl_divergence(s, s + 7.25) < 1e-28)
    # nonnegative also for nearly equal inputs
    assert np.all(A.softmax_kl_divergence(s, s + 1e-9 * rng.normal(size=s.shape)) >= 0.0)


def test_kl_accurate_when_tiny_and_huge():
    # p = (½, ½), q = softmax(0, δ): KL = log cosh(δ/2) = δ²/8 - δ⁴/192 + …
    for delta in (1e-3, 1e-6, 1e-9):
        expected = delta ** 2 / 8 - delta ** 4 / 192 + delta ** 6 / 2880
        close(A.softmax_kl_divergence([[0.0, 0.0]], [[0.0, delta]]), [expected], rtol=1e-14)
    # q ≈ (1, e^-1000): KL = ½ log ½ + ½ (log ½ + 1000) = 500 - log 2 (the direct form, no overflow)
    close(A.softmax_kl_divergence([[0.0, 0.0]], [[1000.0, 0.0]]), [500.0 - math.log(2.0)], rtol=1e-15)
    close(A.softmax_kl_divergence([[0.0, 0.0]], [[-1000.0, 0.0]]), [500.0 - math.log(2.0)], rtol=1e-15)
    # large logits, small divergence
    delta = (1e4 + 1e-6) - 1e4  # the representable δ (exact difference)
    close(A.softmax_kl_divergence([[1e4, 1e4]], [[1e4, 1e4 + delta]]), [delta ** 2 / 8], rtol=1e-13)


def test_kl_masked_classes_and_nan():
    # p = (0, 1) (s₀ = -inf), q = (½, ½): KL = log 2; a class -inf on both sides is dropped
    close(A.softmax_kl_divergence([[-INF, 0.0]], [[0.0, 0.0]]), [math.log(2.0)])
    close(A.softmax_kl_divergence([[-INF, 0.0, 0.0]], [[-INF, 0.0, 0.0]]), [0.0], rtol=0)
    # p > 0 where q = 0: +inf; NaN and +inf logits: NaN
    assert A.softmax_kl_divergence([[0.0, 0.0]], [[-INF, 0.0]])[0] == INF
    assert math.isnan(A.softmax_kl_divergence([[NAN, 0.0]], [[0.0, 0.0]])[0])
    assert math.isnan(A.softmax_kl_divergence([[INF, 0.0]], [[0.0, 0.0]])[0])
    # [B, L, C]: summed over L
    s = np.zeros((1, 2, 2))
    t = np.array([[[0.0, math.log(3.0)], [0.0, 0.0]]])
    close(A.softmax_kl_divergence(s, t), [math.log(2.0) - 0.5 * math.log(3.0)])


# ---------------------------------------------------------------------------------------------
# VAT
# ---------------------------------------------------------------------------------------------


def _linear(seed=0, B=2, L=3, D=3, C=4):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(D, C))
    c = rng.normal(size=C)
    x = rng.normal(size=(B, L, D))
    mask = np.ones((B, L), dtype=bool)
    mask[0, -1] = False
    noise = rng.normal(size=x.shape)
    return x, w, c, mask, noise


def test_vat_iterations_zero_is_normalised_noise():
    x, w, c, mask, noise = _linear()
    f = lambda z: M.pooled_logits(z, w, c, mask=mask)  # noqa: E731
    r = A.vat_perturbation(f, x, epsilon=2.0, iterations=0, noise=noise)
    close(r, 2.0 * noise / np.linalg.norm(noise.reshape(2, -1), axis=1)[:, None, None], rtol=1e-15)
    for divergence in ("kl", "multilabel"):
        out = A.vat_loss(f, x, divergence=divergence, epsilon=2.0, iterations=0, noise=noise)
        pert = f(x + r)
        expected = (A.softmax_kl_divergence(f(x), pert) if divergence == "kl"
                    else multilabel_divergence(f(x), pert))
        close(out, expected, rtol=0)
    # scope="global": one norm over the whole array
    r = A.vat_perturbation(f, x, epsilon=2.0, iterations=0, noise=noise, scope="global")
    close(r, 2.0 * noise / np.linalg.norm(noise), rtol=1e-15)


def test_vat_epsilon_zero_gives_zero():
    x, w, c, mask, noise = _linear()
    f = lambda z: M.pooled_logits(z, w, c, mask=mask)  # noqa: E731
    for divergence in ("kl", "multilabel"):
        out = A.vat_loss(f, x, divergence=divergence, epsilon=0.0, iterations=2, noise=noise)
        assert out.shape == (2,) and np.all(out == 0.0)
    assert np.all(A.vat_perturbation(f, x, epsilon=0.0, noise=noise) == 0.0)


@pytest.mark.parametrize("divergence", ["kl", "multilabel"])
@pytest.mark.parametrize("pooled", [True, False])
def test_vat_power_iteration_finds_the_dominant_eigenvector(divergence, pooled):
    x, w, c, mask, noise = _linear(seed=1)
    if not pooled:  # the plain linear softmax model f(x) = xW + c
        x, noise, mask = x[:, 0, :], noise[:, 0, :], None
    f = lambda z: M.pooled_logits(z, w, c, mask=mask)  # noqa: E731
    clean = f(x)
    grad_fn = lambda z: M.divergence_gradient(z, clean, w, c, mask=mask, divergence=divergence)  # noqa: E731
    values, vectors = M.dominant_eigenvector(M.vat_hessian(x, w, c, mask=mask, divergence=divergence))
    second = np.linalg.eigvalsh(M.vat_hessian(x, w, c, mask=mask, divergence=divergence))[:, -2]
    assert np.all(second < 0.9 * values)  # a gap, so that the top direction is well defined
    r = A.vat_perturbation(f, x, divergence=divergence, xi=1e-6, iterations=40, noise=noise, grad_fn=grad_fn)
    flat = r.reshape(r.shape[0], -1)
    cosine = np.abs(np.sum(flat * vectors, axis=1)) / np.linalg.norm(flat, axis=1)
    assert np.all(cosine > 0.99), cosine
    close(np.linalg.norm(flat, axis=1), 1.0, rtol=1e-15)
    # the same few steps with finite differences instead of the analytic gradient
    r_fd = A.vat_perturbation(f, x, divergence=divergence, xi=1e-6, iterations=3, noise=noise)
    r_an = A.vat_perturbation(f, x, divergence=divergence, xi=1e-6, iterations=3, noise=noise, grad_fn=grad_fn)
    close(r_fd, r_an, atol=1e-7)


def test_vat_hessian_and_divergence_gradient():
    x, w, c, mask, _ = _linear(seed=2)
    f = lambda z: M.pooled_logits(z, w, c, mask=mask)  # noqa: E731
    clean = f(x)
    for divergence in ("kl", "multilabel"):
        div = ((lambda a, b: A.softmax_kl_divergence(a, b)) if divergence == "kl"
               else (lambda a, b: multilabel_divergence(a, b)))
        z = x + 0.2 * np.random.default_rng(3).normal(size=x.shape)
        fd = A.numerical_gradient(lambda v: float(np.sum(div(clean, f(v)))), z)
        close(M.divergence_gradient(z, clean, w, c, mask=mask, divergence=divergence), fd, atol=1e-11)
        # the Hessian at r = 0 is the Jacobian of that gradient at z = x
        h = M.vat_hessian(x, w, c, mask=mask, divergence=divergence)
        n = x[0].size
        for b in range(x.shape[0]):
            for i in range(n):
                col = A.numerical_gradient(
                    lambda v: float(M.divergence_gradient(v, clean, w, c, mask=mask, divergence=divergence)[b]
                                    .ravel()[i]), x)
                close(h[b, i], col[b].ravel(), atol=1e-10)


def test_vat_where_zero_rows_and_global_scope():
    x, w, c, mask, noise = _linear(seed=4)
    f = lambda z: M.pooled_logits(z, w, c, mask=mask)  # noqa: E731
    clean = f(x)
    grad_fn = lambda z: M.divergence_gradient(z, clean, w, c, mask=mask)  # noqa: E731
    where = np.ones(x.shape, dtype=bool)
    where[:, 0, :] = False  # the first position of each example is not perturbed
    r = A.vat_perturbation(f, x, iterations=2, noise=noise, where=where, grad_fn=grad_fn)
    assert np.all(r[:, 0, :] == 0.0)
    close(np.linalg.norm(r.reshape(2, -1), axis=1), 1.0, rtol=1e-15)
    # a zero noise row stays zero (and its divergence is 0); the other row is unaffected
    noise0 = noise.copy()
    noise0[1] = 0.0
    r0 = A.vat_perturbation(f, x, iterations=2, noise=noise0, grad_fn=grad_fn)
    assert np.all(r0[1] == 0.0)
    f1 = lambda z: M.pooled_logits(z, w, c, mask=mask[:1])  # noqa: E731
    close(r0[0], A.vat_perturbation(f1, x[:1], iterations=2, noise=noise[:1],
                                    grad_fn=lambda z: M.divergence_gradient(z, clean[:1], w, c, mask=mask[:1]))[0],
          rtol=1e-14)
    assert A.vat_loss(f, x, iterations=2, noise=noise0, grad_fn=grad_fn)[1] == 0.0
    # global scope: one norm over the batch
    rg = A.vat_perturbation(f, x, epsilon=3.0, iterations=2, noise=noise, scope="global", grad_fn=grad_fn)
    close(np.linalg.norm(rg), 3.0, rtol=1e-15)


def test_vat_callable_divergence():
    # D = ‖s - t‖² on the logits of f(x) = xW: Hessian 2 W Wᵀ, the same for every example
    rng = np.random.default_rng(7)
    w = rng.normal(size=(3, 5))
    x = rng.normal(size=(2, 3))
    sq = lambda s, t: np.sum((s - t) ** 2, axis=-1)  # noqa: E731
    f = lambda z: z @ w  # noqa: E731
    r = A.vat_perturbation(f, x, divergence=sq, xi=1e-3, iterations=30, noise=rng.normal(size=x.shape))
    top = np.linalg.eigh(w @ w.T)[1][:, -1]
    assert np.all(np.abs(r @ top) > 0.99)
    # the loss is ‖ε r W‖² per example
    out = A.vat_loss(f, x, divergence=sq, epsilon=0.5, iterations=0, noise=np.array([[1.0, 0, 0], [0, 0, 2.0]]))
    close(out, [0.25 * np.sum(w[0] ** 2), 0.25 * np.sum(w[2] ** 2)], rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


_X = np.ones((2, 3))
_F = lambda z: z  # noqa: E731


@pytest.mark.parametrize("call, match", [
    (lambda: A.fgm_perturbation(_X, epsilon=-0.1), "epsilon"),
    (lambda: A.fgm_perturbation(_X, epsilon=NAN), "epsilon"),
    (lambda: A.fgm_perturbation(_X, epsilon=INF), "epsilon"),
    (lambda: A.fgm_perturbation(_X, norm="linf"), "norm"),
    (lambda: A.fgm_perturbation(_X, scope="batch"), "scope"),
    (lambda: A.fgm_perturbation(1.0, scope="example"), "leading"),
    (lambda: A.fgm_perturbation(_X, where=np.ones(4, dtype=bool)), r"\(4,\).*\(2, 3\)"),
    (lambda: A.adversarial_loss(half_sq, _X, steps=0), "steps"),
    (lambda: A.adversarial_loss(half_sq, _X, step_size=-1.0), "step_size"),
    (lambda: A.adversarial_loss(lambda z: z, _X), r"scalar.*\(2, 3\)"),
    (lambda: A.adversarial_loss(half_sq, _X, grad_fn=lambda z: z[0]), r"\(3,\).*\(2, 3\)"),
    (lambda: A.gradient_penalty(lambda z: z, _X), r"scalar.*\(2, 3\)"),
    (lambda: A.gradient_penalty(lambda z: z.sum(), _X, scope="example"), r"\(2,\).*\(\)"),
    (lambda: A.vat_loss(_F, _X, noise=np.ones((2, 2))), r"\(2, 2\).*\(2, 3\)"),
    (lambda: A.vat_loss(_F, _X, noise=_X, xi=0.0), "xi"),
    (lambda: A.vat_loss(_F, _X, noise=_X, iterations=-1), "iterations"),
    (lambda: A.vat_loss(_F, _X, noise=_X, divergence="js"), "divergence"),
    (lambda: A.vat_loss(lambda z: z[:, 0], _X, noise=_X), r"\[B, \.\.\., C\]"),
    (lambda: A.vat_loss(_F, _X, noise=_X, divergence=lambda s, t: s), r"\(2,\).*\(2, 3\)"),
    (lambda: A.vat_loss(lambda z: z[:1], _X, noise=_X), "leading"),
    (lambda: M.classifier_loss(np.ones((2, 3, 4)), np.ones((3, 2)), np.ones(2), np.array([0, 1])), r"\[D, C\]"),
    (lambda: M.classifier_loss(np.ones((2, 3, 4)), np.ones((4, 2)), np.ones(2), np.array([0, 2])), "class id 2"),
    (lambda: M.pooled_logits(np.ones((2, 3, 4)), np.ones((4, 2)), np.ones(2), mask=np.ones((2, 2))), "mask"),
    (lambda: M.classifier_penalty(_X, np.ones((3, 2)), np.ones(2), np.array([0, 1]), scope="row"), "scope"),
])
def test_bad_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call", [
    lambda: A.fgm_perturbation(_X, epsilon=True),
    lambda: A.fgm_perturbation(np.array(["a"])),
    lambda: A.adversarial_loss(half_sq, _X, steps=2.0),
    lambda: A.gradient_penalty(half_sq, _X, normalized=1),
    lambda: A.vat_loss(_F, _X),  # noise is required by the reference
    lambda: M.classifier_loss(np.ones((2, 3)), np.ones((3, 2)), np.ones(2), np.array([0.0, 1.0])),
])
def test_bad_types_raise_type_error(call):
    with pytest.raises(TypeError):
        call()

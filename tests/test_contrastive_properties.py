"""The identities of the contrastive family (``docs/contrastive.md``) as property tests, closed-form
gradients, and the numerics at the extremes (cos θ = ±1, half precision, zero embeddings, ±1e4 scores).

The conformance matrix compares every backend with the reference on fixed cases; these tests check
the mathematics itself (NumPy float64 with hypothesis) and the gradients on the autograd backends,
including the ones the conformance rows leave to this file (FlatNCE's paper form, Circle loss's
stop-gradient weights, the normalisation at a zero embedding, ArcFace at the boundary).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import polyloss
from polyloss.testing import assert_close

from helpers import get

TIGHT = dict(rtol=1e-12, atol=1e-13)  # float64 identities

SETTINGS = settings(max_examples=40, deadline=None)
FINITE = st.floats(-30.0, 30.0, allow_nan=False, allow_infinity=False, width=64)
COSINE = st.floats(-1.0, 1.0, allow_nan=False, width=64)


def scores_and_ids(elements=FINITE, max_rows=4, max_classes=7):
    shape = st.tuples(st.integers(1, max_rows), st.integers(2, max_classes))
    return shape.flatmap(
        lambda s: st.tuples(
            hnp.arrays(np.float64, s, elements=elements),
            hnp.arrays(np.int64, s[:1], elements=st.integers(0, s[1] - 1)),
        )
    )


def value_and_grad(backend, f, *arrays, argnums=0, dtype="float64"):
    """``f``'s value and gradient on ``backend``, as NumPy float64 arrays."""
    xs = [backend.from_numpy(np.asarray(a), dtype=dtype if np.asarray(a).dtype.kind == "f" else None) for a in arrays]
    value, grads = backend.value_and_grad(lambda *v: backend.namespace.sum(f(*v)), argnums=argnums)(*xs)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return float(backend.to_numpy(value)), [backend.to_numpy(g) for g in grads]


def softmax_rows(s):
    return np.exp(s - np.logaddexp.reduce(s, axis=-1, keepdims=True))


# --------------------------------------------------------------------------------------------
# Identities (NumPy float64)
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(scores_and_ids())
def test_infonce_is_the_crossentropy_and_flatnce_its_log_xi(data):
    s, t = data
    info = polyloss.infonce(s, t)
    assert_close(info, polyloss.softmax_crossentropy(s, t), **TIGHT)
    flat = polyloss.flatnce(s, t)
    # InfoNCE = log(1 + ξ) and the log form is log ξ
    assert_close(info, np.logaddexp(0.0, flat), rtol=1e-11, atol=1e-13)
    assert_close(polyloss.flatnce(s, t, form="paper"), 1.0, **TIGHT)


@SETTINGS
@given(scores_and_ids(COSINE), st.floats(1.0, 40.0), st.floats(-0.5, 0.8))
def test_margin_losses_reduce_to_the_scaled_crossentropy(data, scale, margin):
    c, t = data
    plain = polyloss.infonce(scale * c, t)
    assert_close(polyloss.am_softmax(c, t, scale=scale, margin=0.0), plain, rtol=1e-11, atol=1e-13)
    assert_close(polyloss.arcface(c, t, scale=scale, margin=0.0), plain, rtol=1e-10, atol=1e-10)
    # AM-Softmax is the cross-entropy of the cosines with the margin taken off the target
    shifted = scale * c.copy()
    shifted[np.arange(len(t)), t] -= scale * margin
    assert_close(
        polyloss.am_softmax(c, t, scale=scale, margin=margin), polyloss.infonce(shifted, t), rtol=1e-11, atol=1e-13
    )
    # one-hot labels are the same as class ids
    one_hot = np.eye(c.shape[1], dtype=np.int64)[t]
    assert_close(
        polyloss.am_softmax(c, one_hot, scale=scale, margin=margin),
        polyloss.am_softmax(c, t, scale=scale, margin=margin),
        **TIGHT,
    )
    assert_close(
        polyloss.arcface(c, one_hot, scale=scale, margin=margin),
        polyloss.arcface(c, t, scale=scale, margin=margin),
        **TIGHT,
    )


@SETTINGS
@given(scores_and_ids(COSINE), st.floats(0.0, 3.0))
def test_arcface_target_logit_is_cos_theta_plus_m(data, margin):
    c, t = data
    scale = 5.0
    shifted = scale * c.copy()
    target = c[np.arange(len(t)), t]
    shifted[np.arange(len(t)), t] = scale * np.cos(np.arccos(target) + margin)
    assert_close(polyloss.arcface(c, t, scale=scale, margin=margin), polyloss.infonce(shifted, t), rtol=1e-9, atol=1e-9)


@SETTINGS
@given(scores_and_ids(st.floats(-5.0, 5.0)), st.floats(0.1, 4.0), st.floats(-1.0, 1.0))
def test_unified_pairwise_with_one_positive_is_the_margin_crossentropy(data, gamma, margin):
    s, t = data
    shifted = gamma * s.copy()
    shifted[np.arange(len(t)), t] -= gamma * margin
    assert_close(
        polyloss.unified_pairwise_loss(s, t, gamma=gamma, margin=margin),
        polyloss.infonce(shifted, t),
        rtol=1e-11,
        atol=1e-13,
    )


def test_unified_pairwise_sums_every_negative_against_every_positive():
    rng = np.random.default_rng(3)
    s = rng.normal(0, 1, (5, 6))
    y = (rng.random((5, 6)) < 0.4).astype(int)
    y[0], y[1] = 0, 1  # no positive, no negative: 0
    got = polyloss.unified_pairwise_loss(s, y, gamma=1.5, margin=0.3)
    for r in range(5):
        pairs = [1.5 * (s[r, i] - s[r, j] + 0.3) for i in range(6) for j in range(6) if not y[r, i] and y[r, j]]
        assert_close(got[r], math.log1p(math.fsum(math.exp(p) for p in pairs)), rtol=1e-13, atol=1e-13)
    # far from 0 the shift keeps the differences: scores near 1e4 give the same loss as near 0
    assert_close(
        polyloss.unified_pairwise_loss(s + 1e4, y), polyloss.unified_pairwise_loss(s, y), rtol=1e-11, atol=1e-13
    )


def test_cosent_is_shift_and_permutation_invariant_and_ignores_ties():
    rng = np.random.default_rng(4)
    s, y = rng.uniform(-1, 1, 30), rng.integers(0, 4, 30)
    base = polyloss.cosent_loss(s, y)
    assert_close(polyloss.cosent_loss(s + 0.5, y), base, **TIGHT)
    order = rng.permutation(30)
    assert_close(polyloss.cosent_loss(s[order], y[order]), base, rtol=1e-13, atol=1e-13)
    # one label everywhere: no pair, loss 0; labels rescaled monotonically: the same pairs
    assert float(polyloss.cosent_loss(s, np.zeros(30))) == 0.0
    assert_close(polyloss.cosent_loss(s, 10.0 * y + 3.0), base, rtol=1e-13, atol=1e-13)


def test_embeddings_give_the_infonce_of_the_cosine_matrix():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(6, 6))
    na = a / np.linalg.norm(a, axis=1, keepdims=True)
    nb = b / np.linalg.norm(b, axis=1, keepdims=True)
    assert_close(
        polyloss.infonce_from_embeddings(a, b, temperature=0.2),
        polyloss.infonce(na @ nb.T / 0.2, np.arange(4)),
        **TIGHT,
    )
    # scale invariance of each row
    assert_close(
        polyloss.infonce_from_embeddings(a * np.array([[3.0], [1e-3], [7.0], [1.0]]), b * 1e5, temperature=0.2),
        polyloss.infonce_from_embeddings(a, b, temperature=0.2),
        **TIGHT,
    )
    # SimCSE: rows (2k, 2k+1) pair up, the diagonal is removed
    x = rng.normal(size=(6, 5))
    nx = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = nx @ nx.T / 0.05
    where = ~np.eye(6, dtype=bool)
    assert_close(
        polyloss.infonce_from_embeddings(x, pairing="simcse"),
        polyloss.infonce(sim, np.array([1, 0, 3, 2, 5, 4]), where=where),
        rtol=1e-11,
        atol=1e-13,
    )
    # normalize=False: raw dot products
    assert_close(
        polyloss.infonce_from_embeddings(a, b, temperature=2.0, normalize=False),
        polyloss.infonce(a @ b.T / 2.0, np.arange(4)),
        **TIGHT,
    )


# --------------------------------------------------------------------------------------------
# Gradients on the autograd backends
# --------------------------------------------------------------------------------------------
def test_flatnce_forms_share_a_gradient_parallel_to_infonce(autograd_backend):
    rng = np.random.default_rng(6)
    s, t = rng.normal(0, 3, (5, 7)), rng.integers(0, 7, 5)
    where = rng.random((5, 7)) < 0.8
    where[np.arange(5), t] = True
    w = autograd_backend.from_numpy(where)

    def run(fn, **kw):
        return value_and_grad(autograd_backend, lambda x, y: fn(x, y, where=w, **kw), s, t)

    _, (g_log,) = run(polyloss.flatnce)
    paper, (g_paper,) = run(polyloss.flatnce, form="paper")
    _, (g_info,) = run(polyloss.infonce)
    assert paper == 5.0  # ξ / sg(ξ) is exactly 1 on every row
    assert_close(g_paper, g_log, rtol=1e-12, atol=1e-15)
    # row by row: ∇InfoNCE = ξ/(1+ξ) ∇log ξ = (1 - p_t) ∇FlatNCE
    p = softmax_rows(np.where(where, s, -np.inf))
    one_minus_p_t = 1.0 - p[np.arange(5), t]
    assert_close(g_info, one_minus_p_t[:, None] * g_log, rtol=1e-11, atol=1e-14)
    # closed form: ∂log ξ / ∂s = q - e_t with q the softmax over the negatives
    negatives = where & (np.arange(7) != t[:, None])
    q = softmax_rows(np.where(negatives, s, -np.inf))
    assert_close(g_log, q - np.eye(7)[t], rtol=1e-11, atol=1e-14)


def test_arcface_gradient_is_finite_at_the_boundary_in_every_precision(autograd_backend):
    c = np.array([[1.0, 0.2, -0.3], [0.1, -1.0, 0.5], [0.3, -1.0, 1.0], [1.0, 1.0, 0.0]])
    t = np.array([0, 1, 2, 1])
    scale, margin = 8.0, 0.5
    for dtype in ("float64", "float32", "float16"):
        value, (g,) = value_and_grad(
            autograd_backend, lambda x, y: polyloss.arcface(x, y, scale=scale, margin=margin), c, t, dtype=dtype
        )
        assert math.isfinite(value) and np.all(np.isfinite(g)), (dtype, g)
    # in float64, at cos θ_t = ±1 the target's derivative is s·cos m·(p_t - 1) (the finite part), the
    # others' s·p_i
    _, (g,) = value_and_grad(autograd_backend, lambda x, y: polyloss.arcface(x, y, scale=scale, margin=margin), c, t)
    z = scale * c.copy()
    rows = np.arange(4)
    z[rows, t] = scale * np.cos(np.arccos(c[rows, t]) + margin)
    p = softmax_rows(z)
    want = scale * p
    want[rows, t] = scale * math.cos(margin) * (p[rows, t] - 1.0)
    assert_close(g, want, rtol=1e-12, atol=1e-14)


def test_circle_loss_gradient_holds_the_weights_constant(autograd_backend):
    rng = np.random.default_rng(7)
    s = rng.uniform(-1, 1, (4, 6))
    y = (rng.random((4, 6)) < 0.4).astype(np.int64)
    y[:, 0], y[:, 1] = 1, 0
    gamma, m = 16.0, 0.25
    _, (g,) = value_and_grad(autograd_backend, lambda x, lab: polyloss.circle_loss(x, lab, gamma=gamma, margin=m), s, y)
    pos = y == 1
    a_p = np.maximum(1 + m - s, 0.0)
    a_n = np.maximum(s + m, 0.0)
    x = np.where(pos, -gamma * a_p * (s - (1 - m)), gamma * a_n * (s - m))  # the exponents, weights frozen
    want = np.zeros_like(s)
    for r in range(4):
        ex_n = np.where(~pos[r], np.exp(x[r]), 0.0)
        ex_p = np.where(pos[r], np.exp(x[r]), 0.0)
        total = 1.0 + ex_n.sum() * ex_p.sum()
        want[r] = np.where(pos[r], -gamma * a_p[r] * ex_p * ex_n.sum(), gamma * a_n[r] * ex_n * ex_p.sum()) / total
    assert_close(g, want, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("pairing", ["diagonal", "simcse"])
def test_zero_embeddings_give_finite_values_and_zero_gradients(autograd_backend, pairing):
    rng = np.random.default_rng(8)
    a = rng.normal(size=(4, 5))
    a[1] = 0.0
    b = None if pairing == "simcse" else rng.normal(size=(4, 5))
    args = (a,) if b is None else (a, b)
    argnums = 0 if b is None else (0, 1)
    for dtype in ("float64", "float32", "float16"):
        value, grads = value_and_grad(
            autograd_backend,
            lambda *xs: polyloss.infonce_from_embeddings(*xs, pairing=pairing, temperature=0.1),
            *args,
            argnums=argnums,
            dtype=dtype,
        )
        assert math.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
        assert np.all(grads[0][1] == 0.0)
    # every row zero: every cosine is 0, the loss is log(candidates)
    zeros = np.zeros((4, 5))
    want = math.log(3.0) if pairing == "simcse" else math.log(4.0)
    assert_close(
        polyloss.infonce_from_embeddings(zeros, None if b is None else zeros, pairing=pairing),
        np.full(4, want),
        **TIGHT,
    )


def test_learnable_temperature_gets_its_gradient(autograd_backend):
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    tau = np.array(0.3)
    _, (g,) = value_and_grad(
        autograd_backend, lambda t, x, y: polyloss.infonce_from_embeddings(x, y, temperature=t), tau, a, b
    )
    h = 1e-6
    f = lambda t: float(np.sum(polyloss.infonce_from_embeddings(a, b, temperature=t)))  # noqa: E731
    assert_close(g, (f(0.3 + h) - f(0.3 - h)) / (2 * h), rtol=1e-7, atol=1e-13)


@pytest.mark.parametrize("n", [40, 300])
def test_cosent_sorted_and_pairwise_agree_in_value_and_gradient(autograd_backend, n):
    rng = np.random.default_rng(n)
    s = rng.uniform(-1, 1, n)
    y = rng.integers(0, 6, n).astype(np.float64)  # graded, many ties
    where = rng.random(n) < 0.9
    w = autograd_backend.from_numpy(where)
    results = {}
    for dtype in ("float64", "float32"):
        for method in ("pairwise", "sorted"):
            results[dtype, method] = value_and_grad(
                autograd_backend,
                lambda x, lab, m=method: polyloss.cosent_loss(x, lab, where=w, method=m),
                s,
                y,
                dtype=dtype,
            )
    for dtype, rtol in (("float64", 1e-12), ("float32", 2e-5)):
        (v_pair, (g_pair,)), (v_sort, (g_sort,)) = results[dtype, "pairwise"], results[dtype, "sorted"]
        assert_close(v_sort, v_pair, rtol=rtol, atol=1e-13)
        np.testing.assert_allclose(g_sort, g_pair, rtol=0, atol=rtol * np.abs(g_pair).max())
        assert np.all(g_pair[~where] == 0.0) and np.all(g_sort[~where] == 0.0)
    assert_close(results["float32", "sorted"][0], results["float64", "pairwise"][0], rtol=2e-5, atol=1e-13)


def test_cosent_sorted_form_scales_past_what_a_pairwise_matrix_holds():
    """B = 20000 in float64 through the sorted form against an exact grouped sum (labels 0..4): the
    pairwise form would need a 3.2 GB matrix."""
    rng = np.random.default_rng(10)
    n = 20000
    s, y = rng.uniform(-1, 1, n), rng.integers(0, 5, n)
    got = float(polyloss.cosent_loss(s, y, method="sorted"))
    assert float(polyloss.cosent_loss(s, y)) == got  # "auto" picks the sorted form here
    # Σ_{y_a > y_b} e^{λ(s_b - s_a)} = Σ_k (Σ_{y_b = k} e^{λ s_b}) (Σ_{y_a > k} e^{-λ s_a}), in float64 with fsum
    up = [math.fsum(np.exp(20.0 * s[y == k])) for k in range(5)]
    down = [math.fsum(np.exp(-20.0 * s[y == k])) for k in range(5)]
    total = math.fsum(up[k] * math.fsum(down[k + 1 :]) for k in range(5))
    assert_close(got, math.log1p(total), **TIGHT)


def test_half_precision_inputs_give_finite_correct_values():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 16))
    for dtype in (torch.float16, torch.bfloat16):
        xt = torch.tensor(x, dtype=dtype)
        got = polyloss.infonce_from_embeddings(xt, pairing="simcse")
        assert got.dtype == torch.float32
        ref = polyloss.infonce_from_embeddings(xt.double().numpy(), pairing="simcse")
        assert_close(got.numpy(), ref, rtol=1e-5, atol=1e-13)  # float32 compute on the rounded inputs
    # a masked candidate in half precision: no -1e4 style constant, the result equals the float64 one
    s = rng.normal(0, 3, (4, 6))
    where = rng.random((4, 6)) < 0.7
    where[np.arange(4), [0, 1, 2, 3]] = True
    for dtype in (torch.float16, torch.bfloat16):
        st_ = torch.tensor(s, dtype=dtype)
        got = polyloss.infonce(st_, torch.tensor([0, 1, 2, 3]), where=torch.tensor(where))
        assert_close(
            got.numpy(),
            polyloss.infonce(st_.double().numpy(), np.array([0, 1, 2, 3]), where=where),
            rtol=1e-6,
            atol=1e-13,
        )


def test_extreme_scores_give_finite_gradients(autograd_backend):
    s = np.array([[1e4, -1e4, 0.0, 3.0], [-1e4, 1e4, 2.0, -1e4]])
    t = np.array([0, 0])
    y = np.array([[1, 0, 0, 1], [1, 0, 1, 0]])
    for fn, labels in ((polyloss.infonce, t), (polyloss.flatnce, t), (polyloss.unified_pairwise_loss, y)):
        value, (g,) = value_and_grad(autograd_backend, fn, s, labels, dtype="float32")
        assert math.isfinite(value) and np.all(np.isfinite(g)), fn.__name__
    value, (g,) = value_and_grad(
        autograd_backend,
        lambda x, lab: polyloss.cosent_loss(x, lab, method="sorted"),
        np.array([1e3, -1e3, 0.5, 2.0]),
        np.array([0, 1, 1, 0]),
        dtype="float32",
    )
    assert math.isfinite(value) and np.all(np.isfinite(g))


def test_unified_pairwise_gradient_is_shift_invariant(autograd_backend):
    """The conformance row at scores near 1e4 is values only (finite differences are noisy there):
    the gradient itself must not move under the shift."""
    rng = np.random.default_rng(12)
    s = rng.normal(0, 1, (4, 6))
    y = (rng.random((4, 6)) < 0.4).astype(np.int64)
    fn = lambda x, lab: polyloss.unified_pairwise_loss(x, lab, gamma=2.0, margin=0.1)  # noqa: E731
    _, (g0,) = value_and_grad(autograd_backend, fn, s, y)
    _, (g1,) = value_and_grad(autograd_backend, fn, s + 1e4, y)
    assert_close(g1, g0, rtol=1e-9, atol=1e-12)


def test_cosent_second_derivatives_agree_between_the_forms(autograd_backend):
    """A gradient penalty on CoSENT differentiates its gradient: the sorted form's hand-written scan
    derivative must be differentiable too (the frameworks' own derivative of their scan is missing in
    TensorFlow and NaN at -inf in JAX)."""
    be = autograd_backend
    s = np.array([0.3, -0.2, 0.8, 0.1, 0.5, -0.7])
    y = np.array([1, 0, 2, 0, 2, 1])
    out = {}
    for method in ("pairwise", "sorted"):
        labels = be.from_numpy(y)

        def penalty(x, m=method, lab=labels):
            g = be.grad(lambda v: polyloss.cosent_loss(v, lab, scale=3.0, method=m))(x)
            return be.namespace.sum(g * g)

        out[method] = be.to_numpy(be.grad(penalty)(be.from_numpy(s, dtype="float64")))
    assert np.all(np.isfinite(out["sorted"]))
    assert_close(out["sorted"], out["pairwise"], rtol=1e-10, atol=1e-12)


def test_tensorflow_graphs_with_unknown_dimensions_and_a_variable_temperature():
    """Keras ``fit`` traces with unknown batch and class dimensions; a learnable temperature is a
    ``tf.Variable``."""
    get("tensorflow")
    import tensorflow as tf

    rng = np.random.default_rng(13)
    s, t = rng.normal(0, 2, (3, 5)), np.array([0, 4, 2])
    spec = [tf.TensorSpec([None, None], tf.float64), tf.TensorSpec([None], tf.int64)]
    for fn in (
        polyloss.infonce,
        polyloss.flatnce,
        polyloss.am_softmax,
        polyloss.arcface,
        polyloss.unified_pairwise_loss,
        polyloss.circle_loss,
    ):
        graph = tf.function(lambda x, y, f=fn: f(x, y), input_signature=spec)
        assert_close(graph(tf.constant(s), tf.constant(t)).numpy(), fn(s, t), **TIGHT)
    a = rng.normal(size=(4, 3))
    embed = tf.function(
        lambda x: polyloss.infonce_from_embeddings(x, pairing="simcse"),
        input_signature=[tf.TensorSpec([None, None], tf.float64)],
    )
    assert_close(embed(tf.constant(a)).numpy(), polyloss.infonce_from_embeddings(a, pairing="simcse"), **TIGHT)
    tau = tf.Variable(0.2, dtype=tf.float64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(polyloss.infonce_from_embeddings(tf.constant(a), tf.constant(a), temperature=tau))
    assert tape.gradient(loss, tau) is not None
    assert_close(loss.numpy(), np.sum(polyloss.infonce_from_embeddings(a, a, temperature=0.2)), **TIGHT)


def test_cosent_minus_inf_similarity_removes_its_pair():
    s, y = np.array([0.9, -np.inf, 0.1, 0.4]), np.array([2, 1, 0, 1])
    keep = np.isfinite(s)
    for method in ("pairwise", "sorted"):
        assert_close(
            polyloss.cosent_loss(s, y, method=method), polyloss.cosent_loss(s[keep], y[keep], method=method), **TIGHT
        )
        assert_close(
            polyloss.cosent_loss(s, y, method=method, where=np.array([True, True, False, True])),
            polyloss.cosent_loss(s[[0, 3]], y[[0, 3]], method=method),
            **TIGHT,
        )

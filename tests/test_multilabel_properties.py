"""The identities of the multi-label family (``docs/multilabel.md``), as property tests, and the closed-form gradient.

The conformance matrix compares every backend with the reference on fixed cases; these tests
check the mathematics itself on generated inputs (hypothesis), on NumPy (float64, exact) and on
the autograd backends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import polyloss
from polyloss import reference

from helpers import get

SETTINGS = settings(max_examples=40, deadline=None)
FINITE = st.floats(-30.0, 30.0, allow_nan=False, allow_infinity=False, width=64)


def logits_and_labels(max_rows=4, max_classes=9):
    shape = st.tuples(st.integers(1, max_rows), st.integers(1, max_classes))
    return shape.flatmap(
        lambda s: st.tuples(hnp.arrays(np.float64, s, elements=FINITE), hnp.arrays(np.bool_, s))
    )


# --------------------------------------------------------------------------------------------
# A1: soft labels in {0, 1} give exactly the hard-label values
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(logits_and_labels())
def test_float_01_labels_equal_hard_labels_exactly(data):
    s, y = data
    hard = polyloss.multilabel_crossentropy(s, y)
    as_float = polyloss.multilabel_crossentropy(s, y.astype(np.float64))
    as_int = polyloss.multilabel_crossentropy(s, y.astype(np.int64))
    np.testing.assert_array_equal(hard, as_float)
    np.testing.assert_array_equal(hard, as_int)
    np.testing.assert_allclose(hard, reference.multilabel_crossentropy(s, y), rtol=1e-13, atol=0)


def test_soft_kernel_on_01_labels_equals_hard_kernel():
    """The soft-label kernel itself (taken under jit, where no value dispatch happens) agrees with
    the hard-label kernel on 0/1 labels."""
    jax = pytest.importorskip("jax")
    get("jax")
    rng = np.random.default_rng(3)
    s, y = rng.normal(0, 4, (6, 11)), rng.random((6, 11)) < 0.4
    soft = jax.jit(polyloss.multilabel_crossentropy)(jax.numpy.asarray(s), jax.numpy.asarray(y, dtype=float))
    hard = polyloss.multilabel_crossentropy(jax.numpy.asarray(s), jax.numpy.asarray(y))
    np.testing.assert_allclose(np.asarray(soft), np.asarray(hard), rtol=1e-14, atol=0)


# --------------------------------------------------------------------------------------------
# A1: the soft loss is minimised exactly at t = σ(2s)
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(0.02, 0.98)))
def test_soft_loss_is_minimised_at_sigmoid_of_twice_the_logit(t):
    s_star = 0.5 * np.log(t / (1.0 - t))  # σ(2 s*) = t
    at_min = reference.multilabel_crossentropy(s_star[None], t[None])[0]
    rng = np.random.default_rng(len(t))
    for _ in range(5):
        moved = s_star + rng.normal(0.0, 0.3, t.shape)
        assert polyloss.multilabel_crossentropy(moved[None], t[None])[0] > at_min - 1e-12
    np.testing.assert_allclose(polyloss.multilabel_crossentropy(s_star[None], t[None])[0], at_min, rtol=1e-13)


def test_soft_loss_gradient_vanishes_at_sigmoid_of_twice_the_logit(autograd_backend):
    rng = np.random.default_rng(7)
    t = rng.uniform(0.02, 0.98, (3, 6))
    s_star = 0.5 * np.log(t / (1.0 - t))
    be = autograd_backend
    grad = be.grad(lambda s: be.namespace.sum(polyloss.multilabel_crossentropy(s, be.from_numpy(t, dtype="float64"))))
    g = be.to_numpy(grad(be.from_numpy(s_star, dtype="float64")))
    np.testing.assert_allclose(g, 0.0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# the closed-form gradient (docs/multilabel.md)
# --------------------------------------------------------------------------------------------
def closed_form_gradient(s, t):
    """∂L/∂s_i = (1-t_i) e^{s_i} / (1 + Σ_k (1-t_k) e^{s_k}) - t_i e^{-s_i} / (1 + Σ_k t_k e^{-s_k})."""
    neg = (1.0 - t) * np.exp(s)
    pos = t * np.exp(-s)
    return neg / (1.0 + neg.sum(-1, keepdims=True)) - pos / (1.0 + pos.sum(-1, keepdims=True))


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_gradient_matches_the_closed_form(autograd_backend, soft):
    rng = np.random.default_rng(11)
    s = rng.normal(0.0, 3.0, (5, 9))
    t = rng.uniform(0.0, 1.0, s.shape) if soft else (rng.random(s.shape) < 0.3).astype(np.float64)
    be = autograd_backend
    labels = be.from_numpy(t, dtype="float64") if soft else be.from_numpy(t > 0.5)
    grad = be.grad(lambda x: be.namespace.sum(polyloss.multilabel_crossentropy(x, labels)))
    g = be.to_numpy(grad(be.from_numpy(s, dtype="float64")))
    np.testing.assert_allclose(g, closed_form_gradient(s, t), rtol=1e-12, atol=1e-15)


def test_label_gradient_matches_the_closed_form(autograd_backend):
    """∂L/∂t_i = e^{-s_i}/(1 + Σ_P) - e^{s_i}/(1 + Σ_N), including labels exactly 0 and 1."""
    rng = np.random.default_rng(12)
    s = rng.normal(0.0, 2.0, (4, 7))
    t = rng.uniform(0.0, 1.0, s.shape)
    t[0, :3], t[1, :2] = 0.0, 1.0
    neg, pos = (1.0 - t) * np.exp(s), t * np.exp(-s)
    expected = np.exp(-s) / (1.0 + pos.sum(-1, keepdims=True)) - np.exp(s) / (1.0 + neg.sum(-1, keepdims=True))
    be = autograd_backend
    logits = be.from_numpy(s, dtype="float64")
    grad = be.grad(lambda u: be.namespace.sum(polyloss.multilabel_crossentropy(logits, u)))
    np.testing.assert_allclose(be.to_numpy(grad(be.from_numpy(t, dtype="float64"))), expected, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Masking: a fully masked row gives 0 with zero gradient; masked values never leak
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["where", "-inf"])
def test_fully_masked_row_gives_zero_loss_and_zero_gradient(autograd_backend, how):
    be = autograd_backend
    s = np.array([[1.0, -2.0, 3.0], [0.5, 7.0, -1.0]])
    y = np.array([[True, False, True], [False, True, True]])
    where = np.array([[True, True, True], [False, False, False]])
    kwargs = {"where": be.from_numpy(where)} if how == "where" else {}
    if how == "-inf":
        s[1] = -np.inf
    labels = be.from_numpy(y)
    grad = be.value_and_grad(lambda x: be.namespace.sum(polyloss.multilabel_crossentropy(x, labels, **kwargs)))
    value, g = grad(be.from_numpy(s, dtype="float32"))
    loss = be.to_numpy(polyloss.multilabel_crossentropy(be.from_numpy(s, dtype="float32"), be.from_numpy(y), **kwargs))
    assert loss[1] == 0.0
    g = be.to_numpy(g)
    assert np.all(g[1] == 0.0) and np.all(np.isfinite(g))


def test_values_under_the_mask_never_leak():
    rng = np.random.default_rng(5)
    s = rng.normal(0.0, 2.0, (3, 6))
    y = rng.random(s.shape) < 0.5
    where = rng.random(s.shape) < 0.6
    base = polyloss.multilabel_crossentropy(s, y, where=where)
    for junk in (np.nan, np.inf, -np.inf, 1e30):
        dirty = np.where(where, s, junk)
        np.testing.assert_array_equal(polyloss.multilabel_crossentropy(dirty, y, where=where), base)
    t = rng.uniform(0.0, 1.0, s.shape)
    soft = polyloss.multilabel_crossentropy(s, t, where=where)
    np.testing.assert_array_equal(
        polyloss.multilabel_crossentropy(np.where(where, s, np.nan), np.where(where, t, np.nan), where=where), soft
    )


def test_minus_inf_logits_are_padding_even_with_positive_labels():
    s = np.array([[2.0, -np.inf, 0.5, -np.inf]])
    y = np.array([[True, True, False, False]])
    np.testing.assert_allclose(
        polyloss.multilabel_crossentropy(s, y), polyloss.multilabel_crossentropy(s[:, [0, 2]], y[:, [0, 2]]), rtol=1e-15
    )


# --------------------------------------------------------------------------------------------
# A2 / A3: sparse == dense
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_sparse_equals_dense(data):
    rows = data.draw(st.integers(1, 4))
    classes = data.draw(st.integers(1, 12))
    k = data.draw(st.integers(1, 5))
    s = data.draw(hnp.arrays(np.float64, (rows, classes), elements=FINITE))
    indices = np.full((rows, k), -1, dtype=np.int64)
    dense = np.zeros((rows, classes), dtype=bool)
    for r in range(rows):
        chosen = data.draw(st.lists(st.integers(0, classes - 1), max_size=k, unique=True))
        indices[r, : len(chosen)] = chosen
        dense[r, chosen] = True
    sparse = polyloss.sparse_multilabel_crossentropy(s, indices, pad_index=-1)
    np.testing.assert_allclose(sparse, polyloss.multilabel_crossentropy(s, dense), rtol=1e-14, atol=0)


def test_sparse_stays_exact_when_positives_dominate():
    """The lse_all + log1mexp form rounds to -inf/NaN here in float32; masking first does not."""
    s = np.full((1, 30000), -10.0, dtype=np.float32)
    s[0, 7] = 20.0
    dense = np.zeros(s.shape, dtype=bool)
    dense[0, 7] = True
    sparse = polyloss.sparse_multilabel_crossentropy(s, np.array([[7]]))
    expected = reference.multilabel_crossentropy(s.astype(np.float64), dense)
    np.testing.assert_allclose(sparse, expected, rtol=1e-6)
    # what the widely copied formula gives in float32, for the record
    lse_all = np.logaddexp.reduce(np.concatenate([s[0], [0.0]]).astype(np.float32))
    assert np.float32(20.0) - lse_all == 0.0  # all digits of (1 + Σ_N) / e^{20} are gone


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "tensorflow"])
def test_sparse_global_pointer_equals_dense(name):
    be = get(name)
    rng = np.random.default_rng(2)
    seq = np.arange(7)[None, :] < np.array([[7], [4]])
    mask = np.broadcast_to(np.asarray(polyloss.global_pointer_mask(seq)), (2, 3, 7, 7))
    logits = np.where(mask, rng.normal(0.0, 3.0, (2, 3, 7, 7)), -np.inf)
    spans = np.array(
        [
            [[[0, 2], [3, 6]], [[1, 1], [-1, -1]], [[-1, -1], [-1, -1]]],
            [[[0, 3], [-1, -1]], [[2, 2], [0, 0]], [[-1, -1], [-1, -1]]],
        ]
    )
    dense = np.zeros(logits.shape)
    for b, h, k in np.ndindex(spans.shape[:3]):
        if spans[b, h, k, 0] >= 0:
            dense[b, h, spans[b, h, k, 0], spans[b, h, k, 1]] = 1.0
    x = be.from_numpy(logits, dtype="float64")
    sparse = be.to_numpy(polyloss.sparse_global_pointer_crossentropy(x, be.from_numpy(spans), pad_index=-1))
    dense_loss = be.to_numpy(polyloss.global_pointer_crossentropy(x, be.from_numpy(dense, dtype="float64")))
    assert sparse.shape == (2, 3)
    np.testing.assert_allclose(sparse, dense_loss, rtol=1e-14)
    np.testing.assert_allclose(sparse, reference.global_pointer_crossentropy(logits, dense), rtol=1e-13)


# --------------------------------------------------------------------------------------------
# A4: the divergence
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_divergence_is_symmetric_nonnegative_and_zero_only_at_equality(data):
    shape = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 7)))
    a = data.draw(hnp.arrays(np.float64, shape, elements=FINITE))
    b = data.draw(hnp.arrays(np.float64, shape, elements=FINITE))
    d_ab = polyloss.multilabel_divergence(a, b)
    np.testing.assert_array_equal(d_ab, polyloss.multilabel_divergence(b, a))
    assert np.all(d_ab >= 0.0)
    np.testing.assert_array_equal(polyloss.multilabel_divergence(a, a), 0.0)
    differs = np.max(np.abs(a - b), axis=-1) > 1e-100  # closer pairs underflow to 0 in float64 (d ~ gap²)
    assert np.all(d_ab[differs] > 0.0)


def test_divergence_is_the_symmetric_binary_kl():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0.0, 2.0, (3, 5)), rng.normal(0.0, 2.0, (3, 5))
    p, q = 1.0 / (1.0 + np.exp(-a)), 1.0 / (1.0 + np.exp(-b))

    def kl(u, v):
        return u * np.log(u / v) + (1 - u) * np.log((1 - u) / (1 - v))

    np.testing.assert_allclose(polyloss.multilabel_divergence(a, b), (kl(p, q) + kl(q, p)).sum(-1), rtol=1e-12)


def test_divergence_keeps_precision_at_saturated_logits():
    a, b = np.array([[40.0, 30.0]]), np.array([[41.0, 31.0]])
    exact = reference.multilabel_divergence(a, b)
    naive = ((1 / (1 + np.exp(-a)) - 1 / (1 + np.exp(-b))) * (a - b)).sum(-1)
    assert abs(naive[0] - exact[0]) / exact[0] > 1e-4  # the textbook form loses digits here
    np.testing.assert_allclose(polyloss.multilabel_divergence(a, b), exact, rtol=1e-13)


def test_divergence_of_global_pointer_padding_is_finite(autograd_backend):
    be = autograd_backend
    rng = np.random.default_rng(8)
    mask = np.triu(np.ones((5, 5), dtype=bool))[None, None]
    a = np.where(mask, rng.normal(0, 2, (1, 2, 5, 5)), -np.inf)
    b = np.where(mask, a + rng.normal(0, 0.5, a.shape), -np.inf)
    vg = be.value_and_grad(
        lambda x, y: be.namespace.sum(polyloss.multilabel_divergence(x, y, axis=(-2, -1))), argnums=(0, 1)
    )
    value, grads = vg(be.from_numpy(a, dtype="float32"), be.from_numpy(b, dtype="float32"))
    assert math.isfinite(float(be.to_numpy(value)))
    for g in grads:
        g = be.to_numpy(g)
        assert np.all(np.isfinite(g)) and np.all(g[:, :, ~mask[0, 0]] == 0.0)


# --------------------------------------------------------------------------------------------
# Gradients stay finite at extreme inputs (every autograd backend, float32 and half precision)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gradients_are_finite_at_extreme_logits(autograd_backend, dtype):
    be = autograd_backend
    big = {"float32": 1e4, "float16": 6e4, "bfloat16": 1e37}[dtype]  # losses of a few·big stay finite
    s = np.array([[big, -big, 0.0, 3.0], [-big, big, -np.inf, 1.0], [big, big, -big, -big]])
    y = np.array([[True, False, True, False], [True, False, True, False], [True, False, False, True]])
    t = np.where(y, 0.8, 0.1)
    for labels in (be.from_numpy(y), be.from_numpy(t, dtype=dtype)):
        vg = be.value_and_grad(lambda x: be.namespace.sum(polyloss.multilabel_crossentropy(x, labels)))
        value, g = vg(be.from_numpy(s, dtype=dtype))
        assert np.isfinite(float(be.to_numpy(value)))
        assert np.all(np.isfinite(be.to_numpy(g)))

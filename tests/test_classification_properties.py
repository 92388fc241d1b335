"""The identities of the classification family (``docs/classification.md``) as property tests,
closed-form gradients, and the numerics at the extremes (finite values and gradients for ±1e4 logits in
float32 and across the half-precision range).

The conformance matrix compares every backend with the reference on fixed cases; these tests check
the mathematics itself on generated inputs (hypothesis, NumPy float64) and on the autograd backends.
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
from polyloss.testing import assert_close

from helpers import LOSS_BACKENDS, get, with_hooks

TIGHT = dict(rtol=1e-12, atol=1e-13)  # float64 identities

SETTINGS = settings(max_examples=40, deadline=None)
FINITE = st.floats(-30.0, 30.0, allow_nan=False, allow_infinity=False, width=64)
UNIT = st.floats(0.0, 1.0, allow_nan=False, width=64)


def binary_case(max_rows=4, max_cols=7, soft=True):
    shape = st.tuples(st.integers(1, max_rows), st.integers(1, max_cols))
    labels = (lambda s: hnp.arrays(np.float64, s, elements=UNIT)) if soft else (lambda s: hnp.arrays(np.bool_, s))
    return shape.flatmap(lambda s: st.tuples(hnp.arrays(np.float64, s, elements=FINITE), labels(s)))


def softmax_case(max_rows=4, max_classes=7):
    shape = st.tuples(st.integers(1, max_rows), st.integers(2, max_classes))
    return shape.flatmap(
        lambda s: st.tuples(
            hnp.arrays(np.float64, s, elements=FINITE),
            hnp.arrays(np.int64, s[:1], elements=st.integers(0, s[1] - 1)),
        )
    )


# --------------------------------------------------------------------------------------------
# Identities (docs/classification.md)
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(binary_case())
def test_focal_with_gamma_0_is_the_sigmoid_crossentropy(data):
    s, t = data
    assert_close(polyloss.focal_loss(s, t, gamma=0.0), polyloss.sigmoid_crossentropy(s, t), **TIGHT)
    # with α: the α-balanced cross-entropy
    assert_close(
        polyloss.focal_loss(s, t, gamma=0.0, alpha=0.3),
        0.3 * t * np.logaddexp(0, -s) + 0.7 * (1 - t) * np.logaddexp(0, s),
        **TIGHT,
    )


@SETTINGS
@given(softmax_case())
def test_softmax_focal_with_gamma_0_is_the_crossentropy(data):
    s, y = data
    assert_close(
        polyloss.focal_loss(s, y, gamma=0.0, activation="softmax"), polyloss.softmax_crossentropy(s, y), **TIGHT
    )


@SETTINGS
@given(binary_case())
def test_softened_truncation_with_k_1_is_focal_with_gamma_1(data):
    s, t = data
    assert_close(polyloss.softened_truncation_loss(s, t, k=1.0), polyloss.focal_loss(s, t, gamma=1.0), **TIGHT)


@SETTINGS
@given(softmax_case(), st.floats(-2.0, 2.0))
def test_poly1_with_epsilon_0_is_the_crossentropy_and_adds_epsilon_times_one_minus_p(data, eps):
    s, y = data
    ce = polyloss.softmax_crossentropy(s, y)
    assert_close(polyloss.poly1_crossentropy(s, y, epsilon=0.0), ce, **TIGHT)
    p_y = np.exp(s[np.arange(len(y)), y] - np.logaddexp.reduce(s, axis=-1))
    assert_close(polyloss.poly1_crossentropy(s, y, epsilon=eps), ce + eps * (1 - p_y), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(binary_case(), st.floats(0.0, 3.0))
def test_poly1_focal_with_epsilon_0_is_focal(data, gamma):
    s, t = data
    assert_close(
        polyloss.poly1_focal_loss(s, t, epsilon=0.0, gamma=gamma, alpha=0.25),
        polyloss.focal_loss(s, t, gamma=gamma, alpha=0.25),
        **TIGHT,
    )


@SETTINGS
@given(softmax_case(), st.floats(0.1, 5.0), st.floats(0.0, 0.5))
def test_logit_adjustment_with_a_uniform_prior_is_the_crossentropy(data, scale, eps):
    s, y = data
    uniform = np.full(s.shape[-1], scale)  # any constant: the prior's scale does not matter
    assert_close(
        polyloss.logit_adjusted_crossentropy(s, y, uniform, label_smoothing=eps),
        polyloss.softmax_crossentropy(s, y, label_smoothing=eps),
        rtol=1e-11,
        atol=1e-12,
    )


def test_logit_adjustment_is_the_crossentropy_of_shifted_logits_and_posthoc_undoes_it():
    rng = np.random.default_rng(0)
    s, y = rng.normal(0, 2, (6, 4)), rng.integers(0, 4, 6)
    prior = np.array([0.7, 0.2, 0.07, 0.03])
    assert_close(
        polyloss.logit_adjusted_crossentropy(s, y, prior, tau=1.5),
        polyloss.softmax_crossentropy(s + 1.5 * np.log(prior), y),
        **TIGHT,
    )
    assert_close(polyloss.adjust_logits(s + np.log(prior), prior), s, **TIGHT)
    # the post-hoc rule moves decisions toward rare classes: 3 - log 0.7 = 3.357 < 0 - log 0.03 = 3.507
    raw = np.array([[3.0, 0.0, 0.0, 0.0]])
    assert int(np.argmax(polyloss.adjust_logits(raw, prior))) == 3
    assert int(np.argmax(polyloss.adjust_logits(raw, prior, tau=0.5))) == 0  # 3.178 > 1.753


@SETTINGS
@given(softmax_case())
def test_rdrop_divergence_is_symmetric_nonnegative_and_zero_at_equality(data):
    a, _ = data
    b = a[::-1].copy() if len(a) > 1 else a + 1.0
    d_ab, d_ba = polyloss.rdrop_divergence(a, b), polyloss.rdrop_divergence(b, a)
    np.testing.assert_allclose(d_ab, d_ba, rtol=1e-12, atol=1e-15)
    assert np.all(d_ab >= 0)
    np.testing.assert_array_equal(polyloss.rdrop_divergence(a, a), 0.0)
    np.testing.assert_allclose(polyloss.rdrop_divergence(a, a + 3.0), 0.0, atol=1e-15)  # shift-invariant


def test_rdrop_divergence_is_half_the_sum_of_both_kls():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 2, (5, 6)), rng.normal(0, 2, (5, 6))
    lp = a - np.logaddexp.reduce(a, axis=-1, keepdims=True)
    lq = b - np.logaddexp.reduce(b, axis=-1, keepdims=True)
    kl_pq = np.sum(np.exp(lp) * (lp - lq), axis=-1)
    kl_qp = np.sum(np.exp(lq) * (lq - lp), axis=-1)
    assert_close(polyloss.rdrop_divergence(a, b), 0.5 * (kl_pq + kl_qp), **TIGHT)
    y = rng.integers(0, 6, 5)
    assert_close(
        polyloss.rdrop_loss(a, b, y, alpha=2.5),
        polyloss.softmax_crossentropy(a, y) + polyloss.softmax_crossentropy(b, y) + 2.5 * 0.5 * (kl_pq + kl_qp),
        **TIGHT,
    )


def test_rdrop_divergence_keeps_its_relative_precision_for_nearby_passes():
    """Two passes 1e-3 apart (the regime R-Drop trains in): float32 keeps the second-order value."""
    rng = np.random.default_rng(2)
    a = rng.normal(0, 3, (8, 10)).astype(np.float32)
    b = (a + rng.normal(0, 1e-3, a.shape)).astype(np.float32)
    want = reference.rdrop_divergence(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(polyloss.rdrop_divergence(a, b), want, rtol=2e-4)


@SETTINGS
@given(hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-50, 50)))
def test_squareplus_with_b_4ln2_squared_dominates_softplus(x):
    b = 4 * math.log(2) ** 2
    assert np.all(polyloss.squareplus(x, b=b) >= np.logaddexp(0, x) - 1e-15)


def test_squareplus_best_uniform_approximation_of_softplus():
    x = np.linspace(-20, 20, 40001)
    err = np.max(np.abs(polyloss.squareplus(x, b=1.52382) - np.logaddexp(0, x)))
    assert abs(err - 0.0759) < 5e-4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_squareplus_is_finite_and_accurate_far_out(dtype):
    x = np.array([-1e30, -1e10, -3.0, 0.0, 3.0, 1e10, 1e30, -3e38, 3e38], dtype=dtype)
    got = polyloss.squareplus(x)
    assert np.all(np.isfinite(got))
    # asymptotes: x for x -> +inf, b / (4|x|) = 1/|x| for x -> -inf (float64 reference, exact formula)
    np.testing.assert_allclose(
        got, reference.squareplus(x.astype(np.float64)), rtol=4e-7 if dtype == "float32" else 1e-15
    )


# --------------------------------------------------------------------------------------------
# Conventions
# --------------------------------------------------------------------------------------------
def test_label_smoothing_is_the_keras_optax_torch_convention():
    rng = np.random.default_rng(3)
    s, y = rng.normal(0, 2, (5, 4)), rng.integers(0, 4, 5)
    eps = 0.2
    smoothed = np.eye(4)[y] * (1 - eps) + eps / 4
    assert_close(
        polyloss.softmax_crossentropy(s, y, label_smoothing=eps), polyloss.softmax_crossentropy(s, smoothed), **TIGHT
    )
    # with a class removed by where, ε spreads over the K = 3 valid classes
    where = np.array([True, True, False, True])
    y3 = np.array([0, 1, 3, 0, 1])
    sm3 = np.eye(4)[y3] * (1 - eps) + eps / 3 * where
    assert_close(
        polyloss.softmax_crossentropy(s, y3, label_smoothing=eps, where=where),
        polyloss.softmax_crossentropy(s, sm3, where=where),
        **TIGHT,
    )


def test_soft_binary_labels_are_the_expectation_of_the_hard_losses():
    rng = np.random.default_rng(4)
    s, t = rng.normal(0, 3, (4, 5)), rng.random((4, 5))
    ones, zeros = np.ones_like(s), np.zeros_like(s)
    for fn, kw in [
        (polyloss.sigmoid_crossentropy, {}),
        (polyloss.focal_loss, {"gamma": 0.5, "alpha": 0.3}),
        (polyloss.softened_truncation_loss, {"k": 2.0}),
        (polyloss.poly1_focal_loss, {}),
    ]:
        assert_close(fn(s, t, **kw), t * fn(s, ones, **kw) + (1 - t) * fn(s, zeros, **kw), **TIGHT)


def test_flooding_descends_above_and_ascends_below_the_level(autograd_backend):
    be = autograd_backend
    for values, level, sign in [([0.5, 1.5], 0.2, 1.0), ([0.1, 0.3], 0.6, -1.0), ([0.4, 0.6], 0.5, 1.0)]:
        x = be.from_numpy(np.array(values), dtype="float64")
        value, (g,) = be.value_and_grad(lambda v: polyloss.flooding(v, level), argnums=(0,))(x)
        mean = float(np.mean(values))
        assert float(value) == pytest.approx(abs(mean - level) + level, rel=1e-15)
        np.testing.assert_allclose(be.to_numpy(g), sign * np.full(2, 0.5), rtol=1e-15)


def test_hard_truncation_zeroes_what_is_already_right_and_uses_half_at_the_threshold():
    s = np.array([2.0, 0.0, -0.1, -2.0, 0.0, 0.3])
    y = np.array([1, 1, 1, 0, 0, 0])
    bce = polyloss.sigmoid_crossentropy(s, y)
    got = polyloss.hard_truncation_loss(s, y, m=0.5)
    # m = 0.5: positives above ½ and negatives below ½ cost nothing; at p = ½ exactly θ(0) = ½ applies
    np.testing.assert_array_equal(got, np.array([0.0, 0.5, 1.0, 0.0, 0.5, 1.0]) * bce)
    ids = np.array([0, 1])
    logits = np.array([[5.0, 0.0], [5.0, 0.0]])
    got = polyloss.hard_truncation_loss(logits, ids, activation="softmax", m=0.9)
    np.testing.assert_allclose(got, [0.0, polyloss.softmax_crossentropy(logits, ids)[1]])


# --------------------------------------------------------------------------------------------
# Gradients: closed forms, stop-gradient, the derivative at 0
# --------------------------------------------------------------------------------------------
def _grad(be, fn, *arrays, argnums=(0,)):
    xp = be.namespace
    return be.grad(lambda *a: xp.sum(fn(*a)), argnums=argnums)(*arrays)


def test_binary_gradients_are_exact_at_zero(autograd_backend):
    """``σ(0) - t`` at s = 0 exactly (zero-initialised heads): abs/max-based softplus code gets 0 or 1
    there instead of ½ on some frameworks."""
    be = autograd_backend
    s = be.from_numpy(np.zeros(3), dtype="float64")
    t = np.array([0.0, 1.0, 0.25])
    (g,) = _grad(be, lambda x: polyloss.sigmoid_crossentropy(x, t), s)
    np.testing.assert_allclose(be.to_numpy(g), 0.5 - t, rtol=1e-15)
    (g,) = _grad(be, lambda x: polyloss.focal_loss(x, t, gamma=2.0), s)
    # d/ds [t σ(-s)² sp(-s) + (1-t) σ(s)² sp(s)] at 0 = t(-¼ ln2 - ⅛) + (1-t)(¼ ln2 + ⅛)
    np.testing.assert_allclose(be.to_numpy(g), (1 - 2 * t) * (0.25 * math.log(2) + 0.125), rtol=1e-14)
    (g,) = _grad(be, lambda x: polyloss.multilabel_divergence(x, np.ones(3)), s)  # the same σ inside
    # d/ds (σ(s) - σ(1))(s - 1) at 0 = σ'(0)·(-1) + ½ - σ(1)
    np.testing.assert_allclose(be.to_numpy(g), np.full(3, -0.25 + 0.5 - 1 / (1 + math.exp(-1.0))), rtol=1e-14)


def test_softmax_crossentropy_gradient_is_p_minus_target(autograd_backend):
    be = autograd_backend
    rng = np.random.default_rng(5)
    s_np, y = rng.normal(0, 2, (5, 6)), rng.integers(0, 6, 5)
    y[2] = -1
    p = np.exp(s_np - np.logaddexp.reduce(s_np, axis=-1, keepdims=True))
    eps = 0.1
    target = np.eye(6)[np.where(y < 0, 0, y)] * (1 - eps) + eps / 6
    want = p - target
    want[2] = 0.0  # ignored row
    (g,) = _grad(
        be,
        lambda x: polyloss.softmax_crossentropy(x, y, label_smoothing=eps, ignore_index=-1),
        be.from_numpy(s_np, dtype="float64"),
    )
    np.testing.assert_allclose(be.to_numpy(g), want, rtol=1e-12, atol=1e-14)


def test_smoothed_f1_gradient_holds_f1_constant(autograd_backend):
    be = autograd_backend
    rng = np.random.default_rng(6)
    s_np, y = rng.normal(0, 2, (6, 5)), rng.random((6, 5)) < 0.4
    p = 1 / (1 + np.exp(-s_np))
    f1 = 2 * np.sum(y * p) / np.sum(y + p)
    s = be.from_numpy(s_np, dtype="float64")
    (g_batch,) = _grad(be, lambda x: polyloss.smoothed_f1_weighted_crossentropy(x, y), s)
    (g_fixed,) = _grad(be, lambda x: polyloss.smoothed_f1_weighted_crossentropy(x, y, f1=f1), s)
    np.testing.assert_allclose(be.to_numpy(g_batch), be.to_numpy(g_fixed), rtol=1e-12)
    # closed form: y(1 - F/2)(p - 1) + (1 - y)(F/2) p
    np.testing.assert_allclose(be.to_numpy(g_batch), y * (1 - f1 / 2) * (p - 1) + (1 - y) * (f1 / 2) * p, rtol=1e-12)
    assert_close(
        polyloss.smoothed_f1_weighted_crossentropy(s_np, y),
        reference.smoothed_f1_weighted_crossentropy(s_np, y),
        **TIGHT,
    )


def test_rdrop_divergence_hessian_at_equality(autograd_backend):
    """VAT-style power iteration needs the second derivative at a = b: ∂²D/∂b² = diag(p) - p pᵀ."""
    be = autograd_backend
    xp = be.namespace
    a_np = np.array([[0.3, -1.0, 2.0]])
    p = np.exp(a_np - np.logaddexp.reduce(a_np, axis=-1, keepdims=True))[0]
    a = be.from_numpy(a_np, dtype="float64")
    direction = be.from_numpy(np.array([[1.0, 0.0, -1.0]]), dtype="float64")

    def directional(b):  # v · ∇_b D(a, b)
        (g,) = be.grad(lambda x: xp.sum(polyloss.rdrop_divergence(a, x)), argnums=(0,))(b)
        return xp.sum(g * direction)

    (hv,) = be.grad(directional, argnums=(0,))(be.from_numpy(a_np, dtype="float64"))  # b = a, a separate array
    v = np.array([1.0, 0.0, -1.0])
    np.testing.assert_allclose(be.to_numpy(hv)[0], (np.diag(p) - np.outer(p, p)) @ v, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------------------------
# Extremes: finite values and gradients (the NaN reports of other libraries)
# --------------------------------------------------------------------------------------------
def _extreme_calls(big):
    rng = np.random.default_rng(7)
    s = rng.choice([-1.0, 1.0], (4, 6)) * big
    s[0, :3] = [0.0, 1.0, -1.0]
    y = rng.random((4, 6)) < 0.5
    ids = rng.integers(0, 6, 4)
    prior = np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    return s, [
        ("sigmoid_crossentropy", lambda x: polyloss.sigmoid_crossentropy(x, y)),
        ("focal gamma=0", lambda x: polyloss.focal_loss(x, y, gamma=0.0)),
        ("focal gamma=0.5", lambda x: polyloss.focal_loss(x, y, gamma=0.5, alpha=0.25)),
        ("focal gamma=2", lambda x: polyloss.focal_loss(x, y, gamma=2.0)),
        ("focal softmax gamma=0.5", lambda x: polyloss.focal_loss(x, ids, gamma=0.5, activation="softmax")),
        ("focal softmax gamma=0", lambda x: polyloss.focal_loss(x, ids, gamma=0.0, activation="softmax")),
        ("hard truncation", lambda x: polyloss.hard_truncation_loss(x, y)),
        ("softened truncation", lambda x: polyloss.softened_truncation_loss(x, y, k=2.0)),
        ("softmax_crossentropy", lambda x: polyloss.softmax_crossentropy(x, ids, label_smoothing=0.1)),
        ("logit adjusted", lambda x: polyloss.logit_adjusted_crossentropy(x, ids, prior)),
        ("smoothed f1", lambda x: polyloss.smoothed_f1_weighted_crossentropy(x, y)),
        ("poly1", lambda x: polyloss.poly1_crossentropy(x, ids)),
        ("poly1 focal", lambda x: polyloss.poly1_focal_loss(x, y, gamma=0.5)),
        ("poly1 focal softmax", lambda x: polyloss.poly1_focal_loss(x, ids, activation="softmax", gamma=0.5)),
        ("rdrop", lambda x: polyloss.rdrop_loss(x, -x, ids, alpha=1.0)),  # α·D must itself be finite
        ("squareplus", lambda x: polyloss.squareplus(x)),
    ]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_values_and_gradients_are_finite_at_extreme_logits(autograd_backend, dtype):
    be = autograd_backend
    if dtype not in be.dtypes():
        pytest.skip(f"{be.name} has no {dtype}")
    # float16 / bfloat16: up to an eighth of the largest finite value (a softmax loss of 2·big must
    # itself be finite in the float32 compute dtype)
    big = {"float32": 1e4, "float16": 65504.0 / 8, "bfloat16": 3.3895e38 / 8}[dtype]
    s_np, calls = _extreme_calls(big)
    s = be.from_numpy(s_np, dtype=dtype)
    bad = []
    for name, fn in calls:
        value = be.to_numpy(fn(s))
        (g,) = _grad(be, fn, s)
        if not np.all(np.isfinite(value)) or not np.all(np.isfinite(be.to_numpy(g).astype(np.float64))):
            bad.append(name)
    assert not bad, f"non-finite values or gradients: {bad}"


# --------------------------------------------------------------------------------------------
# Side inputs land on the logits' framework, dtype and device
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["list", "numpy"])
def test_prior_from_python_or_numpy_lands_on_the_logits(backend, form):
    rng = np.random.default_rng(8)
    s_np, y = rng.normal(0, 2, (3, 4)), np.array([0, 3, 1])
    prior = [0.4, 0.3, 0.2, 0.1] if form == "list" else np.array([0.4, 0.3, 0.2, 0.1])
    s = backend.from_numpy(s_np, dtype="float32")
    for out in (
        polyloss.logit_adjusted_crossentropy(s, backend.from_numpy(y), prior),
        polyloss.adjust_logits(s, prior),
    ):
        assert backend.is_array(out)
        assert out.dtype == s.dtype
        assert str(backend.device(out)) == str(backend.device(s))
    np.testing.assert_allclose(
        backend.to_numpy(polyloss.adjust_logits(s, prior)),
        s_np.astype(np.float32) - np.log(np.array([0.4, 0.3, 0.2, 0.1])),
        rtol=1e-6,
    )


def test_side_inputs_land_on_the_logits_device_array_api_strict():
    be = get("array_api_strict")
    import array_api_strict as xp

    device = xp.Device("device1")
    s = xp.asarray(np.random.default_rng(9).normal(0, 1, (3, 4)), device=device)
    y = xp.asarray(np.array([0, 1, 2]), device=device)
    outs = [
        polyloss.logit_adjusted_crossentropy(s, y, [0.1, 0.2, 0.3, 0.4]),
        polyloss.adjust_logits(s, np.array([0.1, 0.2, 0.3, 0.4])),
        polyloss.focal_loss(s, y, activation="softmax", alpha=[1.0, 2.0, 3.0, 4.0]),
        polyloss.softmax_crossentropy(s, y, where=np.array([True, True, True, False])),
        polyloss.rdrop_loss(s, np.zeros((3, 4)), y),
    ]
    for out in outs:
        assert be.device(out) == device


# --------------------------------------------------------------------------------------------
# Regressions found in review
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, fn",
    [
        ("focal ids", lambda a, xp: polyloss.focal_loss(a, np.array([0, 1]), gamma=2.0, activation="softmax")),
        (
            "focal probs",
            lambda a, xp: polyloss.focal_loss(a, np.array([[0.2, 0.5, 0.3]] * 2), gamma=0.5, activation="softmax"),
        ),
        ("poly1", lambda a, xp: polyloss.poly1_crossentropy(a, np.array([0, 2]), epsilon=2.0)),
        ("poly1 focal", lambda a, xp: polyloss.poly1_focal_loss(a, np.array([1, 0]), activation="softmax")),
        (
            "hard truncation",
            lambda a, xp: polyloss.hard_truncation_loss(a, np.array([0, 1]), activation="softmax", m=0.9),
        ),
    ],
)
def test_gradients_are_right_when_the_row_maximum_is_tied(autograd_backend, name, fn):
    """A zero-initialised head ties every logit: the other maxima must keep their derivatives
    (central differences of the NumPy float64 values, which are exact functions of the logits)."""
    be = autograd_backend
    x_np = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, -0.5]])
    (g,) = _grad(be, lambda a: fn(a, be.namespace), be.from_numpy(x_np, dtype="float64"))
    h = 1e-6
    fd = np.zeros_like(x_np)
    for idx in np.ndindex(x_np.shape):
        e = np.zeros_like(x_np)
        e[idx] = h
        fd[idx] = (np.sum(fn(x_np + e, np)) - np.sum(fn(x_np - e, np))) / (2 * h)
    np.testing.assert_allclose(be.to_numpy(g), fd, rtol=1e-6, atol=1e-8)


def test_mass_on_a_removed_class_is_plus_infinity():
    s, t, where = np.zeros((1, 3)), np.array([[0.5, 0.3, 0.2]]), np.array([[True, True, False]])
    for fn in (polyloss.softmax_crossentropy, polyloss.poly1_crossentropy):
        assert fn(s, t, where=where)[0] == np.inf
    assert polyloss.softmax_crossentropy(s, np.array([2]), where=where)[0] == np.inf
    assert polyloss.logit_adjusted_crossentropy(s, t, [1, 1, 1], where=where)[0] == np.inf
    # with ε = 1 the target is uniform over the 2 valid classes: -log ½ each, finite
    assert_close(
        polyloss.softmax_crossentropy(s, np.array([2]), where=where, label_smoothing=1.0), [math.log(2.0)], **TIGHT
    )
    assert_close(
        polyloss.poly1_crossentropy(s, t, where=where, label_smoothing=1.0),
        reference.poly1_crossentropy(s, t, where=where, label_smoothing=1.0),
        **TIGHT,
    )


def test_infinite_logits_give_the_exact_binary_losses():
    """-inf as a mask in a sigmoid head: 0 where the label agrees, inf where it does not, never NaN."""
    s = np.array([np.inf, -np.inf, np.inf, -np.inf])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    with np.errstate(invalid="ignore"):
        for fn in (
            polyloss.sigmoid_crossentropy,
            polyloss.focal_loss,
            polyloss.softened_truncation_loss,
            polyloss.hard_truncation_loss,
            polyloss.poly1_focal_loss,
        ):
            np.testing.assert_array_equal(fn(s, t), [0.0, 0.0, np.inf, np.inf])


def test_squareplus_first_and_second_derivatives_are_the_closed_forms(autograd_backend):
    """sp'(x) = sp(x)/r = (1 + x/r)/2 and sp''(x) = b/(2 r³), r = sqrt(x² + b), through the custom gradient."""
    be = autograd_backend
    xp = be.namespace
    x_np = np.array([-1e6, -30.0, -1.0, 0.0, 0.5, 7.0, 1e6])
    b = 2.5
    r = np.sqrt(x_np**2 + b)
    x = be.from_numpy(x_np, dtype="float64")
    (g,) = _grad(be, lambda v: polyloss.squareplus(v, b=b), x)
    # (1 + x/r)/2, written without cancellation on each side: b/(2r(r - x)) for x < 0
    want = np.where(x_np >= 0, (1 + x_np / r) / 2, b / (2 * r * (r - np.minimum(x_np, 0))))
    np.testing.assert_allclose(be.to_numpy(g), want, rtol=1e-13)

    def first(v):
        (d,) = be.grad(lambda u: xp.sum(polyloss.squareplus(u, b=b)), argnums=(0,))(v)
        return xp.sum(d)

    (h,) = be.grad(first, argnums=(0,))(be.from_numpy(x_np, dtype="float64"))
    # far out (x = 1e6) differentiating sp/r cancels down to eps/r absolutely: 1e-22 against 1e-18
    np.testing.assert_allclose(be.to_numpy(h), b / (2 * r**3), rtol=1e-12, atol=1e-21)


# --------------------------------------------------------------------------------------------
# The eager-CPU kernels (docs/design.md, "Eager-CPU fast paths"), run over several blocks of rows
# --------------------------------------------------------------------------------------------
def _kernel_calls(rng, convert):
    """(name, polyloss call, reference call, logits): every closed-form-gradient kernel of the classification
    and regulariser families, on inputs where it is taken (eager CPU, finite logits, class ids)."""
    s = rng.normal(0.0, 3.0, (13, 11))
    soft = rng.random(s.shape)
    soft[rng.random(s.shape) < 0.5] = 0.0  # hard and soft labels side by side
    hard = (rng.random(s.shape) < 0.3).astype(np.float64)  # every label 0 or 1: the one-sided kernel
    ids = rng.integers(0, 11, 13)
    kept = ids.copy()
    ids[3] = -100
    near = s + rng.normal(0.0, 0.05, s.shape)
    far = s + rng.normal(0.0, 1.0, s.shape)  # rows with some |s_a - s_b| > 1 next to rows without
    ce = dict(label_smoothing=0.1, ignore_index=-100)
    return [
        ("sigmoid_crossentropy", lambda x: polyloss.sigmoid_crossentropy(x, soft),
         lambda x: reference.sigmoid_crossentropy(x, soft), s),
        ("focal_loss", lambda x: polyloss.focal_loss(x, soft, gamma=2.0, alpha=0.25),
         lambda x: reference.focal_loss(x, soft, gamma=2.0, alpha=0.25), s),
        ("poly1_focal_loss", lambda x: polyloss.poly1_focal_loss(x, soft, gamma=1.5, epsilon=0.5),
         lambda x: reference.poly1_focal_loss(x, soft, gamma=1.5, epsilon=0.5), s),
        ("focal_loss hard", lambda x: polyloss.focal_loss(x, hard, gamma=2.0, alpha=0.25),
         lambda x: reference.focal_loss(x, hard, gamma=2.0, alpha=0.25), s),
        ("poly1_focal_loss hard", lambda x: polyloss.poly1_focal_loss(x, hard, gamma=0.5, epsilon=0.5, alpha=0.75),
         lambda x: reference.poly1_focal_loss(x, hard, gamma=0.5, epsilon=0.5, alpha=0.75), s),
        ("focal_loss hard, gamma 3", lambda x: polyloss.focal_loss(x, hard, gamma=3.0),
         lambda x: reference.focal_loss(x, hard, gamma=3.0), s),
        ("softmax_crossentropy", lambda x: polyloss.softmax_crossentropy(x, ids, **ce),
         lambda x: reference.softmax_crossentropy(x, ids, **ce), s),
        ("rdrop_loss near", lambda x: polyloss.rdrop_loss(x, near, ids, alpha=3.0, **ce),
         lambda x: reference.rdrop_loss(x, near, ids, alpha=3.0, **ce), s),
        ("rdrop_loss far", lambda x: polyloss.rdrop_loss(x, far, ids, alpha=3.0, **ce),
         lambda x: reference.rdrop_loss(x, far, ids, alpha=3.0, **ce), s),
        ("rdrop_loss second pass", lambda x: polyloss.rdrop_loss(convert(s), x, kept, alpha=0.5),
         lambda x: reference.rdrop_loss(s, x, kept, alpha=0.5), far),
    ]


# every backend as it is ("fused hooks" where the adapter has them), and the backends with a fused sigmoid
# or log_softmax once more without them (the composed forms and the kernels' own gradients)
_HOOK_VARIANTS = ([pytest.param(name, True, id=f"{name}-fused hooks") for name in LOSS_BACKENDS]
                  + [pytest.param(name, False, id=f"{name}-composed")
                     for name in with_hooks(LOSS_BACKENDS, "sigmoid", "log_softmax")])


@pytest.mark.parametrize("name, hooks", _HOOK_VARIANTS)
@pytest.mark.parametrize("index", range(10))
def test_eager_cpu_kernels_agree_with_the_reference_across_row_blocks(name, hooks, monkeypatch, index):
    """Values against the reference, and the closed-form gradients against a central difference of the
    reference along a random direction, with blocks of 4 rows (``_ops.by_rows`` joins 4 blocks here), with
    the adapter's fused ``sigmoid`` / ``log_softmax`` and without them (the composed forms and the kernels'
    own gradients). Backends without the eager-CPU road run the general form: the same comparison holds."""
    from polyloss.backends import _base

    backend = get(name)
    monkeypatch.setattr(_base, "CPU_BLOCK_ELEMENTS", 4 * 11)
    if not hooks:
        monkeypatch.setattr(type(backend), "sigmoid", None)
        monkeypatch.setattr(type(backend), "log_softmax", None)
    rng = np.random.default_rng(17)
    name, ours, ref, x_np = _kernel_calls(rng, lambda a: backend.from_numpy(a, dtype="float64"))[index]
    x = backend.from_numpy(x_np, dtype="float64")
    assert_close(backend.to_numpy(ours(x)), ref(x_np), rtol=1e-12, atol=1e-14)
    if not backend.has_autograd:
        return
    direction = rng.normal(size=x_np.shape)
    weights = rng.random(x_np.shape[0] if name.startswith(("softmax", "rdrop")) else x_np.shape)
    (g,) = _grad(backend, lambda v: ours(v) * backend.from_numpy(weights, dtype="float64"), x)
    h = 1e-6
    want = (np.sum(weights * ref(x_np + h * direction)) - np.sum(weights * ref(x_np - h * direction))) / (2 * h)
    # a central difference of step 1e-6: truncation ~1e-12, rounding ~1e-16 · |L| / h
    assert_close(np.sum(backend.to_numpy(g) * direction), want, rtol=1e-7, atol=1e-8)



# --------------------------------------------------------------------------------------------
# The one-sided kernel of hard labels (focal and Poly-1 focal, γ > 0; classification.py, "Hard labels")
# --------------------------------------------------------------------------------------------
def test_hard_labels_are_recognised_exactly():
    """``t - t²`` is 0 at 0 and 1 only: the smallest subnormal and the float just below 1 count as soft."""
    from polyloss.backends import get_backend
    from polyloss.losses.classification import _hard_labels

    xp = get_backend("numpy").namespace
    backend = get_backend("numpy")
    for dtype in (np.float32, np.float64):
        tiny, below_one = np.finfo(dtype).smallest_subnormal, np.nextafter(dtype(1), dtype(0))
        assert _hard_labels(xp, backend, np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype))
        for soft in (tiny, below_one, 0.5, np.nan):
            assert not _hard_labels(xp, backend, np.array([[0.0, 1.0], [soft, 0.0]], dtype=dtype)), (dtype, soft)


def _one_sided_inputs(rng):
    s = rng.normal(0.0, 6.0, (9, 7))
    s[0] = [0.0, 17.0, -17.0, 40.0, -40.0, 90.0, -90.0]  # where p = 1 - σ(z) loses its digits, and beyond
    y = (rng.random(s.shape) < 0.4).astype(np.float64)
    return s, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", with_hooks(LOSS_BACKENDS, "sigmoid") + ["numpy"])
def test_one_sided_kernel_agrees_with_the_two_sided_one(name, dtype, monkeypatch):
    """Hard labels take the one-sided kernel; its values and gradients agree with the general (two-sided)
    kernel's to within the conformance tolerance (float32: 2e-5 relative, the loss's own rounding a few ulps;
    ``p = 1 - σ(z)`` adds ``γ·sp(z)·ulp(1)/2`` to the gradient's ``γ p sp(z) + q``, at most ~4e-6 at z ≈ 17)."""
    from polyloss.losses import classification

    backend = get(name)
    s, y = _one_sided_inputs(np.random.default_rng(3))
    calls = [lambda x, t: polyloss.focal_loss(x, t, gamma=2.0, alpha=0.25),
             lambda x, t: polyloss.poly1_focal_loss(x, t, gamma=1.5, epsilon=2.0)]
    rtol = 1e-5 if dtype == "float32" else 1e-13
    atol = float(np.finfo(dtype).tiny)  # below the smallest normal the sigmoid may flush (Backend.sigmoid)
    for call in calls:
        x, t = backend.from_numpy(s, dtype=dtype), backend.from_numpy(y, dtype=dtype)
        taken = []
        real = classification._hard_focal_fwd
        monkeypatch.setattr(classification._HARD_FOCAL, "_fwd", lambda *a, **k: taken.append(1) or real(*a, **k))
        classification._HARD_FOCAL._compiled.clear()
        value = backend.to_numpy(call(x, t))
        assert taken, "hard labels did not take the one-sided kernel"
        monkeypatch.setattr(classification, "_hard_labels", lambda *a: False)
        general = backend.to_numpy(call(x, t))
        assert_close(value, general, rtol=rtol, atol=atol)
        if backend.has_autograd:
            (g_general,) = _grad(backend, lambda v: call(v, t), x)
            monkeypatch.undo()
            (g,) = _grad(backend, lambda v: call(v, t), x)
            assert_close(backend.to_numpy(g), backend.to_numpy(g_general), rtol=rtol, atol=atol)
        monkeypatch.undo()
        classification._HARD_FOCAL._compiled.clear()


def test_one_sided_kernel_second_derivatives_and_label_gradients_torch():
    """The kernel updates its temporaries in place only where no graph is recorded: a gradient of the gradient
    (``create_graph=True``) is the central difference of the gradient; a gradient with respect to hard labels
    is the general kernel's ``a₁ P^γ sp(-s) - a₀ Q^γ sp(s)`` (the reference's, differenced)."""
    torch = pytest.importorskip("torch")
    s, y = _one_sided_inputs(np.random.default_rng(4))
    s, y = s[1:], y[1:]  # finite differences of the gradient need the logits away from the saturated row
    direction = np.random.default_rng(5).normal(size=s.shape)
    x = torch.tensor(s, requires_grad=True)
    t = torch.tensor(y)

    def gradient(v):
        (g,) = torch.autograd.grad(polyloss.focal_loss(v, t, gamma=2.0, alpha=0.25).sum(), v, create_graph=True)
        return g

    g = gradient(x)
    (hv,) = torch.autograd.grad((g * torch.tensor(direction)).sum(), x)
    h = 1e-6
    plus = gradient(torch.tensor(s + h * direction, requires_grad=True)).detach().numpy()
    minus = gradient(torch.tensor(s - h * direction, requires_grad=True)).detach().numpy()
    assert_close(np.sum(hv.numpy() * direction), np.sum((plus - minus) * direction) / (2 * h), rtol=1e-7, atol=1e-8)
    # the gradient was not changed by the second pass (no in-place update of a recorded value)
    assert_close(g.detach().numpy(), gradient(torch.tensor(s, requires_grad=True)).detach().numpy(), rtol=0, atol=0)

    labels = torch.tensor(y, requires_grad=True)
    (g_t,) = torch.autograd.grad(polyloss.focal_loss(torch.tensor(s), labels, gamma=2.0, alpha=0.25).sum(), labels)
    want = (reference.focal_loss(s, np.ones_like(y), gamma=2.0, alpha=0.25)
            - reference.focal_loss(s, np.zeros_like(y), gamma=2.0, alpha=0.25))  # L is linear in t
    assert_close(g_t.numpy(), want, rtol=1e-12, atol=1e-300)

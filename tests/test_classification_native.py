"""The classification family against the frameworks' own losses: torch, jax/optax, keras 3 and tf.nn.

Every test compares ``polyloss.<fn>`` called on a framework's tensors with that framework's native
function (values, and gradients where they are cheap), within the dtype's tolerance. Where a
framework follows a different convention, the difference is pinned by a named test (it asserts the
exact relation, so a change on either side is noticed). The conventions found, in short:

- torch ``F.cross_entropy``: same definition for class ids, probability targets, label smoothing
  (ε/C), ``ignore_index`` (per-example 0; the "mean" is over the non-ignored rows). Class axis 1.
- optax ``softmax_cross_entropy[_with_integer_labels]``, ``smooth_labels`` (ε/K with ``where``):
  same. ``sigmoid_focal_loss``: same for hard labels; for SOFT labels optax uses
  ``α_t (1-p_t)^γ BCE(t)`` with ``p_t = t·p + (1-t)(1-p)``, ``α_t = α t + (1-α)(1-t)``, not the
  expectation ``t·L(1) + (1-t)·L(0)`` of the contract (they agree only for γ = 0 and alpha None).
  ``poly_loss_cross_entropy``: its poly term is ``ε·Σ_k t_k (1-p_k) = ε(Σt - Σ t p)``, ours is
  ``ε(1 - Σ t p)``: equal when the labels sum to 1, otherwise they differ by ``ε(Σt - 1)``;
  optax's default epsilon is 2.0 (ours 1.0).
- ``jax.nn.squareplus``: same function; jax evaluates ``(x + sqrt(x² + b))/2`` literally, which
  cancels in float32 for x << 0 (0 at x = -1e4); ours is accurate there.
- keras 3: ``CategoricalCrossentropy`` smooths with ε/C where C = ``shape[-1]``, even when ``axis``
  is not the last axis (a Keras quirk, pinned below); ``BinaryCrossentropy`` (and the focal
  variant) AVERAGE over the last axis and smooth binary labels towards 0.5 (``t(1-ε) + ε/2``);
  ``CategoricalFocalCrossentropy`` applies the softmax, renormalises and clips probabilities to
  [1e-7, 1 - 1e-7] before the log (it saturates at -log(1e-7) ≈ 16.1 for confidently wrong
  rows); ``BinaryFocalCrossentropy`` on the TensorFlow backend does not clip (its BCE is computed
  from the logits the sigmoid remembers). Focal alpha: Keras' default is 0.25 (ours None = no
  weighting); the binary alpha counts only with ``apply_class_balancing=True``; a per-class alpha
  list is made a float32 tensor even for dtype float64. Binary focal with soft labels follows
  optax's convention (not the expectation). Keras' categorical focal with soft labels is ours.
  ``SparseCategoricalCrossentropy(ignore_class=)`` = ``ignore_index``; its default reduction is the
  mean over the non-ignored rows.
- tf.nn ``softmax_cross_entropy_with_logits`` / ``sparse_…`` / ``sigmoid_…``: same definitions.
"""

from __future__ import annotations

import numpy as np
import pytest

import polyloss
from polyloss.testing import assert_close

from helpers import get, tolerance
from helpers import jax_modules as _jax
from helpers import keras_modules as _keras
from helpers import tensorflow_module as _tf

TOL = {"float32": dict(rtol=1e-5, atol=2e-6), "float64": dict(rtol=1e-10, atol=1e-12)}
DTYPES = ("float32", "float64")


def logits(rng, shape, scale=2.0):
    return rng.normal(0.0, scale, shape)


def prob_labels(rng, shape, axis=-1, normalised=True):
    t = rng.random(shape)
    return t / t.sum(axis=axis, keepdims=True) if normalised else t


def one_hot(y, c, axis=-1):
    out = np.eye(c)[y]
    return np.moveaxis(out, -1, axis)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def value_and_grad(name, f, s_np, dtype, w):
    """``(f(s), ∇_s Σ f(s)·w)`` as float64 NumPy, with ``s`` the logits on backend ``name`` in ``dtype``,
    through the backend adapter's autograd (the same for polyloss and for the native function)."""
    be = get(name)
    xp = be.namespace
    s = be.from_numpy(np.asarray(s_np), dtype=dtype)
    out = f(s)
    weights = be.from_numpy(np.asarray(w), dtype=dtype)
    _, (g,) = be.value_and_grad(lambda x: xp.sum(f(x) * weights), argnums=(0,))(s)
    assert out.dtype == be.dtype(dtype) and g.dtype == be.dtype(dtype)
    return be.to_numpy(out).astype(np.float64), be.to_numpy(g).astype(np.float64)


# ============================================================================================
# torch
# ============================================================================================
def _torch():
    t = get("torch")
    import torch
    import torch.nn.functional as F

    return t, torch, F


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_torch_cross_entropy_class_ids(dtype, smoothing):
    _, torch, F = _torch()
    rng = np.random.default_rng(1)
    s, y = logits(rng, (7, 5)), rng.integers(0, 5, 7)
    w = rng.random(7)
    yt = torch.as_tensor(y)
    v_pl, g_pl = value_and_grad(
        "torch", lambda s: polyloss.softmax_crossentropy(s, yt, label_smoothing=smoothing), s, dtype, w)
    v_t, g_t = value_and_grad(
        "torch", lambda s: F.cross_entropy(s, yt, reduction="none", label_smoothing=smoothing), s, dtype, w)
    assert v_pl.shape == (7,)
    assert_close(v_pl, v_t, **tolerance(TOL, dtype))
    assert_close(g_pl, g_t, **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("normalised", [True, False])
def test_torch_cross_entropy_probability_labels(dtype, smoothing, normalised):
    """torch's probability targets need not sum to 1 either; smoothing is t(1-ε) + ε/C."""
    _, torch, F = _torch()
    rng = np.random.default_rng(2)
    s, t = logits(rng, (6, 4)), prob_labels(rng, (6, 4), normalised=normalised)
    w = rng.random(6)
    tt = torch.tensor(t, dtype=getattr(torch, dtype))
    v_pl, g_pl = value_and_grad(
        "torch", lambda s: polyloss.softmax_crossentropy(s, tt, label_smoothing=smoothing), s, dtype, w)
    v_t, g_t = value_and_grad(
        "torch", lambda s: F.cross_entropy(s, tt, reduction="none", label_smoothing=smoothing), s, dtype, w)
    assert_close(v_pl, v_t, **tolerance(TOL, dtype))
    assert_close(g_pl, g_t, **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ignore", [-100, 255, 2])  # the default, an out-of-range id, a real class id
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_torch_cross_entropy_ignore_index(dtype, ignore, smoothing):
    _, torch, F = _torch()
    rng = np.random.default_rng(3)
    s, y = logits(rng, (9, 5)), rng.integers(0, 5, 9)
    y[[1, 4, 8]] = ignore
    w = rng.random(9)
    yt = torch.as_tensor(y)
    v_pl, g_pl = value_and_grad(
        "torch", lambda s: polyloss.softmax_crossentropy(s, yt, label_smoothing=smoothing, ignore_index=ignore),
        s, dtype, w)
    v_t, g_t = value_and_grad(
        "torch", lambda s: F.cross_entropy(s, yt, reduction="none", label_smoothing=smoothing, ignore_index=ignore),
        s, dtype, w)
    ignored = y == ignore
    assert ignored.sum() >= 3
    assert np.all(v_pl[ignored] == 0.0)
    assert np.all(g_pl[ignored] == 0.0)
    assert_close(v_pl, v_t, **tolerance(TOL, dtype))
    assert_close(g_pl, g_t, **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ignore", [-100, 3])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_torch_cross_entropy_mean_is_reduce_over_non_ignored(dtype, ignore, smoothing):
    """torch's reduction="mean" divides by the number of non-ignored rows (also with smoothing):
    ``polyloss.reduce(loss, where=labels != ignore_index)``."""
    _, torch, F = _torch()
    rng = np.random.default_rng(4)
    s, y = logits(rng, (10, 6)), rng.integers(0, 6, 10)
    y[[0, 5, 6, 9]] = ignore
    dt = getattr(torch, dtype)
    s1 = torch.tensor(s, dtype=dt, requires_grad=True)
    s2 = torch.tensor(s, dtype=dt, requires_grad=True)
    yt = torch.as_tensor(y)
    ours = polyloss.reduce(polyloss.softmax_crossentropy(s1, yt, label_smoothing=smoothing, ignore_index=ignore),
                           where=yt != ignore)
    theirs = F.cross_entropy(s2, yt, reduction="mean", label_smoothing=smoothing, ignore_index=ignore)
    ours.backward()
    theirs.backward()
    assert_close(ours.detach(), theirs.detach(), **tolerance(TOL, dtype))
    assert_close(s1.grad, s2.grad, **tolerance(TOL, dtype))
    # and not the mean over all rows (the ignored rows are 0, so that one is smaller)
    all_rows = polyloss.reduce(polyloss.softmax_crossentropy(s1.detach(), yt, label_smoothing=smoothing,
                                                             ignore_index=ignore))
    assert float(all_rows) < float(theirs.detach()) * 0.9


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_cross_entropy_class_axis_1(dtype):
    """torch's layout [N, C, d...]: axis=1, class ids [N, d...] and probability labels [N, C, d...]."""
    _, torch, F = _torch()
    rng = np.random.default_rng(5)
    dt = getattr(torch, dtype)
    s = logits(rng, (3, 5, 4, 2))
    y = rng.integers(0, 5, (3, 4, 2))
    y[0, 1, 0] = y[2, 3, 1] = -100
    t = prob_labels(rng, (3, 5, 4, 2), axis=1)
    st, yt, tt = torch.tensor(s, dtype=dt), torch.as_tensor(y), torch.tensor(t, dtype=dt)
    for eps in (0.0, 0.2):
        ours = polyloss.softmax_crossentropy(st, yt, axis=1, label_smoothing=eps, ignore_index=-100)
        assert tuple(ours.shape) == (3, 4, 2)
        assert_close(ours, F.cross_entropy(st, yt, reduction="none", label_smoothing=eps), **tolerance(TOL, dtype))
        ours = polyloss.softmax_crossentropy(st, tt, axis=1, label_smoothing=eps)
        assert tuple(ours.shape) == (3, 4, 2)
        assert_close(ours, F.cross_entropy(st, tt, reduction="none", label_smoothing=eps), **tolerance(TOL, dtype))
    # axis=-3 is the same axis
    assert_close(polyloss.softmax_crossentropy(st, yt, axis=-3, ignore_index=-100),
                 F.cross_entropy(st, yt, reduction="none"), **tolerance(TOL, dtype))
    # the mean over valid positions
    assert_close(
        polyloss.reduce(polyloss.softmax_crossentropy(st, yt, axis=1, ignore_index=-100), where=yt != -100),
        F.cross_entropy(st, yt),
        **tolerance(TOL, dtype),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("soft", [False, True])
def test_torch_binary_cross_entropy_with_logits(dtype, soft):
    _, torch, F = _torch()
    rng = np.random.default_rng(6)
    s = logits(rng, (5, 7), scale=4.0)
    s[0, :3] = [30.0, -30.0, 0.0]
    t = rng.random((5, 7)) if soft else (rng.random((5, 7)) < 0.4).astype(float)
    w = rng.random((5, 7))
    tt = torch.tensor(t, dtype=getattr(torch, dtype))
    v_pl, g_pl = value_and_grad("torch", lambda s: polyloss.sigmoid_crossentropy(s, tt), s, dtype, w)
    v_t, g_t = value_and_grad(
        "torch", lambda s: F.binary_cross_entropy_with_logits(s, tt, reduction="none"), s, dtype, w
    )
    assert v_pl.shape == (5, 7)
    assert_close(v_pl, v_t, **tolerance(TOL, dtype, scale=10))  # values up to 30
    assert_close(g_pl, g_t, **tolerance(TOL, dtype))
    if not soft:  # bool labels give the same values
        assert_close(
            polyloss.sigmoid_crossentropy(torch.tensor(s, dtype=getattr(torch, dtype)), tt > 0.5),
            v_t,
            **tolerance(TOL, dtype, scale=10),
        )


# ============================================================================================
# jax / optax
# ============================================================================================


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalised", [True, False])
def test_optax_softmax_cross_entropy(dtype, normalised):
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(10)
    s, t = logits(rng, (6, 5)), prob_labels(rng, (6, 5), normalised=normalised)
    w = rng.random(6)
    tj = jnp.asarray(t, dtype=dtype)
    v_pl, g_pl = value_and_grad("jax", lambda s: polyloss.softmax_crossentropy(s, tj), s, dtype, w)
    v_o, g_o = value_and_grad("jax", lambda s: optax.losses.softmax_cross_entropy(s, tj), s, dtype, w)
    assert_close(v_pl, v_o, **tolerance(TOL, dtype))
    assert_close(g_pl, g_o, **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_optax_softmax_cross_entropy_with_integer_labels(dtype):
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(11)
    s, y = logits(rng, (6, 5)), jnp.asarray(rng.integers(0, 5, 6))
    w = rng.random(6)
    v_pl, g_pl = value_and_grad("jax", lambda s: polyloss.softmax_crossentropy(s, y), s, dtype, w)
    v_o, g_o = value_and_grad(
        "jax", lambda s: optax.losses.softmax_cross_entropy_with_integer_labels(s, y), s, dtype, w
    )
    assert_close(v_pl, v_o, **tolerance(TOL, dtype))
    assert_close(g_pl, g_o, **tolerance(TOL, dtype))
    # under jax.jit too (float32 only: compiling costs a second per dtype)
    if dtype == "float32":
        assert_close(
            jax.jit(polyloss.softmax_crossentropy)(jnp.asarray(s, dtype=dtype), y), v_o, **tolerance(TOL, dtype)
        )
    # a class axis in the middle
    s3 = jnp.asarray(logits(rng, (2, 5, 3)), dtype=dtype)
    y3 = jnp.asarray(rng.integers(0, 5, (2, 3)))
    assert_close(
        polyloss.softmax_crossentropy(s3, y3, axis=1),
        optax.losses.softmax_cross_entropy_with_integer_labels(s3, y3, axis=1),
        **tolerance(TOL, dtype),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_optax_smooth_labels_equals_label_smoothing(dtype, eps):
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(12)
    s, y = logits(rng, (6, 5)), rng.integers(0, 5, 6)
    w = rng.random(6)
    sm = optax.losses.smooth_labels(jnp.asarray(one_hot(y, 5), dtype=dtype), eps)
    v_o, g_o = value_and_grad("jax", lambda s: optax.losses.softmax_cross_entropy(s, sm), s, dtype, w)
    for labels in (jnp.asarray(y), jnp.asarray(one_hot(y, 5), dtype=dtype)):
        v_pl, g_pl = value_and_grad(
            "jax", lambda s: polyloss.softmax_crossentropy(s, labels, label_smoothing=eps), s, dtype, w
        )
        assert_close(v_pl, v_o, **tolerance(TOL, dtype))
        assert_close(g_pl, g_o, **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_optax_where_removes_classes(dtype):
    """optax's ``where`` (a removed class is out of the softmax; a row with no valid class is 0 for
    integer labels) and ``smooth_labels(where=)`` (ε/K, K valid classes) match the contract's."""
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(13)
    s = jnp.asarray(logits(rng, (6, 5)), dtype=dtype)
    where = rng.random((6, 5)) < 0.7
    where[0] = False  # a row with no valid class
    where[1:, 0] = True
    y = np.zeros(6, dtype=np.int64)  # class 0 is valid in every row but the first
    wj = jnp.asarray(where)
    ours = polyloss.softmax_crossentropy(s, jnp.asarray(y), where=wj)
    theirs = optax.losses.softmax_cross_entropy_with_integer_labels(s, jnp.asarray(y), where=wj)
    assert float(ours[0]) == 0.0
    assert_close(ours, theirs, **tolerance(TOL, dtype))
    # probability labels that put no mass on removed classes, with smoothing over the valid ones
    t = np.where(where, rng.random((6, 5)), 0.0)
    t[1:] /= t[1:].sum(-1, keepdims=True)
    tj = jnp.asarray(t, dtype=dtype)
    eps = 0.2
    sm = optax.losses.smooth_labels(tj[1:], eps, where=wj[1:])
    assert_close(
        polyloss.softmax_crossentropy(s, tj, where=wj, label_smoothing=eps)[1:],
        optax.losses.softmax_cross_entropy(s[1:], sm, where=wj[1:]),
        **tolerance(TOL, dtype),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("soft", [False, True])
def test_optax_sigmoid_binary_cross_entropy(dtype, soft):
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(14)
    s = logits(rng, (6, 5), scale=4.0)
    t = rng.random((6, 5)) if soft else (rng.random((6, 5)) < 0.5).astype(float)
    w = rng.random((6, 5))
    tj = jnp.asarray(t, dtype=dtype)
    v_pl, g_pl = value_and_grad("jax", lambda s: polyloss.sigmoid_crossentropy(s, tj), s, dtype, w)
    v_o, g_o = value_and_grad("jax", lambda s: optax.losses.sigmoid_binary_cross_entropy(s, tj), s, dtype, w)
    assert_close(v_pl, v_o, **tolerance(TOL, dtype))
    assert_close(g_pl, g_o, **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_optax_sigmoid_focal_loss_hard_labels(dtype, alpha, gamma):
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(15)
    s = logits(rng, (6, 5), scale=3.0)
    t = jnp.asarray((rng.random((6, 5)) < 0.4).astype(float), dtype=dtype)
    w = rng.random((6, 5))
    v_pl, g_pl = value_and_grad(
        "jax", lambda s: polyloss.focal_loss(s, t, gamma=gamma, alpha=alpha, activation="sigmoid"), s, dtype, w
    )
    v_o, g_o = value_and_grad(
        "jax", lambda s: optax.losses.sigmoid_focal_loss(s, t, alpha=alpha, gamma=gamma), s, dtype, w
    )
    assert_close(v_pl, v_o, **tolerance(TOL, dtype))
    assert_close(g_pl, g_o, **tolerance(TOL, dtype))


@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_optax_sigmoid_focal_loss_soft_label_convention(alpha, gamma):
    """Soft labels: ours is the expectation ``t·L(1) + (1-t)·L(0)``; optax's is
    ``α_t·(1-p_t)^γ·BCE(t)`` with ``1 - p_t = (1-t)·σ(s) + t·σ(-s)``, ``α_t = α·t + (1-α)(1-t)``
    (``α_t = 1`` for alpha None). They coincide only for γ = 0 and alpha None."""
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(16)
    s_np, t_np = logits(rng, (6, 5), scale=3.0), rng.uniform(0.05, 0.95, (6, 5))
    s, t = jnp.asarray(s_np), jnp.asarray(t_np)
    ours = np.asarray(polyloss.focal_loss(s, t, gamma=gamma, alpha=alpha, activation="sigmoid"))
    theirs = np.asarray(optax.losses.sigmoid_focal_loss(s, t, alpha=alpha, gamma=gamma))
    l1 = np.asarray(optax.losses.sigmoid_focal_loss(s, jnp.ones_like(t), alpha=alpha, gamma=gamma))
    l0 = np.asarray(optax.losses.sigmoid_focal_loss(s, jnp.zeros_like(t), alpha=alpha, gamma=gamma))
    assert_close(ours, t_np * l1 + (1 - t_np) * l0, **tolerance(TOL, "float64"))
    bce = np.asarray(polyloss.sigmoid_crossentropy(s, t))
    a_t = 1.0 if alpha is None else alpha * t_np + (1 - alpha) * (1 - t_np)
    one_minus_pt = (1 - t_np) * sigmoid(s_np) + t_np * sigmoid(-s_np)
    assert_close(theirs, a_t * one_minus_pt**gamma * bce, **tolerance(TOL, "float64"))
    if gamma == 0.0 and alpha is None:
        assert_close(ours, theirs, **tolerance(TOL, "float64"))
    else:
        assert np.max(np.abs(ours - theirs)) > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("epsilon", [-1.0, 0.0, 1.0, 2.0])
def test_optax_poly_loss_cross_entropy(dtype, epsilon):
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(17)
    s, y = logits(rng, (6, 5)), rng.integers(0, 5, 6)
    w = rng.random(6)
    for t in (one_hot(y, 5), prob_labels(rng, (6, 5))):
        tj = jnp.asarray(t, dtype=dtype)
        v_pl, g_pl = value_and_grad("jax", lambda s: polyloss.poly1_crossentropy(s, tj, epsilon=epsilon), s, dtype, w)
        v_o, g_o = value_and_grad(
            "jax", lambda s: optax.losses.poly_loss_cross_entropy(s, tj, epsilon=epsilon), s, dtype, w
        )
        assert_close(v_pl, v_o, **tolerance(TOL, dtype))
        assert_close(g_pl, g_o, **tolerance(TOL, dtype))
    # class ids are the one-hot labels
    assert_close(
        polyloss.poly1_crossentropy(jnp.asarray(s, dtype=dtype), jnp.asarray(y), epsilon=epsilon),
        optax.losses.poly_loss_cross_entropy(
            jnp.asarray(s, dtype=dtype), jnp.asarray(one_hot(y, 5), dtype=dtype), epsilon=epsilon
        ),
        **tolerance(TOL, dtype),
    )


@pytest.mark.parametrize("epsilon", [1.0, 2.0])
def test_optax_poly_loss_unnormalised_labels_convention(epsilon):
    """optax's poly term is ε·Σ_k t_k(1 - p_k) = ε(Σt - Σ t·p); ours is ε(1 - Σ t·p): for labels
    that do not sum to 1 optax's value exceeds ours by ε(Σt - 1)."""
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(18)
    s, t = jnp.asarray(logits(rng, (6, 5))), prob_labels(rng, (6, 5), normalised=False)
    ours = np.asarray(polyloss.poly1_crossentropy(s, jnp.asarray(t), epsilon=epsilon))
    theirs = np.asarray(optax.losses.poly_loss_cross_entropy(s, jnp.asarray(t), epsilon=epsilon))
    assert_close(theirs - ours, epsilon * (t.sum(-1) - 1.0), **tolerance(TOL, "float64"))
    assert np.max(np.abs(t.sum(-1) - 1.0)) > 0.1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b", [4.0, 0.5, 10.0])
def test_jax_squareplus(dtype, b):
    jax, jnp, _ = _jax()
    rng = np.random.default_rng(19)
    x = logits(rng, (6, 5), scale=3.0)
    x[0, :3] = [0.0, -8.0, 8.0]
    w = rng.random(x.shape)
    v_pl, g_pl = value_and_grad("jax", lambda x: polyloss.squareplus(x, b=b), x, dtype, w)
    v_j, g_j = value_and_grad("jax", lambda x: jax.nn.squareplus(x, b=b), x, dtype, w)
    assert_close(v_pl, v_j, **tolerance(TOL, dtype))
    assert_close(g_pl, g_j, **tolerance(TOL, dtype))
    xj = jnp.asarray(x, dtype=dtype)
    assert_close(jax.jit(lambda x: polyloss.squareplus(x, b=b))(xj), v_j, **tolerance(TOL, dtype))
    if b == 4.0:  # the default
        assert_close(polyloss.squareplus(xj), jax.nn.squareplus(xj), **tolerance(TOL, dtype))


def test_jax_squareplus_cancellation_for_negative_x():
    """jax.nn.squareplus computes (x + sqrt(x² + b))/2 as written, which cancels catastrophically in
    float32 for x << 0 (it returns 0 at x = -1e4, where the value is b/(4|x|) = 1e-4); ours stays
    accurate there (the same value as b / (2(sqrt(x² + b) - x)))."""
    jax, jnp, _ = _jax()
    x = np.array([-1e4, -300.0, -30.0])
    exact = 4.0 / (2.0 * (np.sqrt(x * x + 4.0) - x))
    assert_close(polyloss.squareplus(jnp.asarray(x, dtype="float32")), exact, **tolerance(TOL, "float32", atol=0))
    assert_close(polyloss.squareplus(jnp.asarray(x)), exact, **tolerance(TOL, "float64", atol=0))
    theirs = np.asarray(jax.nn.squareplus(jnp.asarray(x, dtype="float32")), dtype=np.float64)
    assert theirs[0] == 0.0
    assert abs(theirs[1] / exact[1] - 1) > 1e-3


# ============================================================================================
# keras 3 (TensorFlow backend) and tf.nn
# ============================================================================================


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_keras_categorical_crossentropy(dtype, eps):
    """Keras smooths with t(1-ε) + ε/C: the contract's convention (K = C without ``where``)."""
    tf, keras = _keras()
    rng = np.random.default_rng(20)
    s, y = logits(rng, (7, 5)), rng.integers(0, 5, 7)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=eps, reduction=None, dtype=dtype)
    for t in (one_hot(y, 5), prob_labels(rng, (7, 5))):
        tt = tf.constant(t, dtype=dtype)
        theirs = loss(tt, tf.constant(s, dtype=dtype))
        assert_close(
            polyloss.softmax_crossentropy(tf.constant(s, dtype=dtype), tt, label_smoothing=eps),
            theirs,
            **tolerance(TOL, dtype),
        )
    assert_close(
        polyloss.softmax_crossentropy(tf.constant(s, dtype=dtype), tf.constant(y), label_smoothing=eps),
        loss(tf.constant(one_hot(y, 5), dtype=dtype), tf.constant(s, dtype=dtype)),
        **tolerance(TOL, dtype),
    )


def test_keras_categorical_crossentropy_smoothing_uses_last_axis_size():
    """Keras quirk: ``categorical_crossentropy(axis=1, label_smoothing=ε)`` smooths with
    ε / shape[-1], not ε / C (C = shape[axis]). Ours uses the class axis' size, so Keras equals ours
    on labels pre-smoothed with ε / shape[-1]."""
    tf, keras = _keras()
    rng = np.random.default_rng(21)
    s, t = logits(rng, (3, 5, 2)), one_hot(rng.integers(0, 5, (3, 2)), 5, axis=1)
    eps = 0.3
    theirs = keras.losses.categorical_crossentropy(
        tf.constant(t), tf.constant(s), from_logits=True, label_smoothing=eps, axis=1
    )
    quirk = t * (1 - eps) + eps / s.shape[-1]
    assert_close(
        polyloss.softmax_crossentropy(tf.constant(s), tf.constant(quirk), axis=1), theirs, **tolerance(TOL, "float64")
    )
    ours = polyloss.softmax_crossentropy(tf.constant(s), tf.constant(t), axis=1, label_smoothing=eps)
    assert np.max(np.abs(ours.numpy() - theirs.numpy())) > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_keras_sparse_categorical_crossentropy(dtype):
    tf, keras = _keras()
    rng = np.random.default_rng(22)
    s, y = tf.constant(logits(rng, (9, 6)), dtype=dtype), rng.integers(0, 6, 9)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None, dtype=dtype)(y, s)
    assert_close(polyloss.softmax_crossentropy(s, tf.constant(y)), theirs, **tolerance(TOL, dtype))
    # ignore_class = ignore_index; the default reduction is the mean over the non-ignored rows
    y[[2, 3, 7]] = 4
    yt = tf.constant(y)
    none = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=4, reduction=None, dtype=dtype)
    mean = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=4, dtype=dtype)
    ours = polyloss.softmax_crossentropy(s, yt, ignore_index=4)
    assert_close(ours, none(y, s), **tolerance(TOL, dtype))
    assert_close(polyloss.reduce(ours, where=yt != 4), mean(y, s), **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_keras_binary_crossentropy_averages_last_axis(dtype, eps):
    """Keras' BinaryCrossentropy returns the MEAN over the last axis, and smooths binary labels
    towards 0.5: t(1-ε) + ε/2 (ours has no binary smoothing: pass the smoothed soft labels)."""
    tf, keras = _keras()
    rng = np.random.default_rng(23)
    s = logits(rng, (5, 3, 4), scale=4.0)
    for t in ((rng.random((5, 3, 4)) < 0.5).astype(float), rng.random((5, 3, 4))):
        loss = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=eps, reduction=None, dtype=dtype)
        theirs = loss(tf.constant(t, dtype=dtype), tf.constant(s, dtype=dtype))
        assert tuple(theirs.shape) == (5, 3)
        ours = polyloss.sigmoid_crossentropy(
            tf.constant(s, dtype=dtype), tf.constant(t * (1 - eps) + eps / 2, dtype=dtype)
        )
        assert tuple(ours.shape) == (5, 3, 4)
        assert_close(tf.reduce_mean(ours, axis=-1), theirs, **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("balancing,alpha", [(False, 0.25), (True, 0.25), (True, 0.7)])
def test_keras_binary_focal_crossentropy(dtype, gamma, balancing, alpha):
    """Hard labels. Keras averages over the last axis; its alpha only counts with
    apply_class_balancing=True (ours: alpha=None means no weighting). On the TensorFlow backend
    Keras' sigmoid remembers its logits (``_keras_logits``) and the BCE inside is computed from
    them, so the [1e-7, 1 - 1e-7] probability clipping of ``binary_crossentropy`` does NOT apply:
    even |s| = 30 agrees."""
    tf, keras = _keras()
    rng = np.random.default_rng(24)
    s = np.clip(logits(rng, (6, 4), scale=2.0), -5, 5)
    t = (rng.random((6, 4)) < 0.4).astype(float)
    s[0], t[0] = [-30.0, 30.0, 30.0, -30.0], [1.0, 0.0, 1.0, 0.0]
    loss = keras.losses.BinaryFocalCrossentropy(
        from_logits=True, gamma=gamma, apply_class_balancing=balancing, alpha=alpha, reduction=None, dtype=dtype
    )
    st, tt = tf.constant(s, dtype=dtype), tf.constant(t, dtype=dtype)
    theirs = loss(tt, st)
    ours = polyloss.focal_loss(st, tt, gamma=gamma, alpha=alpha if balancing else None, activation="sigmoid")
    assert tuple(ours.shape) == (6, 4) and tuple(theirs.shape) == (6,)
    assert_close(tf.reduce_mean(ours, axis=-1), theirs, **tolerance(TOL, dtype, scale=10))


def test_keras_categorical_focal_crossentropy_clips_probabilities():
    """CategoricalFocalCrossentropy applies the softmax, renormalises and clips to
    [1e-7, 1 - 1e-7] before the log: a confidently wrong row (logits [30, 0, 0], class 1) costs it
    -log(1e-7) ≈ 16.12 instead of ≈ 30; and a confidently right row costs it
    (1e-7)^γ·(-log(1 - 1e-7)) instead of ≈ 0."""
    tf, keras = _keras()
    s = np.array([[30.0, 0.0, 0.0], [30.0, 0.0, 0.0]])
    t = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    theirs = keras.losses.CategoricalFocalCrossentropy(
        from_logits=True, alpha=1.0, gamma=0.0, reduction=None, dtype="float64"
    )(tf.constant(t), tf.constant(s))
    ours = polyloss.focal_loss(tf.constant(s), tf.constant(t), gamma=0.0, activation="softmax")
    exact = np.array([30.0 + np.log1p(2 * np.exp(-30.0)), np.log1p(2 * np.exp(-30.0))])
    assert_close(ours, exact, **tolerance(TOL, "float64", rtol=1e-12, atol=1e-15))
    assert_close(theirs, [-np.log(1e-7), -np.log1p(-1e-7)], **tolerance(TOL, "float64", rtol=1e-6))


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("balancing", [False, True])
def test_keras_binary_focal_crossentropy_soft_label_convention(gamma, balancing):
    """Keras, like optax, uses α_t·(1 - p_t)^γ·BCE(t) with p_t = t·p + (1-t)(1-p) for soft labels,
    not the contract's expectation t·L(1) + (1-t)·L(0)."""
    tf, keras = _keras()
    rng = np.random.default_rng(25)
    s, t = np.clip(logits(rng, (5, 4)), -5, 5), rng.uniform(0.05, 0.95, (5, 4))
    alpha = 0.3
    theirs = keras.losses.BinaryFocalCrossentropy(
        from_logits=True, gamma=gamma, apply_class_balancing=balancing, alpha=alpha, reduction=None, dtype="float64"
    )(tf.constant(t), tf.constant(s))
    bce = polyloss.sigmoid_crossentropy(tf.constant(s), tf.constant(t)).numpy()
    a_t = alpha * t + (1 - alpha) * (1 - t) if balancing else 1.0
    p = sigmoid(s)
    expected = (a_t * (1 - (t * p + (1 - t) * (1 - p))) ** gamma * bce).mean(-1)
    assert_close(theirs, expected, **tolerance(TOL, "float64", rtol=1e-6))  # Keras' log of clipped probabilities
    ours = polyloss.focal_loss(
        tf.constant(s), tf.constant(t), gamma=gamma, alpha=alpha if balancing else None, activation="sigmoid"
    )
    assert np.max(np.abs(ours.numpy().mean(-1) - theirs.numpy())) > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [1.0, 0.25, "per-class"])
def test_keras_categorical_focal_crossentropy(dtype, gamma, alpha):
    """Keras' default alpha is 0.25 (ours None = 1), a list is per class; it normalises and clips
    the softmax to [1e-7, 1 - 1e-7], which does not bite for these moderate logits."""
    tf, keras = _keras()
    rng = np.random.default_rng(26)
    s, y = np.clip(logits(rng, (7, 5)), -5, 5), rng.integers(0, 5, 7)
    # Keras turns a per-class alpha list into a float32 tensor even for dtype="float64": use values
    # that float32 represents exactly
    a = [0.125, 0.5, 1.0, 2.0, 0.375] if alpha == "per-class" else alpha
    loss = keras.losses.CategoricalFocalCrossentropy(
        from_logits=True, alpha=a, gamma=gamma, reduction=None, dtype=dtype
    )
    st = tf.constant(s, dtype=dtype)
    ours_alpha = np.array(a) if alpha == "per-class" else a
    for t in (one_hot(y, 5), prob_labels(rng, (7, 5))):
        tt = tf.constant(t, dtype=dtype)
        ours = polyloss.focal_loss(st, tt, gamma=gamma, alpha=ours_alpha, activation="softmax")
        assert_close(ours, loss(tt, st), **tolerance(TOL, dtype, scale=1.0 if dtype == "float32" else 1e4))
    ours = polyloss.focal_loss(st, tf.constant(y), gamma=gamma, alpha=ours_alpha, activation="softmax")
    assert_close(
        ours,
        loss(tf.constant(one_hot(y, 5), dtype=dtype), st),
        **tolerance(TOL, dtype, scale=1.0 if dtype == "float32" else 1e4),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_tf_nn_softmax_cross_entropy_with_logits(dtype):
    tf = _tf()
    rng = np.random.default_rng(27)
    s, t = logits(rng, (6, 5)), prob_labels(rng, (6, 5))
    w = rng.random(6)
    tt = tf.constant(t, dtype=dtype)
    v_pl, g_pl = value_and_grad("tensorflow", lambda s: polyloss.softmax_crossentropy(s, tt), s, dtype, w)
    v_tf, g_tf = value_and_grad("tensorflow", lambda s: tf.nn.softmax_cross_entropy_with_logits(tt, s), s, dtype, w)
    assert_close(v_pl, v_tf, **tolerance(TOL, dtype))
    assert_close(g_pl, g_tf, **tolerance(TOL, dtype))
    # a class axis in the middle
    s3, t3 = (
        tf.constant(logits(rng, (2, 5, 3)), dtype=dtype),
        tf.constant(prob_labels(rng, (2, 5, 3), axis=1), dtype=dtype),
    )
    assert_close(
        polyloss.softmax_crossentropy(s3, t3, axis=1),
        tf.nn.softmax_cross_entropy_with_logits(t3, s3, axis=1),
        **tolerance(TOL, dtype),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_tf_nn_sparse_softmax_cross_entropy_with_logits(dtype):
    tf = _tf()
    rng = np.random.default_rng(28)
    s, y = logits(rng, (4, 3, 6)), tf.constant(rng.integers(0, 6, (4, 3)))
    w = rng.random((4, 3))
    v_pl, g_pl = value_and_grad("tensorflow", lambda s: polyloss.softmax_crossentropy(s, y), s, dtype, w)
    v_tf, g_tf = value_and_grad(
        "tensorflow", lambda s: tf.nn.sparse_softmax_cross_entropy_with_logits(y, s), s, dtype, w
    )
    assert_close(v_pl, v_tf, **tolerance(TOL, dtype))
    assert_close(g_pl, g_tf, **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_tf_nn_sigmoid_cross_entropy_with_logits(dtype):
    tf = _tf()
    rng = np.random.default_rng(29)
    s, t = logits(rng, (5, 6), scale=5.0), rng.random((5, 6))
    t[0] = np.round(t[0])
    w = rng.random((5, 6))
    tt = tf.constant(t, dtype=dtype)
    v_pl, g_pl = value_and_grad("tensorflow", lambda s: polyloss.sigmoid_crossentropy(s, tt), s, dtype, w)
    v_tf, g_tf = value_and_grad("tensorflow", lambda s: tf.nn.sigmoid_cross_entropy_with_logits(tt, s), s, dtype, w)
    assert_close(v_pl, v_tf, **tolerance(TOL, dtype, scale=5))
    assert_close(g_pl, g_tf, **tolerance(TOL, dtype))

"""The contrastive family against the code practitioners actually train with.

Each reference below is a minimal port, written for these tests, of a public implementation: the
frameworks' own cross-entropies, the CLIP/DPR in-batch loss, Su Jianlin's Keras losses (SimCSE,
AM-Softmax, CoSENT), sentence-transformers (MultipleNegativesRankingLoss, CoSENTLoss), the FlatNCE
paper's PyTorch pseudo-code, the ArcFace/CosFace heads of insightface-style PyTorch code and
pytorch-metric-learning's CircleLoss. Every test compares values and gradients (torch autograd,
jax.grad, tf.GradientTape) on the same inputs: rtol 1e-10 in float64, ~1e-5 in float32.

What agrees, and the conventions that differ (each pinned by a named test):

- InfoNCE = ``F.cross_entropy`` = ``optax.softmax_cross_entropy_with_integer_labels`` (also with
  ``where``) = ``tf.nn.sparse_softmax_cross_entropy_with_logits`` on the same scores.
- ``infonce_from_embeddings``: ``pairing="diagonal"`` = CLIP/DPR (``F.normalize``, matmul, ``/τ``,
  cross-entropy against ``arange``) = sentence-transformers' MultipleNegativesRankingLoss with
  ``τ = 1/scale`` (hard negatives: extra rows of ``b``); ``pairing="simcse"`` with ``τ = 0.05`` =
  Su's Keras ``simcse_loss`` (which removes the diagonal with ``-1e12``; ours removes it exactly).
  Those losses return the batch mean; ours returns the per-query losses.
- FlatNCE: the paper's ``exp(v - v.detach())`` has value 1 and the gradient of ``form="log"`` and
  ``form="paper"``; its monitored value (``… - 1 + CE(dummy_logits).detach()``) is InfoNCE.
- AM-Softmax = Su's Keras ``amsoftmax_loss`` = a CosFace head. ArcFace = the insightface-style
  head without ``easy_margin`` while ``θ_t + m <= π``; beyond that, the head's fallback
  ``cos θ - m·sin m`` differs and polyloss keeps ``cos(θ + m)`` (documented).
- CoSENT (``method="pairwise"`` and ``"sorted"``) = Su's Keras ``cosent_loss`` = sentence-transformers'
  ``CoSENTLoss`` in float32/float64. In float16 Su's Keras loss turns NaN (``1e12`` overflows to inf
  in float16, and ``0·inf`` is NaN); sentence-transformers' stays finite only because
  ``labels.float()`` promotes the masked scores to float32. polyloss masks with ``where``.
- Circle loss = pytorch-metric-learning's ``CircleLoss`` (value and gradient), except that
  ``torch.nn.Softplus`` returns ``x`` itself above its threshold 20 (an error below ``e^-20``).
  The unified pairwise loss = the brute-force sum over (negative, positive) pairs.
"""

from __future__ import annotations

import math

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


# --------------------------------------------------------------------------------------------
# autograd in each framework: (value, gradients of Σ value·w) as float64 NumPy
# --------------------------------------------------------------------------------------------
def _torch():
    get("torch")
    import torch
    import torch.nn.functional as F

    return torch, F








def torch_vg(f, arrays, dtype, w=None):
    torch, _ = _torch()
    xs = [torch.tensor(np.asarray(a), dtype=getattr(torch, dtype), requires_grad=True) for a in arrays]
    out = f(*xs)
    weights = torch.ones_like(out) if w is None else torch.tensor(w, dtype=out.dtype)
    (out * weights).sum().backward()
    assert out.dtype == getattr(torch, dtype)
    return out.detach().numpy().astype(np.float64), [x.grad.numpy().astype(np.float64) for x in xs]


def jax_vg(f, x, dtype, w):
    jax, jnp, _ = _jax()
    x = jnp.asarray(x, dtype=dtype)
    out, vjp = jax.vjp(f, x)
    (g,) = vjp(jnp.asarray(w, dtype=dtype))
    assert out.dtype == jnp.dtype(dtype) and g.dtype == jnp.dtype(dtype)
    return np.asarray(out, dtype=np.float64), np.asarray(g, dtype=np.float64)


def tf_vg(f, x, dtype, w=None):
    tf = _tf()
    x = tf.constant(x, dtype=dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = f(x)
        total = tf.reduce_sum(out if w is None else out * tf.constant(w, dtype=out.dtype))
    g = tape.gradient(total, x)
    assert out.dtype == tf.as_dtype(dtype)
    return out.numpy().astype(np.float64), g.numpy().astype(np.float64)


def scores_and_ids(rng, shape, scale=3.0):
    return rng.normal(0.0, scale, shape), rng.integers(0, shape[-1], shape[:-1])


def unit_rows(rng, shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ============================================================================================
# InfoNCE on given scores: the frameworks' cross-entropies
# ============================================================================================
@pytest.mark.parametrize("dtype", DTYPES)
def test_infonce_torch_cross_entropy(dtype):
    torch, F = _torch()
    rng = np.random.default_rng(1)
    s, t = scores_and_ids(rng, (8, 6))
    w = rng.random(8)
    tt = torch.as_tensor(t)
    v_pl, (g_pl,) = torch_vg(lambda s: polyloss.infonce(s, tt), [s], dtype, w)
    v_t, (g_t,) = torch_vg(lambda s: F.cross_entropy(s, tt, reduction="none"), [s], dtype, w)
    assert v_pl.shape == (8,)
    assert_close(v_pl, v_t, **tolerance(TOL, dtype))
    assert_close(g_pl, g_t, **tolerance(TOL, dtype))
    # candidates on axis 1 of [N, C, L] (torch's layout)
    s3, t3 = rng.normal(0.0, 3.0, (3, 5, 4)), rng.integers(0, 5, (3, 4))
    st, tt = torch.tensor(s3, dtype=getattr(torch, dtype)), torch.as_tensor(t3)
    assert_close(polyloss.infonce(st, tt, axis=1), F.cross_entropy(st, tt, reduction="none"), **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_infonce_optax_integer_labels(dtype):
    jax, jnp, optax = _jax()
    rng = np.random.default_rng(2)
    s, t = scores_and_ids(rng, (7, 9))
    w = rng.random(7)
    tj = jnp.asarray(t)
    v_pl, g_pl = jax_vg(lambda s: polyloss.infonce(s, tj), s, dtype, w)
    v_o, g_o = jax_vg(lambda s: optax.softmax_cross_entropy_with_integer_labels(s, tj), s, dtype, w)
    assert_close(v_pl, v_o, **tolerance(TOL, dtype))
    assert_close(g_pl, g_o, **tolerance(TOL, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_infonce_where_optax_and_torch_minus_inf(dtype):
    """``where`` removes candidates exactly like optax's ``where`` and like ``-inf`` logits in torch."""
    jax, jnp, optax = _jax()
    torch, F = _torch()
    rng = np.random.default_rng(3)
    s, t = scores_and_ids(rng, (6, 8))
    keep = rng.random((6, 8)) < 0.6
    keep[np.arange(6), t] = True
    w = rng.random(6)
    tj, kj = jnp.asarray(t), jnp.asarray(keep)
    v_pl, g_pl = jax_vg(lambda s: polyloss.infonce(s, tj, where=kj), s, dtype, w)
    v_o, g_o = jax_vg(lambda s: optax.softmax_cross_entropy_with_integer_labels(s, tj, where=kj), s, dtype, w)
    assert_close(v_pl, v_o, **tolerance(TOL, dtype))
    assert_close(g_pl, g_o, **tolerance(TOL, dtype))
    assert np.all(g_pl[~keep] == 0.0)
    tt, kt = torch.as_tensor(t), torch.as_tensor(keep)
    v_t, (g_t,) = torch_vg(lambda s: F.cross_entropy(s.masked_fill(~kt, -math.inf), tt, reduction="none"),
                           [s], dtype, w)
    assert_close(v_pl, v_t, **tolerance(TOL, dtype))
    assert_close(g_pl, g_t, **tolerance(TOL, dtype))
    # and the mask matters
    assert np.min(np.abs(v_pl - polyloss.infonce(s, t))[(~keep).any(axis=1)]) > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_infonce_tf_nn_sparse_softmax_cross_entropy(dtype):
    tf = _tf()
    rng = np.random.default_rng(4)
    s, t = scores_and_ids(rng, (5, 3, 7))
    w = rng.random((5, 3))
    tt = tf.constant(t)
    v_pl, g_pl = tf_vg(lambda s: polyloss.infonce(s, tt), s, dtype, w)
    v_tf, g_tf = tf_vg(lambda s: tf.nn.sparse_softmax_cross_entropy_with_logits(tt, s), s, dtype, w)
    assert_close(v_pl, v_tf, **tolerance(TOL, dtype))
    assert_close(g_pl, g_tf, **tolerance(TOL, dtype))


# ============================================================================================
# In-batch InfoNCE from embeddings
# ============================================================================================
def clip_dpr_loss(a, b, tau):
    """CLIP/DPR: normalise, all-pairs similarities over τ, cross-entropy against ``arange``."""
    torch, F = _torch()
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau
    return F.cross_entropy(logits, torch.arange(a.shape[0]), reduction="none")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_infonce_from_embeddings_clip_dpr(dtype, tau):
    """Per query, gradients to both towers, and the symmetric CLIP loss (mean of both directions)."""
    torch, F = _torch()
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) * 3.0
    w = rng.random(6)
    v_pl, g_pl = torch_vg(lambda a, b: polyloss.infonce_from_embeddings(a, b, temperature=tau), [a, b], dtype, w)
    v_c, g_c = torch_vg(lambda a, b: clip_dpr_loss(a, b, tau), [a, b], dtype, w)
    assert_close(v_pl, v_c, **tolerance(TOL, dtype))
    assert_close(g_pl[0], g_c[0], **tolerance(TOL, dtype, scale=1 / tau))
    assert_close(g_pl[1], g_c[1], **tolerance(TOL, dtype, scale=1 / tau))

    def clip_symmetric(a, b):
        logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau
        labels = torch.arange(a.shape[0])
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def ours_symmetric(a, b):
        return (polyloss.infonce_from_embeddings(a, b, temperature=tau).mean()
                + polyloss.infonce_from_embeddings(b, a, temperature=tau).mean()) / 2

    v_pl, g_pl = torch_vg(ours_symmetric, [a, b], dtype)
    v_c, g_c = torch_vg(clip_symmetric, [a, b], dtype)
    assert_close(v_pl, v_c, **tolerance(TOL, dtype))
    assert_close(g_pl[0], g_c[0], **tolerance(TOL, dtype, scale=1 / tau))
    assert_close(g_pl[1], g_c[1], **tolerance(TOL, dtype, scale=1 / tau))


def mnrl_loss(anchors, positives, hard_negatives=None, scale=20.0):
    """sentence-transformers MultipleNegativesRankingLoss: cos_sim(anchors, cat(candidates)) · scale,
    cross-entropy (mean) against ``arange``."""
    torch, F = _torch()
    candidates = positives if hard_negatives is None else torch.cat([positives, hard_negatives])
    cos_sim = F.normalize(anchors, p=2, dim=1) @ F.normalize(candidates, p=2, dim=1).T
    scores = cos_sim * scale
    return F.cross_entropy(scores, torch.arange(0, scores.size(0)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hard_negatives", [False, True])
def test_infonce_from_embeddings_mnrl(dtype, hard_negatives):
    """MultipleNegativesRankingLoss(scale=20) = mean of ``infonce_from_embeddings(τ=1/20)``; hard
    negatives are extra rows of ``b``."""
    torch, _ = _torch()
    rng = np.random.default_rng(6)
    a, p, n = rng.normal(size=(5, 8)), rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    arrays = [a, p, n] if hard_negatives else [a, p]

    def ours(a, p, n=None):
        b = p if n is None else torch.cat([p, n])
        return polyloss.infonce_from_embeddings(a, b, temperature=1 / 20).mean()

    v_pl, g_pl = torch_vg(ours, arrays, dtype)
    v_st, g_st = torch_vg(mnrl_loss, arrays, dtype)
    assert_close(v_pl, v_st, **tolerance(TOL, dtype))
    for g1, g2 in zip(g_pl, g_st):
        assert_close(g1, g2, **tolerance(TOL, dtype, scale=20))
    if hard_negatives:  # the hard negatives change the loss
        assert abs(float(v_pl) - float(ours(*(torch.tensor(x) for x in arrays[:2])))) > 1e-3


def su_simcse_loss(y_true, y_pred):
    """Su's Keras ``simcse_loss`` (rows 2k, 2k+1 are the two dropout views), in keras.ops; ``floatx``
    is the embeddings' dtype; returns the batch mean."""
    _, keras = _keras()
    K = keras.ops
    dtype = y_pred.dtype
    idxs = K.arange(0, K.shape(y_pred)[0])
    idxs_1 = idxs[None, :]
    idxs_2 = (idxs + 1 - idxs % 2 * 2)[:, None]
    y_true = K.cast(K.equal(idxs_1, idxs_2), dtype)
    y_pred = y_pred / K.sqrt(K.maximum(K.sum(K.square(y_pred), axis=1, keepdims=True), 1e-12))  # K.l2_normalize
    similarities = K.matmul(y_pred, K.transpose(y_pred))
    similarities = similarities - K.eye(K.shape(y_pred)[0], dtype=dtype) * 1e12
    similarities = similarities * 20
    loss = K.categorical_crossentropy(y_true, similarities, from_logits=True)
    return K.mean(loss)


@pytest.mark.parametrize("dtype", DTYPES)
def test_infonce_from_embeddings_simcse_su_keras(dtype):
    """Su's SimCSE loss = mean of ``infonce_from_embeddings(pairing="simcse", temperature=0.05)``."""
    tf, _ = _keras()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 5))
    v_pl, g_pl = tf_vg(lambda x: tf.reduce_mean(
        polyloss.infonce_from_embeddings(x, pairing="simcse", temperature=0.05)), x, dtype)
    v_su, g_su = tf_vg(lambda x: su_simcse_loss(None, x), x, dtype)
    assert_close(v_pl, v_su, **tolerance(TOL, dtype))
    assert_close(g_pl, g_su, **tolerance(TOL, dtype, scale=20))
    # the pairing matters: "diagonal" (x against itself) is a different loss
    other = tf.reduce_mean(polyloss.infonce_from_embeddings(x, x, temperature=0.05)).numpy()
    assert abs(other - float(v_su)) > 1e-2


# ============================================================================================
# FlatNCE: the paper's PyTorch pseudo-code
# ============================================================================================
def flatnce_paper(scores, positive_index):
    """Chen et al. 2021, Algorithm 1: ``logits = neg - pos``, ``v = logsumexp(logits)``,
    ``loss_vec = exp(v - v.detach())``; returns ``loss_vec`` per row and the monitored scalar
    ``loss_vec.mean() - 1 + CE(dummy_logits, 0).detach()``."""
    torch, F = _torch()
    n, c = scores.shape
    rows = torch.arange(n)
    pos = scores[rows, positive_index][:, None]
    others = torch.ones(n, c, dtype=torch.bool)
    others[rows, positive_index] = False
    neg = scores[others].reshape(n, c - 1)
    logits = neg - pos
    v = torch.logsumexp(logits, dim=1, keepdim=True)
    loss_vec = torch.exp(v - v.detach())
    dummy_logits = torch.cat([torch.zeros(n, 1, dtype=logits.dtype), logits], 1)
    labels = torch.zeros(n, dtype=torch.long)
    monitored = loss_vec.mean() - 1 + F.cross_entropy(dummy_logits, labels).detach()
    return loss_vec[:, 0], monitored


@pytest.mark.parametrize("dtype", DTYPES)
def test_flatnce_paper_pseudocode(dtype):
    torch, _ = _torch()
    rng = np.random.default_rng(8)
    s, t = scores_and_ids(rng, (7, 6))
    s[0, t[0]] += 40.0  # a saturated row: InfoNCE's gradient vanishes there, FlatNCE's does not
    w = rng.random(7)
    tt = torch.as_tensor(t)
    v_paper, (g_paper,) = torch_vg(lambda s: flatnce_paper(s, tt)[0], [s], dtype, w)
    assert np.all(v_paper == 1.0)
    for form in ("paper", "log"):
        v_pl, (g_pl,) = torch_vg(lambda s: polyloss.flatnce(s, tt, form=form), [s], dtype, w)
        assert_close(g_pl, g_paper, **tolerance(TOL, dtype))
        if form == "paper":
            assert np.all(v_pl == 1.0)
        else:
            s64 = s.astype(dtype).astype(np.float64)
            neg = np.where(np.arange(6) == t[:, None], -np.inf, s64)
            log_xi = np.log(np.sum(np.exp(neg - s64[np.arange(7), t][:, None]), axis=1))
            assert_close(v_pl, log_xi, **tolerance(TOL, dtype, scale=40))
    assert np.abs(g_paper[0]).max() > 0.1  # not flattened on the saturated row
    # the monitored value is InfoNCE, its gradient FlatNCE's
    v_mon, (g_mon,) = torch_vg(lambda s: flatnce_paper(s, tt)[1], [s], dtype)
    infonce = polyloss.infonce(torch.tensor(s, dtype=getattr(torch, dtype)), tt).mean().item()
    assert_close(v_mon, infonce, **tolerance(TOL, dtype))
    _, (g_log,) = torch_vg(lambda s: polyloss.flatnce(s, tt).mean(), [s], dtype)
    assert_close(g_mon, g_log, **tolerance(TOL, dtype))


# ============================================================================================
# AM-Softmax / CosFace and ArcFace
# ============================================================================================
def su_amsoftmax_loss(y_true, y_pred, scale=30, margin=0.35):
    """Su's Keras ``amsoftmax_loss``: one-hot ``y_true``, cosines ``y_pred``."""
    _, keras = _keras()
    K = keras.ops
    y_pred = y_true * (y_pred - margin) + (1 - y_true) * y_pred
    y_pred = y_pred * scale
    return K.categorical_crossentropy(y_true, y_pred, from_logits=True)


def cosface_head(cosine, label, s=30.0, m=0.35):
    """A CosFace (AddMarginProduct) head and cross-entropy: ``phi = cosine - m`` on the target."""
    torch, F = _torch()
    phi = cosine - m
    one_hot = torch.zeros(cosine.size(), dtype=cosine.dtype)
    one_hot.scatter_(1, label.view(-1, 1).long(), 1)
    output = (one_hot * phi) + ((1.0 - one_hot) * cosine)
    output = output * s
    return F.cross_entropy(output, label, reduction="none")


def arcface_head(cosine, label, s=64.0, m=0.5, fallback=False):
    """The insightface-style ArcFace head (ArcMarginProduct) and cross-entropy, without easy_margin;
    ``fallback=True`` adds its ``th``/``mm`` branch for ``θ + m > π``."""
    torch, F = _torch()
    cos_m, sin_m = math.cos(m), math.sin(m)
    th, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
    sine = torch.sqrt((1.0 - torch.pow(cosine, 2)).clamp(0, 1))
    phi = cosine * cos_m - sine * sin_m
    if fallback:
        phi = torch.where(cosine > th, phi, cosine - mm)
    one_hot = torch.zeros(cosine.size(), dtype=cosine.dtype)
    one_hot.scatter_(1, label.view(-1, 1).long(), 1)
    output = (one_hot * phi) + ((1.0 - one_hot) * cosine)
    output = output * s
    return F.cross_entropy(output, label, reduction="none")


def cosines_and_ids(rng, shape, target_range=(-0.8, 0.97)):
    c = rng.uniform(-0.95, 0.95, shape)
    t = rng.integers(0, shape[-1], shape[:-1])
    c[np.arange(shape[0]), t] = rng.uniform(*target_range, shape[0])
    return c, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale,margin", [(30.0, 0.35), (10.0, 0.2)])
def test_am_softmax_su_keras(dtype, scale, margin):
    tf, _ = _keras()
    rng = np.random.default_rng(9)
    c, t = cosines_and_ids(rng, (8, 5))
    oh = tf.constant(np.eye(5)[t], dtype=dtype)
    w = rng.random(8)
    v_su, g_su = tf_vg(lambda c: su_amsoftmax_loss(oh, c, scale, margin), c, dtype, w)
    for labels in (tf.constant(t), oh):  # class ids and one-hot rows
        v_pl, g_pl = tf_vg(lambda c: polyloss.am_softmax(c, labels, scale=scale, margin=margin), c, dtype, w)
        assert_close(v_pl, v_su, **tolerance(TOL, dtype, scale=scale))
        assert_close(g_pl, g_su, **tolerance(TOL, dtype, scale=scale))


@pytest.mark.parametrize("dtype", DTYPES)
def test_am_softmax_cosface_torch(dtype):
    torch, _ = _torch()
    rng = np.random.default_rng(10)
    c, t = cosines_and_ids(rng, (9, 6))
    w = rng.random(9)
    tt = torch.as_tensor(t)
    v_pl, (g_pl,) = torch_vg(lambda c: polyloss.am_softmax(c, tt), [c], dtype, w)
    v_cf, (g_cf,) = torch_vg(lambda c: cosface_head(c, tt), [c], dtype, w)
    assert_close(v_pl, v_cf, **tolerance(TOL, dtype, scale=30))
    assert_close(g_pl, g_cf, **tolerance(TOL, dtype, scale=30))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale,margin", [(64.0, 0.5), (30.0, 0.3)])
def test_arcface_insightface_head(dtype, scale, margin):
    """θ_t + m < π for every target: the head with or without its fallback = polyloss."""
    torch, _ = _torch()
    rng = np.random.default_rng(11)
    c, t = cosines_and_ids(rng, (10, 6), target_range=(math.cos(math.pi - margin) + 0.05, 0.97))
    w = rng.random(10)
    tt = torch.as_tensor(t)
    v_pl, (g_pl,) = torch_vg(lambda c: polyloss.arcface(c, tt, scale=scale, margin=margin), [c], dtype, w)
    for fallback in (False, True):
        v_if, (g_if,) = torch_vg(lambda c: arcface_head(c, tt, scale, margin, fallback), [c], dtype, w)
        assert_close(v_pl, v_if, **tolerance(TOL, dtype, scale=scale))
        assert_close(g_pl, g_if, **tolerance(TOL, dtype, scale=scale))
    # not AM-Softmax: the angular margin is a different loss
    assert np.max(np.abs(v_pl - polyloss.am_softmax(c, t, scale=scale, margin=margin))) > 1e-2


@pytest.mark.parametrize("margin", [0.5, 0.3])
def test_arcface_beyond_pi_minus_m_follows_plain_formula(margin):
    """Documented difference: where θ_t + m > π (cos θ_t < cos(π - m)) insightface replaces
    cos(θ + m) by ``cos θ - m·sin m``; polyloss keeps the paper's cos(θ + m) = the head without
    the fallback."""
    torch, F = _torch()
    scale = 64.0
    rng = np.random.default_rng(12)
    c, t = cosines_and_ids(rng, (6, 5), target_range=(-0.999, math.cos(math.pi - margin) - 0.02))
    tt, ct = torch.as_tensor(t), torch.tensor(c)
    ours = polyloss.arcface(ct, tt, scale=scale, margin=margin).numpy()
    assert_close(ours, arcface_head(ct, tt, scale, margin, fallback=False).numpy(), **tolerance(TOL, "float64"))
    theirs = arcface_head(ct, tt, scale, margin, fallback=True).numpy()
    assert np.all(np.abs(ours - theirs) > 1e-3)
    # each is its own closed form
    rows = np.arange(6)
    c_t = c[rows, t]
    for target, value in ((np.cos(np.arccos(c_t) + margin), ours), (c_t - margin * math.sin(margin), theirs)):
        z = scale * c.copy()
        z[rows, t] = scale * target
        assert_close(value, F.cross_entropy(torch.tensor(z), tt, reduction="none").numpy(), **tolerance(TOL, "float64"))


# ============================================================================================
# CoSENT
# ============================================================================================
def su_cosent_loss(y_true, y_pred):
    """Su's Keras ``cosent_loss`` from the similarities on (``y_pred`` = the pairs' cosines, ``y_true``
    their labels), in keras.ops with ``floatx`` = the similarities' dtype."""
    _, keras = _keras()
    K = keras.ops
    y_true = K.cast(y_true[:, None] < y_true[None, :], y_pred.dtype)
    y_pred = y_pred * 20
    y_pred = y_pred[:, None] - y_pred[None, :]
    y_pred = K.reshape(y_pred - (1 - y_true) * 1e12, [-1])
    y_pred = K.concatenate([K.zeros((1,), dtype=y_pred.dtype), y_pred], axis=0)
    return K.logsumexp(y_pred)


def st_cosent_loss(scores, labels, scale=20.0):
    """sentence-transformers ``CoSENTLoss.forward`` after ``pairwise_cos_sim``."""
    torch, _ = _torch()
    scores = scores * scale
    scores = scores[:, None] - scores[None, :]
    labels = labels[:, None] < labels[None, :]
    labels = labels.float()
    scores = scores - (1 - labels) * 1e12
    scores = torch.cat((torch.zeros(1).to(scores.device), scores.view(-1)), dim=0)
    return torch.logsumexp(scores, dim=0)


def sts_batch(rng, n=12):
    """Cosines and graded labels 0..5 (with ties)."""
    return rng.uniform(-0.6, 0.95, n), rng.integers(0, 6, n).astype(np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["pairwise", "sorted"])
def test_cosent_su_keras(dtype, method):
    tf, _ = _keras()
    rng = np.random.default_rng(13)
    s, y = sts_batch(rng)
    yt = tf.constant(y, dtype=dtype)
    v_pl, g_pl = tf_vg(lambda s: polyloss.cosent_loss(s, yt, method=method), s, dtype)
    v_su, g_su = tf_vg(lambda s: su_cosent_loss(yt, s), s, dtype)
    assert v_pl.shape == ()
    assert_close(v_pl, v_su, **tolerance(TOL, dtype, scale=20))
    assert_close(g_pl, g_su, **tolerance(TOL, dtype, scale=20))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["pairwise", "sorted"])
@pytest.mark.parametrize("scale", [20.0, 5.0])
def test_cosent_sentence_transformers(dtype, method, scale):
    torch, _ = _torch()
    rng = np.random.default_rng(14)
    s, y = sts_batch(rng, 15)
    y[:4] = [0.3, 0.3, 4.7, 4.7]  # float labels, ties
    yt = torch.tensor(y)
    v_pl, (g_pl,) = torch_vg(lambda s: polyloss.cosent_loss(s, yt, scale=scale, method=method), [s], dtype)
    v_st, (g_st,) = torch_vg(lambda s: st_cosent_loss(s, yt, scale), [s], dtype)
    assert_close(v_pl, v_st, **tolerance(TOL, dtype, scale=scale))
    assert_close(g_pl, g_st, **tolerance(TOL, dtype, scale=scale))


def test_cosent_float16_mask_overflow():
    """In float16 the ports' ``1e12`` becomes inf: Su's Keras loss gives NaN (``(1 - y_true)·1e12`` is
    ``0·inf`` on every ranked pair), value and gradient. sentence-transformers' stays finite only
    because ``labels.float()`` promotes the masked scores to float32 (its ``scores·scale`` is still
    rounded in float16). polyloss computes half inputs in float32, masks with ``where``: finite, and
    the float64 value of the same (float16-rounded) inputs."""
    tf, _ = _keras()
    torch, _ = _torch()
    rng = np.random.default_rng(15)
    s, y = sts_batch(rng)
    s16 = s.astype(np.float16).astype(np.float64)
    exact, (g_exact,) = torch_vg(lambda s: st_cosent_loss(s, torch.tensor(y)), [s16], "float64")

    v_su, g_su = tf_vg(lambda s: su_cosent_loss(tf.constant(y, dtype="float16"), s), s, "float16")
    assert np.isnan(v_su) and np.isnan(g_su).any()

    st_half = st_cosent_loss(torch.tensor(s, dtype=torch.float16), torch.tensor(y))
    assert st_half.dtype == torch.float32 and torch.isfinite(st_half)
    assert abs(st_half.item() - float(exact)) < 0.05

    for method in ("pairwise", "sorted"):
        for name in ("torch", "tensorflow"):
            be = get(name)
            x = be.from_numpy(s, dtype="float16")
            v, (g,) = be.value_and_grad(
                lambda x: polyloss.cosent_loss(x, be.from_numpy(y), method=method), argnums=(0,)
            )(x)
            v, g = float(be.to_numpy(v)), be.to_numpy(g).astype(np.float64)
            assert polyloss.cosent_loss(x, be.from_numpy(y)).dtype == be.dtype("float32")
            assert np.isfinite(v) and np.all(np.isfinite(g))
            assert_close(v, exact, **tolerance(TOL, "float32", scale=20))
            assert_close(
                g, g_exact, **tolerance(TOL, "float32", rtol=1e-3, atol=1e-2)
            )  # the gradient is returned in float16


# ============================================================================================
# Circle loss (pytorch-metric-learning) and the unified pairwise loss
# ============================================================================================
def pml_circle_loss(mat, pos_mask, neg_mask, m=0.4, gamma=80.0):
    """pytorch-metric-learning ``CircleLoss._compute_loss`` (per anchor row)."""
    torch, _ = _torch()
    soft_plus = torch.nn.Softplus(beta=1)
    op, on, delta_p, delta_n = 1 + m, -m, 1 - m, m

    def masked_logsumexp(x, keep_mask):  # lmu.logsumexp(..., add_one=False, dim=1)
        x = x.masked_fill(~keep_mask, torch.finfo(x.dtype).min)
        out = torch.logsumexp(x, dim=1, keepdim=True)
        return out.masked_fill(~torch.any(keep_mask, dim=1, keepdim=True), 0)

    pos_mask_bool, neg_mask_bool = pos_mask.bool(), neg_mask.bool()
    anchor_positive = mat[pos_mask_bool]
    anchor_negative = mat[neg_mask_bool]
    new_mat = torch.zeros_like(mat)
    new_mat[pos_mask_bool] = -gamma * torch.relu(op - anchor_positive.detach()) * (anchor_positive - delta_p)
    new_mat[neg_mask_bool] = gamma * torch.relu(anchor_negative.detach() - on) * (anchor_negative - delta_n)
    losses = soft_plus(masked_logsumexp(new_mat, pos_mask_bool) + masked_logsumexp(new_mat, neg_mask_bool))
    zero_rows = torch.where((torch.sum(pos_mask, dim=1) == 0) | (torch.sum(neg_mask, dim=1) == 0))[0]
    final_mask = torch.ones_like(losses)
    final_mask[zero_rows] = 0
    return (losses * final_mask)[:, 0]


def circle_batch(rng):
    """Cosines [5, 8] with several positives per row; row 3 has no positive, row 4 no negative."""
    labels = (rng.random((5, 8)) < 0.4).astype(np.float64)
    labels[:3, :2], labels[:3, 2:4] = 1.0, 0.0
    labels[3], labels[4] = 0.0, 1.0
    s = np.where(labels == 1.0, rng.uniform(0.5, 0.95, (5, 8)), rng.uniform(-0.3, 0.45, (5, 8)))
    return s, labels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma,m", [(80.0, 0.4), (32.0, 0.25)])
def test_circle_loss_pytorch_metric_learning(dtype, gamma, m):
    torch, _ = _torch()
    rng = np.random.default_rng(16)
    s, labels = circle_batch(rng)
    w = rng.random(5)
    pos, neg = torch.tensor(labels == 1.0), torch.tensor(labels == 0.0)
    lt = torch.tensor(labels, dtype=getattr(torch, dtype))
    v_pl, (g_pl,) = torch_vg(lambda s: polyloss.circle_loss(s, lt, gamma=gamma, margin=m), [s], dtype, w)
    v_pml, (g_pml,) = torch_vg(lambda s: pml_circle_loss(s, pos, neg, m, gamma), [s], dtype, w)
    assert 1.0 < v_pml[:3].max() < 20.0  # below torch Softplus' threshold (see the next test)
    assert np.all(v_pl[3:] == 0.0) and np.all(g_pl[3:] == 0.0)
    assert_close(v_pl, v_pml, **tolerance(TOL, dtype, scale=gamma))
    assert_close(g_pl, g_pml, **tolerance(TOL, dtype, scale=gamma))
    # the one-positive form, class ids: columns 1-3 of rows 0-2 (column 1 positive, 2 and 3 negative)
    s1, t1 = s[:3, 1:4], torch.zeros(3, dtype=torch.int64)
    p1 = torch.tensor([True, False, False]).expand(3, 3)
    v_pl, (g_pl,) = torch_vg(lambda s: polyloss.circle_loss(s, t1, gamma=gamma, margin=m), [s1], dtype)
    v_pml, (g_pml,) = torch_vg(lambda s: pml_circle_loss(s, p1, ~p1, m, gamma), [s1], dtype)
    assert_close(v_pl, v_pml, **tolerance(TOL, dtype, scale=gamma))
    assert_close(g_pl, g_pml, **tolerance(TOL, dtype, scale=gamma))


def test_circle_loss_softplus_threshold():
    """``torch.nn.Softplus`` (threshold 20) returns ``x`` above 20: pytorch-metric-learning's loss is
    then short by ``log1p(e^-x)`` (< e^-20 ≈ 2e-9); polyloss keeps the exact softplus."""
    torch, _ = _torch()
    s = np.array([[0.3, 0.4]])  # one positive, one negative: x = 80·1.1·0.3 + 80·0.8·0 = 26.4
    labels = torch.tensor([[True, False]])
    x = 80 * 1.1 * 0.3
    theirs = pml_circle_loss(torch.tensor(s), labels, ~labels).item()
    ours = polyloss.circle_loss(torch.tensor(s), torch.tensor([0])).item()
    assert theirs == pytest.approx(x, rel=1e-15)
    assert ours - theirs == pytest.approx(math.log1p(math.exp(-x)), rel=1e-3)


def unified_brute_force(s, positive, gamma, margin):
    """``log(1 + Σ_{i∈Ω-} Σ_{j∈Ω+} e^{γ(s_i - s_j + m)})`` per row, one term per (negative, positive) pair."""
    torch, _ = _torch()
    out = []
    for r in range(s.shape[0]):
        terms = [
            gamma * (s[r, i] - s[r, j] + margin)
            for i in range(s.shape[1])
            if not positive[r, i]
            for j in range(s.shape[1])
            if positive[r, j]
        ]
        out.append(torch.logsumexp(torch.stack([torch.zeros((), dtype=s.dtype)] + terms), dim=0))
    return torch.stack(out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma,margin", [(1.0, 0.0), (16.0, 0.3), (64.0, -0.1)])
def test_unified_pairwise_brute_force(dtype, gamma, margin):
    torch, _ = _torch()
    rng = np.random.default_rng(17)
    s = rng.uniform(-1.0, 1.0, (4, 6))
    labels = (rng.random((4, 6)) < 0.4).astype(np.float64)
    labels[:, 0], labels[:, 1] = 1.0, 0.0
    w = rng.random(4)
    lt = torch.tensor(labels, dtype=getattr(torch, dtype))
    v_pl, (g_pl,) = torch_vg(lambda s: polyloss.unified_pairwise_loss(s, lt, gamma=gamma, margin=margin), [s], dtype, w)
    v_bf, (g_bf,) = torch_vg(lambda s: unified_brute_force(s, labels == 1.0, gamma, margin), [s], dtype, w)
    assert_close(v_pl, v_bf, **tolerance(TOL, dtype, scale=gamma))
    assert_close(g_pl, g_bf, **tolerance(TOL, dtype, scale=gamma))
    # class ids: one positive per row
    t = rng.integers(0, 6, 4)
    v_pl, (g_pl,) = torch_vg(
        lambda s: polyloss.unified_pairwise_loss(s, torch.as_tensor(t), gamma=gamma, margin=margin), [s], dtype, w
    )
    v_bf, (g_bf,) = torch_vg(lambda s: unified_brute_force(s, np.arange(6) == t[:, None], gamma, margin), [s], dtype, w)
    assert_close(v_pl, v_bf, **tolerance(TOL, dtype, scale=gamma))
    assert_close(g_pl, g_bf, **tolerance(TOL, dtype, scale=gamma))

"""Conformance cases of the gradient-based regularisers (``docs/adversarial.md``): FGM / PGD, the gradient
penalty and VAT.

``fgm_perturbation`` is array math and runs on every backend. The other three differentiate a model, so
their cases (``autograd=True``) run on torch, JAX and TensorFlow, eagerly and compiled. The model is the
reference's (``polyloss.reference._models``): an embedding lookup, masked mean pooling, a linear layer and
softmax cross-entropy, written here once against the array API (:func:`_pooled_logits`) and called with
the same weights on every backend. The reference side uses ``_models``' analytic gradients, so the
library is checked against exact derivatives, not finite differences of a finite-difference reference.

A case of ``adversarial_loss`` or ``vat_loss`` returns, beside the losses, the gradients of the training
objective with respect to the weights and to ``x`` (and, for ``adversarial_loss``, the perturbation δ,
read back from the loss function's last input), taken by the adapter's ``value_and_grad`` around the
call (the user's outer differentiation: ``jax.value_and_grad`` under ``jax.jit``, a ``GradientTape``
inside ``tf.function``). Their perturbation is held constant, so the runner's finite differences of the
reference (which would move the perturbation with the weights) cannot check them: the reference computes
them at the fixed perturbation, and they are compared normwise (``Case.normwise``). The gradient penalty
is differentiable as a whole (double backprop), so its cases use the runner's own gradient check.
"""

from __future__ import annotations

import numpy as np

import polyloss
from polyloss.conformance.registry import ALL_DTYPES, HALF_DTYPES, Case, register
from polyloss.reference import _models
from polyloss.reference import adversarial as _reference

# The matrix runs every row on three frameworks, eagerly and compiled, and a compiled row of a model with
# nested gradients takes seconds to build: the rows below are the ones that test something distinct
# (epsilon = 0, the Gaussian start's key, and VAT in half precision are in tests/test_adversarial_properties.py).
#
# the half-precision rows: the model computes in float32 from half-precision embeddings and weights; the
# perturbed embeddings x + δ are rounded to the half dtype (as in a model that keeps them there), which
# moves the losses by a few units of that dtype's last place
_HALF_TOL = {"float16": 4e-3, "bfloat16": 3e-2}


# --------------------------------------------------------------------------------------------
# the model, against the array API
# --------------------------------------------------------------------------------------------


def _compute(xp, a):
    """float64 stays, every other floating dtype computes in float32 (the library's precision rule)."""
    return a if a.dtype in (xp.float64, xp.float32) else xp.astype(a, xp.float32)


def _pooled_logits(xp, x, weights, bias, mask):
    """``z_b = h_b W + c``, ``h_b`` the mean of ``x_b [L, D]`` over the valid positions of ``mask [B, L]``
    (0 for a row without any), or ``h_b = x_b`` for ``x [B, D]``."""
    x, weights, bias = _compute(xp, x), _compute(xp, weights), _compute(xp, bias)
    if x.ndim == 2:
        h = x
    else:
        keep = mask[..., None]
        count = xp.sum(xp.astype(mask, x.dtype), axis=1)[:, None]
        h = xp.sum(xp.where(keep, x, 0.0), axis=1) / xp.where(count > 0.0, count, 1.0)
    return xp.matmul(h, weights) + bias


def _losses(xp, x, weights, bias, labels, mask):
    """The per-example softmax cross-entropies ``[B]``."""
    return polyloss.softmax_crossentropy(_pooled_logits(xp, x, weights, bias, mask), labels)


def _embedded(xp, embeddings, ids):
    """``E[ids]``: ``[V, D]`` and ``[B, L]`` -> ``[B, L, D]``."""
    flat = xp.take(embeddings, xp.reshape(ids, (-1,)), axis=0)
    return xp.reshape(flat, (ids.shape[0], ids.shape[1], embeddings.shape[1]))


def _same_dtype(xp, like, *arrays):
    """Gradients in the dtype of ``like`` (the compute dtype) for the comparison of values."""
    return tuple(a if a.dtype == like.dtype else xp.astype(a, like.dtype) for a in arrays)


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _classifier(rng, batch=3, length=4, dim=3, classes=4):
    """Embedded inputs ``[B, L, D]``, weights, bias, labels and a padding mask (row 1 shorter, the last row
    of a single position)."""
    x = rng.normal(0.0, 1.0, (batch, length, dim))
    weights = rng.normal(0.0, 1.0, (dim, classes))
    bias = rng.normal(0.0, 0.5, classes)
    labels = rng.integers(0, classes, batch)
    lengths = np.array([length, length - 1] + [1] * (batch - 2))[:batch]
    mask = np.arange(length)[None, :] < lengths[:, None]
    return x, weights, bias, labels, mask


# --------------------------------------------------------------------------------------------
# fgm_perturbation: array math, every backend
# --------------------------------------------------------------------------------------------


def _fgm_global(rng, dtype):
    return (rng.normal(0.0, 1.0, (3, 4, 5)),), {"epsilon": 0.7}


def _fgm_example_where(rng, dtype):
    g = rng.normal(0.0, 1.0, (4, 3, 5))
    where = rng.random((4, 3, 1)) < 0.7
    where[0, 0] = True
    where[2] = False  # a unit with every position excluded: δ = 0
    g[0, 1:, 2][~where[0, 1:, 0]] = 1e3  # large values at excluded positions must not matter
    return (g,), {"epsilon": 0.5, "scope": "example", "where": where}


def _fgm_nonfinite(rng, dtype):
    g = rng.normal(0.0, 1.0, (4, 6))
    g[0, 2] = np.nan  # a NaN unit: δ = 0 for the whole row
    g[1, 0] = np.inf  # an infinite one: δ = 0
    g[2, 5] = np.nan  # a NaN at an excluded position is ignored
    g[3] = 0.0  # a zero gradient: δ = 0 (not differentiable there)
    where = np.ones((4, 6), dtype=bool)
    where[2, 5] = False
    return (g,), {"epsilon": 0.5, "scope": "example", "where": where}


def _fgm_sign(rng, dtype):
    g = rng.normal(0.0, 1.0, (3, 5))
    g[1, 2] = 0.0  # sign 0
    return (g,), {"epsilon": 0.25, "norm": "sign", "scope": "example"}


def _fgm_extreme(rng, dtype):
    """Rows whose squares overflow (1e30²) or underflow (1e-30²) in float32: the norm is scaled."""
    g = rng.normal(0.0, 1.0, (3, 5))
    g[0] *= 1e30
    g[1] *= 1e-30
    return (g,), {"epsilon": 2.0, "scope": "example"}


def _fgm_epsilon_zero(rng, dtype):
    return (rng.normal(0.0, 1.0, (2, 3)),), {"epsilon": 0.0}


register(
    Case("fgm_perturbation/l2-global", "fgm_perturbation", _fgm_global),
    Case("fgm_perturbation/l2-example-where", "fgm_perturbation", _fgm_example_where),
    Case("fgm_perturbation/nonfinite-and-zero-units", "fgm_perturbation", _fgm_nonfinite, grad_args=(),
         note="a NaN or an infinity makes its unit's δ zero (its gradient is NaN), and so does a zero unit, where "
              "δ is not differentiable: values only"),
    Case("fgm_perturbation/sign", "fgm_perturbation", _fgm_sign, grad_args=(),
         note="sign(g) is piecewise constant; the finite differences jump at the zero entry"),
    Case("fgm_perturbation/extreme-scales", "fgm_perturbation", _fgm_extreme, grad_args=(),
         note="finite differences of step 6e-6 cannot resolve entries of size 1e-30"),
    Case("fgm_perturbation/epsilon-zero", "fgm_perturbation", _fgm_epsilon_zero),
)


# --------------------------------------------------------------------------------------------
# adversarial_loss: FGM and PGD on the model, with the weight gradients of loss + adversarial loss
# --------------------------------------------------------------------------------------------


class _Recorder:
    """A loss function that remembers its last input: the last call of ``adversarial_loss`` is at
    ``x + δ``, so ``δ`` is read back without a hook into the library (also inside ``jax.jit`` and
    ``tf.function``, where the recorded array belongs to the same trace)."""

    def __init__(self, fn):
        self.fn, self.last = fn, None

    def __call__(self, z):
        self.last = z
        return self.fn(z)


def _adversarial(with_delta: bool):
    """``call``: ``(L(x), L(x + δ), ∂/∂W, ∂/∂c, ∂/∂x of L(x) + L(x + δ)[, δ])`` with δ held constant."""

    def call(function, x, weights, bias, labels, mask, **options):
        xp, backend = polyloss.get_namespace(x)

        def losses(w, c, z, loss_fn=None):
            loss_fn = loss_fn or (lambda v: xp.mean(_losses(xp, v, w, c, labels, mask)))
            return function(loss_fn, z, **options)

        recorder = _Recorder(lambda v: xp.mean(_losses(xp, v, weights, bias, labels, mask)))
        loss, adversarial = losses(weights, bias, x, recorder)
        _, grads = backend.value_and_grad(lambda w, c, z: sum(losses(w, c, z)), argnums=(0, 1, 2))(weights, bias, x)
        delta = (recorder.last - x,) if with_delta else ()
        return (loss, adversarial, *_same_dtype(xp, loss, *grads, *delta))

    return call


def _adversarial_reference(with_delta: bool):
    def reference_call(function, x, weights, bias, labels, mask, **options):
        def loss_fn(z):
            return _models.classifier_loss(z, weights, bias, labels, mask=mask)[0]

        def gradients(z):
            return _models.classifier_gradients(z, weights, bias, labels, mask=mask)

        loss, adversarial = function(loss_fn, x, grad_fn=lambda z: gradients(z)["x"], **options)
        delta = _reference.adversarial_perturbation(loss_fn, x, grad_fn=lambda z: gradients(z)["x"], **options)
        clean, shifted = gradients(x), gradients(x + delta)
        return (loss, adversarial, *(clean[k] + shifted[k] for k in ("weights", "bias", "x")),
                *((delta,) if with_delta else ()))

    return reference_call


def _embedding_call(function, embeddings, weights, bias, ids, labels, **options):
    """The embedding-matrix form (Su, bert4keras): the matrix itself is perturbed, one global norm."""
    xp, backend = polyloss.get_namespace(embeddings)
    mask = xp.ones(ids.shape, dtype=xp.bool, device=backend.device(embeddings))

    def losses(w, c, e, loss_fn=None):
        loss_fn = loss_fn or (lambda v: xp.mean(_losses(xp, _embedded(xp, v, ids), w, c, labels, mask)))
        return function(loss_fn, e, **options)

    recorder = _Recorder(lambda v: xp.mean(_losses(xp, _embedded(xp, v, ids), weights, bias, labels, mask)))
    loss, adversarial = losses(weights, bias, embeddings, recorder)
    _, grads = backend.value_and_grad(lambda w, c, e: sum(losses(w, c, e)), argnums=(0, 1, 2))(
        weights, bias, embeddings)
    return (loss, adversarial, *_same_dtype(xp, loss, *grads, recorder.last - embeddings))


def _embedding_reference(function, embeddings, weights, bias, ids, labels, **options):
    def loss_fn(e):
        return _models.embedding_classifier_loss(e, weights, bias, ids, labels)[0]

    def gradients(e):
        return _models.embedding_classifier_gradients(e, weights, bias, ids, labels)

    grad_fn = lambda e: gradients(e)["embeddings"]  # noqa: E731
    loss, adversarial = function(loss_fn, embeddings, grad_fn=grad_fn, **options)
    delta = _reference.adversarial_perturbation(loss_fn, embeddings, grad_fn=grad_fn, **options)
    clean, shifted = gradients(embeddings), gradients(embeddings + delta)
    return (loss, adversarial, *(clean[k] + shifted[k] for k in ("weights", "bias", "embeddings")), delta)


def _adv_inputs(**options):
    def inputs(rng, dtype):
        return _classifier(rng), dict(options)

    return inputs


def _adv_where(**options):
    def inputs(rng, dtype):
        x, weights, bias, labels, mask = _classifier(rng)
        return (x, weights, bias, labels, mask), {"where": mask[..., None], **options}

    return inputs


def _embedding_inputs(rng, dtype, vocabulary=6, batch=3, length=4, dim=3, classes=4):
    embeddings = rng.normal(0.0, 1.0, (vocabulary, dim))
    ids = rng.integers(0, vocabulary - 1, (batch, length))  # the last token is never used: its gradient is 0
    ids[0, :2] = 2  # a token used twice in one row
    return (embeddings, rng.normal(0.0, 1.0, (dim, classes)), rng.normal(0.0, 0.5, classes), ids,
            rng.integers(0, classes, batch)), {"epsilon": 0.5}


# the outputs: loss, adversarial loss, the three gradients and δ (compared normwise); the half-precision
# rows leave δ out: x + δ is rounded to the half dtype, which moves δ by 2^-11·|x| (float16), a few
# percent of δ
_ADVERSARIAL = {"call": _adversarial(True), "reference_call": _adversarial_reference(True), "grad_args": (),
                "autograd": True, "normwise": (2, 3, 4, 5)}

register(
    Case("adversarial_loss/fgm-l2-global", "adversarial_loss", _adv_inputs(epsilon=0.5), **_ADVERSARIAL),
    Case("adversarial_loss/fgm-l2-global-half", "adversarial_loss", _adv_inputs(epsilon=0.5), dtypes=HALF_DTYPES,
         value_tol=_HALF_TOL, call=_adversarial(False), reference_call=_adversarial_reference(False), grad_args=(),
         autograd=True, normwise=(2, 3, 4)),
    Case("adversarial_loss/fgm-l2-example-where", "adversarial_loss", _adv_where(epsilon=0.5, scope="example"),
         **_ADVERSARIAL),
    Case("adversarial_loss/pgd-l2-example", "adversarial_loss", _adv_where(epsilon=0.8, scope="example", steps=3),
         **_ADVERSARIAL),
    Case("adversarial_loss/pgd-sign-global", "adversarial_loss",
         _adv_inputs(epsilon=0.3, norm="sign", steps=3, step_size=0.2), **_ADVERSARIAL),
    Case("adversarial_loss/embedding-matrix", "adversarial_loss", _embedding_inputs, call=_embedding_call,
         reference_call=_embedding_reference, grad_args=(), autograd=True, normwise=(2, 3, 4, 5),
         note="Su's / bert4keras's form: the embedding matrix perturbed with one global norm"),
)


# --------------------------------------------------------------------------------------------
# gradient_penalty: double backprop, checked by the runner's gradients (x, weights, bias)
# --------------------------------------------------------------------------------------------


def _penalty_call(function, x, weights, bias, labels, mask, *, scope="global", **options):
    """``stack(loss, penalty)``: a scalar pair (the mean loss) or ``[2, B]`` (per-example losses)."""
    xp, _ = polyloss.get_namespace(x)

    def loss_fn(z):
        losses = _losses(xp, z, weights, bias, labels, mask)
        return xp.mean(losses) if scope == "global" else losses

    loss, penalty = function(loss_fn, x, scope=scope, **options)
    return xp.stack([loss, penalty])


def _penalty_reference(function, x, weights, bias, labels, mask, *, scope="global", **options):
    part = 0 if scope == "global" else 1  # the mean, or the per-example losses

    def loss_fn(z):
        return _models.classifier_loss(z, weights, bias, labels, mask=mask)[part]

    def grad_fn(z):
        reduction = "mean" if scope == "global" else "sum"
        return _models.classifier_gradients(z, weights, bias, labels, mask=mask, reduction=reduction)["x"]

    return np.stack(function(loss_fn, x, scope=scope, grad_fn=grad_fn, **options))


_PENALTY = {"call": _penalty_call, "reference_call": _penalty_reference, "grad_args": (0, 1, 2),
            "autograd": True}

register(
    Case("gradient_penalty/global", "gradient_penalty", _adv_inputs(), dtypes=ALL_DTYPES, value_tol=_HALF_TOL,
         **_PENALTY, note="the 1/B² scale of a batch-mean loss"),
    Case("gradient_penalty/example", "gradient_penalty", _adv_inputs(scope="example"), **_PENALTY),
    Case("gradient_penalty/example-normalized-where", "gradient_penalty",
         _adv_where(scope="example", normalized=True), **_PENALTY),
)


# --------------------------------------------------------------------------------------------
# vat_loss: an explicit start direction (noise=), the weight gradients at the fixed perturbation
# --------------------------------------------------------------------------------------------


def _vat_call(function, x, weights, bias, mask, noise, **options):
    """``(D_b, ∂/∂W, ∂/∂c, ∂/∂x of Σ_b D_b)``, the clean logits and the perturbation held constant."""
    xp, backend = polyloss.get_namespace(x)

    def values(w, c, z):
        return function(lambda v: _pooled_logits(xp, v, w, c, mask), z, noise=noise, **options)

    out = values(weights, bias, x)
    _, grads = backend.value_and_grad(lambda w, c, z: xp.sum(values(w, c, z)), argnums=(0, 1, 2))(weights, bias, x)
    return (out, *_same_dtype(xp, out, *grads))


def _vat_reference(function, x, weights, bias, mask, noise, *, divergence="kl", **options):
    def logits_fn(z):
        return _models.pooled_logits(z, weights, bias, mask=mask)

    clean = logits_fn(x)

    def grad_fn(z):
        return _models.divergence_gradient(z, clean, weights, bias, mask=mask, divergence=divergence)

    out = function(logits_fn, x, divergence=divergence, noise=noise, grad_fn=grad_fn, **options)
    shifted = x + _reference.vat_perturbation(logits_fn, x, divergence=divergence, noise=noise, grad_fn=grad_fn,
                                              **options)
    # ∂D/∂t at the perturbed logits t (the flat model t ↦ t), then through t = h W + c
    classes = weights.shape[1]
    dt = _models.divergence_gradient(logits_fn(shifted), clean, np.eye(classes), np.zeros(classes),
                                     divergence=divergence)
    pooled = _models.pooled_logits(shifted, np.eye(weights.shape[0]), np.zeros(weights.shape[0]), mask=mask)
    return out, pooled.T @ dt, dt.sum(axis=0), grad_fn(shifted)


def _vat_inputs(where=False, **options):
    def inputs(rng, dtype):
        x, weights, bias, _, mask = _classifier(rng)
        noise = rng.normal(0.0, 1.0, x.shape)
        extra = {"where": mask[..., None]} if where else {}
        return (x, weights, bias, mask, noise), {**extra, **options}

    return inputs


_VAT = {"call": _vat_call, "reference_call": _vat_reference, "grad_args": (), "autograd": True,
        "normwise": (1, 2, 3)}

register(
    Case("vat_loss/kl-example", "vat_loss", _vat_inputs(), **_VAT),
    Case("vat_loss/kl-three-iterations-small-xi", "vat_loss", _vat_inputs(iterations=3, xi=1e-2, epsilon=2.0),
         value_tol={"float32": 1e-4}, **_VAT,
         note="x + ξd rounds ξd to eps·|x|/ξ ≈ 1e-5 in float32: the direction, and the loss, carry that error"),
    Case("vat_loss/multilabel-global-where", "vat_loss",
         _vat_inputs(where=True, divergence="multilabel", scope="global", epsilon=0.5), **_VAT),
    Case("vat_loss/noise-only", "vat_loss", _vat_inputs(iterations=0, epsilon=0.7), **_VAT),
)

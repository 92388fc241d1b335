r"""Classification and class-imbalance losses, written once against the array API.

The formulas, sources and conventions are in ``docs/classification.md``.

Two shapes of input run through this module:

- **binary** (sigmoid) losses are elementwise: ``logits`` and ``labels`` have the same shape and the
  loss has it too. Labels are bool, integer 0/1, or floating in ``[0, 1]``; a soft label ``t`` is
  the expectation over the label distribution, ``L = t·L(y=1) + (1 - t)·L(y=0)``. Every one of them
  is ``t·w₁(s)·softplus(-s) + (1-t)·w₀(s)·softplus(s)`` with ``softplus(∓s) = -log σ(±s)`` computed
  once per entry (:func:`polyloss._ops.softplus_pair`): log space, no clipping, finite for every
  finite logit.
- **softmax** losses are per example: the class axis ``axis`` is removed. Labels are either class
  ids (integer, the logits' shape without ``axis``) or probabilities (the logits' shape). ``where``
  (broadcastable to the logits) and ``-inf`` logits remove classes from the softmax; a row with no
  valid class has loss 0 and gradient 0.

The softmax statistics (log-probabilities, ``log(1 - p_k)`` from the complement's sum) are those of
:mod:`polyloss._softmax`, shared with the other families.
"""

from __future__ import annotations

import math

import numpy as np

from polyloss import _checks, _inputs, _ops, _softmax
from polyloss._kernels import Kernel
from polyloss._namespace import namespace_of

__all__ = [
    "softmax_crossentropy",
    "sigmoid_crossentropy",
    "focal_loss",
    "hard_truncation_loss",
    "softened_truncation_loss",
    "logit_adjusted_crossentropy",
    "adjust_logits",
    "smoothed_f1_weighted_crossentropy",
    "poly1_crossentropy",
    "poly1_focal_loss",
]

_ACTIVATIONS = ("sigmoid", "softmax")


# --------------------------------------------------------------------------------------------
# Binary (sigmoid) inputs
# --------------------------------------------------------------------------------------------
def _binary_inputs(logits, labels):
    """``(xp, backend, s, t)``: logits and labels of an elementwise binary loss, checked, in the compute dtype."""
    scores = _inputs.scores(logits, axis=None, labels=labels)
    xp, backend, s = scores.xp, scores.backend, scores.values
    labels = scores.secondary(labels, "labels")
    if not xp.isdtype(labels.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"labels must be boolean, integer or real floating, got dtype {labels.dtype}")
    if _checks.values_checked(backend, s, labels):
        _checks.check_label_values(xp, labels)
    return xp, backend, s, labels if labels.dtype == s.dtype else xp.astype(labels, s.dtype)


def _expect(xp, t, positive, negative):
    """``t·positive + (1 - t)·negative``: the loss of a label distribution from its two hard cases. A
    term whose weight is 0 is dropped, not multiplied: an infinite logit (a ``-inf`` mask) on the side
    its label does not take gives its exact loss 0, not ``0·inf = NaN``."""
    mixed = t * positive + (1.0 - t) * negative
    return xp.where(t == 1.0, positive, xp.where(t == 0.0, negative, mixed))


def _sigmoid_power(xp, minus_log, gamma: float):
    """``σ^γ`` from ``-log σ`` (``exp(-γ·(-log σ))``); exactly 1 for ``γ = 0``, also at ``σ = 0``."""
    return 1.0 if gamma == 0.0 else xp.exp(-gamma * minus_log)


def _step(xp, x):
    """The unit step with ``θ(0) = 1/2``: 1 above 0, 1/2 at 0, 0 below (no gradient)."""
    return (xp.sign(x) + 1.0) * 0.5


def _check_activation(activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")


def _sigmoid_only(where):
    if where is not None:
        raise ValueError("where applies to activation='softmax' (classes removed from the softmax); "
                         "for the elementwise sigmoid loss mask the result, e.g. polyloss.reduce(loss, where=...)")


# --------------------------------------------------------------------------------------------
# B1, B2: cross-entropies
# --------------------------------------------------------------------------------------------
def softmax_crossentropy(logits, labels, *, axis=-1, label_smoothing=0.0, where=None, ignore_index=None):
    r"""Softmax cross-entropy with class ids or probability labels, label smoothing and class masks.

    .. math::

        L = -\sum_k t'_k \log p_k,\qquad p = \mathrm{softmax}(s),\qquad
        t' = (1 - \varepsilon)\, t + \varepsilon / K

    ``t`` is the one-hot vector of the class id (or the given probabilities) and ``K`` the number of
    valid classes of the row: ``ε`` spreads its mass uniformly over the classes, the convention of
    Keras, optax (``smooth_labels``) and ``torch.nn.functional.cross_entropy``. Equivalently
    ``L = (1 - ε)·CE(t) + ε·mean_k(-log p_k)``.

    Args:
      logits: real floating ``[..., C, ...]``, classes on ``axis``. ``-inf`` removes a class.
      labels: integer class ids with the logits' shape without ``axis`` (as torch's ``target``), or
        probabilities with the logits' shape (bool / integer one-hot accepted; entries in [0, 1],
        not required to sum to 1).
      axis: the class axis (one int; ``axis=1`` for torch's ``[N, C, d...]`` layout).
      label_smoothing: ``ε`` in [0, 1].
      where: optional boolean mask broadcastable to ``logits``: False classes are removed from the
        softmax. A row without any valid class has loss 0 and gradient 0; a label on a removed class
        gives ``+inf``.
      ignore_index: a class id (e.g. -100) whose rows get loss 0 and gradient 0. torch's
        ``reduction="mean"`` divides by the rows kept: ``polyloss.reduce(loss, where=labels != ignore_index)``.

    Returns:
      The loss per example (``axis`` removed), in the compute dtype (float32 for half precision).

    In eager mode class ids outside ``[0, C)`` (other than ``ignore_index``) and probabilities outside
    [0, 1] raise ``ValueError``; under compilation an out-of-range id reads class 0.

    >>> import numpy as np, polyloss
    >>> logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> np.round(polyloss.softmax_crossentropy(logits, np.array([0, 2])), 4)
    array([0.1698, 1.0986])

    (Row 1: three equal logits, ``log 3``.)
    """
    eps = _softmax.label_smoothing(label_smoothing)
    prepared = _softmax.prepare(logits, labels, axis=axis, where=where, ignore_index=ignore_index)
    xp, targets = prepared.xp, prepared.targets
    if eps and targets.ids is not None and _softmax.fast_crossentropy_applies(xp, prepared.backend,
                                                                               prepared.values, where):
        value = _softmax.class_id_crossentropy(xp, prepared.backend, prepared.values, targets.ids, eps)
        return value if targets.keep is None else xp.where(targets.keep, value, 0.0)
    sm = prepared.softmax()
    return sm.finish(_softmax.crossentropy(sm, prepared.targets, eps), prepared.targets)


def sigmoid_crossentropy(logits, labels):
    r"""Binary cross-entropy on logits, elementwise, hard or soft labels.

    .. math::

        L = -t \log \sigma(s) - (1 - t) \log \sigma(-s) = t\,\mathrm{softplus}(-s) + (1 - t)\,\mathrm{softplus}(s)

    Both softplus terms share one exponential (``relu(∓s) + log1p(e^{-|s|})``): no overflow, and no
    cancellation, so a loss of ``1e-17`` keeps its digits (``softplus(s) - t·s`` loses them).
    The gradient is ``σ(s) - t``, exact at ``s = 0`` too.

    Args:
      logits: real floating array.
      labels: the same shape: bool, integer 0/1 or floating in [0, 1].

    Returns:
      The loss per entry (the logits' shape), in the compute dtype.

    >>> import numpy as np, polyloss
    >>> np.round(polyloss.sigmoid_crossentropy(np.array([0.0, 3.0, -3.0]), np.array([1.0, 1.0, 0.25])), 4)
    array([0.6931, 0.0486, 0.7986])
    """
    xp, backend, s, t = _binary_inputs(logits, labels)
    if _binary_kernel_applies(xp, backend, s):
        return _BINARY_FOCAL(backend, s, t, gamma=0.0, alpha=None, epsilon=0.0)
    minus_log_p, minus_log_q = _ops.softplus_pair(xp, backend, s)
    return _expect(xp, t, minus_log_p, minus_log_q)


# --------------------------------------------------------------------------------------------
# The binary kernel: closed-form gradients for finite logits, eager on the CPU
# --------------------------------------------------------------------------------------------
# Eager PyTorch and NumPy run one pass over memory per operation, and autograd through the composed
# form above (softplus twice, the masked expectation) doubles them. For finite logits the loss and its
# derivatives have closed forms in a handful of shared pieces of ``a = |s|``: ``e = e^{-a}``,
# ``l = log1p(e)``, ``σ(a) = 1/(1 + e)``, ``σ(-a) = e σ(a)``, and
#
#     sp(s) = relu(s) + l,  sp(-s) = relu(-s) + l,  σ(s), σ(-s) picked by the sign of s,
#     L = t a₁ P^γ sp(-s) + (1-t) a₀ Q^γ sp(s) + ε [t P^{γ+1} + (1-t) Q^{γ+1}],   P = σ(-s), Q = σ(s),
#     ∂L/∂s = -t a₁ P^γ (γ Q sp(-s) + P) + (1-t) a₀ Q^γ (γ P sp(s) + Q) + ε (γ+1) P Q [(1-t) Q^γ - t P^γ],
#     ∂L/∂t = a₁ P^γ sp(-s) - a₀ Q^γ sp(s) + ε (P^{γ+1} - Q^{γ+1}).
#
# Every term is a product of non-negative factors (no cancellation; a loss of 1e-17 keeps its digits).
# Where a factor is infinite (an infinite logit) a weight of 0 would meet it, so infinite logits keep
# the composed form, as do compiled code and GPUs (where XLA and inductor fuse it anyway): see
# :func:`_binary_kernel_applies`. Nothing of ``[..., C]`` is kept for the backward pass. Where the adapter
# has a fused sigmoid (``Backend.sigmoid``: torch) ``P`` and ``Q`` come from it, two passes instead of the
# picking by sign; it may return 0 where ``σ`` is below the smallest normal number (``|s| > 87`` in float32),
# where the terms it enters are products with that factor or sums with larger terms.


def _binary_kernel_applies(xp, backend, s) -> bool:
    """Eager on the CPU, with finite logits (two reductions; NaN fails them too)."""
    if not _ops.cheap_branch(backend, s) or s.ndim == 0:
        return False
    return bool(xp.max(s) < math.inf) and bool(xp.min(s) > -math.inf)


def _binary_pieces(xp, backend, s, gamma):
    """``(P, Q, sp(-s), sp(s), P^γ, Q^γ)`` of finite logits ``s`` (see above)."""
    e = xp.exp(-xp.abs(s))
    log_term = xp.log1p(e)
    p_wrong, q_right = _ops.sigmoid_pair(xp, backend, s, e)  # σ(-s), σ(s)
    relu = xp.clip(s, min=0.0)
    sp_pos, sp_neg = log_term + relu, log_term + (relu - s)  # relu(s) - s is relu(-s) exactly
    if gamma == 0.0:
        return p_wrong, q_right, sp_neg, sp_pos, 1.0, 1.0
    return p_wrong, q_right, sp_neg, sp_pos, _power(p_wrong, gamma), _power(q_right, gamma)


def _power(x, gamma: float):
    """``x^γ``: a product for ``γ = 2`` (what ``pow`` computes there, at a quarter of its cost in eager
    PyTorch), ``x`` itself for ``γ = 1``."""
    if gamma == 1.0:
        return x
    return x * x if gamma == 2.0 else x**gamma


def _weights(alpha):
    return (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)


def _softplus_parts(xp, s):
    """``(log1p(e^{-|s|}), relu(s), relu(-s))``: ``sp(±s)`` is the first plus the second or third."""
    relu = xp.clip(s, min=0.0)
    return xp.log1p(xp.exp(-xp.abs(s))), relu, relu - s  # relu(s) - s is relu(-s) exactly


def _binary_focal_value(xp, backend, s, t, gamma, alpha, epsilon):
    if gamma == 0.0 and not epsilon:  # the weighted cross-entropy: no σ needed
        log_term, relu_pos, relu_neg = _softplus_parts(xp, s)
        a1, a0 = _weights(alpha)
        return (log_term * (a1 * t + a0 * (1.0 - t)) + (a1 * t) * relu_neg + (a0 * (1.0 - t)) * relu_pos,) \
            if alpha is not None else (log_term + t * relu_neg + (1.0 - t) * relu_pos,)
    p, q, sp_neg, sp_pos, p_g, q_g = _binary_pieces(xp, backend, s, gamma)
    a1, a0 = _weights(alpha)
    positive, negative = p_g * sp_neg, q_g * sp_pos
    if alpha is not None:
        positive, negative = a1 * positive, a0 * negative
    if epsilon:  # the Poly-1 term is not weighted by α
        positive, negative = positive + epsilon * (p_g * p), negative + epsilon * (q_g * q)
    return (t * positive + (1.0 - t) * negative,)


def _binary_focal_gradients(xp, backend, s, t, g, needs, gamma, alpha, epsilon):
    if gamma == 0.0 and not epsilon and alpha is None and not needs[1]:  # σ(s) - t, one exponential
        return (g * (_ops.kernel_sigmoid(xp, backend, s) - t),)
    p, q, sp_neg, sp_pos, p_g, q_g = _binary_pieces(xp, backend, s, gamma)
    a1, a0 = _weights(alpha)
    out = []
    if needs[0]:
        if gamma == 0.0:
            d_pos, d_neg = -a1 * p, a0 * q
        else:
            d_pos, d_neg = -a1 * (p_g * (gamma * (q * sp_neg) + p)), a0 * (q_g * (gamma * (p * sp_pos) + q))
        if epsilon:
            both = (epsilon * (gamma + 1.0)) * (p * q)
            d_pos, d_neg = d_pos - both * p_g, d_neg + both * q_g
        out.append(g * (t * d_pos + (1.0 - t) * d_neg))
    if needs[1]:
        positive, negative = a1 * (p_g * sp_neg), a0 * (q_g * sp_pos)
        if epsilon:
            positive, negative = positive + epsilon * (p_g * p), negative + epsilon * (q_g * q)
        out.append(g * (positive - negative))
    return tuple(out)


def _binary_focal_fwd(xp, backend, s, t, *, gamma, alpha, epsilon):
    (value,) = _ops.by_rows(xp, backend, lambda a, b: _binary_focal_value(xp, backend, a, b, gamma, alpha, epsilon),
                            s, t)
    return value, ()


def _binary_focal_bwd(xp, backend, arrays, residuals, g, needs, *, gamma, alpha, epsilon):
    s, t = arrays
    grads = iter(_ops.by_rows(
        xp, backend, lambda a, b, c: _binary_focal_gradients(xp, backend, a, b, c, needs, gamma, alpha, epsilon),
        s, t, g))
    return tuple(next(grads) if n else None for n in needs)


_BINARY_FOCAL = Kernel("binary_focal", _binary_focal_fwd, _binary_focal_bwd)


# Hard labels (every t is 0 or 1, checked once per call: :func:`_hard_labels`): the loss is one side of the
# formula above, a function of ``z = c·s`` with ``c = 1 - 2t = ±1``,
#
#     L = w q^γ sp(z) + ε q^{γ+1},  q = σ(z),  p = σ(-z) = 1 - q,
#     sp(z) = softplus(z) = relu(z) - log1p(-min(q, p)),
#     ∂L/∂s = c q^γ [w (γ p sp(z) + q) + ε (γ+1) q p],
#
# with ``w = a₁`` for ``t = 1`` and ``a₀`` for ``t = 0``, i.e. ``w = (a₀+a₁)/2 + c (a₀-a₁)/2`` and
# ``w c = c (a₀+a₁)/2 + (a₀-a₁)/2`` (the Poly-1 term is not weighted by α). One sigmoid and one ``log1p`` per
# direction, instead of two sigmoids, an exponential and a ``log1p``, and about half the other passes.
# ``min(q, p) = σ(-|z|)`` is exact where it is ``q`` (``z <= 0``, where ``sp(z) = -log1p(-q)`` is the small
# value that needs its relative digits) and within ``ulp(1)/2`` where it is ``p`` (``z > 0``, where it is
# added to ``z``). ``p = 1 - q`` loses its relative digits only where ``q`` is near 1, where ``γ p sp(z)`` is
# added to ``q``: an absolute error of ``γ·sp(z)·ulp(1)/2`` against a sum above 1/2, at most ~4e-6 relative
# in float32 (near ``z ≈ 17``, where ``p`` falls to ``ulp(1)``; the conformance tolerance is 2e-5) and
# ~1e-14 in float64. Below the smallest normal the fused sigmoid may return 0 (``Backend.sigmoid``), where
# ``q^γ`` (``γ > 0``) makes the loss 0 to within that number too. Temporaries are updated in place where
# :func:`polyloss._ops.untracked_cheap_branch` allows it (eager, no recorded gradient). The gradient with respect to the
# labels needs both sides: the general kernel's backward computes it. Nothing of ``[..., C]`` is kept.
def _hard_labels(xp, backend, t) -> bool:
    """Whether every label is exactly 0 or 1 (``t`` in [0, 1], checked): ``t² - t`` is 0 there and negative at
    every other value of [0, 1], ``2^{-149}`` and ``1 - 2^{-24}`` included (NaN fails). Blocks of the flattened
    labels (a full-size temporary costs about ten times as much in eager torch: page faults), each reduced
    whole (a reduction per row costs five times as much), stopping at the first soft block."""
    if not xp.isdtype(t.dtype, "real floating") or math.prod(t.shape) == 0:
        return False
    flat = xp.reshape(t, (-1,))
    step = backend.block_rows(t) * (t.shape[-1] if t.ndim else 1)
    for i in range(0, flat.shape[0], step):
        labels = flat[i : i + step]
        square = labels * labels
        square -= labels  # in place: eager on the CPU (the kernels' condition); the labels are never written
        if not bool(xp.min(square) == 0.0):
            return False
    return True


def _hard_focal_parts(xp, backend, s, t):
    """``(c, q, p, sp, writable)`` of hard labels: ``c = 1 - 2t``, ``q = σ(z)``, ``p = 1 - q`` and
    ``sp = softplus(z) = relu(z) - log1p(-min(q, p))`` with ``z = c·s`` (see above)."""
    c = t * -2.0
    c += 1.0  # eager on the CPU only (the kernel's condition), where the operator updates c in place
    z = s * c
    writable = _ops.untracked_cheap_branch(backend, z)
    q = _ops.kernel_sigmoid(xp, backend, z)
    p = 1.0 - q
    low = xp.minimum(q, p)  # σ(-|z|)
    sp = xp.clip(z, min=0.0)
    if writable:
        low *= -1.0
        sp -= xp.log1p(low)
    else:
        sp = sp - xp.log1p(-low)
    return c, q, p, sp, writable


def _power_of(q, gamma, writable):
    """``q^γ``, squared in place for ``γ = 2`` where ``q`` is writable and no longer needed."""
    if writable and gamma == 2.0:
        q *= q
        return q
    return _power(q, gamma)


def _hard_focal_value(xp, backend, s, t, gamma, alpha, epsilon):
    c, q, _, sp, writable = _hard_focal_parts(xp, backend, s, t)
    a1, a0 = _weights(alpha)
    if alpha is not None:  # w from c
        if writable:
            c *= (a0 - a1) * 0.5
            c += (a0 + a1) * 0.5
            sp *= c
        else:
            sp = sp * ((a0 - a1) * 0.5 * c + (a0 + a1) * 0.5)
    if epsilon:  # w·sp + ε q: the Poly-1 term is not weighted
        sp = sp + epsilon * q
    if writable:
        sp *= _power_of(q, gamma, writable)
        return (sp,)
    return (sp * _power(q, gamma),)


def _hard_focal_gradient(xp, backend, s, t, g, gamma, alpha, epsilon):
    c, q, p, sp, writable = _hard_focal_parts(xp, backend, s, t)
    a1, a0 = _weights(alpha)
    poly = (epsilon * (gamma + 1.0)) * (q * p) if epsilon else None
    if writable:  # γ p sp + q, into sp
        sp *= p
        sp *= gamma
        sp += q
    else:
        sp = gamma * (p * sp) + q
    if poly is not None:  # w (γ p sp + q) + ε(γ+1) q p, times c
        if alpha is not None:
            sp = sp * ((a0 - a1) * 0.5 * c + (a0 + a1) * 0.5)
        sp = (sp + poly) * c
    elif alpha is None:
        sp = sp * c
    elif writable:  # w c, into c
        c *= (a0 + a1) * 0.5
        c += (a0 - a1) * 0.5
        sp *= c
    else:
        sp = sp * ((a0 + a1) * 0.5 * c + (a0 - a1) * 0.5)
    if not writable:
        return sp * _power(q, gamma) * g
    sp *= _power_of(q, gamma, writable)
    sp *= g
    return sp


def _hard_focal_fwd(xp, backend, s, t, *, gamma, alpha, epsilon):
    (value,) = _ops.by_rows(xp, backend, lambda a, b: _hard_focal_value(xp, backend, a, b, gamma, alpha, epsilon),
                            s, t)
    return value, ()


def _hard_focal_bwd(xp, backend, arrays, residuals, g, needs, *, gamma, alpha, epsilon):
    if needs[1]:  # the labels' gradient needs both sides of the formula
        return _binary_focal_bwd(xp, backend, arrays, residuals, g, needs, gamma=gamma, alpha=alpha, epsilon=epsilon)
    s, t = arrays
    (grad,) = _ops.by_rows(
        xp, backend, lambda a, b, d: (_hard_focal_gradient(xp, backend, a, b, d, gamma, alpha, epsilon),), s, t, g)
    return grad, None


_HARD_FOCAL = Kernel("hard_binary_focal", _hard_focal_fwd, _hard_focal_bwd)


# --------------------------------------------------------------------------------------------
# B3, B7: focal and Poly-1
# --------------------------------------------------------------------------------------------
def _sigmoid_focal(xp, backend, s, t, gamma, alpha, epsilon=0.0):
    """``t·a₁·σ(-s)^γ·sp(-s) + (1-t)·a₀·σ(s)^γ·sp(s)`` plus Poly-1's ``ε·[t σ(-s)^{γ+1} + (1-t) σ(s)^{γ+1}]``."""
    if _binary_kernel_applies(xp, backend, s):
        kernel = _HARD_FOCAL if gamma != 0.0 and _hard_labels(xp, backend, t) else _BINARY_FOCAL
        return kernel(backend, s, t, gamma=gamma, alpha=alpha, epsilon=epsilon)
    minus_log_p, minus_log_q = _ops.softplus_pair(xp, backend, s)  # -log σ(s), -log σ(-s) = -log(1 - σ(s))
    positive = _sigmoid_power(xp, minus_log_q, gamma) * minus_log_p
    negative = _sigmoid_power(xp, minus_log_p, gamma) * minus_log_q
    if alpha is not None:
        positive, negative = alpha * positive, (1.0 - alpha) * negative
    loss = _expect(xp, t, positive, negative)
    if epsilon:
        poly = _expect(xp, t, xp.exp(-(gamma + 1.0) * minus_log_q), xp.exp(-(gamma + 1.0) * minus_log_p))
        loss = loss + epsilon * poly
    return loss


def _class_weights(prepared, alpha):
    """α of the softmax focal loss: None, a scalar, or one weight per class (``[C]``), as the factor
    for each row (class ids) or each class (probabilities)."""
    if alpha is None:
        return None
    xp, backend, logits, s, targets = (
        prepared.xp,
        prepared.backend,
        prepared.scores.native,
        prepared.values,
        prepared.targets,
    )
    if not backend.is_array(alpha) and np.ndim(alpha) == 0:  # a Python or NumPy scalar: no device array
        return _checks.hyperparameter(alpha, "alpha", low=0.0)
    a = backend.asarray(alpha, like=logits, dtype=s.dtype, name="alpha")
    if a.ndim == 0:
        return _checks.hyperparameter(alpha, "alpha", low=0.0)
    if a.ndim != 1 or not _checks.same_dims(a.shape, (s.shape[-1],)):
        raise ValueError(
            f"alpha has shape {tuple(a.shape)}; give a scalar or one weight per class, shape ({s.shape[-1]},)"
        )
    if not xp.isdtype(a.dtype, "real floating"):
        a = xp.astype(a, s.dtype)
    if _checks.values_checked(backend, s, a):
        _checks.fail_if_any(xp, ~(a >= 0.0), lambda: "alpha must be >= 0 for every class")
    return xp.take(a, targets.ids, axis=0) if targets.ids is not None else a


def _softmax_focal(xp, sm, targets, gamma, weights, epsilon=0.0):
    """``Σ_k t_k α_k (1 - p_k)^γ (-log p_k)`` plus Poly-1's ``ε Σ_k t_k (1 - p_k)^{γ+1}``."""
    if targets.ids is not None:
        log_p, log_q = sm.log_p_at(targets.ids, precise=True), sm.log_not_p_at(targets.ids)
    else:
        log_p, log_q = sm.log_p(), sm.log_not_p()
    per_class = _sigmoid_power(xp, -log_q, gamma) * -log_p
    if weights is not None:
        per_class = weights * per_class
    if epsilon:
        per_class = per_class + epsilon * xp.exp((gamma + 1.0) * log_q)
    return per_class if targets.ids is not None else sm.expect(targets.probs, per_class)


def _focal(logits, labels, gamma, alpha, activation, axis, where, epsilon=0.0):
    _check_activation(activation)
    gamma = _checks.hyperparameter(gamma, "gamma", low=0.0)
    if activation == "sigmoid":
        _sigmoid_only(where)
        if alpha is not None:
            alpha = _checks.hyperparameter(alpha, "alpha", low=0.0, high=1.0)
        xp, backend, s, t = _binary_inputs(logits, labels)
        return _sigmoid_focal(xp, backend, s, t, gamma, alpha, epsilon)
    prepared = _softmax.prepare(logits, labels, axis=axis, where=where)
    weights = _class_weights(prepared, alpha)
    sm = prepared.softmax()
    return sm.finish(_softmax_focal(prepared.xp, sm, prepared.targets, gamma, weights, epsilon), prepared.targets)


def focal_loss(logits, labels, *, gamma=2.0, alpha=None, activation="sigmoid", axis=-1, where=None):
    r"""Focal loss (Lin et al. 2017), sigmoid (binary / multi-label) or softmax.

    .. math::

        \text{sigmoid:}\quad L = -\alpha_t\,(1 - p_t)^{\gamma} \log p_t,\qquad
        p_t = \sigma(s) \text{ if } y = 1,\ 1 - \sigma(s) \text{ if } y = 0

        \text{softmax:}\quad L = -\sum_k t_k\,\alpha_k\,(1 - p_k)^{\gamma} \log p_k

    computed in log space: ``log p_t = -softplus(∓s)`` and ``(1 - p_t)^γ = exp(-γ·softplus(±s))``
    (sigmoid), ``log(1 - p_k)`` from the complement's sum (softmax). Values and gradients are finite
    for every finite logit and every ``γ >= 0``: ``γ = 0`` gives exactly the cross-entropy, and
    ``γ < 1`` does not meet the ``pow(0, γ)`` NaN gradient of probability-space code.

    Sources: Lin et al., "Focal Loss for Dense Object Detection", arXiv:1708.02002; kexue.fm/archives/4733.

    Args:
      logits: real floating array; for the softmax variant, classes on ``axis``.
      labels: sigmoid: the logits' shape, bool / 0-1 integers / floats in [0, 1]; a soft label ``t``
        gives ``t·L(y=1) + (1 - t)·L(y=0)`` (optax and Keras instead multiply the soft-label BCE by
        ``(1 - p_t)^γ`` with ``p_t = t·p + (1-t)(1-p)``: identical for hard labels). softmax: class
        ids or probabilities, as in :func:`softmax_crossentropy`.
      gamma: the focusing parameter ``γ >= 0``.
      alpha: sigmoid: ``α ∈ [0, 1]`` weighs positives by ``α`` and negatives by ``1 - α`` (the paper
        uses 0.25); None weighs both by 1. softmax: a scalar (Keras' ``CategoricalFocalCrossentropy``,
        default 0.25 there) or one weight per class, shape ``[C]``; None is 1.
      activation: ``"sigmoid"`` (elementwise) or ``"softmax"`` (per example).
      axis, where: softmax only, as in :func:`softmax_crossentropy`.

    Returns:
      sigmoid: the loss per entry; softmax: per example. Compute dtype.

    >>> import numpy as np, polyloss
    >>> s, y = np.array([2.0, -1.0]), np.array([1, 1])
    >>> np.round(polyloss.focal_loss(s, y, gamma=2.0), 5)
    array([0.0018 , 0.70187])

    (``σ(-2)² · softplus(-2) = 0.1192² · 0.1269`` and ``σ(1)² · softplus(1) = 0.7311² · 1.3133``.)
    """
    return _focal(logits, labels, gamma, alpha, activation, axis, where)


def poly1_crossentropy(logits, labels, *, epsilon=1.0, axis=-1, label_smoothing=0.0, where=None, ignore_index=None):
    r"""Poly-1 cross-entropy (PolyLoss, Leng et al. 2022): the cross-entropy plus ``ε (1 - p_t)``.

    .. math::

        L = -\sum_k t'_k \log p_k + \varepsilon\,\Bigl(1 - \sum_k t'_k\, p_k\Bigr)

    ``t'`` the (smoothed) target as in :func:`softmax_crossentropy`; for a class id without
    smoothing the bonus is ``ε (1 - p_y)``. ``1 - p_y`` is computed from the complement's sum (exact
    when ``p_y`` rounds to 1). optax's ``poly_loss_cross_entropy`` takes the same ``t'`` in both terms.

    Source: Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
    Functions", arXiv:2204.12511.

    >>> import numpy as np, polyloss
    >>> logits = np.array([[0.0, 0.0, 0.0]])
    >>> np.round(polyloss.poly1_crossentropy(logits, np.array([1]), epsilon=1.0), 4)  # log 3 + 2/3
    array([1.7653])
    """
    eps = _softmax.label_smoothing(label_smoothing)
    epsilon = _checks.hyperparameter(epsilon, "epsilon")
    prepared = _softmax.prepare(logits, labels, axis=axis, where=where, ignore_index=ignore_index)
    xp, targets, sm = prepared.xp, prepared.targets, prepared.softmax()
    if targets.ids is not None:
        miss = xp.exp(sm.log_not_p_at(targets.ids))
    else:
        t = targets.probs
        miss = (1.0 - xp.sum(t, axis=-1)) + sm.expect(t, xp.exp(sm.log_not_p()), removed=1.0)
    if eps:  # 1 - Σ t' p = (1 - ε)(1 - Σ t p) + ε (1 - 1/K)
        miss = (1.0 - eps) * miss + eps * (1.0 - 1.0 / sm.count()[..., 0])
    return sm.finish(_softmax.crossentropy(sm, targets, eps, precise=True) + epsilon * miss, targets)


def poly1_focal_loss(logits, labels, *, epsilon=1.0, gamma=2.0, alpha=0.25, activation="sigmoid", axis=-1, where=None):
    r"""Poly-1 focal loss: the focal loss plus ``ε (1 - p_t)^{γ+1}`` (Leng et al. 2022).

    .. math::

        L = -\alpha_t (1 - p_t)^{\gamma} \log p_t + \varepsilon\,(1 - p_t)^{\gamma + 1}

    Arguments as in :func:`focal_loss` (note the paper's defaults here: ``γ = 2``, ``α = 0.25``); the
    Poly-1 term is not weighted by ``α``. Soft labels take the expectation of both terms
    (``t·L(y=1) + (1-t)·L(y=0)``); probability labels in the softmax variant give
    ``Σ_k t_k [α_k (1-p_k)^γ (-log p_k) + ε (1-p_k)^{γ+1}]``.

    Source: arXiv:2204.12511 (section 4, "Poly-1 formulation for focal loss").

    >>> import numpy as np, polyloss
    >>> np.round(polyloss.poly1_focal_loss(np.array([0.0]), np.array([1]), epsilon=1.0), 4)
    array([0.1683])

    (``0.25 · 0.5² · log 2 + 0.5³``.)
    """
    epsilon = _checks.hyperparameter(epsilon, "epsilon")
    return _focal(logits, labels, gamma, alpha, activation, axis, where, epsilon)


# --------------------------------------------------------------------------------------------
# B4: truncation
# --------------------------------------------------------------------------------------------
def hard_truncation_loss(logits, labels, *, m=0.6, activation="sigmoid", axis=-1, where=None):
    r"""Cross-entropy with the hard threshold of kexue 4293: examples already right by margin ``m`` cost 0.

    .. math::

        \text{sigmoid:}\quad L = \lambda\,\mathrm{BCE}(s, t),\qquad
        \lambda = 1 - \theta(t - m)\,\theta(p - m) - \theta(1 - m - t)\,\theta(1 - m - p)

        \text{softmax:}\quad L = \bigl(1 - \theta(p_y - m)\bigr)\,(-\log p_y)

    with ``p = σ(s)`` (resp. ``softmax(s)``) and the unit step ``θ`` (``θ(0) = 1/2``): a positive whose
    probability is already above ``m``, or a negative already below ``1 - m``, gets no loss and no
    gradient. ``λ`` is held constant (its derivative is 0 almost everywhere). The comparison with ``m``
    is made on the logits (``p > m ⟺ s > log(m / (1 - m))``), never on a rounded probability; it and
    ``t - m`` are evaluated in the compute dtype (a float32 soft label 0.6 equals ``m = 0.6`` there, so
    ``θ = ½``, while float64 sees 0.6000000238 > 0.6).

    Sources: kexue.fm/archives/4293 and 4733.

    Args:
      m: the threshold, ``0.5 <= m <= 1`` (``m = 1`` is the plain cross-entropy).
      activation: ``"sigmoid"`` (elementwise, binary labels) or ``"softmax"`` (class ids only).
      axis, where: softmax only, as in :func:`softmax_crossentropy`.

    >>> import numpy as np, polyloss
    >>> np.round(polyloss.hard_truncation_loss(np.array([1.0, 0.0, -2.0]), np.array([1, 1, 0]), m=0.6), 4)
    array([0.    , 0.6931, 0.    ])
    """
    _check_activation(activation)
    m = _checks.hyperparameter(m, "m", low=0.5, high=1.0)
    log_odds = math.inf if m == 1.0 else math.log(m / (1.0 - m))
    if activation == "sigmoid":
        _sigmoid_only(where)
        xp, backend, s, t = _binary_inputs(logits, labels)
        minus_log_p, minus_log_q = _ops.softplus_pair(xp, backend, s)
        keep = 1.0 - _step(xp, t - m) * _step(xp, s - log_odds) - _step(xp, (1.0 - m) - t) * _step(xp, -log_odds - s)
        return keep * _expect(xp, t, minus_log_p, minus_log_q)
    prepared = _softmax.prepare(logits, labels, axis=axis, where=where, probabilities=False)
    xp, sm = prepared.xp, prepared.softmax()
    log_p = sm.log_p_at(prepared.targets.ids, precise=True)
    return sm.finish((1.0 - _step(xp, log_p - math.log(m))) * -log_p, prepared.targets)


def softened_truncation_loss(logits, labels, *, k=1.0):
    r"""The softened truncated cross-entropy of kexue 4733 (the step ``θ(x)`` replaced by ``σ(Kx)``).

    .. math::

        L = -t\,\sigma(-K s)\log\sigma(s) - (1 - t)\,\sigma(K s)\log\sigma(-s)

    With ``K = 1`` it equals :func:`focal_loss` with ``γ = 1`` and no ``α``; ``K → ∞`` approaches the
    hard truncation at ``m = 1/2``. Elementwise, binary labels.

    >>> import numpy as np, polyloss
    >>> np.round(polyloss.softened_truncation_loss(np.array([0.0]), np.array([1.0])), 4)  # ½ log 2
    array([0.3466])
    """
    k = _checks.hyperparameter(k, "k", low=0.0)
    xp, backend, s, t = _binary_inputs(logits, labels)
    minus_log_p, minus_log_q = _ops.softplus_pair(xp, backend, s)
    return _expect(xp, t, _ops.sigmoid(xp, -k * s) * minus_log_p, _ops.sigmoid(xp, k * s) * minus_log_q)


# --------------------------------------------------------------------------------------------
# B5: logit adjustment
# --------------------------------------------------------------------------------------------
def _log_prior(xp, backend, prior, logits, s, num_classes, tau: float, name_c: str):
    """``τ log π`` as a ``[C]`` array of ``s``' framework, dtype and device, checked."""
    p = backend.asarray(prior, like=logits, dtype=s.dtype, name="prior")
    if not xp.isdtype(p.dtype, "real floating"):
        p = xp.astype(p, s.dtype)
    if p.ndim != 1 or not _checks.same_dims(p.shape, (num_classes,)):
        raise ValueError(
            f"prior has shape {tuple(p.shape)} but the logits have {num_classes} classes "
            f"({name_c}); prior must have shape ({num_classes},)"
        )
    if _checks.values_checked(backend, s, p):
        bad = ~((p > 0.0) & xp.isfinite(p))
        _checks.fail_if_any(
            xp,
            bad,
            lambda: (
                "prior must be positive and finite for every class (a class frequency, not a log); "
                f"found {float(xp.min(xp.where(bad, p, math.inf)))} at class {int(xp.argmax(xp.astype(bad, xp.int32)))}"
            ),
        )
    return tau * xp.log(p)


def logit_adjusted_crossentropy(
    logits, labels, prior, *, tau=1.0, axis=-1, label_smoothing=0.0, where=None, ignore_index=None
):
    r"""Logit-adjusted softmax cross-entropy (Menon et al. 2020; kexue 7615).

    .. math::

        L = \mathrm{CE}\bigl(s + \tau \log \pi,\ y\bigr)

    ``π`` the class prior (training frequencies). Training with it gives a model whose **raw** logits
    already make balanced decisions: predict ``argmax s`` and never subtract the prior again
    (:func:`adjust_logits` is the post-hoc rule for a model trained with the plain cross-entropy).
    The scale of ``π`` does not matter (counts work as well as frequencies).

    Args:
      prior: ``[C]`` positive class frequencies or counts: a list, a NumPy array or an array of the
        logits' framework (converted to its dtype and device).
      tau: the temperature ``τ`` (1 in the paper).
      others: as in :func:`softmax_crossentropy`.

    >>> import numpy as np, polyloss
    >>> logits = np.array([[0.0, 0.0]])
    >>> np.round(polyloss.logit_adjusted_crossentropy(logits, np.array([0]), [0.9, 0.1]), 4)  # -log 0.9
    array([0.1054])
    """
    eps = _softmax.label_smoothing(label_smoothing)
    tau = _checks.hyperparameter(tau, "tau")
    prepared = _softmax.prepare(logits, labels, axis=axis, where=where, ignore_index=ignore_index, prior=prior)
    scores = prepared.scores
    shift = _log_prior(
        scores.xp, scores.backend, prior, scores.native, scores.values, scores.values.shape[-1], tau, f"axis {axis}"
    )
    sm = _softmax.Softmax(scores.xp, scores.backend, scores.values + shift)
    return sm.finish(_softmax.crossentropy(sm, prepared.targets, eps), prepared.targets)


def adjust_logits(logits, prior, *, tau=1.0, axis=-1):
    r"""Post-hoc logit adjustment: ``s - τ log π`` (Menon et al. 2020; kexue 7615).

    For a model trained with the plain cross-entropy on imbalanced data, ``argmax(s - τ log π)`` is
    the balanced decision. Do not apply it to a model trained with
    :func:`logit_adjusted_crossentropy`, which has the prior built in already.

    Returns an array of the logits' shape, in the compute dtype.

    >>> import numpy as np, polyloss
    >>> np.round(polyloss.adjust_logits(np.array([[1.0, 0.0]]), [0.5, 0.5]), 4)  # + log 2
    array([[1.6931, 0.6931]])
    """
    tau = _checks.hyperparameter(tau, "tau")
    xp, backend = namespace_of(logits=logits, prior=prior)
    logits, s = _checks.prepare_floating(xp, backend, logits)
    ax = _checks.single_axis(axis, logits.ndim)
    log_prior = _log_prior(xp, backend, prior, logits, s, logits.shape[ax], tau, f"axis {axis}")
    return s - xp.reshape(log_prior, (-1,) + (1,) * (logits.ndim - ax - 1))  # broadcast along axis


# --------------------------------------------------------------------------------------------
# B6: smoothed-F1 weighting
# --------------------------------------------------------------------------------------------
def smoothed_f1_weighted_crossentropy(logits, labels, *, f1=None):
    r"""Binary cross-entropy reweighted by the batch's smoothed F1 (kexue 7708).

    .. math::

        F = \frac{2 \sum t\,p}{\sum (t + p)},\qquad
        L = -t\,(1 - F/2)\log p - (1 - t)\,(F/2)\log(1 - p),\qquad p = \sigma(s)

    ``F`` is the smoothed F1 over **all** entries of the batch, held constant for the gradient
    (stop-gradient): the post's point is that the "F1 loss" ``1 - F`` acts like a cross-entropy whose
    positives and negatives are reweighted by the current F1. ``F = 0`` when ``Σ(t + p) = 0``.

    Args:
      f1: optional ``F`` in [0, 1] to use instead of the batch's (e.g. a running average over batches).

    Returns:
      The loss per entry, compute dtype.

    >>> import numpy as np, polyloss
    >>> s, t = np.array([0.0, 0.0]), np.array([1.0, 0.0])        # p = ½, ½: F = 2·½ / 2 = ½
    >>> np.round(polyloss.smoothed_f1_weighted_crossentropy(s, t), 4)
    array([0.5199, 0.1733])
    """
    xp, backend, s, t = _binary_inputs(logits, labels)
    if f1 is None:
        p = _ops.sigmoid(xp, s)
        den = xp.sum(t + p)
        f = backend.stop_gradient(xp.where(den > 0.0, 2.0 * xp.sum(t * p) / xp.where(den > 0.0, den, 1.0), 0.0))
    else:
        f = _checks.hyperparameter(f1, "f1", low=0.0, high=1.0)
    minus_log_p, minus_log_q = _ops.softplus_pair(xp, backend, s)
    return _expect(xp, t, (1.0 - f / 2.0) * minus_log_p, (f / 2.0) * minus_log_q)

r"""Regularisers: flooding, R-Drop, and the SquarePlus activation (formulas and sources in
``docs/classification.md``)."""

from __future__ import annotations

import math

from polyloss import _checks, _inputs, _ops, _softmax
from polyloss._kernels import Kernel
from polyloss._namespace import namespace_of
from polyloss._reduce import reduce

__all__ = ["flooding", "rdrop_divergence", "rdrop_loss", "squareplus"]


# --------------------------------------------------------------------------------------------
# B8 flooding
# --------------------------------------------------------------------------------------------
def flooding(loss, level, *, where=None):
    r"""Flooding (Ishida et al. 2020; kexue 7643): ``|L̄ - b| + b`` on the mean loss ``L̄``.

    .. math::

        \tilde L = |\bar L - b| + b

    Above the flood level ``b`` this is ``L̄`` (gradient descent); below it, ``2b - L̄`` (gradient
    ascent), so the training loss hovers around ``b``. Su's analysis: alternating ascent and descent
    steps amount to descent on ``‖∇L̄‖²``, a preference for flat minima.

    It acts on the **mean** loss of the batch, not per example (flooding each example would be a
    different method): pass the per-example losses (they are averaged first, over the entries where
    ``where`` holds, as :func:`polyloss.reduce`) or their mean. At ``L̄ = b`` exactly the gradient is
    that of descent.

    Args:
      loss: real floating array of losses (any shape, 0-d included).
      level: the flood level ``b >= 0``.
      where: optional boolean mask of the entries to average.

    Returns:
      A 0-d array in the compute dtype.

    >>> import numpy as np, polyloss
    >>> float(polyloss.flooding(np.array([0.1, 0.3]), 0.5))   # mean 0.2 is below 0.5: 2·0.5 - 0.2
    0.8
    """
    b = _checks.hyperparameter(level, "level", low=0.0)
    xp, backend = namespace_of(loss=loss, where=where)
    loss, _ = _checks.prepare_floating(xp, backend, loss, "loss")
    mean = reduce(loss, "mean", where=_checks.prepare_where(xp, backend, where, loss, "loss"))
    return xp.where(mean >= b, mean, 2.0 * b - mean)


# --------------------------------------------------------------------------------------------
# B9 R-Drop
# --------------------------------------------------------------------------------------------
def _divergence(xp, sm_a, sm_b):
    """``½ Σ_k (p_k - q_k)(log p_k - log q_k)`` over the classes valid in either input, 0 for a row
    with none.

    Each term is ``e^{hi} (1 - e^{-Δ}) Δ`` with ``hi`` the larger log-probability and ``Δ = |log p_k -
    log q_k|``: no cancellation of ``p - q``, finite when one of them underflows. For two nearby passes
    (every ``|s_a - s_b| <= 1``, R-Drop's regime) ``Δ`` is ``(s_a - s_b) - (lse_a - lse_b)`` with
    ``lse_a - lse_b = log1p(Σ q_k expm1(s_a,k - s_b,k))``: the divergence is second order in the
    difference, and this keeps its relative precision where subtracting two rounded log-softmaxes
    loses ``eps·|s|/|s_a - s_b|``. A class removed from both inputs is dropped (double where); one
    removed from one input only gives ``+inf``. At ties the roles of ``hi``/``lo`` follow a fixed
    order, so second derivatives (VAT) are those of the formula."""
    keep = sm_a.valid | sm_b.valid
    log_p, log_q = xp.where(keep, sm_a.log_p(safe=False), 0.0), xp.where(keep, sm_b.log_p(safe=False), 0.0)
    d = xp.where(keep, sm_a.s, 0.0) - xp.where(keep, sm_b.s, 0.0)
    near = xp.all(xp.abs(d) <= 1.0, axis=-1, keepdims=True)
    d_near = xp.where(near, d, 0.0)
    lse_gap = xp.log1p(xp.sum(xp.exp(log_q) * xp.expm1(d_near), axis=-1, keepdims=True))
    delta = xp.where(near, d_near - lse_gap, log_p - log_q)
    first = delta >= 0.0
    hi, gap = xp.where(first, log_p, log_q), xp.where(first, delta, -delta)
    term = xp.exp(hi) * -xp.expm1(-gap) * gap
    value = 0.5 * xp.sum(xp.where(keep, term, 0.0), axis=-1)
    return xp.where(sm_a.nonempty[..., 0] | sm_b.nonempty[..., 0], value, 0.0)


def rdrop_divergence(logits_a, logits_b, *, axis=-1, where=None):
    r"""R-Drop's symmetric KL between the softmax outputs of two dropout passes (kexue 8496).

    .. math::

        D = \tfrac12\bigl[\mathrm{KL}(p_a \| p_b) + \mathrm{KL}(p_b \| p_a)\bigr]
          = \tfrac12 \sum_k (p_{a,k} - p_{b,k})(\log p_{a,k} - \log p_{b,k})

    from log-softmax outputs, without clipping; symmetric, ``>= 0``, and 0 iff the softmaxes agree.
    For multi-label or GlobalPointer heads use :func:`multilabel_divergence` instead.

    Sources: Liang et al., "R-Drop: Regularized Dropout for Neural Networks", arXiv:2106.14448;
    kexue.fm/archives/8496.

    Args:
      logits_a, logits_b: real floating arrays of the same shape, classes on ``axis``.
      where: optional boolean mask of valid classes (broadcastable); ``-inf`` in both inputs also
        removes a class. A row without valid classes gives 0.

    Returns:
      The divergence per example (``axis`` removed), compute dtype.

    >>> import numpy as np, polyloss
    >>> a, b = np.array([[0.0, 0.0]]), np.array([[np.log(3.0), 0.0]])  # p = (½, ½) and (¾, ¼)
    >>> np.round(polyloss.rdrop_divergence(a, b), 6)   # ½ [(-¼) log(2/3) + ¼ log 2] = ⅛ log 3
    array([0.137327])
    """
    scores = _inputs.scores(logits_a, name="logits_a", axis=axis, where=where, single_axis=True, logits_b=logits_b)
    s, t = _inputs.paired(scores, logits_b, "logits_b", where=where)
    xp, backend = scores.xp, scores.backend
    return _divergence(xp, _softmax.Softmax(xp, backend, s), _softmax.Softmax(xp, backend, t))


def rdrop_loss(logits_a, logits_b, labels, *, alpha=4.0, axis=-1, label_smoothing=0.0, where=None,
               ignore_index=None):
    r"""The R-Drop training loss per example: both passes' cross-entropies plus ``α`` times their divergence.

    .. math::

        L = \mathrm{CE}(s_a, y) + \mathrm{CE}(s_b, y)
          + \alpha \cdot \tfrac12\bigl[\mathrm{KL}(p_a \| p_b) + \mathrm{KL}(p_b \| p_a)\bigr]

    This is the paper's per-example objective (its eq. 3; ``α`` is tuned per task there, 4 in Su's
    post). Scales found elsewhere, from the same two forward passes:

    - Su's Keras code (kexue 8496) averages over the two copies in the batch and divides the
      divergence by 4: its loss is ``L / 2`` (with the same ``α``).
    - The official README applies the cross-entropy to one pass only:
      ``softmax_crossentropy(s_a, y) + α · rdrop_divergence(s_a, s_b)``.

    Args:
      labels: class ids or probabilities, as in :func:`softmax_crossentropy` (rows equal to
        ``ignore_index`` give 0, divergence included).
      alpha: the weight ``α`` of the divergence.
      others: as in :func:`softmax_crossentropy` and :func:`rdrop_divergence`.

    >>> import numpy as np, polyloss
    >>> a, b = np.array([[0.0, 0.0]]), np.array([[0.0, 0.0]])
    >>> np.round(polyloss.rdrop_loss(a, b, np.array([0]), alpha=4.0), 4)   # 2 log 2 + 0
    array([1.3863])
    """
    eps = _softmax.label_smoothing(label_smoothing)
    alpha = _checks.hyperparameter(alpha, "alpha", low=0.0)
    prepared = _softmax.prepare(logits_a, labels, axis=axis, where=where, ignore_index=ignore_index,
                                logits_b=logits_b)
    s_a, s_b = _inputs.paired(prepared.scores, logits_b, "logits_b", where=where)
    xp, backend, targets = prepared.xp, prepared.backend, prepared.targets
    if (targets.ids is not None and _softmax.fast_crossentropy_applies(xp, backend, s_a, where)
            and _softmax.fast_crossentropy_applies(xp, backend, s_b, where)):
        value = _RDROP(backend, s_a, s_b, targets.ids, label_smoothing=eps, alpha=alpha)
        return value if targets.keep is None else xp.where(targets.keep, value, 0.0)
    sm_a, sm_b = _softmax.Softmax(xp, backend, s_a), _softmax.Softmax(xp, backend, s_b)
    value = (_softmax.crossentropy(sm_a, targets, eps) + _softmax.crossentropy(sm_b, targets, eps)
             + alpha * _divergence(xp, sm_a, sm_b))
    return sm_a.finish(value, targets)


# --------------------------------------------------------------------------------------------
# The R-Drop kernel: eager on the CPU, class ids, every class valid, logits bounded
# --------------------------------------------------------------------------------------------
# ``L = CE_ε(s_a, y) + CE_ε(s_b, y) + α D`` with ``D = ½ Σ_k (p_k - q_k) Δ_k``, ``Δ = log p - log q``, where
# :func:`polyloss._softmax.fast_crossentropy_applies` holds for both passes (eager on the CPU, no ``where``,
# finite logits whose row sums cannot overflow). The gradients have closed forms:
#
#     ∂D/∂s_a = ½ [p (Δ - Σ_j p_j Δ_j) + p - q],     ∂D/∂s_b = ½ [q (Σ_j q_j Δ_j - Δ) + q - p]
#
# (``KL(p‖q)`` has ``p (Δ - KL(p‖q))`` in ``s_a`` and ``q - p`` in ``s_b``, and symmetrically), and
# ``∂CE_ε/∂s = p - (1 - ε) onehot(y) - ε/C``. Eager PyTorch would otherwise record and replay about thirty
# passes of :func:`_divergence` and two :class:`polyloss._softmax.Softmax`; compiled code fuses those and keeps
# the general form. The value keeps the divergence's cancellation-free terms for nearby passes (those of
# :func:`_divergence`, every class valid); each term of the gradient is accurate to the rounding of ``p``
# and ``q``, as the cross-entropy's own gradient is. Residuals: the two log-softmaxes (``[..., C]`` each,
# as the log-softmaxes a port keeps for its cross-entropies and KL terms).


def _rdrop_rows(xp, backend, s_a, s_b, ids, label_smoothing, alpha):
    log_p, _ = _ops.log_softmax_rows(xp, backend, s_a)
    log_q, q = _ops.log_softmax_rows(xp, backend, s_b)
    value = (_softmax.smoothed_nll_rows(xp, log_p, ids, label_smoothing)
             + _softmax.smoothed_nll_rows(xp, log_q, ids, label_smoothing))
    if alpha:
        value = value + alpha * _symmetric_kl_rows(xp, log_p, log_q, q, s_a - s_b)
    return value, log_p, log_q


def _symmetric_kl_rows(xp, log_p, log_q, q, d):
    """``½ Σ_k (p_k - q_k)(log p_k - log q_k)`` per row, every class valid, ``d = s_a - s_b``: the terms
    ``e^{hi} (1 - e^{-|Δ|}) |Δ|`` of :func:`_divergence`, with ``Δ = d - log1p(Σ q expm1(d))`` on the rows
    whose every ``|d| <= 1`` (nearby passes) and ``log p - log q`` on the others; the rows of each kind
    are found first (eager), so that a block of one kind computes one formula."""
    near = xp.all(xp.abs(d) <= 1.0, axis=-1, keepdims=True)
    every, some = bool(xp.all(near)), bool(xp.any(near))
    if some:
        d_near = d if every else xp.where(near, d, 0.0)
        delta = d_near - xp.log1p(xp.sum(q * xp.expm1(d_near), axis=-1, keepdims=True))
        if not every:
            delta = xp.where(near, delta, log_p - log_q)
    else:
        delta = log_p - log_q
    gap = xp.abs(delta)
    # the larger log-probability: where Δ and log p - log q differ in sign both are within rounding of each other
    hi = xp.maximum(log_p, log_q)
    return 0.5 * xp.sum(xp.exp(hi) * -xp.expm1(-gap) * gap, axis=-1)


def _rdrop_gradient_rows(xp, backend, log_p, log_q, ids, g, needs, label_smoothing, alpha):
    p, q = xp.exp(log_p), xp.exp(log_q)
    delta = log_p - log_q
    half, g = 0.5 * alpha, g[..., None]
    out = []
    for first, (own, other, sign) in zip(needs[:2], ((p, q, 1.0), (q, p, -1.0))):
        if not first:
            continue
        grad = _softmax.smoothed_target_gradient_rows(xp, backend, ids, own, label_smoothing)
        if alpha:  # ½ [own (±Δ - Σ own·(±Δ)) + own - other]
            signed = delta if sign > 0 else -delta
            grad = grad + half * (own * (signed - xp.sum(own * signed, axis=-1, keepdims=True)) + (own - other))
        out.append(grad * g)
    return tuple(out)


def _rdrop_fwd(xp, backend, s_a, s_b, ids, *, label_smoothing, alpha):
    value, log_p, log_q = _ops.by_rows(
        xp, backend, lambda a, b, y: _rdrop_rows(xp, backend, a, b, y, label_smoothing, alpha), s_a, s_b, ids)
    return value, (log_p, log_q)


def _rdrop_bwd(xp, backend, arrays, residuals, g, needs, *, label_smoothing, alpha):
    log_p, log_q = residuals
    grads = iter(_ops.by_rows(
        xp, backend, lambda a, b, y, c: _rdrop_gradient_rows(xp, backend, a, b, y, c, needs, label_smoothing, alpha),
        log_p, log_q, arrays[2], g))
    return tuple(next(grads) if n else None for n in needs[:2]) + (None,)


_RDROP = Kernel("rdrop_loss", _rdrop_fwd, _rdrop_bwd)


# --------------------------------------------------------------------------------------------
# B10 SquarePlus
# --------------------------------------------------------------------------------------------
def squareplus(x, *, b=4.0):
    r"""SquarePlus (kexue 8833; Barron 2021): a smooth ReLU made of a square root.

    .. math::

        \mathrm{squareplus}(x) = \frac{x + \sqrt{x^2 + b}}{2}

    For ``x < 0`` the equal form ``b / (2(\sqrt{x^2 + b} - x))`` avoids the cancellation to 0, and the
    root never squares an ``x`` beyond a quarter of the square root of the dtype's largest value, so
    nothing overflows: finite and accurate up to the largest
    float (``squareplus(-1e30)`` is ``1e-30`` in float32, not 0). The derivative is the closed form
    ``squareplus(x) / sqrt(x² + b)`` (a custom gradient; second derivatives work too).

    ``b = 4`` is the default of ``jax.nn.squareplus`` and Keras; ``b >= 4 ln² 2 ≈ 1.9218`` makes it
    ``>= softplus`` everywhere; ``b ≈ 1.52382`` is the closest uniform approximation to softplus
    (maximum error 0.0759).

    Args:
      x: real floating array.
      b: the curvature ``b > 0``.

    Returns:
      An array of ``x``'s shape in the compute dtype (float32 for half precision).

    >>> import numpy as np, polyloss
    >>> polyloss.squareplus(np.array([-3.0, 0.0, 3.0]))   # (x + sqrt(x² + 4)) / 2
    array([0.30277564, 1.        , 3.30277564])
    """
    b = _checks.hyperparameter(b, "b", low=0.0, low_open=True)
    x = _inputs.scores(x, name="x", axis=None)
    return _SQUAREPLUS(x.backend, x.values, b=b)


def _squareplus_fwd(xp, backend, x, *, b):
    """The value, and the closed-form derivative ``squareplus(x) / r`` (``= (1 + x/r) / 2``,
    ``r = sqrt(x² + b)``) kept as the one residual: the backward pass is one multiplication, where
    autograd through the branches would cost several passes (and ``where``s)."""
    # r without overflowing x²: beyond |x| = sqrt(max)/4 (4.6e18 in float32), sqrt(x² + b) is |x|
    # to within b/(2x²) relative, far below the dtype's resolution
    limit = math.sqrt(float(xp.finfo(x.dtype).max)) / 4.0
    clipped = xp.clip(x, min=-limit, max=limit)
    r = xp.maximum(xp.sqrt(clipped * clipped + b), xp.abs(x))
    x_neg = xp.clip(x, max=0.0)  # the x < 0 branch sees x <= 0 only: its denominator stays >= sqrt(b)/2
    # halves first, so that neither x + r nor r - x can overflow
    value = xp.where(x >= 0.0, x * 0.5 + r * 0.5, (b * 0.25) / (r * 0.5 - x_neg * 0.5))
    return value, (value / r,)


def _squareplus_bwd(xp, backend, arrays, residuals, g, needs, *, b):
    (slope,) = residuals
    return (g * slope,)


_SQUAREPLUS = Kernel("squareplus", _squareplus_fwd, _squareplus_bwd)

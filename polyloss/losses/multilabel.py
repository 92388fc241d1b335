"""The multi-label family: ZLPR "softmax + cross-entropy" for multi-label classification with hard,
soft and sparse labels, GlobalPointer, and the multi-label divergence (formulas, sources and
conventions in ``docs/multilabel.md``).

Sources: kexue.fm/archives/7359 (hard labels), 9064 (soft labels), 8373 and 8877
(GlobalPointer), 9039 (divergence); Su et al., "ZLPR: A Novel Loss for Multi-label
Classification", arXiv:2208.02955.

All three cross-entropies share one kernel. With ``N`` the valid negatives and ``P`` the valid
positives of a row (hard labels), or the weighted sets of soft labels,

    L = log(1 + Σ_{i∈N} (1 - t_i) e^{s_i}) + log(1 + Σ_{j∈P} t_j e^{-s_j})
      = softplus(lse_N) + softplus(lse_P)

and its gradient is closed-form: a softmax over the negatives (with the implicit zero class)
minus one over the positives. The kernel (``_ZLPR``, a :class:`polyloss._kernels.Kernel`) keeps four
numbers per row from the forward pass, and the backward pass rebuilds the two softmaxes from the
inputs with one exponential per set, so no ``[..., C]`` residual is kept beyond the inputs. On an
eager CPU backend both passes run over blocks of rows (``_ops.by_rows``).
"""

from __future__ import annotations

import math

from polyloss import _checks, _inputs, _ops
from polyloss._kernels import Kernel
from polyloss._namespace import namespace_of

__all__ = [
    "multilabel_crossentropy",
    "sparse_multilabel_crossentropy",
    "global_pointer_crossentropy",
    "sparse_global_pointer_crossentropy",
    "global_pointer_mask",
    "multilabel_divergence",
]

_NEG_INF = -math.inf


# --------------------------------------------------------------------------------------------
# The shared kernel
# --------------------------------------------------------------------------------------------


def _hard_sets(xp, s, y):
    """Hard labels (``y`` boolean): ``v_N = s`` on the negatives and ``v_P = -s`` on the positives,
    ``-inf`` elsewhere. ``-inf`` logits (padding) are never positives."""
    pos = y & (s != _NEG_INF)
    return xp.where(pos, _NEG_INF, s), xp.where(pos, -s, _NEG_INF)


def _soft_sets(xp, s, t):
    """Soft labels: every valid entry with ``t < 1`` is a negative with log-weight ``log(1 - t)``,
    every one with ``t > 0`` a positive with log-weight ``log t``, folded into the value
    (``v_N = s + log(1 - t)``, ``v_P = log t - s``). A weight of 0 removes the entry through the
    mask, never through a clipped logarithm. Labels under padding are replaced by 0 (padding is
    ``-inf`` in ``s``, absent from both sets); a NaN label stays in both sets and makes the loss NaN.

    Folding rounds ``log w`` to the resolution of the logit: the shares carry a relative error of
    about ``|s|·eps`` (6e-4 at ``|s| = 1e4`` in float32), the size of the change that rounding ``s``
    itself to the dtype makes in them. Keeping ``log w`` apart (``e^{(v - c) + log w}``), or
    multiplying by ``w`` after the exponential, is exact but XLA then materialises the pieces
    (measured in ``benchmarks/README.md``)."""
    t = xp.where(s != _NEG_INF, t, 0.0)
    full, empty = t >= 1.0, t <= 0.0
    v_neg = xp.where(full, _NEG_INF, s + xp.log1p(-xp.where(full, 0.0, t)))
    v_pos = xp.where(empty, _NEG_INF, xp.log(xp.where(empty, 1.0, t)) - s)
    return v_neg, v_pos


def _set_shares(xp, v, c, total=None):
    """``e^{v - c}`` (0 where ``v`` is ``-inf``), divided by ``total`` when given: then the set's softmax
    shares with the implicit zero class, ``w_i e^{±s_i} / (1 + Σ w e^{±s})``."""
    share = xp.exp(v - c)
    return share if total is None else share / total


# The kernel: ``L = log(1 + Σ_N w e^{s}) + log(1 + Σ_P w e^{-s})`` from the sets' values ``v`` (``±s`` plus
# the log-weight, ``-inf`` outside the set).
#
# Forward: per row and set, the shift ``c = max(0, max v)`` (stop-gradient) and the shifted sum
# ``S = Σ e^{v - c}``, so that ``1 + Σ = e^{c}(e^{-c} + S)``: four numbers per row are the only residuals.
# Backward: ``∂L/∂s = shares_N - shares_P``, rebuilt from the inputs with one exponential per set. A share
# is computed exactly as the forward pass computed its term, ``e^{v - c} / (e^{-c} + S)``, so value and
# gradient agree at any magnitude (written as ``e^{s - log(1 + Σ)}`` it would lose the weight of the
# largest entry at logits of ~1e37).
#
# Soft labels: the second derivatives with respect to labels that are exactly 0 or 1 are not those of the
# formula (such an entry leaves its set through the mask, which the differentiated backward pass sees as
# constant); first derivatives are exact everywhere.


def _zlpr_set_sums(xp, backend, s, labels, hard):
    """``(c_N, S_N, c_P, S_P)`` per row (see above)."""
    if hard and _ops.cheap_branch(backend, s):
        sums = _hard_unshifted_sums(xp, s, labels)
        if sums is not None:
            zero = xp.zeros_like(sums[0])
            return zero, sums[0], zero, sums[1]
    v_neg, v_pos = (_hard_sets if hard else _soft_sets)(xp, s, labels)
    c_neg, c_pos = _ops.appended_zero_shift(xp, backend, v_neg), _ops.appended_zero_shift(xp, backend, v_pos)
    sum_neg = xp.sum(_set_shares(xp, v_neg, c_neg), axis=-1)
    sum_pos = xp.sum(_set_shares(xp, v_pos, c_pos), axis=-1)
    return c_neg[..., 0], sum_neg, c_pos[..., 0], sum_pos


def _signed(xp, s, y):
    """``(u, y_f)``: each entry's value in its own set, ``u = s`` on the negatives and ``-s`` on the positives,
    and the labels as 0/1 in ``s``' dtype. Arithmetic with exact 0/1 factors instead of ``where``: eager
    PyTorch's CPU ``where`` costs 15 multiplications."""
    y_f = xp.astype(y, s.dtype)
    return s * (1.0 - 2.0 * y_f), y_f


def _unshifted(xp, u, limit):
    """``e^{u}``, or None where a sum of such terms could overflow (``max u`` above ``limit``, or NaN);
    an empty ``u`` (no rows or no classes) has nothing to overflow."""
    if math.prod(u.shape) == 0:
        return xp.exp(u)
    return xp.exp(u) if bool(xp.max(u) <= limit) else None


def _hard_unshifted_sums(xp, s, y):
    """``(S_N, S_P) = (Σ_{¬y} e^{s}, Σ_y e^{-s})`` with the shifts ``c = 0`` (one exponential per entry, no
    row maximum), or None where a sum could overflow: some ``±s`` of its set above
    :func:`polyloss._ops.exp_sum_limit` (a ``+inf`` logit, NaN, a positive under ``-inf`` padding included).
    Exact where it applies: a term underflows only where the shifted sum's term would too, or below the
    resolution of ``1 + Σ``."""
    u, y_f = _signed(xp, s, y)
    e = _unshifted(xp, u, _ops.exp_sum_limit(xp, s.dtype, s.shape[-1]))
    if e is None:
        return None
    return xp.sum(e * (1.0 - y_f), axis=-1), xp.sum(e * y_f, axis=-1)


def _zlpr_gradients(xp, backend, s, labels, c_neg, sum_neg, c_pos, sum_pos, g, needs, hard):
    """``g·∂L/∂s`` and ``g·∂L/∂t`` (where ``needs`` asks) of a block of rows."""
    t_neg, t_pos = xp.exp(-c_neg) + sum_neg, xp.exp(-c_pos) + sum_pos  # 1 + Σ = e^{c} t
    if hard and _ops.cheap_branch(backend, s) and _ops.all_zero(xp, c_neg, c_pos):
        # every shift is 0: an entry's share is e^{u} over its own set's total (u = ±s), one exponential per
        # entry; the forward pass's bound on u keeps it finite, and a positive under padding fails it
        u, y_f = _signed(xp, s, labels)
        e = _unshifted(xp, u, _ops.exp_sum_limit(xp, s.dtype, s.shape[-1]))
        if e is not None:
            scale_neg = (g / t_neg)[..., None]
            return (e * (scale_neg - (g / t_pos + g / t_neg)[..., None] * y_f),)
    v_neg, v_pos = (_hard_sets if hard else _soft_sets)(xp, s, labels)
    c_neg, t_neg, c_pos, t_pos, g = (a[..., None] for a in (c_neg, t_neg, c_pos, t_pos, g))
    out = []
    if needs[0]:
        out.append(g * (_set_shares(xp, v_neg, c_neg, t_neg) - _set_shares(xp, v_pos, c_pos, t_pos)))
    if needs[1]:
        # ∂L/∂t_i = e^{-s_i}/(1 + Σ_P) - e^{s_i}/(1 + Σ_N) on every valid entry, labels 0 and 1 included
        # (outside its set the term may legitimately overflow: the derivative is that large)
        valid = s != _NEG_INF
        up = _set_shares(xp, xp.where(valid, s, _NEG_INF), c_neg, t_neg)
        down = _set_shares(xp, xp.where(valid, -s, _NEG_INF), c_pos, t_pos)
        out.append(g * (down - up))
    return tuple(out)


def _zlpr_fwd(xp, backend, s, labels, *, hard):
    sums = _ops.by_rows(xp, backend, lambda *a: _zlpr_set_sums(xp, backend, *a, hard), s, labels)
    c_neg, sum_neg, c_pos, sum_pos = sums
    return _ops.log1p_shifted(xp, c_neg, sum_neg) + _ops.log1p_shifted(xp, c_pos, sum_pos), sums


def _zlpr_bwd(xp, backend, arrays, residuals, g, needs, *, hard):
    needs = (needs[0], needs[1] and not hard)  # hard labels (booleans) have no cotangent
    grads = iter(_ops.by_rows(xp, backend, lambda *a: _zlpr_gradients(xp, backend, *a, needs, hard),
                              *arrays, *residuals, g))
    return tuple(next(grads) if n else None for n in needs)


_ZLPR = Kernel("zlpr", _zlpr_fwd, _zlpr_bwd)


def _multilabel(xp, backend, s, labels, hard: bool):
    """The loss of ``s [..., C]`` (compute dtype; masked entries already ``-inf``) and ``labels``
    (boolean for hard labels, floating for soft ones), through the kernel."""
    if s.shape[-1] == 0:
        return xp.sum(s, axis=-1)  # no class: both sums are empty, the loss is 0 (and differentiable)
    return _ZLPR(backend, s, labels, hard=hard)


def _as_kernel_labels(xp, backend, labels, s):
    """``(labels, hard)`` for the kernel: hard labels as a boolean array, soft labels in the compute
    dtype. ``s`` is the masked logits (classes last).

    In eager mode the values are checked, but only where ``s`` is not ``-inf``, so padding may carry
    any label (-100, say); the common case, labels that are all 0 or 1, is recognised first with one
    comparison. Float labels that are all 0 or 1 and need no gradient then take the hard-label
    kernel: the same values, without the weights."""
    if labels.dtype == xp.bool:
        return labels, True
    integral = xp.isdtype(labels.dtype, "integral")
    if not integral and not xp.isdtype(labels.dtype, "real floating"):
        raise TypeError(f"labels must be boolean, integer or real floating, got dtype {labels.dtype}")
    t = labels if integral or labels.dtype == s.dtype else xp.astype(labels, s.dtype)
    if _checks.values_checked(backend, s, labels):
        ones = t == 1
        binary = ones | (t == 0)
        if bool(xp.all(binary)):
            if integral or not backend.may_need_grad(labels):
                return ones, True
        else:
            _checks.check_label_values(xp, labels if integral else t, s != _NEG_INF)
    return (t != 0, True) if integral else (t, False)


# --------------------------------------------------------------------------------------------
# A1: dense labels
# --------------------------------------------------------------------------------------------
def multilabel_crossentropy(logits, labels, *, axis=-1, where=None):
    r"""Multi-label "softmax + cross-entropy" (ZLPR), for hard and soft labels.

    .. math::

        L = \log\Bigl(1 + \sum_i (1 - t_i)\, e^{s_i}\Bigr) + \log\Bigl(1 + \sum_i t_i\, e^{-s_i}\Bigr)

    With hard labels ``y ∈ {0, 1}`` this is ``log(1 + Σ_{y=0} e^{s}) + log(1 + Σ_{y=1} e^{-s})``:
    every positive score is pushed above 0 and every negative below 0, so the decision threshold is
    0 and the calibrated probability of class ``i`` is ``σ(2 s_i)`` (the soft loss is minimised
    exactly at ``t_i = σ(2 s_i)``). Scores are raw reals: apply no sigmoid or softmax first.

    Sources: kexue.fm/archives/7359 (hard), kexue.fm/archives/9064 (soft), arXiv:2208.02955.

    Args:
      logits: real floating array ``[..., C, ...]``, classes on ``axis``. ``-inf`` entries are padding
        (the GlobalPointer convention) and drop out of both sums.
      labels: same shape. Boolean or integer 0/1 (hard labels), or floating in ``[0, 1]`` (soft
        labels; 0 and 1 give exactly the hard-label values). Soft labels receive a gradient.
      axis: the class axis, or a tuple of axes that together form the classes.
      where: optional boolean mask broadcastable to ``logits``; False entries drop out of both sums.
        A row with no valid entry has loss 0 and gradient 0.

    Returns:
      The loss per example: ``logits``' shape without the class axes, in the compute dtype
      (float64 for float64 input, float32 otherwise, half precision included).

    Examples:
      >>> import numpy as np, polyloss
      >>> logits = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, -2.0]])
      >>> labels = np.array([[1, 0, 1], [0, 1, 0]])
      >>> np.round(polyloss.multilabel_crossentropy(logits, labels), 4)
      array([0.8682, 0.188 ])

      Row 0 by hand: ``log(1 + e^{-1}) + log(1 + e^{-2} + e^{-0.5}) = 0.3133 + 0.5550``.
    """
    scores = _inputs.scores(logits, axis=axis, where=where, labels=labels)
    labels, hard = _as_kernel_labels(scores.xp, scores.backend, scores.secondary(labels, "labels"), scores.values)
    return _multilabel(scores.xp, scores.backend, scores.values, labels, hard)


# --------------------------------------------------------------------------------------------
# A2: sparse labels
# --------------------------------------------------------------------------------------------
def _sparse(xp, backend, s, indices, pad_index, what):
    """The sparse loss on ``s [..., C]`` and ``indices [..., K]`` (classes last, masked entries of
    ``s`` already ``-inf``).

    The listed classes become a boolean mask by a scatter, after the eager checks (in range, no
    repeats). Padding entries (== pad_index) are ignored; in compiled code, where values cannot
    be checked, out-of-range entries are ignored as well and a repeated class counts once."""
    num_classes = backend.shape(s)[-1]
    in_range = (indices >= 0) & (indices < num_classes)
    listed = in_range if pad_index is None else in_range & (indices != pad_index)
    if _checks.values_checked(backend, s, indices):
        allowed = in_range if pad_index is None else in_range | (indices == pad_index)
        _checks.fail_if_any(
            xp, ~allowed,
            lambda: (
                f"{what} must lie in [0, {num_classes})"
                + ("" if pad_index is None else f" or equal pad_index={pad_index}")
                + f"; found {_checks.describe(xp, indices, ~allowed)}"
            ),
        )
        if indices.shape[-1] > 1:
            ordered = xp.sort(xp.where(listed, indices, -1), axis=-1)
            repeated = (ordered[..., 1:] == ordered[..., :-1]) & (ordered[..., 1:] >= 0)
            _checks.fail_if_any(
                xp, repeated,
                lambda: (
                    f"{what} list a class twice in one row ({_checks.describe(xp, ordered[..., 1:], repeated)}); "
                    "each positive may appear once"
                ),
            )
    positives = backend.index_mask(indices, num_classes, listed)
    return _multilabel(xp, backend, s, positives, True)


def sparse_multilabel_crossentropy(logits, indices, *, axis=-1, pad_index=None, where=None):
    r"""Multi-label cross-entropy (ZLPR, hard labels) with the positives given as class ids.

    Equals :func:`multilabel_crossentropy` on the equivalent dense labels, with labels of size
    ``[..., K]`` instead of ``[..., C]`` (GlobalPointer with long sequences, extreme classification):

    .. math::

        L = \log\Bigl(1 + \sum_{k \notin P} e^{s_k}\Bigr) + \log\Bigl(1 + \sum_{j \in P} e^{-s_j}\Bigr)

    The negative term is a log-sum-exp over the classes not in ``P``: the listed positives are
    masked out before the sum (a scatter of ``K`` entries per row). The widely copied form
    ``lse_all + log(1 - e^{lse_P - lse_all})`` is exact in real arithmetic but loses every digit
    in float32 once a positive logit dominates (``e^{s_P}`` above ``2^24 (1 + Σ_N)``, e.g. a
    positive at +20 against 30000 negatives at -10): its subtraction then rounds to zero and the
    loss becomes ``-inf``/NaN, or biased when clipped. Masking first has no cancellation.

    Source: kexue.fm/archives/7359, bert4keras ``sparse_multilabel_categorical_crossentropy``.

    Args:
      logits: real floating ``[..., C, ...]``, classes on ``axis``; ``-inf`` entries are padding.
      indices: integer ``[..., K, ...]``: the positive class ids of each row, on ``axis``, with every
        other dimension equal to ``logits``'. Rows with fewer than K positives are padded with
        ``pad_index``.
      axis: the class axis of ``logits`` (and the K axis of ``indices``).
      pad_index: the value of padding entries (e.g. -1), or None when there is no padding. A
        class id used as ``pad_index`` (e.g. 0) cannot be listed as a positive but still counts as
        a negative; mask it with ``where`` to drop it entirely.
      where: optional boolean mask broadcastable to ``logits``.

    In eager mode, indices outside ``[0, C)`` that are not padding, and a class listed twice in a
    row, raise ``ValueError``. Under ``jax.jit`` / ``tf.function`` / ``torch.compile`` the values
    cannot be checked: out-of-range entries are ignored and a repeated class counts once.

    Returns:
      The loss per example, ``logits``' shape without ``axis``, in the compute dtype.

    Examples:
      >>> import numpy as np, polyloss
      >>> logits = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, -2.0]])
      >>> indices = np.array([[0, 2], [1, -1]])
      >>> np.round(polyloss.sparse_multilabel_crossentropy(logits, indices, pad_index=-1), 4)
      array([0.8682, 0.188 ])
    """
    if isinstance(axis, (tuple, list)):
        raise TypeError(f"axis must be a single int for sparse labels (the K axis of indices), got {axis!r}")
    scores = _inputs.scores(logits, axis=axis, where=where, single_axis=True, indices=indices)
    xp, backend, native = scores.xp, scores.backend, scores.native
    indices = _checks.as_index_array(xp, backend, indices, native, "indices")
    others = [i for i in range(native.ndim) if i not in scores.axes]
    if indices.ndim != native.ndim or not _checks.same_dims(
        [indices.shape[i] for i in others], [native.shape[i] for i in others]
    ):
        raise ValueError(
            f"indices has shape {tuple(indices.shape)} but logits has shape {tuple(native.shape)}; "
            f"they must be equal except on axis {axis} (K positives vs C classes)"
        )
    return _sparse(xp, backend, scores.values, scores.classes_last(indices), pad_index, "indices")


# --------------------------------------------------------------------------------------------
# A3: GlobalPointer
# --------------------------------------------------------------------------------------------
def _require_square_spans(logits):
    shape = tuple(logits.shape)
    if len(shape) < 2 or None not in shape[-2:] and shape[-1] != shape[-2]:
        raise ValueError(f"GlobalPointer logits must have shape [..., L, L] (start, end), got {shape}")


def global_pointer_crossentropy(logits, labels, *, where=None):
    r"""GlobalPointer loss: :func:`multilabel_crossentropy` over all spans of each (example, type).

    ``logits [..., L, L]`` score every span (start ``i``, end ``j``) of each entity type; padding
    rows/columns and the strict lower triangle (``i > j``) are ``-inf`` (or False in ``where``; see
    :func:`global_pointer_mask`). The ``L·L`` spans form the class axis:

    .. math::

        L_{b,h} = \log\Bigl(1 + \sum_{(i,j) \notin E_{b,h}} e^{s_{b,h,i,j}}\Bigr)
                + \log\Bigl(1 + \sum_{(i,j) \in E_{b,h}} e^{-s_{b,h,i,j}}\Bigr)

    Sources: kexue.fm/archives/8373 (GlobalPointer), 8877 (Efficient GlobalPointer).

    Returns ``[...]`` (e.g. ``[B, H]``), one loss per example and entity type. The two reductions
    found in the wild are ``mean over B·H`` (``polyloss.reduce(loss)``) and ``sum over H then
    mean over B`` (``polyloss.reduce(loss.sum(-1))``); this function leaves the choice to you.

    Examples:
      >>> import numpy as np, polyloss
      >>> seq = np.array([[True, True, True, False]])            # one sentence of 3 tokens
      >>> mask = polyloss.global_pointer_mask(seq)               # [1, 1, 4, 4]
      >>> logits = np.where(mask, np.zeros((1, 2, 4, 4)), -np.inf)
      >>> labels = np.zeros((1, 2, 4, 4)); labels[0, 0, 0, 1] = 1  # type 0: span tokens 0..1
      >>> np.round(polyloss.global_pointer_crossentropy(logits, labels), 4)
      array([[2.4849, 1.9459]])

      (6 valid spans scored 0: type 0 has ``log(1 + 5) + log(1 + 1)``, type 1 has ``log(1 + 6)``.)
    """
    namespace_of(logits=logits, labels=labels, where=where)  # the framework checks come first
    _require_square_spans(logits)
    return multilabel_crossentropy(logits, labels, axis=(-2, -1), where=where)


def sparse_global_pointer_crossentropy(logits, spans, *, pad_index=None, where=None):
    r"""GlobalPointer loss with the entity spans given as ``(start, end)`` pairs.

    ``spans [..., K, 2]`` lists the gold spans of each (example, entity type); span ``(i, j)`` is the
    flat class ``i·L + j`` of the ``L·L`` span axis, then :func:`sparse_multilabel_crossentropy`
    applies. Spans equal to ``(pad_index, pad_index)`` are padding. Equals
    :func:`global_pointer_crossentropy` on the equivalent dense labels.

    In eager mode, a span outside ``[0, L)``, with ``start > end``, half padded, or listed twice
    raises ``ValueError``.

    Examples:
      >>> import numpy as np, polyloss
      >>> seq = np.array([[True, True, True, False]])
      >>> logits = np.where(polyloss.global_pointer_mask(seq), np.zeros((1, 2, 4, 4)), -np.inf)
      >>> spans = np.array([[[[0, 1]], [[-1, -1]]]])             # [B=1, H=2, K=1, 2]
      >>> np.round(polyloss.sparse_global_pointer_crossentropy(logits, spans, pad_index=-1), 4)
      array([[2.4849, 1.9459]])
    """
    namespace_of(logits=logits, spans=spans, where=where)  # the framework checks come first
    _require_square_spans(logits)
    scores = _inputs.scores(logits, axis=(-2, -1), where=where, spans=spans)
    xp, backend, native = scores.xp, scores.backend, scores.native
    spans = _checks.as_index_array(xp, backend, spans, native, "spans")
    if spans.ndim != native.ndim or spans.shape[-1] not in (2, None) or not _checks.same_dims(
        spans.shape[:-2], native.shape[:-2]
    ):
        lead = "".join(f"{d}, " for d in native.shape[:-2])
        raise ValueError(
            f"spans has shape {tuple(spans.shape)} but logits has shape {tuple(native.shape)}; "
            f"spans must be [{lead}K, 2]"
        )
    length = backend.shape(native)[-1]
    start, end = spans[..., 0], spans[..., 1]
    padding = (start == pad_index) & (end == pad_index) if pad_index is not None else start != start
    outside = ~padding & ((start < 0) | (end >= length) | (start > end))
    if _checks.values_checked(backend, scores.values, spans):
        if pad_index is not None:
            _checks.fail_if_any(
                xp, (start == pad_index) != (end == pad_index),
                lambda: f"a span has one coordinate equal to pad_index={pad_index} and one not; pad both",
            )
        _checks.fail_if_any(
            xp, outside,
            lambda: f"spans must satisfy 0 <= start <= end < L={length} (GlobalPointer scores the upper triangle)",
        )
    # flat span id i·L + j; padding, and under compilation any span outside the grid, is ignored
    flat = xp.where(padding | outside, -1, start * length + end)
    return _sparse(xp, backend, scores.values, flat, -1, "spans")


def global_pointer_mask(sequence_mask, *, lower_triangle: bool = False):
    r"""The GlobalPointer span mask ``[B, 1, L, L]`` from a sequence mask ``[B, L]``.

    ``mask[b, 0, i, j] = valid[b, i] and valid[b, j] and i <= j``: both tokens are real and the span
    runs forwards. Pass it as ``where=`` or write ``-inf`` into the logits with it. With
    ``lower_triangle=True`` the ``i > j`` half is kept too (for heads that score both directions).

    >>> import numpy as np, polyloss
    >>> polyloss.global_pointer_mask(np.array([[True, True, False]]))[0, 0].astype(int)
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 0, 0]])
    """
    xp, backend = namespace_of(sequence_mask=sequence_mask)
    sequence_mask = backend.asarray(sequence_mask, like=sequence_mask, name="sequence_mask")
    if sequence_mask.ndim != 2:
        raise ValueError(f"sequence_mask must have shape [B, L], got {tuple(sequence_mask.shape)}")
    valid = sequence_mask if sequence_mask.dtype == xp.bool else sequence_mask != 0
    pair = valid[:, None, :, None] & valid[:, None, None, :]
    if lower_triangle:
        return pair
    length = backend.shape(sequence_mask)[-1]
    positions = xp.arange(length, device=backend.device(sequence_mask))
    return pair & (positions[:, None] <= positions[None, :])


# --------------------------------------------------------------------------------------------
# A4: divergence
# --------------------------------------------------------------------------------------------
def multilabel_divergence(logits_a, logits_b, *, axis=-1, where=None):
    r"""Symmetric divergence between two multi-label score vectors (R-Drop / VAT for ZLPR heads).

    .. math::

        D(s, t) = \sum_i \bigl(\sigma(s_i) - \sigma(t_i)\bigr)\,(s_i - t_i)

    the sum over classes of the symmetric binary KL between ``[σ(s_i), 1-σ(s_i)]`` and
    ``[σ(t_i), 1-σ(t_i)]`` (no ½). It is symmetric, ``>= 0``, and 0 iff ``s = t``.

    Each term is computed as ``σ(hi) σ(-lo) (1 - e^{-(hi-lo)}) (hi-lo)`` with ``hi, lo`` the larger and
    smaller logit: the same value without the cancellation of ``σ(s) - σ(t)`` at saturated logits
    (the identity holds for either order, so value and derivatives of every order are those of
    the formula, ties included). Entries equal to the same infinity in both inputs (the
    GlobalPointer padding, ``-inf``) contribute exactly 0 and are dropped first, so they never meet
    ``(-inf) - (-inf)``; entries where ``where`` is False are dropped too. A position that is ``-inf``
    in one input only gives ``+inf``, its true value.

    Source: kexue.fm/archives/9039.

    Args:
      logits_a, logits_b: real floating arrays of the same shape.
      axis: the class axis, or a tuple of axes (``(-2, -1)`` for GlobalPointer logits).
      where: optional boolean mask broadcastable to the logits.

    Returns:
      The divergence per example (the class axes summed), in the compute dtype.

    >>> import numpy as np, polyloss
    >>> a = np.array([[1.0, -2.0]]); b = np.array([[0.0, -2.0]])
    >>> np.round(polyloss.multilabel_divergence(a, b), 6)
    array([0.231059])
    """
    scores = _inputs.scores(logits_a, name="logits_a", axis=axis, where=where, logits_b=logits_b)
    xp = scores.xp
    # removed entries are -inf in both inputs (where=False, and the GlobalPointer padding): equal
    # infinities contribute exactly 0 and are dropped first; every other tie is kept, where the second
    # derivative (VAT's power iteration) is 2σ'(s)
    s, t = _inputs.paired(scores, logits_b, "logits_b", where=where)
    keep = ~(xp.isinf(s) & (s == t))
    # double where: dropped entries see 0 inside the formula, so no NaN reaches value or gradient
    s0, t0 = xp.where(keep, s, 0.0), xp.where(keep, t, 0.0)
    first = s0 >= t0
    hi, lo = xp.where(first, s0, t0), xp.where(first, t0, s0)
    gap = hi - lo
    term = _ops.sigmoid(xp, hi) * _ops.sigmoid(xp, -lo) * -xp.expm1(-gap) * gap
    return xp.sum(xp.where(keep, term, 0.0), axis=-1)

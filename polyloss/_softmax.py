"""The softmax machinery shared by every family with a softmax: statistics of a row of logits, the
targets of a softmax loss, and the cross-entropy built on them.

Used by the classification, regulariser and contrastive families (and by any new family with a
softmax). Log-probabilities are ``(s - m) - log Σ e^{s - m}`` (``m`` the stop-gradient row maximum),
and ``log(1 - p_k)`` is ``log Σ_{j≠k} e^{s_j - m} - log Σ_j e^{s_j - m}``, the complement summed, never
subtracted from 1: exact when ``p_k`` is within rounding of 1 (see :class:`Softmax`).

- :func:`prepare`: the first step of a softmax loss: logits checked, converted, classes last and
  masked (:func:`polyloss._inputs.scores`), and labels as :class:`Targets` (class ids, or
  probabilities);
- :class:`Softmax`: ``log p``, ``log p_y``, ``log(1 - p)``, expectations over probability labels;
- :func:`crossentropy`, :func:`negative_log_likelihood`, :func:`label_smoothing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from polyloss import _checks, _inputs, _ops
from polyloss._kernels import Kernel

__all__ = ["Targets", "Prepared", "prepare", "class_ids", "pick", "one_hot", "Softmax", "crossentropy",
           "negative_log_likelihood", "label_smoothing", "fast_crossentropy_applies", "class_id_crossentropy",
           "smoothed_nll_rows", "smoothed_target_gradient_rows"]


class Targets:
    """Labels of a softmax loss, classes last: class ``ids`` (``[...]``, in range; ignored rows hold 0)
    with ``keep`` (False on ignored rows, or None), or probabilities ``probs`` (``[..., C]``)."""

    def __init__(self, ids=None, keep=None, probs=None):
        self.ids, self.keep, self.probs = ids, keep, probs


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` returns: the scores (:class:`polyloss._inputs.Scores`) and the targets."""

    scores: Any
    targets: Targets

    @property
    def xp(self):
        return self.scores.xp

    @property
    def backend(self):
        return self.scores.backend

    @property
    def values(self):
        """The logits in the compute dtype, classes last, removed classes ``-inf``."""
        return self.scores.values

    def softmax(self) -> Softmax:
        """:class:`Softmax` of the prepared logits."""
        return Softmax(self.xp, self.backend, self.values)


def prepare(logits, labels, *, axis=-1, where=None, ignore_index=None, probabilities: bool = True,
            name: str = "logits", **others) -> Prepared:
    """The first step of a softmax loss: ``logits`` checked and converted (classes on the single
    ``axis`` moved last, removed classes ``-inf``) and ``labels`` as :class:`Targets`: integer class ids
    (the logits' shape without ``axis``) or probabilities (the logits' shape; refused when
    ``probabilities`` is False). ``others`` are further inputs of the call, named for the framework
    check; ``name`` is the first argument's name in messages."""
    scores = _inputs.scores(logits, name=name, axis=axis, where=where, single_axis=True, labels=labels, **others)
    ignore_index = _checks.optional_int(ignore_index, "ignore_index must be an int (a class id such as -100) "
                                                      f"or None, got {ignore_index!r}")
    xp, backend, native, s = scores.xp, scores.backend, scores.native, scores.values
    (ax,) = scores.axes
    labels = scores.secondary(labels, "labels", same_shape=False)
    rest = tuple(native.shape[:ax]) + tuple(native.shape[ax + 1:])
    if labels.ndim == native.ndim - 1:
        if not _checks.same_dims(labels.shape, rest):
            raise ValueError(f"class-id labels have shape {tuple(labels.shape)} but {name} have shape "
                             f"{tuple(native.shape)}; class ids need the {name}' shape without axis {axis}, {rest}")
        return Prepared(scores, class_ids(xp, backend, labels, s, ignore_index))
    if labels.ndim != native.ndim or not _checks.same_dims(labels.shape, native.shape):
        raise ValueError(f"labels have shape {tuple(labels.shape)} but {name} have shape {tuple(native.shape)}; "
                         f"pass class ids of shape {rest} or probabilities of shape {tuple(native.shape)}")
    if not probabilities:
        raise ValueError(f"this loss takes class ids (integer labels with the {name}' shape without the "
                         f"class axis, {rest}), not probabilities")
    if ignore_index is not None:
        raise ValueError("ignore_index applies to class-id labels; probability labels can mask rows "
                         "with polyloss.reduce(loss, where=...)")
    if not xp.isdtype(labels.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"labels must be integer class ids or probabilities, got dtype {labels.dtype}")
    t = scores.classes_last(labels)
    if _checks.values_checked(backend, s, t):
        _checks.check_label_values(xp, t, name="probability labels")
    return Prepared(scores, Targets(probs=t if t.dtype == s.dtype else xp.astype(t, s.dtype)))


def class_ids(xp, backend, labels, s, ignore_index):
    """:class:`Targets` of integer class ids ``labels`` (``s``, classes last, gives their number),
    checked to lie in range in eager mode; ids equal to ``ignore_index`` mark rows to leave out."""
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"class-id labels must be integers, got dtype {labels.dtype} (probability labels "
                        "have the logits' shape)")
    ids = labels if labels.dtype == backend.index_dtype() else xp.astype(labels, backend.index_dtype())
    num_classes = backend.shape(s)[-1]
    in_range = (ids >= 0) & (ids < num_classes)
    keep = None if ignore_index is None else ids != ignore_index
    if _checks.values_checked(backend, s, ids):
        bad = ~in_range if keep is None else ~in_range & keep
        _checks.fail_if_any(
            xp, bad,
            lambda: f"class ids must lie in [0, {num_classes})"
            + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}")
            + f"; found {_checks.describe(xp, ids, bad)}",
        )
    # ignored rows (and, under compilation, out-of-range ids) read class 0; ignored rows give 0 later
    safe = in_range if keep is None else in_range & keep
    return Targets(ids=xp.where(safe, ids, 0), keep=keep)


def pick(xp, x, ids):
    """``x[..., ids]``: the entry of each row's class id (``x [..., C]``, ``ids [...]``)."""
    return xp.take_along_axis(x, ids[..., None], axis=-1)[..., 0]


def one_hot(xp, backend, x, ids):
    """Boolean ``[..., C]``: True at each row's class id (``x [..., C]`` gives the classes; their number
    is read from the dynamic shape, so unknown dimensions under ``tf.function`` work)."""
    classes = xp.arange(backend.shape(x)[-1], dtype=ids.dtype, device=backend.device(ids))
    return classes == ids[..., None]


class Softmax:
    """Softmax statistics of ``s [..., C]`` (classes last, removed classes ``-inf``): ``z``, ``e``,
    ``total`` and ``log total`` of :func:`polyloss._ops.softmax_terms`, and what the losses build on
    them. Empty rows get 0 through :meth:`finish`.
    """

    def __init__(self, xp, backend, s):
        self.xp, self.backend, self.s = xp, backend, s
        self.z, self.e, self.total, self.log_total = _ops.softmax_terms(xp, backend, s)
        self.nonempty = self.total != 0.0  # NaN counts as non-empty: NaN in, NaN out
        self._valid = self._count = self._sums_by_top = self._others = None

    @property
    def valid(self):
        """The classes not removed (``[..., C]``), computed once."""
        if self._valid is None:
            self._valid = self.z != -math.inf
        return self._valid

    def _sums_below_and_at_top(self):
        """``(below, top) [..., 1]``: ``Σ_{z<0} e`` and ``Σ_{z=0} e`` (every ``e`` there is exactly 1).
        The sum of a row without one of its largest terms is ``below + (top - e_k)``: exact
        (``total - 1`` would round the tail away), and differentiable in every other maximum."""
        if self._sums_by_top is None:
            xp = self.xp
            is_top = self.z == 0.0
            below = xp.sum(xp.where(is_top, 0.0, self.e), axis=-1, keepdims=True)
            top = xp.sum(xp.where(is_top, self.e, 0.0), axis=-1, keepdims=True)
            self._sums_by_top = (below, top)
        return self._sums_by_top

    def _zero_empty_rows(self, value):
        """``value`` (per row), 0 on rows without a valid class: empty rows never reach the arithmetic."""
        return self.xp.where(self.nonempty[..., 0], value, 0.0)

    def log_p(self, *, safe=True):
        """``log p [..., C]``: 0 at removed classes when ``safe`` (callers account for them, see
        :meth:`expect`; a ``-inf`` there would meet ``0·inf`` in products and their gradients),
        ``-inf`` otherwise."""
        log_p = self.z - self.log_total
        return self.xp.where(self.valid, log_p, 0.0) if safe else log_p

    def log_p_at(self, ids, *, precise=False):
        """``log p_y`` per row (``-inf`` for a removed class, 0 for an empty row). ``precise``: when
        ``y`` is the row's largest logit, ``-log1p(Σ_{j≠y} e^{z_j})``, which keeps the relative precision
        of a loss below the dtype's epsilon (one more sum over the row, shared with
        :meth:`log_not_p_at`)."""
        xp = self.xp
        z = pick(xp, self.z, ids)
        value = z - self.log_total[..., 0]
        if precise:  # -log1p(Σ_{j≠y} e^{z_j - z_y}), with z_y = 0 here (kept for its derivative)
            is_top = z == 0.0
            z_top = xp.where(is_top, z, 0.0)
            value = xp.where(is_top, -xp.log1p(self._others_at(ids) * xp.exp(-z_top)), value)
        return self._zero_empty_rows(value)

    def _others_at(self, ids):
        """``Σ_{j≠y} e_j`` per row, the sum taken without each row's class (exact when ``p_y`` rounds
        to 1, ties included); computed once for the same ``ids``."""
        if self._others is None or self._others[0] is not ids:
            xp = self.xp
            others = xp.sum(xp.where(one_hot(xp, self.backend, self.z, ids), 0.0, self.e), axis=-1)
            self._others = (ids, others)
        return self._others[1]

    def _sum_without(self, z, e, total, below, top):
        """``Σ_{j≠k} e_j`` for entries ``(z, e)``: ``total - e`` has no cancellation unless ``e`` is a
        largest term (``z = 0``, ``e = 1``), where the sum is taken without it
        (:meth:`_sums_below_and_at_top`)."""
        return self.xp.where(z == 0.0, below + (top - e), total - e)

    def log_not_p(self):
        """``log(1 - p) [..., C]`` from the complement's sum; 0 at removed classes."""
        xp = self.xp
        rest = self._sum_without(self.z, self.e, self.total, *self._sums_below_and_at_top())
        return xp.where(self.valid, _ops.log_or_neg_inf(xp, rest) - self.log_total, 0.0)

    def log_not_p_at(self, ids):
        """``log(1 - p_y)`` per row (0 for an empty row)."""
        rest = _ops.log_or_neg_inf(self.xp, self._others_at(ids))
        return self._zero_empty_rows(rest - self.log_total[..., 0])

    def count(self):
        """The number of valid classes per row (``[..., 1]``, computed once); 1 for an empty row, so
        that it divides."""
        if self._count is None:
            xp = self.xp
            per_row = xp.sum(xp.astype(self.valid, self.z.dtype), axis=-1, keepdims=True)
            self._count = xp.where(self.nonempty, per_row, 1.0)
        return self._count

    def expect(self, probs, values, removed=math.inf):
        """``Σ_k t_k v_k`` over the valid classes; a removed class with ``t_k > 0`` adds ``t_k·removed``
        (``+inf`` for a loss term: mass on a class the softmax cannot give)."""
        xp = self.xp
        valid = self.valid
        safe = xp.where(valid, values, 0.0)
        lost = probs * removed if math.isfinite(removed) else xp.full_like(probs, math.inf)
        lost = xp.where(valid | (probs <= 0.0), xp.zeros_like(probs), lost)
        return xp.sum(probs * safe + lost, axis=-1)

    def finish(self, value, targets):
        """``value`` with rows that have no valid class, or an ignored label, set to 0."""
        keep = self.nonempty[..., 0]
        if targets.keep is not None:
            keep = keep & targets.keep
        return self.xp.where(keep, value, 0.0)


def crossentropy(sm, targets, label_smoothing: float, precise=False):
    """``-Σ_k t'_k log p_k`` with ``t' = (1 - ε) t + ε/K`` on the valid classes (``precise``: see
    :meth:`Softmax.log_p_at`)."""
    xp = sm.xp
    if targets.ids is not None:
        ce = -sm.log_p_at(targets.ids, precise=precise)
    else:
        ce = sm.expect(targets.probs, -sm.log_p())
    if label_smoothing == 0.0:
        return ce
    # the mean of -log p = log Σ e^{z} - z over the valid classes; z divided by K before the sum (a sum
    # of K logits near the largest float would overflow where their mean does not)
    mean_nll = sm.log_total[..., 0] - xp.sum(xp.where(sm.valid, sm.z / sm.count(), 0.0), axis=-1)
    if label_smoothing == 1.0:  # the target is uniform: a label on a removed class no longer matters
        return mean_nll
    return (1.0 - label_smoothing) * ce + label_smoothing * mean_nll


# --------------------------------------------------------------------------------------------
# The class-id cross-entropy kernel: eager on the CPU, every class valid, logits bounded
# --------------------------------------------------------------------------------------------
# ``L = log Σ e^{z} - (1 - ε) z_y - (ε/C) Σ z`` with ``z = s - max s``: the value of :func:`crossentropy` for
# class ids when no class is removed (``K = C``). Its gradient ``g (softmax(s) - (1 - ε) onehot(y) - ε/C)`` is
# closed-form; the kernel keeps the log-softmax (one ``[..., C]`` residual, as ``F.cross_entropy`` does).
# Where the adapter has a fused log-softmax (``Backend.log_softmax``: torch) the value is built on it and its
# own fused backward differentiates it, the graph of the native cross-entropy. Eager PyTorch would otherwise
# record and replay a dozen passes (the masked sums of :class:`Softmax`, the smoothing's mean); compiled code
# fuses those anyway and keeps the general form. Used with label smoothing only: without it the composed
# form is as fast.


def fast_crossentropy_applies(xp, backend, s, where) -> bool:
    """Whether :func:`class_id_crossentropy` computes this call: eager on the CPU, no ``where``, at least one
    class, and every logit finite and small enough that a row's sum of logits cannot overflow (two
    reductions; NaN fails them)."""
    if where is not None or not _ops.cheap_branch(backend, s) or s.ndim == 0 or s.shape[-1] == 0:
        return False
    limit = float(xp.finfo(s.dtype).max) / (4.0 * s.shape[-1])
    return bool(xp.max(s) <= limit) and bool(xp.min(s) >= -limit)


def class_id_crossentropy(xp, backend, s, ids, label_smoothing: float):
    """``-Σ_k t'_k log p_k`` per row for class ids ``ids`` (see above; call it where
    :func:`fast_crossentropy_applies`): from the adapter's fused log-softmax where it has one
    (``Backend.log_softmax``, differentiated by its own fused backward: the graph of the native
    cross-entropy), else the kernel."""
    if backend.log_softmax is not None:
        return smoothed_nll_rows(xp, backend.log_softmax(s), ids, label_smoothing)
    return _CROSSENTROPY(backend, s, ids, label_smoothing=label_smoothing)


def smoothed_nll_rows(xp, log_p, ids, label_smoothing):
    """``-(1 - ε) log p_y - ε mean_k log p_k`` per row (every class valid)."""
    value = -pick(xp, log_p, ids)
    if label_smoothing:  # the mean of -log p over the C classes
        mean_nll = xp.sum(log_p, axis=-1) / -log_p.shape[-1]
        value = (1.0 - label_smoothing) * value + label_smoothing * mean_nll
    return value


def smoothed_target_gradient_rows(xp, backend, ids, p, label_smoothing):
    """``p - (1 - ε) onehot(y) - ε/C``: the gradient of :func:`smoothed_nll_rows` in the logits."""
    if label_smoothing:
        p = p - label_smoothing / p.shape[-1]
    hit = backend.index_mask(ids[..., None], p.shape[-1], xp.ones_like(ids, dtype=xp.bool)[..., None])
    # one where: a boolean cast to the float dtype costs more in eager PyTorch on the CPU
    return xp.where(hit, p - (1.0 - label_smoothing), p)


def _crossentropy_fwd(xp, backend, s, ids, *, label_smoothing):
    # the log-softmax is the one [..., C] residual, as the native cross-entropy keeps it
    def rows(a, b):
        log_p, _ = _ops.log_softmax_rows(xp, backend, a)
        return smoothed_nll_rows(xp, log_p, b, label_smoothing), log_p

    value, log_p = _ops.by_rows(xp, backend, rows, s, ids)
    return value, (log_p,)


def _crossentropy_bwd(xp, backend, arrays, residuals, g, needs, *, label_smoothing):
    def rows(log_p, ids, g):
        return (smoothed_target_gradient_rows(xp, backend, ids, xp.exp(log_p), label_smoothing) * g[..., None],)

    (grad,) = _ops.by_rows(xp, backend, rows, residuals[0], arrays[1], g)
    return grad, None


_CROSSENTROPY = Kernel("class_id_crossentropy", _crossentropy_fwd, _crossentropy_bwd)


def negative_log_likelihood(xp, backend, z, targets):
    """``-log softmax(z)_t`` per row; 0 for a row with no valid entry (or an ignored label), ``+inf``
    for a removed target. The precise path of :meth:`Softmax.log_p_at`: where the target is the
    maximum the value is ``log1p(Σ_{i≠t} e^{z_i - z_t})``, so a trained model's losses of 1e-8 keep
    their digits at the scales of 30-64 that margin losses use (``lse - z_t`` rounds them to 0)."""
    sm = Softmax(xp, backend, z)
    return sm.finish(-sm.log_p_at(targets.ids, precise=True), targets)


def label_smoothing(value) -> float:
    """``label_smoothing`` checked to be a number in [0, 1]."""
    return _checks.hyperparameter(value, "label_smoothing", low=0.0, high=1.0)

r"""Classification and class-imbalance losses (SPEC B1-B7), written once against the array API.

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

Log-probabilities are ``(s - m) - log Σ e^{s - m}`` (``m`` the stop-gradient row maximum), and
``log(1 - p_k)`` is ``log Σ_{j≠k} e^{s_j - m} - log Σ_j e^{s_j - m}``, the complement summed, never
subtracted from 1: exact when ``p_k`` is within rounding of 1 (see :class:`_Softmax`).
"""

from __future__ import annotations

import math
import operator

import numpy as np

from polyloss import _checks, _ops
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
    """``(xp, be, s, t)``: logits and labels of an elementwise binary loss, checked, in the compute dtype."""
    xp, be = namespace_of(logits=logits, labels=labels)
    logits, s = _checks.prepare_floating(xp, be, logits)
    labels = be.asarray(labels, like=logits, dtype=s.dtype, name="labels")
    _checks.require_same_shape(logits, labels, "logits", "labels")
    if not xp.isdtype(labels.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"labels must be boolean, integer or real floating, got dtype {labels.dtype}")
    if _checks.values_checked(be, s, labels):
        _checks.check_label_values(xp, labels)
    return xp, be, s, labels if labels.dtype == s.dtype else xp.astype(labels, s.dtype)


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
# Softmax inputs
# --------------------------------------------------------------------------------------------
class _Targets:
    """Labels of a softmax loss, classes last: class ``ids`` (``[...]``, in range; ignored rows hold 0)
    with ``keep`` (False on ignored rows, or None), or probabilities ``probs`` (``[..., C]``)."""

    def __init__(self, ids=None, keep=None, probs=None):
        self.ids, self.keep, self.probs = ids, keep, probs


def _softmax_logits(xp, be, logits, axis, where, name="logits"):
    """``(logits, s, ax)``: ``s`` the logits in the compute dtype, classes last, classes removed by
    ``where`` set to ``-inf``."""
    logits, s = _checks.prepare_floating(xp, be, logits, name)
    ax = _checks.single_axis(axis, logits.ndim)
    where = _checks.prepare_where(xp, be, where, logits, name)
    if where is not None:
        where = _ops.classes_last(xp, be, where, (ax,))
    return logits, _ops.mask_logits(xp, _ops.classes_last(xp, be, s, (ax,)), where), ax


def _softmax_inputs(logits, labels, axis, where, ignore_index, *, probabilities=True, extra=None, name="logits"):
    """``(xp, be, logits, s, targets)``: ``s`` as :func:`_softmax_logits`, ``targets`` a
    :class:`_Targets`. ``extra`` names more arrays for the framework check; ``name`` is the
    first argument's name in messages."""
    xp, be = namespace_of(**{name: logits}, labels=labels, where=where, **(extra or {}))
    ignore_index = _ignore_index(ignore_index)
    logits, s, ax = _softmax_logits(xp, be, logits, axis, where, name)
    labels = be.asarray(labels, like=logits, dtype=s.dtype, name="labels")
    rest = tuple(logits.shape[:ax]) + tuple(logits.shape[ax + 1:])
    if labels.ndim == logits.ndim - 1:
        if not _checks.same_dims(labels.shape, rest):
            raise ValueError(f"class-id labels have shape {tuple(labels.shape)} but {name} have shape "
                             f"{tuple(logits.shape)}; class ids need the {name}' shape without axis {axis}, {rest}")
        return xp, be, logits, s, _class_ids(xp, be, labels, s, ignore_index)
    if labels.ndim != logits.ndim or not _checks.same_dims(labels.shape, logits.shape):
        raise ValueError(f"labels have shape {tuple(labels.shape)} but {name} have shape {tuple(logits.shape)}; "
                         f"pass class ids of shape {rest} or probabilities of shape {tuple(logits.shape)}")
    if not probabilities:
        raise ValueError(f"this loss takes class ids (integer labels with the {name}' shape without the "
                         f"class axis, {rest}), not probabilities")
    if ignore_index is not None:
        raise ValueError("ignore_index applies to class-id labels; probability labels can mask rows "
                         "with polyloss.reduce(loss, where=...)")
    if not xp.isdtype(labels.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"labels must be integer class ids or probabilities, got dtype {labels.dtype}")
    t = _ops.classes_last(xp, be, labels, (ax,))
    if _checks.values_checked(be, s, t):
        _checks.check_label_values(xp, t, name="probability labels")
    return xp, be, logits, s, _Targets(probs=t if t.dtype == s.dtype else xp.astype(t, s.dtype))


def _ignore_index(value):
    """``ignore_index`` as an int, or None; booleans, floats and strings are a TypeError."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"ignore_index must be an int (a class id such as -100) or None, got {value!r}") from None


def _class_ids(xp, be, labels, s, ignore_index):
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"class-id labels must be integers, got dtype {labels.dtype} (probability labels "
                        "have the logits' shape)")
    ids = labels if labels.dtype == be.index_dtype() else xp.astype(labels, be.index_dtype())
    num_classes = be.shape(s)[-1]
    in_range = (ids >= 0) & (ids < num_classes)
    keep = None if ignore_index is None else ids != ignore_index
    if _checks.values_checked(be, s, ids):
        bad = ~in_range if keep is None else ~in_range & keep
        _checks.fail_if_any(
            xp, bad,
            lambda: f"class ids must lie in [0, {num_classes})"
            + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}")
            + f"; found {_checks.describe(xp, ids, bad)}",
        )
    # ignored rows (and, under compilation, out-of-range ids) read class 0; ignored rows give 0 later
    safe = in_range if keep is None else in_range & keep
    return _Targets(ids=xp.where(safe, ids, 0), keep=keep)


def _pick(xp, x, ids):
    """``x[..., ids]``: the entry of each row's class id (``x [..., C]``, ``ids [...]``)."""
    return xp.take_along_axis(x, ids[..., None], axis=-1)[..., 0]


def _one_hot(xp, be, x, ids):
    """Boolean ``[..., C]``: True at each row's class id (``x [..., C]`` gives the classes; their number
    is read from the dynamic shape, so unknown dimensions under ``tf.function`` work)."""
    classes = xp.arange(be.shape(x)[-1], dtype=ids.dtype, device=be.device(ids))
    return classes == ids[..., None]


class _Softmax:
    """Softmax statistics of ``s [..., C]`` (classes last, removed classes ``-inf``): ``z``, ``e``,
    ``total`` and ``log total`` of :func:`polyloss._ops.softmax_terms`, and what the losses build on
    them. Empty rows get 0 through :meth:`finish`.
    """

    def __init__(self, xp, be, s):
        self.xp, self.be, self.s = xp, be, s
        self.z, self.e, self.total, self.log_total = _ops.softmax_terms(xp, be, s)
        self.nonempty = self.total != 0.0  # NaN counts as non-empty: NaN in, NaN out
        self._valid = self._count = self._rest_parts = self._others = None

    @property
    def valid(self):
        """The classes not removed (``[..., C]``), computed once."""
        if self._valid is None:
            self._valid = self.z != -math.inf
        return self._valid

    def _top(self):
        """``(below, top) [..., 1]``: ``Σ_{z<0} e`` and ``Σ_{z=0} e`` (every ``e`` there is exactly 1).
        The sum of a row without one of its largest terms is ``below + (top - e_k)``: exact
        (``total - 1`` would round the tail away), and differentiable in every other maximum."""
        if self._rest_parts is None:
            xp = self.xp
            is_top = self.z == 0.0
            below = xp.sum(xp.where(is_top, 0.0, self.e), axis=-1, keepdims=True)
            top = xp.sum(xp.where(is_top, self.e, 0.0), axis=-1, keepdims=True)
            self._rest_parts = (below, top)
        return self._rest_parts

    def _rows(self, value, row_mask):
        """``value`` (per row) where ``row_mask`` holds, else 0: empty rows never reach the arithmetic."""
        return self.xp.where(row_mask, value, 0.0)

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
        z = _pick(xp, self.z, ids)
        value = z - self.log_total[..., 0]
        if precise:  # -log1p(Σ_{j≠y} e^{z_j - z_y}), with z_y = 0 here (kept for its derivative)
            is_top = z == 0.0
            z_top = xp.where(is_top, z, 0.0)
            value = xp.where(is_top, -xp.log1p(self._others_at(ids) * xp.exp(-z_top)), value)
        return self._rows(value, self.nonempty[..., 0])

    def _others_at(self, ids):
        """``Σ_{j≠y} e_j`` per row, the sum taken without each row's class (exact when ``p_y`` rounds
        to 1, ties included); computed once for the same ``ids``."""
        if self._others is None or self._others[0] is not ids:
            xp = self.xp
            others = xp.sum(xp.where(_one_hot(xp, self.be, self.z, ids), 0.0, self.e), axis=-1)
            self._others = (ids, others)
        return self._others[1]

    def _rest(self, z, e, total, below, top):
        """``Σ_{j≠k} e_j`` for entries ``(z, e)``: ``total - e`` has no cancellation unless ``e`` is a
        largest term (``z = 0``, ``e = 1``), where the sum is taken without it (:meth:`_top`)."""
        return self.xp.where(z == 0.0, below + (top - e), total - e)

    def log_not_p(self):
        """``log(1 - p) [..., C]`` from the complement's sum; 0 at removed classes."""
        xp = self.xp
        rest = self._rest(self.z, self.e, self.total, *self._top())
        return xp.where(self.valid, _ops.log_or_neg_inf(xp, rest) - self.log_total, 0.0)

    def log_not_p_at(self, ids):
        """``log(1 - p_y)`` per row (0 for an empty row)."""
        rest = _ops.log_or_neg_inf(self.xp, self._others_at(ids))
        return self._rows(rest - self.log_total[..., 0], self.nonempty[..., 0])

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


def _crossentropy(sm, targets, label_smoothing: float, precise=False):
    """``-Σ_k t'_k log p_k`` with ``t' = (1 - ε) t + ε/K`` on the valid classes (``precise``: see
    :meth:`_Softmax.log_p_at`)."""
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


def _smoothing(label_smoothing) -> float:
    return _checks.hyperparameter(label_smoothing, "label_smoothing", low=0.0, high=1.0)


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
    eps = _smoothing(label_smoothing)
    xp, be, _, s, targets = _softmax_inputs(logits, labels, axis, where, ignore_index)
    sm = _Softmax(xp, be, s)
    return sm.finish(_crossentropy(sm, targets, eps), targets)


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
    xp, be, s, t = _binary_inputs(logits, labels)
    minus_log_p, minus_log_q = _ops.softplus_pair(be, s)
    return _expect(xp, t, minus_log_p, minus_log_q)


# --------------------------------------------------------------------------------------------
# B3, B7: focal and Poly-1
# --------------------------------------------------------------------------------------------
def _sigmoid_focal(xp, be, s, t, gamma, alpha, epsilon=0.0):
    """``t·a₁·σ(-s)^γ·sp(-s) + (1-t)·a₀·σ(s)^γ·sp(s)`` plus Poly-1's ``ε·[t σ(-s)^{γ+1} + (1-t) σ(s)^{γ+1}]``."""
    minus_log_p, minus_log_q = _ops.softplus_pair(be, s)  # -log σ(s), -log σ(-s) = -log(1 - σ(s))
    positive = _sigmoid_power(xp, minus_log_q, gamma) * minus_log_p
    negative = _sigmoid_power(xp, minus_log_p, gamma) * minus_log_q
    if alpha is not None:
        positive, negative = alpha * positive, (1.0 - alpha) * negative
    loss = _expect(xp, t, positive, negative)
    if epsilon:
        loss = loss + epsilon * _expect(xp, t, xp.exp(-(gamma + 1.0) * minus_log_q), xp.exp(-(gamma + 1.0) * minus_log_p))
    return loss


def _class_weights(xp, be, alpha, logits, s, targets):
    """α of the softmax focal loss: None, a scalar, or one weight per class (``[C]``), as the factor
    for each row (class ids) or each class (probabilities)."""
    if alpha is None:
        return None
    if not be.is_array(alpha) and np.ndim(alpha) == 0:  # a Python or NumPy scalar: no device array
        return _checks.hyperparameter(alpha, "alpha", low=0.0)
    a = be.asarray(alpha, like=logits, dtype=s.dtype, name="alpha")
    if a.ndim == 0:
        return _checks.hyperparameter(alpha, "alpha", low=0.0)
    if a.ndim != 1 or not _checks.same_dims(a.shape, (s.shape[-1],)):
        raise ValueError(f"alpha has shape {tuple(a.shape)}; give a scalar or one weight per class, shape ({s.shape[-1]},)")
    if not xp.isdtype(a.dtype, "real floating"):
        a = xp.astype(a, s.dtype)
    if _checks.values_checked(be, s, a):
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
        xp, be, s, t = _binary_inputs(logits, labels)
        return _sigmoid_focal(xp, be, s, t, gamma, alpha, epsilon)
    xp, be, logits, s, targets = _softmax_inputs(logits, labels, axis, where, None)
    weights = _class_weights(xp, be, alpha, logits, s, targets)
    sm = _Softmax(xp, be, s)
    return sm.finish(_softmax_focal(xp, sm, targets, gamma, weights, epsilon), targets)


def focal_loss(logits, labels, *, gamma=2.0, alpha=None, activation="sigmoid", axis=-1, where=None):
    r"""Focal loss (Lin et al. 2017), sigmoid (binary / multi-label) or softmax.

    .. math::

        \text{sigmoid:}\quad L = -\alpha_t\,(1 - p_t)^{\gamma} \log p_t,\qquad p_t = \sigma(s) \text{ if } y = 1,\ 1 - \sigma(s) \text{ if } y = 0

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
    eps = _smoothing(label_smoothing)
    epsilon = _checks.hyperparameter(epsilon, "epsilon")
    xp, be, _, s, targets = _softmax_inputs(logits, labels, axis, where, ignore_index)
    sm = _Softmax(xp, be, s)
    if targets.ids is not None:
        miss = xp.exp(sm.log_not_p_at(targets.ids))
    else:
        t = targets.probs
        miss = (1.0 - xp.sum(t, axis=-1)) + sm.expect(t, xp.exp(sm.log_not_p()), removed=1.0)
    if eps:  # 1 - Σ t' p = (1 - ε)(1 - Σ t p) + ε (1 - 1/K)
        miss = (1.0 - eps) * miss + eps * (1.0 - 1.0 / sm.count()[..., 0])
    return sm.finish(_crossentropy(sm, targets, eps, precise=True) + epsilon * miss, targets)


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
        xp, be, s, t = _binary_inputs(logits, labels)
        minus_log_p, minus_log_q = _ops.softplus_pair(be, s)
        keep = 1.0 - _step(xp, t - m) * _step(xp, s - log_odds) - _step(xp, (1.0 - m) - t) * _step(xp, -log_odds - s)
        return keep * _expect(xp, t, minus_log_p, minus_log_q)
    xp, be, _, s, targets = _softmax_inputs(logits, labels, axis, where, None, probabilities=False)
    sm = _Softmax(xp, be, s)
    log_p = sm.log_p_at(targets.ids, precise=True)
    return sm.finish((1.0 - _step(xp, log_p - math.log(m))) * -log_p, targets)


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
    xp, be, s, t = _binary_inputs(logits, labels)
    minus_log_p, minus_log_q = _ops.softplus_pair(be, s)
    return _expect(xp, t, _ops.sigmoid(xp, -k * s) * minus_log_p, _ops.sigmoid(xp, k * s) * minus_log_q)


# --------------------------------------------------------------------------------------------
# B5: logit adjustment
# --------------------------------------------------------------------------------------------
def _log_prior(xp, be, prior, logits, s, num_classes, tau: float, name_c: str):
    """``τ log π`` as a ``[C]`` array of ``s``' framework, dtype and device, checked."""
    p = be.asarray(prior, like=logits, dtype=s.dtype, name="prior")
    if not xp.isdtype(p.dtype, "real floating"):
        p = xp.astype(p, s.dtype)
    if p.ndim != 1 or not _checks.same_dims(p.shape, (num_classes,)):
        raise ValueError(f"prior has shape {tuple(p.shape)} but the logits have {num_classes} classes "
                         f"({name_c}); prior must have shape ({num_classes},)")
    if _checks.values_checked(be, s, p):
        bad = ~((p > 0.0) & xp.isfinite(p))
        _checks.fail_if_any(
            xp, bad,
            lambda: "prior must be positive and finite for every class (a class frequency, not a log); "
            f"found {float(xp.min(xp.where(bad, p, math.inf)))} at class {int(xp.argmax(xp.astype(bad, xp.int32)))}",
        )
    return tau * xp.log(p)


def logit_adjusted_crossentropy(logits, labels, prior, *, tau=1.0, axis=-1, label_smoothing=0.0, where=None,
                                ignore_index=None):
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
    eps = _smoothing(label_smoothing)
    tau = _checks.hyperparameter(tau, "tau")
    xp, be, logits, s, targets = _softmax_inputs(logits, labels, axis, where, ignore_index, extra={"prior": prior})
    sm = _Softmax(xp, be, s + _log_prior(xp, be, prior, logits, s, s.shape[-1], tau, f"axis {axis}"))
    return sm.finish(_crossentropy(sm, targets, eps), targets)


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
    xp, be = namespace_of(logits=logits, prior=prior)
    logits, s = _checks.prepare_floating(xp, be, logits)
    ax = _checks.single_axis(axis, logits.ndim)
    log_prior = _log_prior(xp, be, prior, logits, s, logits.shape[ax], tau, f"axis {axis}")
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
    xp, be, s, t = _binary_inputs(logits, labels)
    if f1 is None:
        p = _ops.sigmoid(xp, s)
        den = xp.sum(t + p)
        f = be.stop_gradient(xp.where(den > 0.0, 2.0 * xp.sum(t * p) / xp.where(den > 0.0, den, 1.0), 0.0))
    else:
        f = _checks.hyperparameter(f1, "f1", low=0.0, high=1.0)
    minus_log_p, minus_log_q = _ops.softplus_pair(be, s)
    return _expect(xp, t, (1.0 - f / 2.0) * minus_log_p, (f / 2.0) * minus_log_q)

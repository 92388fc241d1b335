"""``polyloss.reduce``: the one place that says what "mean" means."""

from __future__ import annotations

from polyloss import _checks, _ops
from polyloss._namespace import namespace_of

__all__ = ["reduce"]

_REDUCTIONS = ("mean", "sum")


def reduce(values, reduction: str = "mean", *, weights=None, where=None):
    r"""Reduce per-example losses to a scalar.

    - ``"sum"``: :math:`\sum_i w_i v_i` over the entries where ``where`` holds;
    - ``"mean"``: :math:`\sum_i w_i v_i / \sum_i w_i` over those entries (without weights: the mean
      over the valid entries, not over all of them). With no valid entry, or weights summing to 0,
      the mean is 0, as in Keras (an all-padding batch contributes nothing instead of NaN).

    Masked entries are dropped before any arithmetic, so a NaN or ``inf`` there does not leak into
    the result or its gradient; a NaN in a valid entry gives NaN. Weights multiply: a zero weight
    does not remove an ``inf`` or NaN (``0 · inf`` is NaN), ``where`` does.

    Args:
      values: real floating array of per-example values.
      reduction: ``"mean"`` or ``"sum"``.
      weights: optional array (or Python/NumPy values) broadcastable to ``values``.
      where: optional boolean mask broadcastable to ``values``.

    Returns:
      A 0-d array in the compute dtype (float32 for half precision).

    >>> import numpy as np, polyloss
    >>> float(polyloss.reduce(np.array([1.0, 2.0, 30.0]), where=np.array([True, True, False])))
    1.5
    >>> float(polyloss.reduce(np.array([1.0, 2.0]), weights=np.array([3.0, 1.0])))
    1.25
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    xp, backend = namespace_of(values=values, weights=weights, where=where)
    values = backend.asarray(values, like=values, name="values")
    _checks.require_floating(xp, values, "values")
    v = _ops.upcast(xp, values)
    keep = _checks.prepare_where(xp, backend, where, v, "values")
    if keep is not None:
        v = xp.where(keep, v, 0.0)
    w = None
    if weights is not None:
        w = backend.asarray(weights, like=values, name="weights")
        if not xp.isdtype(w.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"weights must be real numbers, got dtype {w.dtype}")
        w = _checks.broadcast_like(
            xp, backend, xp.astype(w, v.dtype) if w.dtype != v.dtype else w, v, "weights", "values"
        )
        if keep is not None:
            w = xp.where(keep, w, 0.0)
        v = v * w
    total = xp.sum(v)
    if reduction == "sum":
        return total
    if w is not None:
        count = xp.sum(w)
    elif keep is not None:
        count = xp.sum(xp.astype(keep, v.dtype))
    else:
        n = _checks.size(values.shape)
        if n is not None:
            return total / n if n else total  # an empty array: 0
        count = xp.sum(xp.ones_like(v))
    has_any = count != 0.0
    return xp.where(has_any, total / xp.where(has_any, count, 1.0), 0.0)

"""The first step of every loss: one call that checks, converts and masks its scores.

A loss reads as three steps: prepare its inputs, run its kernel, return. :func:`scores` does the part
every family shares, in one place:

1. the framework of the call (:func:`polyloss._namespace.namespace_of`: the first array decides; the
   other inputs are named for the mixed-framework error);
2. the scores as an array of that framework, checked to be real floating, and converted to the
   compute dtype (float64 stays float64, everything else computes in float32);
3. the class axes normalised and moved last (several axes merged into one);
4. ``where`` converted, checked to be boolean, broadcast to the scores' shape, and applied: masked
   entries become ``-inf``.

The family then converts its labels onto the same framework, dtype, device and layout
(:meth:`Scores.secondary`) and runs its kernel on :attr:`Scores.values`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from polyloss import _checks, _ops
from polyloss._namespace import namespace_of

__all__ = ["Scores", "scores", "paired"]


@dataclass(frozen=True)
class Scores:
    """The scores of one call, checked and converted.

    ``native`` is the first argument as an array of its framework (its own dtype and layout, for
    shape messages); ``values`` the same scores in the compute dtype with the class axes last (merged
    into one) and the entries removed by ``where`` set to ``-inf``; ``where`` the mask in that layout
    (None when none was given); ``axes`` the class axes of ``native`` (empty for elementwise losses).
    """

    xp: Any
    backend: Any
    native: Any
    values: Any
    where: Any
    axes: tuple[int, ...]
    name: str

    @property
    def dtype(self):
        """The compute dtype."""
        return self.values.dtype

    def classes_last(self, x):
        """``x`` (of ``native``'s shape) in the layout of :attr:`values`; None stays None."""
        if x is None or not self.axes:
            return x
        return _ops.classes_last(self.xp, self.backend, x, self.axes)

    def secondary(self, value, name: str, *, same_shape: bool = True, floating_dtype: bool = True):
        """Another input of the call (labels, a second set of logits) as an array of the scores'
        framework and device, floating values in the compute dtype (``floating_dtype``).

        ``same_shape``: checked to have ``native``'s shape and moved to the layout of :attr:`values`;
        otherwise returned as converted, for the family to check.
        """
        x = self.backend.asarray(value, like=self.native, dtype=self.dtype if floating_dtype else None, name=name)
        if not same_shape:
            return x
        _checks.require_same_shape(self.native, x, self.name, name)
        return self.classes_last(x)


def scores(value, *, name: str = "logits", axis=-1, where=None, single_axis: bool = False, **others) -> Scores:
    """Check, convert and mask the scores ``value`` of a call (see the module docstring).

    Args:
      value: the scores (the first array argument: it decides the framework and device).
      name: its name in error messages.
      axis: the class axis, a tuple of axes, or None for an elementwise loss (no class axis).
      where: optional boolean mask broadcastable to ``value``; False entries become ``-inf``.
      single_axis: the loss takes one class axis only (a tuple is a TypeError).
      others: the call's other inputs by name (labels, masks, priors): only for the check that they
        do not belong to another framework; they are converted later by the family.
    """
    xp, backend = namespace_of(**{name: value}, where=where, **others)
    _checks.refuse_keras_caller(backend, value)
    native, values = _checks.prepare_floating(xp, backend, value, name)
    if axis is None:
        axes = ()
    elif single_axis:
        axes = (_checks.single_axis(axis, native.ndim),)
    else:
        axes = _checks.normalize_axes(axis, native.ndim)
    mask = _checks.prepare_where(xp, backend, where, native, name)
    if axes:
        values = _ops.classes_last(xp, backend, values, axes)
        if mask is not None:
            mask = _ops.classes_last(xp, backend, mask, axes)
    return Scores(xp, backend, native, _ops.mask_logits(xp, values, mask), mask, axes, name)


def paired(first: Scores, value, name: str, *, where=None):
    """``(s, t)``: ``first.values`` and a second set of scores of the same call (two dropout passes,
    clean and perturbed logits) prepared as ``first`` was (same axes, same ``where``), checked to have
    ``first``'s shape, in one compute dtype. A Python or NumPy ``value`` takes ``first``'s compute
    dtype; two arrays of the framework keep theirs, and float64 beside float32 computes in float64."""
    xp, backend = first.xp, first.backend
    host = None if backend.is_array(value) else first.dtype
    second = scores(backend.asarray(value, like=first.native, dtype=host, name=name), name=name,
                    axis=first.axes or None, where=where)
    _checks.require_same_shape(first.native, second.native, first.name, name)
    s, t = first.values, second.values
    if s.dtype != t.dtype:
        s, t = xp.astype(s, xp.float64), xp.astype(t, xp.float64)
    return s, t

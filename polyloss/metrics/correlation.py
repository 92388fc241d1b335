r"""Pearson and Spearman correlation (``docs/metrics.md``), the evaluation of CoSENT / SimCSE models on STS.

Spearman's coefficient is Pearson's on the ranks; tied values share the average of the ranks they
occupy (``scipy.stats.rankdata(method="average")``), so it equals ``scipy.stats.spearmanr``.
A constant input has no correlation: the result is NaN, as scipy's (which also warns).
"""

from __future__ import annotations

import math

from polyloss import _checks, _ops
from polyloss._namespace import namespace_of

__all__ = ["pearson", "spearman"]


def paired(x, y, caller: str, *, finite: bool, min_pairs: int = 2, keep_y_dtype: bool = False):
    """``(xp, backend, x, y)``: 1-D ``x`` (floating, in its compute dtype) and ``y`` (floating, integer
    or bool) converted to it, of the same length ``N >= min_pairs``; NaN (and, when ``finite``, ±inf) is a
    ValueError in eager mode.

    ``keep_y_dtype``: ``y`` keeps its own values for ranking instead (integers as they are, floats
    in their compute dtype, bool as integers): converting first could tie distinct values, e.g.
    integers above 2^24 next to float32 ``x``."""
    xp, backend = namespace_of(x=x, y=y)
    x, xc = _checks.prepare_floating(xp, backend, x, "x")
    y = backend.asarray(y, like=x, name="y")
    if not xp.isdtype(y.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"{caller}: y must be a real array, got dtype {y.dtype}")
    if x.ndim != 1 or y.ndim != 1 or not _checks.same_dims(x.shape, y.shape):
        raise ValueError(f"{caller}: x and y must be 1-D of the same length; got shapes {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    n = x.shape[0]
    if n is not None and n < min_pairs:
        raise ValueError(f"{caller}: needs at least {min_pairs} pairs, got {n}")
    if not keep_y_dtype:
        yc = xp.astype(y, xc.dtype) if y.dtype != xc.dtype else y
    elif xp.isdtype(y.dtype, "bool"):
        yc = xp.astype(y, backend.index_dtype())
    else:
        yc = _ops.upcast(xp, y) if xp.isdtype(y.dtype, "real floating") else y
    if _checks.values_checked(backend, x, y):
        for name, v in (("x", xc), ("y", yc)):
            if not xp.isdtype(v.dtype, "real floating"):
                continue  # integers are finite
            bad = ~xp.isfinite(v) if finite else xp.isnan(v)
            _checks.fail_if_any(xp, bad, lambda name=name: f"{caller}: {name} contains "
                                                           f"{'NaN or infinite values' if finite else 'NaN'}")
    return xp, backend, xc, yc


def _centred_unit_scale(xp, backend, v):
    """``v - mean(v)`` scaled so that its largest magnitude is about 1, and whether ``v`` is constant.

    A large common offset must not cost digits: the first mean is taken of ``v / peak`` (no
    overflow) and only shifts ``v``; the halving ``v/2 - m/2`` is exact and cannot overflow, so each
    deviation is rounded relative to itself, never to the offset; a second mean removes what the
    first one missed. The scalings are constants for the gradient (the correlation does not depend
    on them)."""
    constant = xp.max(v) == xp.min(v)
    peak = backend.stop_gradient(xp.max(xp.abs(v)))
    m = backend.stop_gradient(xp.mean(_ops.divide_by_peak(xp, backend, v)[0]) * peak)
    d, _ = _ops.divide_by_peak(xp, backend, v / 2 - m / 2)
    return d - xp.mean(d), constant


def correlation(xp, backend, x, y):
    """Pearson's r of two 1-D arrays of the same floating dtype, NaN when either is constant."""
    dx, cx = _centred_unit_scale(xp, backend, x)
    dy, cy = _centred_unit_scale(xp, backend, y)
    norms = xp.sqrt(xp.sum(dx * dx)) * xp.sqrt(xp.sum(dy * dy))  # each at least ~1/2: no underflow
    constant = cx | cy
    r = xp.sum(dx * dy) / xp.where(constant, 1.0, norms)
    return xp.where(constant, math.nan, xp.clip(r, -1.0, 1.0))


def pearson(x, y):
    r"""Pearson's correlation coefficient of the pairs ``(x_i, y_i)``.

    .. math::

        r = \frac{\sum_i (x_i - \bar x)(y_i - \bar y)}
                 {\sqrt{\sum_i (x_i - \bar x)^2}\,\sqrt{\sum_i (y_i - \bar y)^2}}

    ``x`` 1-D floating (it decides the framework and dtype), ``y`` 1-D of the same length (floating,
    integer or bool), at least 2 pairs, every value finite. The inputs are scaled and centred twice
    before the sums, so values near the dtype's overflow or with a large common offset keep their
    digits (see ``_centred_unit_scale``); the result is clipped to [-1, 1]. Differentiable in ``x``
    and ``y``. NaN when ``x`` or ``y`` is constant. Returns a 0-d array in ``x``'s compute dtype.

    >>> import numpy as np
    >>> from polyloss.metrics import pearson
    >>> round(float(pearson(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 3, 2, 5]))), 6)   # 5.5 / sqrt(5 * 8.75)
    0.831522
    """
    xp, backend, x, y = paired(x, y, "pearson", finite=True)
    return correlation(xp, backend, x, y)


def _ranks_of_sorted(xp, v, dtype):
    """1-based ranks of the sorted 1-D ``v``, in ``dtype``, ties sharing the mean of their ranks: an entry with
    ``lo`` smaller and ``hi - lo`` equal values occupies ranks ``lo + 1 .. hi``, mean
    ``(lo + 1 + hi) / 2`` (exact in float32 up to 2^23 entries). The queries are sorted, so the
    searches walk the array once."""
    lo = xp.searchsorted(v, v, side="left")
    hi = xp.searchsorted(v, v, side="right")
    return xp.astype(lo + hi + 1, dtype) / 2


def ranked_pairs(xp, x, y):
    """The average ranks of ``x`` and of ``y``, still paired, in some common order of the pairs
    (Pearson's r does not depend on the order): sorting by ``x`` ranks ``x``; sorting those pairs by
    ``y`` ranks ``y`` and carries the ranks of ``x`` along. Two sorts, no inverse permutation. The
    ranks are in ``x``'s dtype; ``y`` may have any real dtype."""
    by_x = xp.argsort(x, stable=True)
    rank_x = _ranks_of_sorted(xp, xp.take(x, by_x), x.dtype)
    y = xp.take(y, by_x)
    by_y = xp.argsort(y, stable=True)
    return xp.take(rank_x, by_y), _ranks_of_sorted(xp, xp.take(y, by_y), x.dtype)


def spearman(x, y):
    r"""Spearman's rank correlation: Pearson's r of the average ranks of ``x`` and of ``y``.

    Tied values get the mean of the ranks they occupy (scipy's ``spearmanr``). ±inf are ordinary
    extreme values; NaN is a ValueError (eager mode). Same argument rules as :func:`pearson`; NaN
    when either side is constant. Ranks are piecewise constant: there is no useful gradient.
    Returns a 0-d array in ``x``'s compute dtype; float32 ranks are exact up to 2^23 pairs.

    >>> import numpy as np
    >>> from polyloss.metrics import spearman
    >>> round(float(spearman(np.array([0.1, 0.4, 0.4, 0.9]), np.array([1, 2, 3, 4]))), 12)  # ranks 1, 2.5, 2.5, 4
    0.948683298051
    """
    xp, backend, x, y = paired(x, y, "spearman", finite=False, keep_y_dtype=True)
    return correlation(xp, backend, *ranked_pairs(xp, x, y))

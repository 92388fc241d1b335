"""Numerics the array API standard lacks, written once against ``xp``.

Every function takes the namespace ``xp`` (and, where a gradient matters, the backend adapter
``be``) explicitly. Masks are booleans applied with ``xp.where``; masked entries become
``-inf`` before any exponential, never a large finite constant.
"""

from __future__ import annotations

import math

__all__ = [
    "compute_dtype",
    "upcast",
    "classes_last",
    "mask_logits",
    "masked_max",
    "appended_zero_shift",
    "log1p_shifted",
    "by_rows",
    "logsumexp",
    "softmax_terms",
    "log_softmax",
    "neg_abs",
    "softplus_pair",
    "softplus",
    "log_sigmoid",
    "sigmoid",
    "log1mexp",
    "log_or_neg_inf",
    "divide_by_peak",
]

_LN2 = math.log(2.0)


def compute_dtype(xp, dtype):
    """float64 stays float64; every other floating dtype (float16, bfloat16, float32) computes in float32."""
    return xp.float64 if dtype == xp.float64 else xp.float32


def upcast(xp, x):
    """``x`` in its compute dtype (half precision goes to float32)."""
    target = compute_dtype(xp, x.dtype)
    return x if x.dtype == target else xp.astype(x, target)


def classes_last(xp, be, x, axes: tuple[int, ...]):
    """Move ``axes`` (sorted, non-negative) to the end and merge them into one class axis."""
    ndim = x.ndim
    rest = [a for a in range(ndim) if a not in axes]
    order = rest + list(axes)
    if order != list(range(ndim)):
        x = xp.permute_dims(x, tuple(order))
    if len(axes) > 1:
        x = xp.reshape(x, be.shape(x)[: len(rest)] + (-1,))
    return x


def mask_logits(xp, logits, where=None):
    """``logits`` with the entries where ``where`` is False replaced by ``-inf``.

    ``-inf`` is the one representation of a masked entry in the multi-label family (it is also the
    GlobalPointer/CRF convention for padding and impossible positions): every sum drops it, and a
    NaN or ``inf`` under the mask never reaches the arithmetic.
    """
    return logits if where is None else xp.where(where, logits, -math.inf)


def masked_max(xp, be, x, mask=None, *, axis=-1):
    """Stop-gradient row maximum of ``x`` over ``mask``, replaced by 0 where it is not finite.

    Used as the shift of a log-sum-exp: any finite shift gives the exact result, so its gradient
    is stopped (autograd through ``max`` doubles the backward cost), and an empty or infinite row
    gets the harmless shift 0 (``-inf - (-inf)`` would be NaN).
    """
    if mask is not None:
        x = xp.where(mask, x, -math.inf)
    m = xp.max(x, axis=axis, keepdims=True)
    return be.stop_gradient(xp.where(xp.isfinite(m), m, 0.0))


def appended_zero_shift(xp, be, x, *, axis=-1):
    """Stop-gradient shift ``c = max(0, max x)`` over ``axis`` (kept), 0 where that is not finite.

    After it, every term of ``1 + Σ e^{x}`` (the 1 included) is at most 1 and the largest is 1:
    nothing overflows and nothing that matters underflows. A row holding ``+inf`` (or NaN) gets the
    shift 0, so its sum is ``+inf`` (or NaN), as the formula says.
    """
    c = xp.clip(xp.max(x, axis=axis, keepdims=True), min=0.0)
    return be.stop_gradient(xp.where(xp.isfinite(c), c, 0.0))


def log1p_shifted(xp, c, total):
    """``log(1 + Σ e^{x})`` from the shift ``c = max(0, max x)`` and ``total = Σ e^{x - c}`` (same
    shapes): ``log1p(total)`` when ``c = 0`` (a small loss keeps its relative precision), else
    ``c + log(e^{-c} + total)``."""
    return xp.where(c > 0.0, c + xp.log(xp.exp(-c) + total), xp.log1p(total))


def logsumexp(xp, be, x, *, axis=-1, where=None, append_zero=False, keepdims=False):
    """``log Σ exp(x)`` over ``axis``, dropping ``-inf`` entries and those where ``where`` is False.

    With ``append_zero=True`` an extra 0 joins the sum: ``log(1 + Σ exp(x))``, shifted by
    ``max(0, max x)``. The shift passes through the backend's stop-gradient (any finite shift gives
    the exact value; differentiating through ``max`` would double the backward cost). An empty row
    gives ``-inf`` (or 0 with the appended zero).
    """
    if where is not None:
        x = xp.where(where, x, -math.inf)
    if append_zero:
        c = appended_zero_shift(xp, be, x, axis=axis)
        out = log1p_shifted(xp, xp.squeeze(c, axis=axis), xp.sum(xp.exp(x - c), axis=axis))
        return xp.expand_dims(out, axis=axis) if keepdims else out
    m = masked_max(xp, be, x, axis=axis)
    out = log_or_neg_inf(xp, xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


def by_rows(xp, be, fn, *arrays):
    """``fn(*arrays)`` evaluated block by block over the rows, results concatenated.

    ``arrays`` share the leading shape of ``arrays[0]`` (``[..., C]``): each is either a full
    ``[..., C]`` array or a per-row ``[...]`` array; ``fn`` returns a tuple of such arrays. Where the
    backend asks for it (eager NumPy/PyTorch on the CPU, see ``Backend.block_rows``), large inputs
    are cut into blocks of rows whose temporaries stay in cache and are reused by the allocator,
    instead of a fresh page-faulted buffer per intermediate; elsewhere (GPU, ``jit``, graphs)
    ``fn`` runs once on the whole arrays.
    """
    first = arrays[0]
    block = be.block_rows(first)
    if block is None:
        return fn(*arrays)
    lead = tuple(first.shape[:-1])
    rows = math.prod(lead)
    if rows <= block:
        return fn(*arrays)
    per_row = [a.ndim == len(lead) for a in arrays]
    flat = [
        xp.reshape(a, (rows,) if r else (rows, a.shape[-1]))
        for a, r in zip(arrays, per_row)
    ]
    parts = [fn(*(a[i : i + block] for a in flat)) for i in range(0, rows, block)]
    out = []
    for k in range(len(parts[0])):
        joined = xp.concat([p[k] for p in parts], axis=0)
        out.append(xp.reshape(joined, lead + tuple(joined.shape[1:])))
    return tuple(out)


def log_or_neg_inf(xp, x):
    """``log(x)`` for ``x >= 0`` (a sum of exponentials, ``1 - e^{y}``): ``-inf`` at 0, without a
    divide-by-zero warning and with a zero (not NaN) gradient there; NaN below 0, as ``log``."""
    positive = x > 0.0
    return xp.where(positive, xp.log(xp.where(positive, x, 1.0)), xp.where(x == 0.0, -math.inf, xp.full_like(x, math.nan)))


def softmax_terms(xp, be, x, *, axis=-1):
    """``(z, e, total, log_total)`` of the softmax of ``x`` over ``axis``: ``z = x - m`` with ``m`` the
    stop-gradient maximum (:func:`masked_max`), ``e = e^{z}``, ``total = Σ e`` and ``log total`` (both
    kept over ``axis``). A row with no valid entry (``total = 0``; ``-inf`` entries are removed) gets
    ``log total = 0``, so that nothing built on it is NaN; a NaN row stays NaN.

    ``log p = z - log total``: the rounding error of an entry is that of ``x - m``, not of ``m``, so two
    nearby inputs give log-probabilities whose difference is accurate (``x - logsumexp(x)`` loses
    ``eps·|m|``)."""
    z = x - masked_max(xp, be, x, axis=axis)
    e = xp.exp(z)
    total = xp.sum(e, axis=axis, keepdims=True)
    return z, e, total, xp.log(xp.where(total != 0.0, total, 1.0))


def log_softmax(xp, be, x, *, axis=-1, where=None):
    """``log softmax(x)`` over ``axis`` (see :func:`softmax_terms`). Masked entries come out as
    ``-inf``; a row with no valid entry is all ``-inf``."""
    if where is not None:
        x = xp.where(where, x, -math.inf)
    z, _, _, log_total = softmax_terms(xp, be, x, axis=axis)
    return z - log_total


def neg_abs(xp, x):
    """``-|x|`` written as ``where(x >= 0, -x, x)``: autograd differentiates the branch it takes, so
    the derivative at 0 is -1 (that of the ``x >= 0`` formula), where ``abs`` gives 0. Functions
    built on it (softplus, sigmoid) then have their exact derivative at 0 too."""
    return xp.where(x >= 0, -x, x)


def softplus_pair(be, x):
    """``(softplus(-x), softplus(x)) = (-log σ(x), -log σ(-x))`` through the backend's softplus (a
    fused kernel where the framework has an accurate one, else :func:`softplus`): no overflow, no
    cancellation (both are sums of non-negative terms), derivatives exact at 0 (``∓1/2``)."""
    return be.softplus(-x), be.softplus(x)


def softplus(xp, x):
    """``log(1 + e^x)`` without overflow: ``relu(x) + log1p(e^{-|x|})`` (derivative 1/2 at 0)."""
    return xp.where(x >= 0, x, 0.0) + xp.log1p(xp.exp(neg_abs(xp, x)))


def log_sigmoid(xp, x):
    """``log σ(x) = -softplus(-x)``."""
    return -softplus(xp, -x)


def sigmoid(xp, x):
    """``σ(x)`` with both branches finite for every input (so its gradient never meets ``0·inf``)
    and the exact derivative 1/4 at 0."""
    e = xp.exp(neg_abs(xp, x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log1mexp(xp, x):
    """``log(1 - e^x)`` for ``x <= 0``, accurate everywhere (Mächler 2012).

    ``log(-expm1(x))`` for ``x > -ln 2`` and ``log1p(-exp(x))`` otherwise; each branch sees only
    inputs in its own range, so neither the value nor the gradient of the unused branch is NaN.
    ``x = 0`` gives ``-inf``; ``x > 0`` gives NaN.
    """
    near = x > -_LN2
    x_near = xp.where(near, x, -1.0)
    x_far = xp.where(near, -1.0, x)
    return xp.where(near, log_or_neg_inf(xp, -xp.expm1(x_near)), xp.log1p(-xp.exp(x_far)))


def divide_by_peak(xp, be, x, *, axis=-1):
    """``(x / peak, peak != 0)`` with ``peak = max |x|`` along ``axis`` (kept), a constant for the
    gradient; a zero peak divides by 1. The division is by ``sqrt(peak)`` twice: XLA turns a division
    into a multiplication by the reciprocal, and ``1/peak`` is subnormal (flushed to 0 on CPUs) for
    float32 peaks above 2**126."""
    peak = be.stop_gradient(xp.max(xp.abs(x), axis=axis, keepdims=True))
    nonzero = peak != 0.0
    root = xp.sqrt(xp.where(nonzero, peak, 1.0))
    return x / root / root, nonzero

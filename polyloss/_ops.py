"""Numerics the array API standard lacks, written once against ``xp`` from the adapters' primitives.

Every function takes its arguments in one order: the namespace ``xp``, then the adapter ``backend``
where it needs one (a stop-gradient, a fused native kernel, the row-blocking policy), then the
arrays, then keyword options. Masks are booleans applied with ``xp.where``; masked entries become
``-inf`` before any exponential, never a large finite constant. The adapters (``polyloss.backends``)
supply primitives and no numerics; where one offers a fused kernel (``Backend.softplus``,
``Backend.log_scan``) the function here uses it, and composes the array-API form otherwise.
"""

from __future__ import annotations

import math

from polyloss._kernels import Kernel

__all__ = [
    "compute_dtype_name",
    "compute_dtype",
    "upcast",
    "classes_last",
    "mask_logits",
    "masked_max",
    "appended_zero_shift",
    "log1p_shifted",
    "by_rows",
    "cheap_branch",
    "exp_sum_limit",
    "all_zero",
    "logsumexp",
    "max_and_argmax",
    "softmax_terms",
    "log_softmax",
    "neg_abs",
    "softplus_pair",
    "softplus",
    "sigmoid",
    "log1mexp",
    "log_or_neg_inf",
    "divide_by_peak",
    "log_scan",
    "logcumsumexp",
]

_LN2 = math.log(2.0)


def compute_dtype_name(name: str) -> str:
    """The precision rule, by dtype name: float64 computes in float64; every other floating dtype
    (float16, bfloat16, float32) computes in float32, and results come back in that dtype."""
    return "float64" if name == "float64" else "float32"


def compute_dtype(xp, dtype):
    """:func:`compute_dtype_name` for a dtype of the namespace ``xp``."""
    return getattr(xp, compute_dtype_name("float64" if dtype == xp.float64 else str(dtype)))


def upcast(xp, x):
    """``x`` in its compute dtype (half precision goes to float32)."""
    target = compute_dtype(xp, x.dtype)
    return x if x.dtype == target else xp.astype(x, target)


def classes_last(xp, backend, x, axes: tuple[int, ...]):
    """Move ``axes`` (sorted, non-negative) to the end and merge them into one class axis."""
    ndim = x.ndim
    rest = [a for a in range(ndim) if a not in axes]
    order = rest + list(axes)
    if order != list(range(ndim)):
        x = xp.permute_dims(x, tuple(order))
    if len(axes) > 1:
        x = xp.reshape(x, backend.shape(x)[: len(rest)] + (-1,))
    return x


def mask_logits(xp, logits, where=None):
    """``logits`` with the entries where ``where`` is False replaced by ``-inf``.

    ``-inf`` is the one representation of a masked entry in the multi-label family (it is also the
    GlobalPointer/CRF convention for padding and impossible positions): every sum drops it, and a
    NaN or ``inf`` under the mask never reaches the arithmetic.
    """
    return logits if where is None else xp.where(where, logits, -math.inf)


def masked_max(xp, backend, x, mask=None, *, axis=-1):
    """Stop-gradient row maximum of ``x`` over ``mask``, replaced by 0 where it is not finite.

    Used as the shift of a log-sum-exp: any finite shift gives the exact result, so its gradient
    is stopped (autograd through ``max`` doubles the backward cost), and an empty or infinite row
    gets the harmless shift 0 (``-inf - (-inf)`` would be NaN).
    """
    if mask is not None:
        x = xp.where(mask, x, -math.inf)
    m = xp.max(x, axis=axis, keepdims=True)
    return backend.stop_gradient(xp.where(xp.isfinite(m), m, 0.0))


def appended_zero_shift(xp, backend, x, *, axis=-1):
    """Stop-gradient shift ``c = max(0, max x)`` over ``axis`` (kept), 0 where that is not finite.

    After it, every term of ``1 + Σ e^{x}`` (the 1 included) is at most 1 and the largest is 1:
    nothing overflows and nothing that matters underflows. A row holding ``+inf`` (or NaN) gets the
    shift 0, so its sum is ``+inf`` (or NaN), as the formula says.
    """
    c = xp.clip(xp.max(x, axis=axis, keepdims=True), min=0.0)
    return backend.stop_gradient(xp.where(xp.isfinite(c), c, 0.0))


def log1p_shifted(xp, c, total):
    """``log(1 + Σ e^{x})`` from the shift ``c = max(0, max x)`` and ``total = Σ e^{x - c}`` (same
    shapes): ``log1p(total)`` when ``c = 0`` (a small loss keeps its relative precision), else
    ``c + log(e^{-c} + total)``."""
    return xp.where(c > 0.0, c + xp.log(xp.exp(-c) + total), xp.log1p(total))


def logsumexp(xp, backend, x, *, axis=-1, where=None, append_zero=False, keepdims=False):
    """``log Σ exp(x)`` over ``axis``, dropping ``-inf`` entries and those where ``where`` is False.

    With ``append_zero=True`` an extra 0 joins the sum: ``log(1 + Σ exp(x))``, shifted by
    ``max(0, max x)``. The shift passes through the backend's stop-gradient (any finite shift gives
    the exact value; differentiating through ``max`` would double the backward cost). An empty row
    gives ``-inf`` (or 0 with the appended zero).

    Without ``where`` and ``append_zero``, where no gradient is recorded through ``x``
    (``Backend.may_need_grad``), the adapter's fused kernel is used when it has one
    (``Backend.logsumexp``: same value; its gradient, NaN on a row of ``-inf``, is never asked for).
    """
    if (where is None and not append_zero and backend.logsumexp is not None
            and not backend.may_need_grad(x)):
        return backend.logsumexp(x, axis=axis, keepdims=keepdims)
    if where is not None:
        x = xp.where(where, x, -math.inf)
    if append_zero:
        c = appended_zero_shift(xp, backend, x, axis=axis)
        out = log1p_shifted(xp, xp.squeeze(c, axis=axis), xp.sum(xp.exp(x - c), axis=axis))
        return xp.expand_dims(out, axis=axis) if keepdims else out
    m = masked_max(xp, backend, x, axis=axis)
    out = log_or_neg_inf(xp, xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


def max_and_argmax(xp, backend, x, *, axis=-1, keepdims=False):
    """``(max x, argmax x)`` over ``axis``, the index of the first maximum among ties: the adapter's
    fused kernel where it has one (``Backend.max_with_indices``: one call instead of two, in each step
    of an eager loop), else ``xp.max`` and ``xp.argmax``. Values only (no gradient)."""
    if backend.max_with_indices is not None:
        return backend.max_with_indices(x, axis=axis, keepdims=keepdims)
    return xp.max(x, axis=axis, keepdims=keepdims), xp.argmax(x, axis=axis, keepdims=keepdims)


def by_rows(xp, backend, fn, *arrays):
    """``fn(*arrays)`` evaluated block by block over the rows, results concatenated.

    ``arrays`` share the leading shape of ``arrays[0]`` (``[..., C]``): each is either a full
    ``[..., C]`` array or a per-row ``[...]`` array; ``fn`` returns a tuple of such arrays. Where the
    backend asks for it (eager NumPy/PyTorch on the CPU, see ``Backend.block_rows``), large inputs
    are cut into blocks of rows whose temporaries stay in cache and are reused by the allocator,
    instead of a fresh page-faulted buffer per intermediate; elsewhere (GPU, ``jit``, graphs)
    ``fn`` runs once on the whole arrays.
    """
    first = arrays[0]
    block = backend.block_rows(first)
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
    # each block's results are written into buffers allocated once (eager NumPy and PyTorch arrays take
    # slice assignment; torch's CPU concatenation of the blocks costs four times the copy)
    out = None
    for i in range(0, rows, block):
        part = fn(*(a[i : i + block] for a in flat))
        if out is None:
            out = [xp.empty((rows,) + tuple(p.shape[1:]), dtype=p.dtype, device=backend.device(p)) for p in part]
        for buffer, p in zip(out, part):
            buffer[i : i + block, ...] = p
    return tuple(xp.reshape(buffer, lead + tuple(buffer.shape[1:])) for buffer in out)


def cheap_branch(backend, x) -> bool:
    """Whether a kernel may read values of ``x``'s computation back to Python and branch on them at no
    real cost: eager on the CPU (the row-blocking policy, ``Backend.block_rows``, says the same). On a
    GPU a read would wait for the device; under ``jit``, ``tf.function`` or ``torch.compile`` there is no
    value to read. Used for fast paths that are exact where they apply and checked before use."""
    return backend.block_rows(x) is not None


def untracked_cheap_branch(backend, x) -> bool:
    """:func:`cheap_branch` (eager on the CPU) with no gradient recorded through ``x``: where a kernel may
    take a road that autograd could not follow (the CRF's scaled recursion, guarded and read back), and
    may update ``x``, an array it created itself (never an input, a view of one, or a value it returns to
    a caller that keeps it), with the array API's in-place operators (``x *= y``). Where a graph is
    recorded (a gradient of the gradient, ``create_graph=True``) an in-place update would overwrite a value
    the graph saved; elsewhere (JAX, TensorFlow) the operators rebind and nothing is gained."""
    return cheap_branch(backend, x) and not backend.may_need_grad(x)


def exp_sum_limit(xp, dtype, terms: int) -> float:
    """The largest ``x`` such that a sum of ``terms`` values ``e^{x}`` (plus 1) cannot overflow ``dtype``:
    below it a log-sum-exp needs no shift."""
    return math.log(float(xp.finfo(dtype).max) / (terms + 2))


def all_zero(xp, *arrays) -> bool:
    """Whether every entry of ``arrays`` is 0 (a Python bool: eager only, see :func:`cheap_branch`)."""
    return all(not bool(xp.any(a != 0.0)) for a in arrays)


def log_or_neg_inf(xp, x):
    """``log(x)`` for ``x >= 0`` (a sum of exponentials, ``1 - e^{y}``): ``-inf`` at 0, without a
    divide-by-zero warning and with a zero (not NaN) gradient there; NaN below 0, as ``log``."""
    positive = x > 0.0
    at_zero_or_below = xp.where(x == 0.0, -math.inf, xp.full_like(x, math.nan))
    return xp.where(positive, xp.log(xp.where(positive, x, 1.0)), at_zero_or_below)


def softmax_terms(xp, backend, x, *, axis=-1):
    """``(z, e, total, log_total)`` of the softmax of ``x`` over ``axis``: ``z = x - m`` with ``m`` the
    stop-gradient maximum (:func:`masked_max`), ``e = e^{z}``, ``total = Σ e`` and ``log total`` (both
    kept over ``axis``). A row with no valid entry (``total = 0``; ``-inf`` entries are removed) gets
    ``log total = 0``, so that nothing built on it is NaN; a NaN row stays NaN.

    ``log p = z - log total``: the rounding error of an entry is that of ``x - m``, not of ``m``, so two
    nearby inputs give log-probabilities whose difference is accurate (``x - logsumexp(x)`` loses
    ``eps·|m|``)."""
    z = x - masked_max(xp, backend, x, axis=axis)
    e = xp.exp(z)
    total = xp.sum(e, axis=axis, keepdims=True)
    return z, e, total, xp.log(xp.where(total != 0.0, total, 1.0))


def log_softmax(xp, backend, x, *, axis=-1, where=None):
    """``log softmax(x)`` over ``axis`` (see :func:`softmax_terms`). Masked entries come out as
    ``-inf``; a row with no valid entry is all ``-inf``."""
    if where is not None:
        x = xp.where(where, x, -math.inf)
    z, _, _, log_total = softmax_terms(xp, backend, x, axis=axis)
    return z - log_total


def neg_abs(xp, x):
    """``-|x|`` written as ``where(x >= 0, -x, x)``: autograd differentiates the branch it takes, so
    the derivative at 0 is -1 (that of the ``x >= 0`` formula), where ``abs`` gives 0. Functions
    built on it (softplus, sigmoid) then have their exact derivative at 0 too."""
    return xp.where(x >= 0, -x, x)


def softplus_pair(xp, backend, x):
    """``(softplus(-x), softplus(x)) = (-log σ(x), -log σ(-x))`` (:func:`softplus`): no overflow, no
    cancellation (both are sums of non-negative terms), derivatives exact at 0 (``∓1/2``)."""
    return softplus(xp, backend, -x), softplus(xp, backend, x)


def softplus(xp, backend, x):
    """``log(1 + e^x)`` without overflow, with the derivative ``σ(x)`` (1/2 at 0): the adapter's fused
    kernel where the framework has an accurate one (``Backend.softplus``; in eager PyTorch the
    composed form costs 3x more), else ``relu(x) + log1p(e^{-|x|})``."""
    if backend.softplus is not None:
        return backend.softplus(x)
    return xp.where(x >= 0, x, 0.0) + xp.log1p(xp.exp(neg_abs(xp, x)))


def sigmoid(xp, x):
    """``σ(x)`` with both branches finite for every input (so its gradient never meets ``0·inf``)
    and the exact derivative 1/4 at 0."""
    e = xp.exp(neg_abs(xp, x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def kernel_sigmoid(xp, backend, s):
    """``σ(s)`` for closed-form kernels (nothing differentiates it; :func:`sigmoid` is the differentiable form): the
    adapter's fused sigmoid where it has one (``Backend.sigmoid``), else ``1 / (1 + e^{-s})``, one
    exponential; below ``1 - log(max)`` (where ``σ`` is under the smallest normal number) ``s`` is clipped so that
    ``e^{-s}`` cannot overflow (at ``-log(max)`` itself the rounded exponential can): exact to within the smallest
    normal."""
    if backend.sigmoid is not None:
        return backend.sigmoid(s)
    bound = 1.0 - math.log(float(xp.finfo(s.dtype).max))
    return 1.0 / (1.0 + xp.exp(-xp.clip(s, min=bound)))


def sigmoid_pair(xp, backend, s, e):
    """``(σ(-s), σ(s))`` of finite logits ``s`` for closed-form kernels (nothing differentiates it), with
    ``e = e^{-|s|}``: the adapter's fused sigmoid where it has one (``Backend.sigmoid``: two passes), else
    from ``e``: ``σ(|s|) = 1/(1 + e)`` and ``σ(-|s|) = e σ(|s|)``, picked by the sign of ``s`` through exact
    factors, not ``where`` or a boolean cast (each costs several multiplications in eager PyTorch on the
    CPU): ``up`` is ``gap`` for ``s > 0`` and 0 for ``s < 0`` (``copysign(gap/2, s) + gap/2``, exact), and
    ``low + up`` is ``low`` exactly or ``high`` to within an ulp."""
    if backend.sigmoid is not None:
        return backend.sigmoid(-s), backend.sigmoid(s)
    high = 1.0 / (1.0 + e)  # σ(|s|) >= 1/2
    low = e * high  # σ(-|s|)
    half_gap = (high - low) * 0.5
    up = xp.copysign(half_gap, s) + half_gap
    return low + ((half_gap + half_gap) - up), low + up


def log_softmax_rows(xp, backend, s):
    """``(log p, p)`` of finite logits ``s [..., C]`` (no class removed): the adapter's fused log-softmax where
    it has one (``Backend.log_softmax``, then ``p = e^{log p}``), else ``z = s - max s``, ``e^{z} / Σ e^{z}`` and
    ``z - log Σ e^{z}``. For the eager-CPU kernels (``_softmax.fast_crossentropy_applies``)."""
    if backend.log_softmax is not None:
        log_p = backend.log_softmax(s)
        return log_p, xp.exp(log_p)
    z = s - xp.max(s, axis=-1, keepdims=True)
    e = xp.exp(z)
    total = xp.sum(e, axis=-1, keepdims=True)
    return z - xp.log(total), e / total


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


def divide_by_peak(xp, backend, x, *, axis=-1):
    """``(x / peak, peak != 0)`` with ``peak = max |x|`` along ``axis`` (kept), a constant for the
    gradient; a zero peak divides by 1. The division is by ``sqrt(peak)`` twice: XLA turns a division
    into a multiplication by the reciprocal, and ``1/peak`` is subnormal (flushed to 0 on CPUs) for
    float32 peaks above 2**126."""
    peak = backend.stop_gradient(xp.max(xp.abs(x), axis=axis, keepdims=True))
    nonzero = peak != 0.0
    root = xp.sqrt(xp.where(nonzero, peak, 1.0))
    return x / root / root, nonzero


def log_scan(xp, backend, x, *, reverse: bool = False):
    """``R_i = log Σ_{j<=i} e^{x_j}`` along the last axis (``Σ_{j>=i}`` when ``reverse``), the value
    only: the adapter's log-space scan (``Backend.log_scan``, no range limit) where the framework has
    one. Otherwise the row is shifted by its maximum and ``log cumulative_sum(e^{x - m})`` taken,
    exact while the sums do not underflow (a range of ``x`` below ~80 in float32, ~700 in float64)."""
    if backend.log_scan is not None:
        return backend.log_scan(x, reverse=reverse)
    if reverse:
        return xp.flip(log_scan(xp, backend, xp.flip(x, axis=-1)), axis=-1)
    m = masked_max(xp, backend, x, axis=-1)
    return log_or_neg_inf(xp, xp.cumulative_sum(xp.exp(x - m), axis=-1)) + m


def logcumsumexp(xp, backend, x, *, reverse: bool = False):
    """:func:`log_scan`, differentiable to any order on every backend.

    Where the adapter's scan has no correct gradient of its own, the gradient is written out
    (``_LOGCUMSUMEXP``): ``∂R_i/∂x_j = e^{x_j - R_i}``, so ``x̄_j = Σ_i ḡ_i e^{x_j - R_i}`` is one more
    scan in the other direction, in log space for the positive and the negative parts of the
    cotangent. (JAX's own derivative of its scan costs seconds of compilation per shape; TensorFlow
    has none.)"""
    if backend.log_scan_differentiable:
        return backend.log_scan(x, reverse=reverse)
    return _LOGCUMSUMEXP(backend, x, reverse=reverse)


def _logcumsumexp_fwd(xp, backend, x, *, reverse):
    return log_scan(xp, backend, x, reverse=reverse), ()


def _logcumsumexp_bwd(xp, backend, arrays, residuals, g, needs, *, reverse):
    (x,) = arrays
    # the output again, through the differentiable function: higher derivatives then use this formula
    # too, never the framework's derivative of its scan (none in TensorFlow, NaN at -inf in JAX)
    out = logcumsumexp(xp, backend, x, reverse=reverse)
    live = out != -math.inf  # R_i = -inf: every term of its set is 0, so is its share
    safe_out = xp.where(live, out, 0.0)

    def part(w):
        log_w = log_or_neg_inf(xp, xp.where(w > 0.0, w, 0.0))
        terms = xp.where(live, log_w - safe_out, -math.inf)
        return xp.exp(x + logcumsumexp(xp, backend, terms, reverse=not reverse))

    return (part(g) - part(-g),)


_LOGCUMSUMEXP = Kernel("logcumsumexp", _logcumsumexp_fwd, _logcumsumexp_bwd)

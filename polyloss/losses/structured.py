"""The structured-prediction family: the linear-chain CRF (negative log-likelihood, log partition,
marginals and Viterbi decoding, with hard constraints) and the MEMM / Bi-MEMM, written once against
the array API (formulas, algorithms, conventions and the peers in ``docs/structured.md``).

Sources: kexue.fm/archives/5542 (CRF: path score, forward algorithm, Viterbi), kexue.fm/archives/7213
(MEMM and Bi-MEMM); Lafferty et al. 2001, "Conditional Random Fields"; McCallum et al. 2000, "Maximum
Entropy Markov Models"; Rabiner 1989 (forward-backward).

Notation, batch first: ``emissions`` e ``[B, T, K]``, ``transitions`` A ``[K, K]`` indexed
``[from, to]``, optional ``start`` s and ``end`` u ``[K]``, ``mask`` ``[B, T]`` True at the tokens of a
row, which form one contiguous run (left or right padding). A row whose tokens are ``t_1 < ... < t_n``
scores a tag path ``y = (y_1, ..., y_n)`` as

    S(y) = s[y_1] + Σ_i e[t_i, y_i] + Σ_{i≥2} A[y_{i-1}, y_i] + u[y_n]

and ``log Z = log Σ_y e^{S(y)}``, ``nll(y) = log Z - S(y)``, ``μ[t, k] = P(y at t = k) = ∂ log Z / ∂e[t, k]``,
``decode = argmax_y S(y)``.

How it is computed
------------------
* Alignment. Each row is moved (one gather) so that its tokens start at position 0 (for the forward
  recursion) and, separately, end at position T - 1 (for the backward one); every row then runs the
  same recursion with no mask inside the loop, and the results are moved back. Without a mask the
  gathers are skipped.
* Forward-backward in one scan. With ``α'_k(j)`` the log-weight of the prefixes ending in tag ``j`` at
  the k-th token *before* its emission, and ``β'_k(i)`` that of the continuations after it,

      α'_1 = s,   α'_k(j) = lse_i(α'_{k-1}(i) + e_{k-1}(i) + A[i, j])
      β'_n = u,   β'_k(i) = lse_j(β'_{k+1}(j) + e_{k+1}(j) + A[i, j])

  are the same recursion, ``new = lse_i(state(i) + x(i) + W[i, j])``, with ``W = A`` and ``W = Aᵀ``: both
  run side by side as one ``[2, B, K]`` state through ``Backend.scan`` (``lax.scan`` under ``jax.jit``,
  a ``tf.while_loop`` inside ``tf.function``, a Python loop eagerly), so the forward and the backward
  pass cost T small steps together, not 2T. ``log Z = lse(α'_n + e_n + u)`` and
  ``μ_k = exp(α'_k + e_k + β'_k - log Z)``.
* Gradient. ``log Z`` is a :class:`polyloss._kernels.Kernel`: its gradient is written out (the gradient
  of log Z is the marginals; for A the summed edge marginals), vectorised over the whole batch and time,
  with nothing recorded through the loop. Second derivatives differentiate that gradient, through the
  scan (``Kernel`` rule 3).
* Viterbi. The same recursion with ``max`` instead of ``lse`` (stop-gradient) on the step scores
  ``g_k[i, j] = e_k(i) + A[i, j]`` of every position, computed at once; the back-pointers, the first
  index among ties, are recomputed after the scan from the same sums by one vectorised argmax
  (compiled), or kept by each step of the eager loop (``_ops.max_and_argmax``: one fused call where
  the adapter has ``Backend.max_with_indices``). The backtrace follows the pointers from each row's
  best last tag: by pointer doubling (``log T`` vectorised gathers) with T static, by a scan with T
  unknown (``tf.function``). The decoded path's score is recomputed as ``S(y)``, differentiable (its gradient
  is the path's indicator), where a gradient may be asked for (``Backend.may_need_grad``); otherwise it is
  the Viterbi maximum itself (the same sum, added step by step: equal up to rounding).
* Eager on the CPU (NumPy, eager PyTorch: ``_ops.cheap_branch``) a loop costs the dispatch of its few
  small operations per step, not their arithmetic, so there: the forward-backward recursion runs in
  exp space (the scaled recursion, see ``_scaled_states``: one small matrix product and one product
  per step, float64), used only where a guard checked before use proves it exact, the log-space scan
  otherwise; the Viterbi loop alternates column and row states (an add and a fused max per step) and
  its backtrace runs in NumPy on the host. Elsewhere (GPU, ``jax.jit``, ``tf.function``) the log-space
  ``Backend.scan``. A log-depth associative scan (as in torch-struct) does O(K³) work per token
  instead of O(K²); measured slower on CPUs for K = 9 (``benchmarks/README.md``).

Conventions (those of ``polyloss.reference.structured``)
--------------------------------------------------------
* ``-inf`` in an emission at a token, a transition, ``start`` or ``end`` is a hard constraint: a path
  using it has weight 0, in training and decoding. Scores and tags at masked positions are ignored,
  whatever their value (NaN, infinities, out-of-range tags).
* A gold path that uses a ``-inf`` score has ``nll = +inf`` (and a zero gradient: the loss is infinite
  around it). A row with no feasible path: ``log Z = -inf``, ``nll = +inf``, marginals 0, decode score
  ``-inf`` and every tag ``fill``. A row with no token: ``log Z = 0``, ``nll = 0``, marginals 0, decode
  score 0, every tag ``fill``.
* NaN or ``+inf`` in a score that the row uses makes the row's outputs NaN (decode: tags ``fill``).
* Decode ties: the largest score wins; among exact ties, the path whose last tag is smallest, then
  the tag before it, and so on (first-index argmax with a backtrace, as pytorch-crf).
* A mask with holes is a ValueError naming the row, and a tag outside ``[0, K)`` at a token a
  ValueError naming its position, in eager mode; compiled (no value checks), such a row's outputs are
  NaN (decode: score NaN, tags ``fill``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyloss import _checks, _inputs, _ops
from polyloss._kernels import Kernel

__all__ = [
    "crf_nll",
    "crf_log_partition",
    "crf_marginals",
    "crf_decode",
    "memm_nll",
    "allowed_transitions",
]

_NEG_INF = -math.inf
_MEMM_DIRECTIONS = ("forward", "backward", "both")
# scheme name -> canonical scheme, and the entity prefixes each canonical scheme parses
_SCHEMES = {"BIO": "BIO", "IOB2": "BIO", "IOBES": "IOBES", "BIOES": "IOBES"}
_PREFIXES = {"BIO": ("B", "I"), "IOBES": ("B", "I", "E", "S")}


# --------------------------------------------------------------------------------------------
# Prepare: one call that checks and converts every input
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Chain:
    """The inputs of one call, checked and converted.

    ``emissions`` is in the compute dtype with 0 at masked positions (their values are ignored, NaN
    included); ``transitions``, ``start`` and ``end`` in the compute dtype (``start``/``end`` None when
    not given); ``valid [B, T]`` the tokens; ``first``/``length [B]`` (index dtype) each row's first
    token and its number of tokens; ``layout`` (static) ``"full"`` when every row fills T (no mask, or
    seen so in eager mode: no realignment at all), ``"right"`` when every row starts at position 0 (right
    padding, seen in eager mode: no move to the start), ``"any"`` otherwise (compiled code with a mask);
    ``undefined [B]`` the rows with NaN or ``+inf`` in a score they use (those scores are
    replaced by 0 in the arrays above: the rows come out NaN), ``undefined_emissions [B]`` the rows with
    such an emission, ``bad_transitions [K, K]`` the transitions that are NaN or ``+inf``; ``tags`` the
    gold tags (index dtype, 0 where masked or out of range) and ``bad_tags [B]`` the rows with a tag
    outside ``[0, K)`` at a token (only when tags were given)."""

    xp: Any
    backend: Any
    native: Any
    emissions: Any
    transitions: Any
    start: Any
    end: Any
    valid: Any
    first: Any
    length: Any
    layout: str
    undefined: Any
    undefined_emissions: Any
    bad_transitions: Any
    tags: Any = None
    bad_tags: Any = None

    @property
    def tags_count(self) -> int:
        return int(self.native.shape[2])

    def zeros_k(self):
        """A ``[K]`` zero vector in the compute dtype (the kernel's start / end when not given)."""
        return self.xp.zeros_like(self.transitions[0, ...])

    def kernel_arrays(self):
        """``(e, A, s, u, first, length)`` for the forward-backward kernel."""
        s = self.start if self.start is not None else self.zeros_k()
        u = self.end if self.end is not None else self.zeros_k()
        return self.emissions, self.transitions, s, u, self.first, self.length


def _vector(scores, value, name: str, k: int):
    """``start`` / ``end``: a ``[K]`` floating array in the compute dtype, or None."""
    if value is None:
        return None
    xp = scores.xp
    x = scores.secondary(value, name, same_shape=False)
    _checks.require_floating(xp, x, name)
    if not _checks.same_dims(x.shape, (k,)):
        raise ValueError(f"{name} has shape {tuple(x.shape)} but emissions of shape {tuple(scores.native.shape)} "
                         f"need {name} of shape [K] = ({k},)")
    return x


def _extent(xp, backend, mask):
    """``(first, length)``: each row's first True position (0 for a row with none) and number of
    True entries, in the index dtype."""
    counts = xp.astype(mask, backend.index_dtype())
    length = xp.sum(counts, axis=1)
    if mask.shape[1] == 0:  # no position: argmax of an empty axis is an error
        return xp.zeros_like(length), length
    return xp.argmax(counts, axis=1), length


def _positions(xp, backend, like, first):
    """``[1, T]`` positions 0 .. T-1 in ``first``'s dtype, on ``like``'s device."""
    t_size = backend.shape(like)[1]
    return xp.arange(t_size, dtype=first.dtype, device=backend.device(like))[None, :]


def _span(xp, backend, like, first, length):
    """``[B, T]``: True at positions ``first <= t < first + length``."""
    t = _positions(xp, backend, like, first)
    return (t >= first[:, None]) & (t < (first + length)[:, None])


def _rows_with_holes(xp, backend, mask, first, length):
    """``[B]``: the rows whose tokens do not form one contiguous run."""
    return xp.any(_span(xp, backend, mask, first, length) != mask, axis=1)


def _check_mask_on_host(backend, mask) -> str:
    """Eager only: the mask read back once; a ValueError naming the first row whose tokens do not form
    one run, else the layout (see :class:`_Chain`): ``"full"`` when every position is a token,
    ``"right"`` when every row with tokens starts at position 0, ``"any"`` otherwise (the realignment
    gathers are skipped where they would move nothing)."""
    line = np.asarray(backend.to_numpy(mask), dtype=bool)  # [B, T]
    if line.shape[1] == 0:
        return "full"
    runs = np.sum(line[:, 1:] & ~line[:, :-1], axis=1) + line[:, 0]  # starts of runs of tokens
    if np.any(runs > 1):
        row = int(np.argmax(runs > 1))
        tokens = np.flatnonzero(line[row])
        a, last = int(tokens[0]), int(tokens[-1])
        gaps = [int(t) for t in np.flatnonzero(~line[row, a:last + 1]) + a]
        raise ValueError(
            f"mask row {row} has holes: its tokens (True) must form one contiguous run (left or right padding), "
            f"but positions {gaps} between its first token ({a}) and last token ({last}) are False "
            f"({tokens.size} tokens in all)")
    if np.all(line):
        return "full"
    return "right" if not np.any(~line[:, 0] & np.any(line, axis=1)) else "any"


def _all_defined(xp, backend, arrays) -> bool:
    """Eager only, one read: True when no array (None skipped) holds NaN or ``+inf``, seen from the
    maximum of them all (NaN or ``+inf`` exactly where one is; ``-inf`` constraints pass). Empty
    arrays (no maximum): False, and the caller checks element by element."""
    present = [x for x in arrays if x is not None]
    if any(0 in tuple(backend.shape(x)) for x in present):
        return False
    top = float(backend.stop_gradient(xp.max(xp.stack([xp.max(x) for x in present]))))  # read: no graph
    return not (math.isnan(top) or top == math.inf)


def _undefined(xp, x):
    """NaN or ``+inf``: a score outside the contract. The rows that use one come out NaN; it is replaced
    by 0 in the arrays the kernels see (their gradient is 0 through that ``where``), so that it cannot
    reach ``inf - inf`` in the other rows' arithmetic or raise NumPy's invalid-value warnings."""
    return xp.isnan(x) | (x == math.inf)


def _gold_tags(xp, backend, chain_like, tags, valid, k: int):
    """``(tags, bad_rows)``: the gold tags in the index dtype with 0 at masked or out-of-range
    positions, and the rows with a tag outside ``[0, K)`` at a token. In eager mode such a tag is a
    ValueError naming it."""
    native = chain_like
    y = _checks.as_index_array(xp, backend, tags, native, "tags")
    if y.ndim != 2 or not _checks.same_dims(y.shape, native.shape[:2]):
        raise ValueError(f"tags has shape {tuple(y.shape)} but emissions of shape {tuple(native.shape)} need tags "
                         f"of shape [B, T] = {tuple(native.shape[:2])}")
    out_of_range = valid & ((y < 0) | (y >= k))
    if _checks.values_checked(backend, native, y):
        if bool(xp.any(out_of_range)):
            b_size, t_size = (int(d) for d in native.shape[:2])
            flat = int(xp.argmax(xp.reshape(xp.astype(out_of_range, backend.index_dtype()), (-1,))))
            row, t = divmod(flat, t_size)
            raise ValueError(f"tags[{row}, {t}] = {int(y[row, t])} is outside [0, {k}) at a token (mask True); "
                             f"tags at masked positions are ignored, whatever their value")
    return xp.where(valid & ~out_of_range, y, 0), xp.any(out_of_range, axis=1)


def _prepare(emissions, transitions, *, mask, start, end, tags=None, has_tags=False) -> _Chain:
    """Check and convert the inputs of a call (see :class:`_Chain`). Errors name the argument, its
    shape and the expected one."""
    scores = _inputs.scores(emissions, name="emissions", axis=None, tags=tags, transitions=transitions,
                            mask=mask, start=start, end=end)
    xp, backend, native, e = scores.xp, scores.backend, scores.native, scores.values
    if native.ndim != 3:
        raise ValueError(f"emissions must have shape [B, T, K] (batch first), got shape {tuple(native.shape)}")
    k = native.shape[2]
    if k is None:
        raise ValueError(f"emissions has shape {tuple(native.shape)}: the number of tags K must be known")
    if k == 0:
        raise ValueError(f"emissions of shape {tuple(native.shape)} have no tag (K = 0); K must be at least 1")
    a = scores.secondary(transitions, "transitions", same_shape=False)
    if a.dtype == xp.bool:
        raise TypeError("transitions must be a real floating-point array, got a boolean array (apply a mask from "
                        "allowed_transitions as where(mask, transitions, -inf))")
    _checks.require_floating(xp, a, "transitions")
    if not _checks.same_dims(a.shape, (k, k)):
        raise ValueError(f"transitions has shape {tuple(a.shape)} but emissions of shape {tuple(native.shape)} "
                         f"need transitions of shape [K, K] = ({k}, {k})")
    s, u = _vector(scores, start, "start", k), _vector(scores, end, "end", k)
    if mask is None:
        checked = _checks.values_checked(backend, native)
        valid = xp.ones_like(e[..., 0], dtype=xp.bool)
        first, length = _extent(xp, backend, valid)
        holes, layout = None, "full"
    else:
        valid = backend.asarray(mask, like=native, name="mask")
        if valid.dtype != xp.bool:
            raise TypeError(f"mask must be a boolean array (True = token), got dtype {valid.dtype}")
        if valid.ndim != 2 or not _checks.same_dims(valid.shape, native.shape[:2]):
            raise ValueError(f"mask has shape {tuple(valid.shape)} but emissions of shape {tuple(native.shape)} "
                             f"need a mask of shape [B, T] = {tuple(native.shape[:2])}")
        first, length = _extent(xp, backend, valid)
        checked = _checks.values_checked(backend, native, valid)
        if checked:  # one read of the mask: holes are a ValueError, the layout is seen
            holes, layout = None, _check_mask_on_host(backend, valid)
        else:  # compiled, a row with holes (not seen as an error) comes out NaN
            holes, layout = _rows_with_holes(xp, backend, valid, first, length), "any"
    if checked and _checks.values_checked(backend, a, s, u):  # every score concrete (not a tracer)
        used = e if mask is None else xp.where(valid[..., None], e, 0.0)  # masked scores ignored, NaN included
        if _all_defined(xp, backend, (used, a, s, u)):  # the common case, seen by one read
            nothing = xp.zeros_like(length, dtype=xp.bool)
            return _Chain(xp, backend, native, used, a, s, u, valid, first, length, layout, nothing, nothing,
                          xp.zeros_like(a, dtype=xp.bool),
                          *_gold_tags_if(xp, backend, native, tags, valid, k, has_tags))
    bad_e = _undefined(xp, e)
    if mask is None:
        undefined_emissions = xp.any(bad_e, axis=(1, 2))
        e = xp.where(bad_e, 0.0, e)
    else:
        undefined_emissions = xp.any(bad_e & valid[..., None], axis=(1, 2))
        if holes is not None:
            undefined_emissions = undefined_emissions | holes
        e = xp.where(valid[..., None] & ~bad_e, e, 0.0)  # masked scores are ignored, NaN included
    bad_transitions = _undefined(xp, a)
    undefined = undefined_emissions | (xp.any(bad_transitions) & (length >= 2))
    a = xp.where(bad_transitions, 0.0, a)
    boundaries = []
    for boundary in (s, u):
        if boundary is not None:
            bad = _undefined(xp, boundary)
            undefined = undefined | (xp.any(bad) & (length >= 1))
            boundary = xp.where(bad, 0.0, boundary)
        boundaries.append(boundary)
    s, u = boundaries
    return _Chain(xp, backend, native, e, a, s, u, valid, first, length, layout, undefined, undefined_emissions,
                  bad_transitions, *_gold_tags_if(xp, backend, native, tags, valid, k, has_tags))


def _gold_tags_if(xp, backend, native, tags, valid, k: int, has_tags: bool):
    """``(tags, bad_rows)`` of :func:`_gold_tags` when the call has tags, else ``(None, None)``."""
    return _gold_tags(xp, backend, native, tags, valid, k) if has_tags else (None, None)


# --------------------------------------------------------------------------------------------
# Alignment: every row's tokens moved to the start or to the end of the row
# --------------------------------------------------------------------------------------------
def _take_positions(xp, x, index):
    """``x [B, T]`` or ``[B, T, K]`` gathered along axis 1 at ``index [B, T']``."""
    return xp.take_along_axis(x, index[:, :, None] if x.ndim == 3 else index, axis=1)


def _lookup(xp, backend, table, index):
    """``table[index]`` along its first axis, for ``index [B, ...]``: a gather along axis 1 of the table
    broadcast over the batch (its gradient is dense on every backend; TensorFlow's gather along axis 0
    gives ``IndexedSlices``)."""
    b_size = backend.shape(index)[0]
    rows = xp.broadcast_to(table[None, ...], (b_size,) + tuple(backend.shape(table)))
    if table.ndim == 1:
        return xp.take_along_axis(rows, index, axis=1)
    return xp.take_along_axis(rows, index[..., None], axis=1)


def _to_start(xp, backend, x, first, length):
    """``x [B, T, ...]`` with each row's tokens moved to positions ``0 .. length-1`` (a rotation)."""
    t_size = backend.shape(x)[1]
    return _take_positions(xp, x, (_positions(xp, backend, x, first) + first[:, None]) % t_size)


def _to_end(xp, backend, x, first, length):
    """``x [B, T, ...]`` with each row's tokens moved to positions ``T-length .. T-1`` (a rotation)."""
    t_size = backend.shape(x)[1]
    return _take_positions(xp, x, (_positions(xp, backend, x, first) + (first + length)[:, None]) % t_size)


def _from_start(xp, backend, x, first, length):
    """The inverse of :func:`_to_start`."""
    t_size = backend.shape(x)[1]
    return _take_positions(xp, x, (_positions(xp, backend, x, first) - first[:, None] + t_size) % t_size)


def _from_end(xp, backend, x, first, length):
    """The inverse of :func:`_to_end`."""
    t_size = backend.shape(x)[1]
    return _take_positions(xp, x, (_positions(xp, backend, x, first) - (first + length)[:, None] + t_size) % t_size)


def _time_major(xp, x):
    """``[B, T, ...]`` -> ``[T, B, ...]``."""
    return xp.permute_dims(x, (1, 0) + tuple(range(2, x.ndim)))


# --------------------------------------------------------------------------------------------
# The recursions
# --------------------------------------------------------------------------------------------
def _semiring_scan(xp, backend, init, xs, weights, reduce):
    """The states after each step of ``state_k(j) = reduce_i(state_{k-1}(i) + xs_k(i) + weights[i, j])``
    (``reduce`` over axis -2: a log-sum-exp or a max), stacked along a new leading axis."""

    def step(state, x):
        new = reduce((state + x)[..., :, None] + weights, axis=-2)
        return new, new

    return backend.scan(step, init, xs)[1]


# The scaled recursion (Rabiner 1989, section V.A), the eager-CPU fast path of the forward-backward
# scan. In exp space ``new = lse_i(state(i) + x(i) + W[i, j])`` is ``q = (p ⊙ f) @ w`` with ``p``, ``f``,
# ``w`` the exponentials of the state, the emissions and the transitions, each shifted by its maximum,
# the shifts and the renormalisations kept aside in log space: one small matrix product per step
# instead of a log-sum-exp over ``[2, B, K, K]``. Exactness: float64, and every factor (``f``, ``w``, the
# initial ``p``) either 0 (a ``-inf`` score) or in ``[2^-120, 1]``, every state that enters a step
# either 0 or in ``[2^-700, 2^600]``: each product ``p(i) f(i) w[i, j]`` is then 0 exactly where a
# ``-inf`` forbids it and a normal float64 (>= 2^-940) elsewhere, so no weight underflows, and sums
# and products of positive normal numbers keep their relative precision (about T (K + 2) float64
# ulps in all). The guard checks exactly these bounds (on the factors before the loop, on every state
# after it) before the result is used; where it fails (a range of scores above ~83 within a step, or
# a path forced through states of vanishing weight) the log-space scan runs instead.
_SCALED_FACTOR_MIN = 2.0 ** -120
_SCALED_STATE_MIN = 2.0 ** -700
_SCALED_STATE_MAX = 2.0 ** 600
_SCALED_RENORMALISE_EVERY = 8  # steps; between two renormalisations a state grows at most K^8-fold


def _scaled_applies(backend, x) -> bool:
    """Whether the scaled recursion may run: eager on the CPU (its guard reads values back; see
    ``_ops.cheap_branch``) and no gradient recorded through ``x`` (inside the kernel's forward pass;
    not when a differentiable recomputation is asked for, for second derivatives)."""
    return _ops.untracked_cheap_branch(backend, x)


def _exp_shifted(xp, x, axis):
    """``(exp(x - m), m, ok)`` in float64, ``m`` the maximum of ``x`` over ``axis`` (kept; 0 where it is
    not finite; float64) and ``ok`` whether every factor is 0 at a ``-inf`` score and in
    ``[2^-120, 1]`` elsewhere (False for ``+inf``, NaN or a range of scores above ~83). The exponential
    is taken in ``x``'s dtype (the compute dtype: float32 is exact to its own precision, and twice as
    fast as float64 on CPUs), the bound keeping float32 factors normal."""
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)
    f = xp.exp(x - m)
    ok = bool(xp.all(((f >= _SCALED_FACTOR_MIN) & (f <= 1.0)) | (x == _NEG_INF)))
    return xp.astype(f, xp.float64), xp.astype(m, xp.float64), ok


def _scaled_states(xp, backend, init, xs, weights):
    """The states after steps 1 .. T-1 of ``state_k(j) = lse_i(state_{k-1}(i) + xs_k(i) + weights[i, j])``
    (``init [2, B, K]``, ``xs [T, 2, B, K]``, ``weights [2, 1, K, K]``), ``[T-1, 2, B, K]`` in ``init``'s
    dtype, by the scaled recursion in float64 (see the comment above); None where its guard fails."""
    t_size = backend.shape(xs)[0]
    n_dir, b_size, k = backend.shape(init)
    if t_size < 2:
        return None
    p0, m0, ok0 = _exp_shifted(xp, init, -1)  # [2, B, K], [2, B, 1]
    f, mf, okf = _exp_shifted(xp, xs[:-1, ...], -1)  # [T-1, 2, B, K], [T-1, 2, B, 1]
    w, mw, okw = _exp_shifted(xp, weights, (-2, -1))  # [2, 1, K, K], [2, 1, 1, 1]
    if not (ok0 and okf and okw):
        return None
    w = w[:, 0, ...]  # [2, K, K]
    q = p0  # the state before the emission, [2, B, K]
    one = xp.ones_like(q[..., :1])
    states, norms = [], []
    for t, f_t in enumerate(xp.unstack(f, axis=0)):
        # q_{t+1} = (q_t ⊙ f_t) @ w: one [B, K] x [K, K] product per direction
        q = (q * f_t) @ w
        c = one
        if (t + 1) % _SCALED_RENORMALISE_EVERY == 0:
            c = xp.sum(q, axis=-1, keepdims=True)
            c = xp.where(c > 0.0, c, 1.0)  # a row with no feasible path stays 0
            q = q / c
        states.append(q)
        norms.append(c)
    p_all = xp.stack(states, axis=0)  # [T-1, 2, B, K]
    inside = (p_all >= _SCALED_STATE_MIN) & (p_all <= _SCALED_STATE_MAX)
    if not bool(xp.all(inside | (p_all == 0.0))):
        return None
    c_all = xp.stack(norms, axis=0)  # [T-1, 2, B, 1]
    shifts = mf + xp.reshape(mw, (n_dir, 1, 1)) + xp.log(c_all)
    scale = m0 + xp.cumulative_sum(shifts, axis=0)  # [T-1, 2, B, 1]
    live = p_all > 0.0  # the guard has passed: every state is 0 or a positive normal number
    log_p = xp.where(live, xp.log(xp.where(live, p_all, 1.0)), _NEG_INF)
    return xp.astype(log_p + scale, init.dtype)


def _forward_backward_fwd(xp, backend, e, a, s, u, first, length, *, layout):
    """``log Z [B]`` and the residuals ``(α', β', shift)``: ``α'``/``β' [B, T, K]`` at the tokens'
    positions, ``-inf`` elsewhere (see the module docstring), and ``log Z`` as a finite shift."""
    b_size, t_size, k = backend.shape(e)
    e_start = _to_start(xp, backend, e, first, length) if layout == "any" else e
    e_end = e if layout == "full" else _to_end(xp, backend, e, first, length)

    # both recursions side by side: step k feeds e_start[k-1] to α' and e_end[T-k] to β' (T steps; the
    # last one runs past the ends and is dropped, so that T = 1 needs no special case)
    xs = xp.permute_dims(xp.stack([e_start, xp.flip(e_end, axis=1)]), (2, 0, 1, 3))  # [T, 2, B, K]
    weights = xp.stack([a, xp.permute_dims(a, (1, 0))])[:, None, :, :]  # [2, 1, K, K]
    init = xp.stack([xp.broadcast_to(s, (b_size, k)), xp.broadcast_to(u, (b_size, k))])  # [2, B, K]

    def lse(z, axis):
        return _ops.logsumexp(xp, backend, z, axis=axis)

    # eager on the CPU with no gradient recorded through the loop: the scaled recursion in exp space,
    # used only where its guard proves it exact; otherwise (and compiled) the log-space scan
    scaled = _scaled_states(xp, backend, init, xs, weights) if _scaled_applies(backend, xs) else None
    if scaled is not None:
        states = xp.concat([init[None, ...], scaled], axis=0)  # [T, 2, B, K]
    else:
        ys = _semiring_scan(xp, backend, init, xs, weights, lse)
        states = xp.concat([init[None, ...], ys[:-1, ...]], axis=0)  # [T, 2, B, K]
    alpha = _time_major(xp, states[:, 0, ...])  # [B, T, K], tokens from position 0
    beta = _time_major(xp, xp.flip(states[:, 1, ...], axis=0))  # [B, T, K], tokens up to position T-1

    last = xp.clip(length - 1, min=0)
    final = _take_positions(xp, alpha + e_start, last[:, None])[:, 0, :] + u
    log_z = xp.where(length > 0, _ops.logsumexp(xp, backend, final, axis=-1), 0.0)
    if layout != "full":
        valid = _span(xp, backend, e, first, length)[..., None]
        if layout == "any":
            alpha = _from_start(xp, backend, alpha, first, length)
        alpha = xp.where(valid, alpha, _NEG_INF)
        beta = xp.where(valid, _from_end(xp, backend, beta, first, length), _NEG_INF)
    return log_z, (alpha, beta, _finite_or_zero(xp, log_z))


def _finite_or_zero(xp, log_z):
    """``log Z`` as the shift of ``exp(... - log Z)``: 0 in a row with no feasible path (every term is
    ``-inf`` there, and ``-inf - (-inf)`` would be NaN)."""
    return xp.where(xp.isfinite(log_z), log_z, 0.0)


def _marginals_from(xp, e, alpha, beta, shift):
    """``μ = exp(α' + e + β' - log Z)`` (``shift`` from :func:`_finite_or_zero`); 0 in rows with no
    feasible path and outside the tokens."""
    return xp.exp(alpha + e + beta - shift[:, None, None])


def _forward_backward_bwd(xp, backend, arrays, residuals, g, needs, *, layout):
    """``∂ log Z``: the marginals for the emissions, the summed edge marginals for the transitions,
    the marginals at the first / last token for ``start`` / ``end`` (all weighted by ``g`` per row)."""
    e, a, s, u, first, length = arrays
    alpha, beta, shift = residuals
    marginals = _marginals_from(xp, e, alpha, beta, shift)
    g_rows = g[:, None, None]
    out = [g_rows * marginals if needs[0] else None]
    if needs[1]:
        head = (alpha + e)[:, :-1, :] - shift[:, None, None]  # [B, T-1, K]: prefix weight at the edge's source
        tail = (e + beta)[:, 1:, :]  # [B, T-1, K]: suffix weight at its target
        out.append(_edge_sums(xp, backend, head, a, tail, g))
    else:
        out.append(None)
    for need, index in ((needs[2], first), (needs[3], xp.clip(first + length - 1, min=0))):
        # an empty row's marginals are 0 everywhere, so whatever position it reads
        out.append(xp.sum(_take_positions(xp, marginals, index[:, None])[:, 0, :] * g[:, None], axis=0)
                   if need else None)
    return (*out, None, None)


def _edge_sums(xp, backend, head, a, tail, g):
    """``Σ_b g_b Σ_t exp(head[b, t, i] + a[i, j] + tail[b, t, j])``, ``[K, K]``: the edge marginals summed.

    Exact, so ``[B, T, K, K]`` terms: on an eager CPU backend (``Backend.block_rows``) they are made a
    block of positions at a time, a temporary of ~2 MiB that stays in cache; elsewhere at once."""
    b_size, t_size, k = head.shape
    block = backend.block_rows(head)
    if block is None or t_size is None:
        pieces = [(head, tail)]
    else:
        step = max(1, block // max(1, b_size * k))
        pieces = [(head[:, i:i + step, :], tail[:, i:i + step, :]) for i in range(0, t_size, step)] or [(head, tail)]
    total = None
    for h, t in pieces:
        part = xp.sum(xp.exp(h[..., :, None] + a + t[..., None, :]), axis=1)  # [B, K, K]
        total = part if total is None else total + part
    return xp.sum(total * g[:, None, None], axis=0)


_FORWARD_BACKWARD = Kernel("crf_forward_backward", _forward_backward_fwd, _forward_backward_bwd)


def _no_position(chain: _Chain) -> bool:
    """T = 0: every row is empty and there is nothing to scan."""
    return chain.native.shape[1] == 0


def _log_partition(chain: _Chain):
    if _no_position(chain):
        return chain.xp.sum(chain.emissions, axis=(1, 2))  # 0, differentiable
    return _FORWARD_BACKWARD(chain.backend, *chain.kernel_arrays(), layout=chain.layout)


def _path_score(chain: _Chain, tags):
    """``S(y) [B]`` of the tag paths ``tags [B, T]`` (in range everywhere; masked positions ignored),
    differentiable; 0 for a row without tokens."""
    xp, backend, e, a, valid = chain.xp, chain.backend, chain.emissions, chain.transitions, chain.valid
    k = chain.tags_count
    picked = xp.take_along_axis(e, tags[..., None], axis=2)[..., 0]
    total = xp.sum(xp.where(valid, picked, 0.0), axis=1)
    moves = _lookup(xp, backend, xp.reshape(a, (-1,)), tags[:, :-1] * k + tags[:, 1:])  # A[y_{t-1}, y_t]
    total = total + xp.sum(xp.where(valid[:, :-1] & valid[:, 1:], moves, 0.0), axis=1)
    has_token = chain.length > 0
    for boundary, index in ((chain.start, chain.first), (chain.end, xp.clip(chain.first + chain.length - 1, min=0))):
        if boundary is not None:
            tag = xp.take_along_axis(tags, index[:, None], axis=1)
            total = total + xp.where(has_token, _lookup(xp, backend, boundary, tag)[:, 0], 0.0)
    return total


# --------------------------------------------------------------------------------------------
# F1. CRF negative log-likelihood, log partition, marginals
# --------------------------------------------------------------------------------------------
def crf_nll(emissions, tags, transitions, *, mask=None, start=None, end=None):
    r"""Linear-chain CRF negative log-likelihood per sequence, summed over its tokens.

    .. math::

        \mathrm{nll}(y) = \log Z - S(y), \qquad
        S(y) = s_{y_1} + \sum_i e_{t_i, y_i} + \sum_{i \ge 2} A_{y_{i-1}, y_i} + u_{y_n}

    over the tokens ``t_1 < ... < t_n`` of each row; ``log Z`` is :func:`crf_log_partition`. Positive,
    summed (no mean over tokens: divide by the row's token count for that scale). Its gradient with
    respect to the emissions is ``marginals - one_hot(tags)`` at the tokens.
    Source: kexue.fm/archives/5542; Lafferty et al. 2001.

    Args:
      emissions: real floating ``[B, T, K]``, batch first: the score of each tag at each position.
        ``-inf`` at a token forbids that tag there (in training as in decoding).
      tags: integer ``[B, T]``, the gold tags, in ``[0, K)`` at the tokens (else a ValueError in eager
        mode, NaN compiled); ignored at masked positions, whatever their value.
      transitions: real floating ``[K, K]``, indexed ``[from, to]``; ``-inf`` forbids a transition.
        Learnable: an array the caller owns (a parameter).
      mask: optional boolean ``[B, T]``, True at the tokens: one contiguous run per row (left or right
        padding; holes are a ValueError naming the row in eager mode). None: every position is a token.
      start, end: optional real ``[K]`` scores of the first / last tag of each row (None: 0).

    Returns:
      ``[B]`` in the compute dtype (float64 for float64 emissions, float32 otherwise). ``+inf`` where the
      gold path uses a ``-inf`` score (its gradient is then 0), also in a row with no feasible path; 0 for
      a row without tokens; NaN where a used score is NaN or ``+inf``.

    Examples:
      With zero scores the 2² paths of two tokens are equally likely: nll = log 4.

      >>> import numpy as np
      >>> float(np.round(crf_nll(np.zeros((1, 2, 2)), np.array([[0, 1]]), np.zeros((2, 2)))[0], 4))
      1.3863

      Forbid 0 -> 1: the paths (0,0), (1,0), (1,1) score 1, 0, 1 with the emissions below, so
      ``P(1, 1) = e / (2e + 1)`` and ``nll = log(2 + e^{-1})``; the forbidden path is impossible.

      >>> e = np.array([[[1.0, 0.0], [0.0, 1.0]]])
      >>> A = np.array([[0.0, -np.inf], [0.0, 0.0]])
      >>> float(np.round(crf_nll(e, np.array([[1, 1]]), A)[0], 6)), round(float(np.log(2 + np.exp(-1))), 6)
      (0.861995, 0.861995)
      >>> crf_nll(e, np.array([[0, 1]]), A)
      array([inf])
    """
    chain = _prepare(emissions, transitions, mask=mask, start=start, end=end, tags=tags, has_tags=True)
    xp = chain.xp
    # Subtract the gold tag's emission at each token from every tag's (exactly the same path weights
    # relative to each other): log Z and S(y) both drop Σ_t e[t, y_t], and the nll, their difference, no
    # longer cancels two large numbers when the model is confident (float32 keeps its relative precision).
    picked = xp.take_along_axis(chain.emissions, chain.tags[..., None], axis=2)
    chain = dataclasses.replace(chain, emissions=chain.emissions - xp.where(xp.isfinite(picked), picked, 0.0))
    gold = _path_score(chain, chain.tags)
    log_z = _log_partition(chain)
    possible = gold != _NEG_INF
    nll = xp.clip(log_z - xp.where(possible, gold, 0.0), min=0.0)  # ≥ 0 exactly; rounding could dip below
    nll = xp.where(possible, nll, math.inf)
    return xp.where(chain.undefined | chain.bad_tags, math.nan, nll)


def crf_log_partition(emissions, transitions, *, mask=None, start=None, end=None):
    r"""``log Z = log Σ_y e^{S(y)}`` per sequence, over every tag path of its tokens.

    ``S(y)`` as in :func:`crf_nll`; computed by the forward algorithm
    (``α_k(j) = lse_i(α_{k-1}(i) + A[i, j]) + e_k(j)``, ``log Z = lse_j(α_n(j) + u_j)``). Its gradient
    with respect to the emissions is :func:`crf_marginals`. Source: kexue.fm/archives/5542.

    Args and conventions as in :func:`crf_nll` (no tags).

    Returns:
      ``[B]`` in the compute dtype: ``-inf`` for a row with no feasible path, 0 for a row without
      tokens, NaN where a used score is NaN or ``+inf``.

    Examples:
      One token, no transition: ``log(e^0 + e^{log 3}) = log 4``; with ``start = [log 3, 0]`` two tokens of
      zero scores give ``log(3 + 1 + 3 + 1) = log 8``.

      >>> import numpy as np
      >>> e = np.zeros((2, 1, 2)); e[0, 0, 1] = np.log(3.0)
      >>> np.round(crf_log_partition(e, np.zeros((2, 2))), 4)
      array([1.3863, 0.6931])
      >>> np.round(crf_log_partition(np.zeros((1, 2, 2)), np.zeros((2, 2)), start=np.array([np.log(3.0), 0.0])), 4)
      array([2.0794])
    """
    chain = _prepare(emissions, transitions, mask=mask, start=start, end=end)
    return chain.xp.where(chain.undefined, math.nan, _log_partition(chain))


def crf_marginals(emissions, transitions, *, mask=None, start=None, end=None):
    r"""Tag marginals ``μ[b, t, k] = P(y_t = k)`` under the CRF, by the forward-backward algorithm.

    .. math::

        \mu_{t,k} = \sum_{y:\, y_t = k} e^{S(y) - \log Z} = \frac{\partial \log Z}{\partial e_{t,k}}
                  = \exp(\alpha'_t(k) + e_{t,k} + \beta'_t(k) - \log Z)

    They sum to 1 over the tags at each token of a row with a feasible path; 0 at masked positions and
    in a row with no feasible path; NaN in a row with a NaN or ``+inf`` used score. Differentiable.
    Source: kexue.fm/archives/5542 (S, Z); Rabiner 1989 (forward-backward).

    Args as in :func:`crf_nll` (no tags).

    Returns:
      ``[B, T, K]`` in the compute dtype.

    Examples:
      Forbid 0 -> 1 with zero emissions: the feasible paths are (0,0), (1,0), (1,1), so
      ``P(y_1 = 0) = 1/3`` and ``P(y_2 = 0) = 2/3``.

      >>> import numpy as np
      >>> A = np.array([[0.0, -np.inf], [0.0, 0.0]])
      >>> np.round(crf_marginals(np.zeros((1, 2, 2)), A), 4)
      array([[[0.3333, 0.6667],
              [0.6667, 0.3333]]])
    """
    chain = _prepare(emissions, transitions, mask=mask, start=start, end=end)
    xp = chain.xp
    if _no_position(chain):
        return chain.emissions
    _, (alpha, beta, shift) = _FORWARD_BACKWARD.forward(chain.backend, *chain.kernel_arrays(), layout=chain.layout)
    marginals = _marginals_from(xp, chain.emissions, alpha, beta, shift)
    return xp.where(chain.undefined[:, None, None], math.nan, marginals)


# --------------------------------------------------------------------------------------------
# F2. Viterbi decoding
# --------------------------------------------------------------------------------------------
def _identity_maps(xp, backend, like, k: int):
    """``[B, 1, K]``: the identity map of the tags, in ``like``'s (index) dtype and device."""
    identity = xp.arange(k, dtype=like.dtype, device=backend.device(like))[None, None, :]
    return xp.broadcast_to(identity, (backend.shape(like)[0], 1, k))


def _backtrace_by_doubling(xp, backend, maps, last, shape):
    """The Viterbi path ``[B, T]`` of rows whose tokens end at T - 1, from the last tags ``[B]``, in
    ``ceil(log2 T)`` vectorised steps (T static): with ``G_k = maps[:, k]`` the map from the tag at
    ``k + 1`` to the tag at ``k`` (``G_{T-1}`` the identity), ``G_k <- G_k ∘ G_{k+d}`` for d = 1, 2, 4,
    ... makes ``G_k`` the map from the last tag to the tag at k (pointer jumping). ``shape``: the
    static ``(B, T, K)`` of the emissions (a compiled scan's output may have lost it)."""
    b_size, t_size, k = shape
    identity = _identity_maps(xp, backend, maps, k)
    step = 1
    while step < t_size:
        # G_{k+step}, the identity past the end
        later = xp.concat([maps[:, step:, :], xp.broadcast_to(identity, (b_size, min(step, t_size), k))], axis=1)
        maps = xp.take_along_axis(maps, later[:, :t_size, :], axis=2)
        step *= 2
    return xp.take_along_axis(maps, xp.broadcast_to(last[:, None, None], (b_size, t_size, 1)), axis=2)[..., 0]


def _backtrace_by_scan(xp, backend, maps, last):
    """The same path by a scan from the last position (T unknown until the graph runs):
    ``y_{T-1} = last``, ``y_k = G_k(y_{k+1})``; the carry is the tag just found."""

    def step(tag, pointers):
        y = xp.take_along_axis(pointers, tag[:, None], axis=1)[:, 0]
        return y, y

    _, ys = backend.scan(step, last, _time_major(xp, maps), reverse=True)
    return _time_major(xp, ys)


def _backtrace_on_host(backend, pointers, last_tags, length):
    """The Viterbi path ``[B, T]`` of rows whose tokens start at position 0, from the same rows'
    pointers ``[B, T, K]`` (``pointers[:, k]`` maps the tag at ``k + 1`` to the best tag at k) and last
    tags ``[B]``: a NumPy loop from the end, one gather per step at NumPy's dispatch cost (eager on
    the CPU only, where the arrays are already on the host: see ``_ops.cheap_branch``). Positions past
    a row's tokens hold garbage (the caller masks them)."""
    maps, y_last, n = (backend.to_numpy(x) for x in (pointers, last_tags, length))
    b_size, t_size, k = maps.shape
    # the identity from each row's last token on: every row's walk then starts at T - 1 with its last tag
    past = np.arange(t_size)[:, None] >= (n - 1)[None, :]  # [T, B]
    maps = np.where(past[..., None], np.arange(k, dtype=maps.dtype), np.swapaxes(maps, 0, 1))
    # time-major, each step's maps flat and pointing at flat indices (row * K + tag): one take per step
    offsets = (np.arange(b_size) * k).astype(maps.dtype)
    maps = np.reshape(maps + offsets[:, None], (t_size, b_size * k))
    tags = np.empty((t_size, b_size), dtype=maps.dtype)
    tags[-1] = y = y_last + offsets
    for t in range(t_size - 2, -1, -1):
        y = maps[t].take(y)
        tags[t] = y
    return backend.asarray(np.ascontiguousarray((tags - offsets).T), like=pointers)


def _max_recursion_eager(xp, backend, init, e, a):
    """``(φ [T, B, K], pointers [T, B, K])`` of the Viterbi recursion ``φ_{k+1}(j) = max_i(φ_k(i) +
    g_k[i, j])``, ``g_k[i, j] = e_k(i) + A[i, j]``, ``φ_0 = init [B, K]`` (what ``_viterbi``'s scan step
    computes, the same sums and the same first index among ties), as an eager Python loop: the state
    alternates between a column ``[B, K, 1]`` (even steps, ``g`` laid out ``[from, to]``, the maximum
    over axis 1) and a row ``[B, 1, K]`` (odd steps, ``g`` laid out ``[to, from]``, over the last axis),
    so that no step reshapes its state: two dispatches per step (an add, a fused max with its index;
    eager on the CPU each costs its dispatch, not its arithmetic)."""
    b_size, t_size, k = backend.shape(e)
    e = _time_major(xp, e)
    even = xp.unstack(e[0::2, :, :, None] + a, axis=0)  # [B, K_from, K_to] at positions 0, 2, ...
    odd = xp.unstack(e[1::2, :, None, :] + xp.permute_dims(a, (1, 0)), axis=0)  # [B, K_to, K_from]
    phi = xp.reshape(init, (b_size, k, 1))
    phis, pointers = ([], []), ([], [])
    for t in range(t_size):
        if t % 2 == 0:
            phi, pointer = _ops.max_and_argmax(xp, backend, phi + even[t // 2], axis=1, keepdims=True)
        else:
            phi, pointer = _ops.max_and_argmax(xp, backend, phi + odd[t // 2], axis=2, keepdims=True)
        phis[t % 2].append(phi)
        pointers[t % 2].append(pointer)

    def interleave(parts):
        # the even and the odd steps' outputs, [T, B, K] (an odd T: the odd half padded, then cut); sizes
        # spelled out, never -1: B = 0 has no size to infer
        halves = len(parts[0])
        even_part = xp.reshape(xp.stack(parts[0], axis=0), (halves, b_size, k))
        if t_size == 1:
            return even_part
        odd_part = xp.reshape(xp.stack(parts[1], axis=0), (len(parts[1]), b_size, k))
        if t_size % 2:
            odd_part = xp.concat([odd_part, even_part[-1:, ...]], axis=0)
        return xp.reshape(xp.stack([even_part, odd_part], axis=1), (2 * halves, b_size, k))[:t_size, ...]

    return interleave(phis), interleave(pointers)


def _viterbi(chain: _Chain):
    """``(tags [B, T], best [B])``: the Viterbi path at the tokens' positions (garbage elsewhere) and
    the best score (``-inf`` for a row with no feasible path; garbage for a row without tokens)."""
    xp, backend = chain.xp, chain.backend
    e, a, s, u = (backend.stop_gradient(x) for x in chain.kernel_arrays()[:4])
    first, length = chain.first, chain.length
    b_size, _, k = backend.shape(e)
    e_start = _to_start(xp, backend, e, first, length) if chain.layout == "any" else e
    init = xp.broadcast_to(s, (b_size, k))
    # φ_k: the best prefix score before e_k (φ_0 = s); pointers[:, k] maps the tag at k + 1 to the
    # best tag at k (the last one runs past the end: unused)
    host = _ops.cheap_branch(backend, e)
    if host:  # eager on the CPU: a Python loop of two dispatches per step, the backtrace in NumPy
        phis, pointers = _max_recursion_eager(xp, backend, init, e_start, a)
        before = xp.concat([init[None, ...], phis[:-1, ...]], axis=0)  # φ_k, [T, B, K]
    else:
        def step(phi, x):
            # φ_{k+1}(j) = max_i(φ_k(i) + g_k[i, j]) with g_k[i, j] = e_k(i) + A[i, j] ([B, K_from, K_to])
            best = xp.max(phi[:, :, None] + (x[:, :, None] + a), axis=-2)
            return best, best

        _, phis = backend.scan(step, init, _time_major(xp, e_start))
        # the back-pointers of every step at once, from the same sums (so the same maxima and the first
        # index among ties): one vectorised argmax, cheaper compiled than one inside each step
        before = xp.concat([init[None, ...], phis[:-1, ...]], axis=0)  # φ_k, [T, B, K]
        before_rows = _time_major(xp, before)  # [B, T, K]
        transposed = xp.permute_dims(a, (1, 0))  # the reduced axis last, [B, T, K_to, K_from]
        pointers = _time_major(xp, xp.argmax(before_rows[..., None, :] + (e_start[..., None, :] + transposed),
                                             axis=-1))
    last = xp.clip(length - 1, min=0)
    phi_last = _take_positions(xp, _time_major(xp, before), last[:, None])[:, 0, :]
    final = phi_last + _take_positions(xp, e_start, last[:, None])[:, 0, :] + u
    best = xp.max(final, axis=-1)
    pointers = _time_major(xp, pointers)  # [B, T, K]
    end_tag = xp.argmax(final, axis=-1)
    if host:
        tags = _backtrace_on_host(backend, pointers, end_tag, length)
        return (_from_start(xp, backend, tags, first, length) if chain.layout == "any" else tags), best
    # move the tokens to the end of each row (in the start-aligned layout a row's tokens start at 0)
    if chain.layout != "full":
        pointers = _to_end(xp, backend, pointers, xp.zeros_like(first), length)
    maps = xp.concat([pointers[:, :-1, :], _identity_maps(xp, backend, pointers, k)], axis=1)
    if isinstance(backend.shape(e)[1], int):
        tags = _backtrace_by_doubling(xp, backend, maps, end_tag, backend.shape(e))
    else:
        tags = _backtrace_by_scan(xp, backend, maps, end_tag)
    if chain.layout != "full":
        tags = _from_end(xp, backend, tags, first, length)
    return tags, best


def _records_gradient(chain: _Chain) -> bool:
    """Whether a gradient may be asked for through any of the scores (``Backend.may_need_grad``)."""
    return any(chain.backend.may_need_grad(x) for x in (chain.emissions, chain.transitions, chain.start, chain.end)
               if x is not None)


def crf_decode(emissions, transitions, *, mask=None, start=None, end=None, fill=-1):
    r"""The best tag path ``argmax_y S(y)`` of each sequence (Viterbi) and its score.

    ``S(y)`` as in :func:`crf_nll`: ``-inf`` scores are hard constraints, never violated by the decoded
    path. Ties: the largest score wins; among exact ties, the path whose last tag is smallest, then the
    tag before it, and so on (what first-index argmax with a backtrace gives, as pytorch-crf). The
    score is ``S(y)`` of the returned path, differentiable (its gradient is the path's indicator); where
    no gradient can be asked for (``Backend.may_need_grad`` False for every score: NumPy, JAX outside a
    transformation, torch without ``requires_grad`` or under ``no_grad``) it is the Viterbi maximum, the
    same value up to rounding.
    Source: kexue.fm/archives/5542 (Viterbi).

    Args:
      emissions, transitions, mask, start, end: as in :func:`crf_nll`.
      fill: int, the tag written at masked positions, at every position of a row without tokens, and
        at every position of a row with no feasible path (or a NaN / ``+inf`` used score).

    Returns:
      ``(tags, scores)``: tags ``[B, T]`` in the index dtype (int64; int32 for JAX without x64), padded
      with ``fill`` (never Python lists), and scores ``[B]`` in the compute dtype: 0 for a row without
      tokens, ``-inf`` for a row with no feasible path, NaN for a row with a NaN or ``+inf`` used score.

    Examples:
      Forbid 0 -> 1: (0,0) and (1,1) both score 1; the tie goes to the path whose last tag is
      smaller. Padding gets ``fill``.

      >>> import numpy as np
      >>> e = np.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
      >>> A = np.array([[0.0, -np.inf], [0.0, 0.0]])
      >>> crf_decode(e, A, mask=np.array([[True, True, False]]))
      (array([[ 0,  0, -1]]), array([1.]))
    """
    fill = _checks.integer(fill, f"fill must be an int, got {fill!r}")
    chain = _prepare(emissions, transitions, mask=mask, start=start, end=end)
    xp = chain.xp
    if _no_position(chain):
        return xp.astype(chain.valid, chain.first.dtype), xp.sum(chain.emissions, axis=(1, 2))
    tags, best = _viterbi(chain)
    feasible = (best != _NEG_INF) & ~chain.undefined & (chain.length > 0)
    # the score of the path found: recomputed as S(y), differentiable, where a gradient may be asked
    # for; otherwise the Viterbi maximum itself (the same S(y), summed step by step: equal up to rounding)
    score = _path_score(chain, tags) if _records_gradient(chain) else best
    score = xp.where(chain.length > 0, xp.where(feasible, score, _NEG_INF), 0.0)
    score = xp.where(chain.undefined, math.nan, score)
    return xp.where(chain.valid & feasible[:, None], tags, fill), score


# --------------------------------------------------------------------------------------------
# F3. MEMM / Bi-MEMM
# --------------------------------------------------------------------------------------------
def _memm_one_way(chain: _Chain, *, backward: bool):
    """``Σ_t -log softmax(A[y_prev, ·] + e_t)[y_t]`` per row over the tokens (the first token on ``e``
    alone); ``backward``: the reversed sequence with ``Aᵀ`` (``y_prev`` is the next token's tag). Returns
    ``(loss [B], undefined [B])``."""
    xp, backend, e, valid, tags = chain.xp, chain.backend, chain.emissions, chain.valid, chain.tags
    if backward:
        weights = xp.permute_dims(chain.transitions, (1, 0))
        neighbour = xp.concat([tags[:, 1:], tags[:, :1]], axis=1)
        has = xp.concat([valid[:, 1:], xp.zeros_like(valid[:, :1])], axis=1) & valid
    else:
        weights = chain.transitions
        neighbour = xp.concat([tags[:, :1], tags[:, :-1]], axis=1)
        has = xp.concat([xp.zeros_like(valid[:, :1]), valid[:, :-1]], axis=1) & valid
    logits = e + xp.where(has[..., None], _lookup(xp, backend, weights, neighbour), 0.0)
    # used: the emissions at the tokens, and the transitions out of (into, backward) the neighbouring tag
    bad = chain.bad_transitions if not backward else xp.permute_dims(chain.bad_transitions, (1, 0))
    undefined = chain.undefined_emissions | xp.any(_lookup(xp, backend, bad, neighbour) & has[..., None], axis=(1, 2))
    log_p = xp.take_along_axis(_ops.log_softmax(xp, backend, logits), tags[..., None], axis=2)[..., 0]
    return xp.sum(xp.where(valid, -log_p, 0.0), axis=1), undefined


def memm_nll(emissions, tags, transitions, *, mask=None, direction="forward"):
    r"""MEMM negative log-likelihood per sequence: a softmax at each step (local normalisation),
    summed over the tokens.

    .. math::

        L_\to = -\log \mathrm{softmax}(e_{t_1})_{y_1}
                - \sum_{i \ge 2} \log \mathrm{softmax}(A_{y_{i-1}, \cdot} + e_{t_i})_{y_i}

    ``direction="backward"`` is the same on the reversed sequence with ``Aᵀ`` (step ``i`` conditions on
    ``y_{i+1}`` through ``A[·, y_{i+1}]``; the last token on its emissions alone); ``"both"`` is the
    Bi-MEMM, ``(L_→ + L_←) / 2``. Each direction is a proper distribution over tag sequences, unlike
    the CRF's unnormalised path scores; both losses are sums over tokens (divide by the token count
    for the source's token mean). No loop: every step is one softmax, all computed at once.
    Source: kexue.fm/archives/7213; McCallum et al. 2000.

    Args:
      emissions, tags, transitions, mask: as in :func:`crf_nll` (no start / end scores).
      direction: ``"forward"``, ``"backward"`` or ``"both"``.

    Returns:
      ``[B]`` in the compute dtype. ``+inf`` where a gold tag is impossible at its step (a ``-inf``
      emission or transition from the neighbouring gold tag; the gradient is then 0); 0 for a row
      without tokens; NaN where a used score (an emission at a token, a transition out of / into a gold
      tag) is NaN or ``+inf``.

    Examples:
      Zero scores: each of two steps is a uniform softmax over 2 tags, ``L = 2 log 2``. With
      ``A = [[0, log 3], [0, 0]]`` the backward direction's first step into tag 1 has probabilities
      (3/4, 1/4): ``L(0, 1) = log 2 + log(4/3)`` and ``L(1, 1) = log 2 + log 4``.

      >>> import numpy as np
      >>> float(np.round(memm_nll(np.zeros((1, 2, 2)), np.array([[0, 1]]), np.zeros((2, 2)))[0], 4))
      1.3863
      >>> A = np.array([[0.0, np.log(3.0)], [0.0, 0.0]])
      >>> np.round(memm_nll(np.zeros((2, 2, 2)), np.array([[0, 1], [1, 1]]), A, direction="backward"), 4)
      array([0.9808, 2.0794])
    """
    if not isinstance(direction, str) or direction not in _MEMM_DIRECTIONS:
        raise ValueError(f"direction must be one of {_MEMM_DIRECTIONS}, got {direction!r}")
    chain = _prepare(emissions, transitions, mask=mask, start=None, end=None, tags=tags, has_tags=True)
    xp = chain.xp
    parts = [_memm_one_way(chain, backward=False)] if direction != "backward" else []
    if direction != "forward":
        parts.append(_memm_one_way(chain, backward=True))
    loss = parts[0][0] if len(parts) == 1 else 0.5 * (parts[0][0] + parts[1][0])
    undefined = parts[0][1] if len(parts) == 1 else parts[0][1] | parts[1][1]
    finite = loss != math.inf
    loss = xp.where(finite, loss, math.inf)  # an impossible gold tag: +inf, with a zero gradient
    return xp.where(undefined | chain.bad_tags, math.nan, loss)


# --------------------------------------------------------------------------------------------
# Tag-scheme constraints
# --------------------------------------------------------------------------------------------
def _parse_label(label, canonical: str, scheme: str):
    """``("O", None)`` or ``(prefix, entity type)``; ValueError naming a label the scheme cannot parse."""
    if not isinstance(label, str):
        raise TypeError(f"labels must be strings, got {label!r}")
    if label == "O":
        return "O", None
    prefix, dash, kind = label.partition("-")
    if dash and kind and prefix in _PREFIXES[canonical]:
        return prefix, kind
    expected = ", ".join(f"'{p}-TYPE'" for p in _PREFIXES[canonical])
    raise ValueError(f"label {label!r} cannot be parsed in the {scheme} scheme (expected 'O' or {expected})")


def _allowed(canonical: str, source, target) -> bool:
    """Whether the scheme allows the transition ``source -> target`` (parsed labels)."""
    (p_from, kind_from), (p_to, kind_to) = source, target
    if canonical == "BIO":
        return p_to != "I" or (p_from in ("B", "I") and kind_from == kind_to)
    if p_from in ("B", "I"):  # inside an entity: continue or close it
        return p_to in ("I", "E") and kind_to == kind_from
    return p_to in ("O", "B", "S")  # outside any entity: stay out or open one


def allowed_transitions(labels, scheme="BIO"):
    """Boolean masks of the transitions, first tags and last tags that a tag scheme allows.

    Labels are ``"O"`` or ``PREFIX-TYPE`` strings (split at the first ``-``: ``"B-ORG-X"`` is of type
    ``"ORG-X"``), in tag-id order. With ``[from, to]`` the transition order of this library:

    * ``"BIO"`` (synonym ``"IOB2"``: every entity begins with ``B-``; IOB1 is not supported): ``I-X``
      may only follow ``B-X`` or ``I-X`` and may not be the first tag; everything else is allowed.
    * ``"IOBES"`` (synonym ``"BIOES"``; AllenNLP's BIOUL with L = E, U = S): after ``B-X`` or ``I-X``
      only ``I-X`` or ``E-X``; after ``O``, ``E-Y``, ``S-Y`` and at the start only ``O``, ``B-Z`` or
      ``S-Z``; the last tag must be ``O``, ``E-Y`` or ``S-Y``.

    Apply them as hard constraints, ``where(mask, scores, -inf)``, to the transitions, ``start`` and
    ``end`` (convert the NumPy masks to your framework first); :func:`crf_nll` then never gives weight
    to a forbidden path and :func:`crf_decode` never returns one. Sources: Ramshaw and Marcus 1995;
    Ratinov and Roth 2009 (BILOU / IOBES).

    Args:
      labels: a sequence of the K label strings, no duplicates.
      scheme: ``"BIO"``, ``"IOB2"``, ``"IOBES"`` or ``"BIOES"`` (case-sensitive).

    Returns:
      ``(transitions_mask [K, K], start_mask [K], end_mask [K])``: NumPy boolean arrays, True = allowed.

    Raises:
      ValueError naming an unknown scheme, a label the scheme cannot parse, or a repeated label.

    Examples:
      >>> trans, first, last = allowed_transitions(["O", "B-PER", "I-PER"])
      >>> trans.astype(int)
      array([[1, 1, 0],
             [1, 1, 1],
             [1, 1, 1]])
      >>> first, last
      (array([ True,  True, False]), array([ True,  True,  True]))
      >>> allowed_transitions(["O", "B-PER", "I-PER", "E-PER", "S-PER"], "IOBES")[2]
      array([ True, False, False,  True,  True])
    """
    if not isinstance(scheme, str) or scheme not in _SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}: expected one of {tuple(_SCHEMES)}")
    if isinstance(labels, str):
        raise TypeError(f"labels must be a sequence of label strings, got the string {labels!r}")
    canonical = _SCHEMES[scheme]
    labels = list(labels)
    parsed = [_parse_label(label, canonical, scheme) for label in labels]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"label {repeated[0]!r} appears more than once in labels")
    k = len(parsed)
    transitions = np.array([[_allowed(canonical, source, target) for target in parsed] for source in parsed],
                           dtype=bool).reshape(k, k)
    if canonical == "BIO":
        first = np.array([p != "I" for p, _ in parsed], dtype=bool)
        last = np.ones(k, dtype=bool)
    else:
        first = np.array([p in ("O", "B", "S") for p, _ in parsed], dtype=bool)
        last = np.array([p in ("O", "E", "S") for p, _ in parsed], dtype=bool)
    return transitions, first, last

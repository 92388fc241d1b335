"""The eager-CPU fast paths of the linear-chain CRF (docs/structured.md, "Eager on the CPU"): the scaled
forward-backward recursion and its guard, the fused max-with-index of the Viterbi steps and the
backtrace on the host. Each is compared with the path it replaces (the log-space scan, the generic
backtrace: forced by switching the fast path off) and with the independent float64 reference, and the
guard is driven into its fallback by adversarial inputs (score ranges beyond the factors' bounds, a
path forced through states of vanishing weight, a single feasible path, overflow to ``+inf``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import polyloss
from polyloss import _ops
from polyloss.losses import structured as S
from polyloss.reference import structured as R
from polyloss.testing import assert_close

from helpers import get

# a warning of the frameworks (torch's "converting a tensor that requires grad to a scalar") is a failure
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

INF = np.inf
FAST_BACKENDS = ("numpy", "torch")  # eager on the CPU: where the fast paths apply (_ops.cheap_branch)


@pytest.fixture(params=FAST_BACKENDS)
def fast_backend(request):
    return get(request.param)


def arr(backend, a, dtype="float64"):
    a = np.asarray(a)
    return backend.from_numpy(a, dtype=dtype if a.dtype.kind == "f" else None)


def host(backend, x):
    return np.asarray(backend.to_numpy(x))


def chain(rng, b, t, k, *, padding, constraints=False, scale=1.5):
    e = rng.normal(0.0, scale, (b, t, k))
    a = rng.normal(size=(k, k))
    start, end = rng.normal(size=k), rng.normal(size=k)
    lengths = rng.integers(0, t + 1, size=b)
    lengths[0] = t
    firsts = {"right": np.zeros(b, dtype=int), "left": t - lengths}.get(
        padding, np.array([rng.integers(0, t - n + 1) for n in lengths]))
    pos = np.arange(t)[None, :]
    mask = (pos >= firsts[:, None]) & (pos < (firsts + lengths)[:, None])
    if constraints:
        a[rng.random((k, k)) < 0.3] = -INF
        e[rng.random((b, t, k)) < 0.15] = -INF
    return e, rng.integers(0, k, (b, t)), a, start, end, mask


class Spy:
    """Wraps ``S._scaled_states`` and records whether it returned states (the fast path was used) or
    None (its guard sent the call to the log-space scan)."""

    def __init__(self, monkeypatch):
        self.results = []
        original = S._scaled_states

        def spy(*args):
            out = original(*args)
            self.results.append(out is not None)
            return out

        monkeypatch.setattr(S, "_scaled_states", spy)


def log_space_only(monkeypatch):
    monkeypatch.setattr(S, "_scaled_applies", lambda backend, x: False)


def everything(backend, e, tags, a, start, end, mask, *, dtype="float64"):
    """``(nll, log Z, marginals, ∂nll/∂(e, A, s, u))`` through the public functions, as NumPy arrays
    (the gradients on backends with autograd)."""
    args = [arr(backend, x, dtype) for x in (e, a, start, end)]
    y, m = arr(backend, tags), arr(backend, mask)
    kw = {"mask": m, "start": args[2], "end": args[3]}
    log_z = polyloss.crf_log_partition(args[0], args[1], **kw)
    marginals = polyloss.crf_marginals(args[0], args[1], **kw)
    if not backend.has_autograd:
        nll = polyloss.crf_nll(args[0], y, args[1], **kw)
        return [host(backend, x) for x in (nll, log_z, marginals)]
    xp = backend.namespace

    def total(e_, a_, s_, u_):
        return xp.sum(polyloss.crf_nll(e_, y, a_, mask=m, start=s_, end=u_))

    nll = polyloss.crf_nll(args[0], y, args[1], **kw)
    _, grads = backend.value_and_grad(total, argnums=(0, 1, 2, 3))(*args)
    return [host(backend, x) for x in (nll, log_z, marginals, *grads)]


# --------------------------------------------------------------------------------------------
# the scaled recursion: the same results as the log-space scan and the reference
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["right", "left", "both"])
@pytest.mark.parametrize("constraints", [False, True])
@pytest.mark.parametrize("t", [1, 2, 3, 9])
def test_scaled_recursion_equals_log_space_scan_and_reference(fast_backend, monkeypatch, padding, constraints, t):
    backend = fast_backend
    rng = np.random.default_rng(10 * t + constraints)
    e, tags, a, start, end, mask = chain(rng, 6, t, 4, padding=padding, constraints=constraints)
    if constraints:  # the gold path may be forbidden; keep one row whose gold path is feasible
        tags[0] = R.crf_decode(e[:1], a, mask=mask[:1], start=start, end=end)[0][0].clip(min=0)
    spy = Spy(monkeypatch)
    fast = everything(backend, e, tags, a, start, end, mask)
    if t >= 2:
        assert any(spy.results), "the scaled recursion did not run"
    with monkeypatch.context() as m:
        log_space_only(m)
        slow = everything(backend, e, tags, a, start, end, mask)
    for got, want in zip(fast, slow):
        assert_close(got, want, rtol=1e-12, atol=1e-13)
    kw = {"mask": mask, "start": start, "end": end}
    assert_close(fast[0], R.crf_nll(e, tags, a, **kw), rtol=1e-11, atol=1e-12)
    assert_close(fast[1], R.crf_log_partition(e, a, **kw), rtol=1e-11, atol=1e-12)
    assert_close(fast[2], R.crf_marginals(e, a, **kw), rtol=1e-11, atol=1e-12)


def test_scaled_recursion_long_float32_against_reference(fast_backend, monkeypatch):
    """T = 200 float32 (the benchmark's regime): the float64 recursion is at least as accurate as the
    log-space scan in float32."""
    backend = fast_backend
    rng = np.random.default_rng(5)
    e, tags, a, start, end, mask = (x.astype(np.float32) if x.dtype == np.float64 else x
                                    for x in chain(rng, 4, 200, 9, padding="right", scale=3.0))
    spy = Spy(monkeypatch)
    fast = everything(backend, e, tags, a, start, end, mask, dtype="float32")
    assert spy.results and all(spy.results)
    kw = {"mask": mask, "start": start, "end": end}  # the reference in float64 on the float32 scores
    assert_close(fast[1], R.crf_log_partition(e, a, **kw), rtol=2e-6)
    # marginals exp(α' + e + β' - log Z) from float32 log-states of magnitude ~600 (their ulp: 6e-5)
    assert_close(fast[2], R.crf_marginals(e, a, **kw), atol=5e-4)


def test_scaled_recursion_half_precision_with_constraints(monkeypatch):
    backend = get("torch")  # half-precision inputs
    rng = np.random.default_rng(6)
    e, tags, a, start, end, mask = chain(rng, 5, 12, 4, padding="both", constraints=True)
    for dtype in ("float16", "bfloat16"):
        spy = Spy(monkeypatch)
        args = [arr(backend, x, dtype) for x in (e, a, start, end)]
        kw = {"mask": arr(backend, mask), "start": args[2], "end": args[3]}
        got = polyloss.crf_log_partition(args[0], args[1], **kw)
        assert got.dtype == backend.namespace.float32 and any(spy.results)
        rounded = [host(backend, x) for x in args]  # the scores as the half-precision inputs hold them
        want = R.crf_log_partition(rounded[0], rounded[1], mask=mask, start=rounded[2], end=rounded[3])
        assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_scaled_recursion_empty_rows_and_no_feasible_path(fast_backend, monkeypatch):
    """Rows without tokens (log Z = 0) and a row with no feasible path (log Z = -inf, marginals 0):
    the recursion's zero states stay exactly 0, and the guard accepts them."""
    backend = fast_backend
    rng = np.random.default_rng(7)
    e, tags, a, start, end, mask = chain(rng, 4, 6, 3, padding="right")
    mask[1] = False
    mask[2, :] = True
    e[2, 3, :] = -INF  # every tag forbidden at one token of row 2
    spy = Spy(monkeypatch)
    got = everything(backend, e, tags, a, start, end, mask)
    assert spy.results and all(spy.results)
    kw = {"mask": mask, "start": start, "end": end}
    assert_close(got[1], R.crf_log_partition(e, a, **kw), rtol=1e-12)
    assert got[1][1] == 0.0 and got[1][2] == -INF
    assert_close(got[2], R.crf_marginals(e, a, **kw), rtol=1e-11, atol=1e-13)


# --------------------------------------------------------------------------------------------
# the guard: checked before use, and the fallback exact
# --------------------------------------------------------------------------------------------
def forced_path(t, drop):
    """K = 2: tag 1 loses ``drop`` against tag 0 at every token, may only follow itself (0 -> 1 is
    forbidden) and is the only tag allowed at the last token, so the one feasible way to the end runs
    through tag 1 from the start, a state whose weight relative to tag 0's falls as ``e^{-drop k}``
    and then carries all the mass: ``log Z = -drop (t - 1)`` exactly (start and end 0)."""
    e = np.zeros((1, t, 2))
    e[0, :, 1] = -drop
    e[0, -1, 0] = -INF
    e[0, -1, 1] = 0.0
    a = np.array([[0.0, -INF], [0.0, 0.0]])
    return e, a, -drop * (t - 1)


@pytest.mark.parametrize("tokens, in_range", [(30, False), (8, True)], ids=["vanishing", "in-range"])
def test_guard_on_a_path_forced_through_vanishing_states(fast_backend, monkeypatch, tokens, in_range):
    """Each factor is in range (a drop of 60 per step). Over 30 tokens, after ~12 steps tag 1's state
    falls below 2^-700 of the largest: the guard rejects the states and the log-space scan gives the
    exact value (without renormalisation or a guard, e^{-60 k} underflows float64 after 12 steps and
    log Z would come out -inf). Over 8 tokens the same construction stays within the bounds: the
    scaled recursion runs and is exact."""
    backend = fast_backend
    e, a, log_z = forced_path(tokens, 60.0)
    spy = Spy(monkeypatch)
    got = polyloss.crf_log_partition(arr(backend, e), arr(backend, a))
    assert spy.results == [in_range]
    assert_close(got, np.array([log_z]), rtol=1e-13)
    assert_close(got, R.crf_log_partition(e, a), rtol=1e-13)
    marg = polyloss.crf_marginals(arr(backend, e), arr(backend, a))  # all the mass on the one feasible path
    assert_close(marg, np.broadcast_to([0.0, 1.0], (1, tokens, 2)), atol=1e-13)


@pytest.mark.parametrize("spread", [150.0, 1e4])
def test_guard_rejects_a_score_range_beyond_the_factor_bound(fast_backend, monkeypatch, spread):
    """Emissions spanning more than ~83 within one token (such as a -1e4 soft mask): their factors
    would underflow, so the log-space scan runs; results equal the reference."""
    backend = fast_backend
    rng = np.random.default_rng(8)
    e, tags, a, start, end, mask = chain(rng, 3, 5, 3, padding="both")
    e[:, :, 2] -= spread
    spy = Spy(monkeypatch)
    got = everything(backend, e, tags, a, start, end, mask)
    assert spy.results and not any(spy.results)
    kw = {"mask": mask, "start": start, "end": end}
    assert_close(got[1], R.crf_log_partition(e, a, **kw), rtol=1e-12)
    assert_close(got[2], R.crf_marginals(e, a, **kw), rtol=1e-11, atol=1e-13)


def test_single_feasible_path(fast_backend, monkeypatch):
    """-inf everywhere but one path: log Z is that path's score, its marginals are one-hot."""
    backend = fast_backend
    rng = np.random.default_rng(9)
    t, k = 7, 4
    path = rng.integers(0, k, t)
    e = np.full((1, t, k), -INF)
    e[0, np.arange(t), path] = rng.normal(size=t)
    a = rng.normal(size=(k, k))
    spy = Spy(monkeypatch)
    got = polyloss.crf_log_partition(arr(backend, e), arr(backend, a))
    assert spy.results == [True]
    score = e[0, np.arange(t), path].sum() + a[path[:-1], path[1:]].sum()
    assert_close(got, np.array([score]), rtol=1e-13)
    assert_close(polyloss.crf_marginals(arr(backend, e), arr(backend, a)), np.eye(k)[path][None], atol=1e-14)


def test_overflow_in_the_shifted_emissions_falls_back(monkeypatch):
    """float32 emissions of ±3e38: subtracting the gold tag's emission overflows to +inf, which the
    factors' bound rejects; the outcome is the log-space scan's, exactly."""
    backend = get("torch")
    e = np.zeros((2, 3, 2), dtype=np.float32)
    e[0, :, 0], e[0, :, 1] = 3e38, -3e38
    tags = np.array([[1, 1, 1], [0, 1, 0]])
    a = np.zeros((2, 2))
    args = (arr(backend, e, "float32"), arr(backend, tags), arr(backend, a, "float32"))
    spy = Spy(monkeypatch)
    fast = host(backend, polyloss.crf_nll(*args))
    assert spy.results == [False]
    with monkeypatch.context() as m:
        log_space_only(m)
        slow = host(backend, polyloss.crf_nll(*args))
    assert_close(fast, slow)


def test_scaled_recursion_not_used_where_a_gradient_is_recorded():
    """A differentiable recomputation (second derivatives) never takes the scaled path (its log of a
    zero state has no useful derivative); compiled and GPU code neither (no values to check)."""
    backend = get("torch")
    import torch

    x = torch.zeros(3, 2, 1, 4, requires_grad=True)
    assert not S._scaled_applies(backend, x)
    assert S._scaled_applies(backend, x.detach())
    assert S._scaled_applies(get("numpy"), np.zeros((3, 2, 1, 4)))


def test_exp_shifted_bounds():
    """The factor bound: 0 exactly at -inf, in [2^-120, 1] elsewhere; a range above 120 ln 2 ≈ 83.2,
    +inf or NaN fails; float32 scores too (the exponential in their dtype, the factors in float64)."""
    xp = get("numpy").namespace
    cases = (([0.0, -83.0, -INF], True), ([0.0, -84.0], False), ([1.0, INF], False), ([0.0, math.nan], False),
             ([-INF, -INF], True))
    for dtype in (np.float64, np.float32):
        for x, ok in cases:
            f, m, good = S._exp_shifted(xp, np.array([x], dtype=dtype), -1)
            assert good is ok, (x, dtype)
            assert f.dtype == np.float64 and m.dtype == np.float64
            if ok:
                assert_close(f, np.exp(np.array([x]) - m), rtol=1e-6 if dtype == np.float32 else 1e-15)


# --------------------------------------------------------------------------------------------
# Viterbi: the fused max-with-index and the host backtrace
# --------------------------------------------------------------------------------------------
def test_max_and_argmax_first_index_among_ties(backend):
    """``_ops.max_and_argmax`` (the adapter's ``max_with_indices`` where it has one) equals max and
    argmax, the first index among ties, on tie-heavy values with -inf, contiguous or not."""
    rng = np.random.default_rng(11)
    xp = backend.namespace
    for shape, axis in (((5, 4, 6), -1), ((5, 4, 6), 1), ((3, 9, 9), -1), ((2, 1, 3), -1)):
        x = rng.integers(-2, 2, shape).astype(float)
        x[rng.random(shape) < 0.3] = -INF
        x[0, 0, :] = -INF  # a reduced row of -inf only: index 0
        values, indices = _ops.max_and_argmax(xp, backend, arr(backend, x), axis=axis)
        assert_close(values, np.max(x, axis=axis))
        assert_close(indices, np.argmax(x, axis=axis))


@pytest.mark.parametrize("padding", ["right", "left", "both", "none"])
def test_host_backtrace_equals_generic_backtrace_and_reference(fast_backend, monkeypatch, padding):
    """Integer scores (exact ties everywhere) and constraints: the eager-CPU decode (host backtrace)
    returns the generic path's tags and the reference's, tie rule included."""
    backend = fast_backend
    rng = np.random.default_rng(12)
    for trial in range(20):
        b, t, k = int(rng.integers(1, 5)), int(rng.integers(1, 8)), int(rng.integers(1, 5))
        e = rng.integers(-2, 3, (b, t, k)).astype(float)
        a = rng.integers(-1, 2, (k, k)).astype(float)
        e[rng.random(e.shape) < 0.2] = -INF
        a[rng.random(a.shape) < 0.2] = -INF
        _, _, _, start, end, mask = chain(rng, b, t, k, padding="both" if padding == "none" else padding)
        start, end = np.round(start), np.round(end)
        kw = {"mask": None if padding == "none" else mask, "start": start, "end": end}
        got = polyloss.crf_decode(arr(backend, e), arr(backend, a),
                                  **{key: None if v is None else arr(backend, v) for key, v in kw.items()})
        with monkeypatch.context() as m:
            m.setattr(_ops, "cheap_branch", lambda backend_, x: False)
            generic = polyloss.crf_decode(arr(backend, e), arr(backend, a),
                                          **{key: None if v is None else arr(backend, v) for key, v in kw.items()})
        want = R.crf_decode(e, a, **kw)
        assert_close(got[0], host(backend, generic[0]), err_msg=f"trial {trial}")
        assert_close(got[0], want[0], err_msg=f"trial {trial}")
        assert_close(got[1], want[1], err_msg=f"trial {trial}")


# --------------------------------------------------------------------------------------------
# Viterbi: the decoded path's score, recomputed only where a gradient may be asked for
# --------------------------------------------------------------------------------------------
def path_counts(tags, mask, k):
    """The decoded paths' indicators, counted in NumPy: ``(emissions [B, T, K], transitions [K, K],
    start [K], end [K])``, the gradient of the summed scores ``S(y)`` of every row with tokens."""
    b, t = tags.shape
    de, da, ds, du = np.zeros((b, t, k)), np.zeros((k, k)), np.zeros(k), np.zeros(k)
    for row in range(b):
        positions = np.flatnonzero(mask[row])
        if positions.size == 0:
            continue
        y = tags[row, positions]
        de[row, positions, y] = 1.0
        for i, j in zip(y[:-1], y[1:]):
            da[i, j] += 1.0
        ds[y[0]] += 1.0
        du[y[-1]] += 1.0
    return de, da, ds, du


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_decode_score_with_and_without_a_gradient_agree(autograd_backend, dtype):
    """Where nothing records a gradient (eager, no tracer / tape), the score is the Viterbi maximum;
    where one may be asked for, the path's score recomputed as ``S(y)``: the same tags, the same scores
    up to rounding (and the reference's), and the recomputed score's gradient is the decoded path's
    indicator (the one-hot tags at the tokens, the transition counts, the first and last tags)."""
    backend = autograd_backend
    xp = backend.namespace
    rng = np.random.default_rng(21)
    e, _, a, start, end, mask = chain(rng, 6, 9, 4, padding="both", constraints=True)
    mask[1] = False  # a row without tokens: score 0, gradient 0
    mask[2] = True
    e[2, 3, :] = -INF  # a row with no feasible path: score -inf, tags fill
    k = a.shape[0]
    inputs = [arr(backend, x, dtype) for x in (e, a, start, end)]
    m = arr(backend, mask)
    plain_tags, plain_score = polyloss.crf_decode(*inputs[:2], mask=m, start=inputs[2], end=inputs[3])
    want_tags, want_score = R.crf_decode(e, a, mask=mask, start=start, end=end)
    assert_close(plain_tags, want_tags)
    feasible = np.isfinite(want_score)
    assert not feasible[2] and feasible.sum() >= 4

    def total(e_, a_, s_, u_):
        _, score = polyloss.crf_decode(e_, a_, mask=m, start=s_, end=u_)
        return xp.sum(xp.where(xp.isfinite(score), score, 0.0))

    value, grads = backend.value_and_grad(total, argnums=(0, 1, 2, 3))(*inputs)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == "float32" else {}
    assert_close(value, np.sum(want_score[feasible]), **tolerance)
    assert_close(plain_score, want_score, **tolerance)
    for got, want in zip(grads, path_counts(want_tags, mask & feasible[:, None], k)):
        assert_close(got, want)
    if backend.name == "torch":  # the same call with the emissions requiring a gradient: S(y), recomputed
        import torch

        e_grad = inputs[0].detach().clone().requires_grad_(True)
        tags, score = polyloss.crf_decode(e_grad, *inputs[1:2], mask=m, start=inputs[2], end=inputs[3])
        assert score.requires_grad and not plain_score.requires_grad
        assert_close(tags, host(backend, plain_tags))
        assert_close(score.detach(), host(backend, plain_score), **tolerance)
        (grad_e,) = torch.autograd.grad(torch.where(torch.isfinite(score), score, 0.0).sum(), e_grad)
        assert_close(grad_e, path_counts(want_tags, mask & feasible[:, None], k)[0])


def test_decode_score_is_recomputed_only_where_a_gradient_may_be_asked_for(monkeypatch):
    """The switch is the adapter's ``may_need_grad``: torch under ``no_grad`` or without
    ``requires_grad`` and NumPy take the Viterbi maximum; torch with a parameter requiring a gradient
    recomputes ``S(y)``."""
    torch_backend = get("torch")
    import torch

    calls = []
    original = S._path_score
    monkeypatch.setattr(S, "_path_score", lambda *args: calls.append(1) or original(*args))
    rng = np.random.default_rng(22)
    e, _, a, start, end, mask = chain(rng, 3, 5, 3, padding="right")
    polyloss.crf_decode(e, a, mask=mask, start=start, end=end)
    e_t, a_t = torch.tensor(e), torch.tensor(a, requires_grad=True)
    polyloss.crf_decode(e_t, a_t.detach(), mask=torch.tensor(mask))
    with torch.no_grad():
        polyloss.crf_decode(e_t, a_t, mask=torch.tensor(mask))
    assert calls == []
    polyloss.crf_decode(e_t, a_t, mask=torch.tensor(mask))
    assert calls == [1]
    assert torch_backend.may_need_grad(a_t)
    with torch.no_grad():  # nothing computed here records a gradient, whatever requires one
        assert not torch_backend.may_need_grad(a_t)


@pytest.mark.parametrize("t", [1, 4, 5])
def test_an_empty_batch_gives_empty_results(fast_backend, t):
    """B = 0 (the last batch of a filtered dataset): every function returns its results with a zero-size
    batch axis, as the reference does (the eager decode's interleaving of even and odd steps once inferred
    a size from zero elements and raised)."""
    backend = fast_backend
    e, a = np.zeros((0, t, 3)), np.random.default_rng(0).normal(size=(3, 3))
    tags, scores = polyloss.crf_decode(arr(backend, e), arr(backend, a))
    ref_tags, ref_scores = R.crf_decode(e, a)
    assert tuple(tags.shape) == ref_tags.shape == (0, t) and tuple(scores.shape) == ref_scores.shape == (0,)
    assert tuple(polyloss.crf_log_partition(arr(backend, e), arr(backend, a)).shape) == (0,)
    assert tuple(polyloss.crf_marginals(arr(backend, e), arr(backend, a)).shape) == (0, t, 3)
    nll = polyloss.crf_nll(arr(backend, e), arr(backend, np.zeros((0, t), np.int64)), arr(backend, a))
    assert tuple(nll.shape) == (0,)

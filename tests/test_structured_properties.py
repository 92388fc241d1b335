"""Properties of the structured-prediction family (docs/structured.md): brute-force enumeration written
here, the gradient of log Z is the marginals, padding invariance, constraints never violated by the
decoder, second derivatives (a gradient penalty on a CRF loss), half precision with -inf constraints,
long sequences and extreme scores against the float64 reference, the MEMM's normalisation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import polyloss
from polyloss.reference import structured as R
from polyloss.testing import assert_close

from helpers import LOSS_BACKENDS, get

# a warning of the frameworks (torch's "converting a tensor that requires grad to a scalar") is a failure
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

INF = np.inf


def arr(backend, a, dtype="float64"):
    a = np.asarray(a)
    return backend.from_numpy(a, dtype=dtype if a.dtype.kind == "f" else None)


def host(backend, x):
    return np.asarray(backend.to_numpy(x))


def random_chain(rng, b=5, t=5, k=3, *, padding="both", constraints=False, scale=1.5, garbage=True):
    e = rng.normal(0.0, scale, (b, t, k))
    a = rng.normal(size=(k, k))
    start, end = rng.normal(size=k), rng.normal(size=k)
    lengths = rng.integers(0, t + 1, size=b)
    lengths[0] = t
    if padding == "right":
        firsts = np.zeros(b, dtype=int)
    elif padding == "left":
        firsts = t - lengths
    else:
        firsts = np.array([rng.integers(0, t - n + 1) for n in lengths])
    pos = np.arange(t)[None, :]
    mask = (pos >= firsts[:, None]) & (pos < (firsts + lengths)[:, None])
    tags = rng.integers(0, k, (b, t))
    if constraints:
        a[rng.random((k, k)) < 0.3] = -INF
        e[rng.random((b, t, k)) < 0.15] = -INF
    if garbage:
        e[~mask] = np.nan
        tags[~mask] = -7
    return e, tags, a, start, end, mask


# --------------------------------------------------------------------------------------------
# brute force, written here: every path of every row
# --------------------------------------------------------------------------------------------
def brute_force(e, a, start, end, mask):
    """``(log Z [B], marginals [B, T, K], best path [B, T] (-1 outside), best score [B])`` by enumeration."""
    b, t, k = e.shape
    log_z, marg = np.zeros(b), np.zeros((b, t, k))
    best_tags, best = np.full((b, t), -1), np.zeros(b)
    for row in range(b):
        idx = np.flatnonzero(mask[row])
        if idx.size == 0:
            continue
        scores, paths = [], []
        for path in itertools.product(range(k), repeat=idx.size):
            s = start[path[0]] + end[path[-1]] + sum(e[row, i, y] for i, y in zip(idx, path))
            s += sum(a[p, q] for p, q in zip(path, path[1:]))
            scores.append(s)
            paths.append(path)
        scores = np.array(scores)
        top = scores.max()
        if top == -INF:
            log_z[row], best[row] = -INF, -INF
            continue
        w = np.exp(scores - top)
        log_z[row] = top + np.log(w.sum())
        for path, weight in zip(paths, w / w.sum()):
            marg[row, idx, list(path)] += weight
        # tie rule: the smallest reversed path among the best
        winners = [p for p, s in zip(paths, scores) if s == top]
        best_tags[row, idx] = min(winners, key=lambda p: p[::-1])
        best[row] = top
    return log_z, marg, best_tags, best


@pytest.mark.parametrize("seed", range(3))
def test_brute_force_on_every_backend(backend, seed):
    rng = np.random.default_rng(seed)
    e, _, a, start, end, mask = random_chain(rng, constraints=seed > 0)
    log_z, marg, tags, best = brute_force(e, a, start, end, mask)
    args = (arr(backend, e), arr(backend, a))
    kw = {"mask": arr(backend, mask), "start": arr(backend, start), "end": arr(backend, end)}
    assert_close(polyloss.crf_log_partition(*args, **kw), log_z, rtol=1e-11)
    assert_close(polyloss.crf_marginals(*args, **kw), marg, rtol=1e-11, atol=1e-13)
    got_tags, got_best = polyloss.crf_decode(*args, **kw)
    assert_close(got_tags, tags)
    assert_close(got_best, best, rtol=1e-12)


def test_probabilities_of_every_path_sum_to_one(backend):
    """``Σ_y exp(-nll(y)) = 1`` over every tag path of a row (nll through the library, path by path)."""
    rng = np.random.default_rng(3)
    b, t, k = 1, 4, 3
    e, _, a, start, end, _ = random_chain(rng, b=b, t=t, k=k, garbage=False)
    paths = np.array(list(itertools.product(range(k), repeat=t)))
    many = np.repeat(e, len(paths), axis=0)
    nll = polyloss.crf_nll(arr(backend, many), arr(backend, paths), arr(backend, a), start=arr(backend, start),
                           end=arr(backend, end))
    assert_close(np.sum(np.exp(-host(backend, nll))), 1.0, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# calculus
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constraints", [False, True])
def test_gradient_of_log_partition_is_the_marginals(autograd_backend, constraints):
    backend = autograd_backend
    rng = np.random.default_rng(4)
    e, _, a, start, end, mask = random_chain(rng, b=6, t=7, k=4, constraints=constraints)
    kw = {"mask": arr(backend, mask), "start": arr(backend, start), "end": arr(backend, end)}
    xp = backend.namespace

    def total(emissions):
        return xp.sum(polyloss.crf_log_partition(emissions, arr(backend, a), **kw))

    _, grad = backend.value_and_grad(total)(arr(backend, e))
    marginals = polyloss.crf_marginals(arr(backend, e), arr(backend, a), **kw)
    assert_close(grad, host(backend, marginals), rtol=1e-12, atol=1e-14)
    # and the transitions' gradient is the summed edge marginals (finite differences of the reference)
    _, grad_a = backend.value_and_grad(lambda t: xp.sum(polyloss.crf_log_partition(arr(backend, e), t, **kw)))(
        arr(backend, a))
    fd = np.zeros_like(a)
    for idx in zip(*np.nonzero(np.isfinite(a))):
        plus, minus = a.copy(), a.copy()
        plus[idx] += 1e-6
        minus[idx] -= 1e-6
        fd[idx] = np.sum(np.nan_to_num(R.crf_log_partition(e, plus, mask=mask, start=start, end=end) -
                                       R.crf_log_partition(e, minus, mask=mask, start=start, end=end))) / 2e-6
    assert_close(grad_a, fd, rtol=1e-6, atol=1e-8)


def test_marginals_sum_to_one_at_every_token(backend):
    rng = np.random.default_rng(5)
    e, _, a, start, end, mask = random_chain(rng, b=6, t=6, k=4, constraints=True)
    log_z = R.crf_log_partition(e, a, mask=mask, start=start, end=end)
    marg = host(backend, polyloss.crf_marginals(arr(backend, e), arr(backend, a), mask=arr(backend, mask),
                                                start=arr(backend, start), end=arr(backend, end)))
    feasible = np.isfinite(log_z)
    sums = marg.sum(-1)
    np.testing.assert_allclose(sums[feasible[:, None] & mask], 1.0, rtol=1e-12)
    assert (sums[~mask] == 0).all() and (marg[~feasible] == 0).all()


def test_gradient_is_finite_with_minus_inf_constraints(autograd_backend):
    """BIO constraints, -inf emissions, a gold path that is impossible and a row with no feasible path:
    the gradient of the summed nll is finite (zero on the infinite rows)."""
    backend = autograd_backend
    xp = backend.namespace
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    allowed, first, _ = polyloss.allowed_transitions(labels)
    rng = np.random.default_rng(6)
    e = rng.normal(size=(4, 6, 5))
    e[rng.random(e.shape) < 0.2] = -INF
    e[..., 0] = 0.0
    a = np.where(allowed, rng.normal(size=(5, 5)), -INF)
    start = np.where(first, 0.0, -INF)
    tags = np.zeros((4, 6), dtype=np.int64)
    tags[1, 2] = 2  # O -> I-PER: impossible gold path
    e[3, 2, :] = -INF  # no feasible path in row 3
    kw = {"start": arr(backend, start)}
    nll, grads = backend.value_and_grad(lambda em, tr: xp.sum(polyloss.crf_nll(em, arr(backend, tags), tr, **kw)),
                                        argnums=(0, 1))(arr(backend, e), arr(backend, a))
    per_row = host(backend, polyloss.crf_nll(arr(backend, e), arr(backend, tags), arr(backend, a), **kw))
    assert np.isinf(per_row[[1, 3]]).all() and np.isfinite(per_row[[0, 2]]).all()
    for g in grads:
        assert np.isfinite(host(backend, g)).all()
    assert (host(backend, grads[0])[[1, 3]] == 0).all()


def _gradient_penalty(backend, e, tags, transitions, mask):
    """``Σ (∂ Σ nll / ∂ emissions)²`` as a function of the transitions: a gradient penalty on a CRF loss."""
    xp = backend.namespace

    def penalty(transitions):
        inner = backend.grad(lambda em: xp.sum(polyloss.crf_nll(em, tags, transitions, mask=mask)))
        return xp.sum(inner(e) ** 2)

    return penalty


@pytest.mark.parametrize("name", ["jax", "tensorflow"])
@pytest.mark.parametrize("constraints", [False, True])
def test_second_derivatives_gradient_penalty(name, constraints):
    """The penalty's gradient with respect to the transitions (a derivative of the gradient of the
    nll) against finite differences of the reference. Torch: test_second_derivatives_torch."""
    backend = get(name)
    rng = np.random.default_rng(7)
    e, tags, a, _, _, mask = random_chain(rng, b=3, t=4, k=3, constraints=constraints)
    a[np.isneginf(a).all(1), 0] = 0.0
    args = (arr(backend, e), arr(backend, tags), arr(backend, mask))

    def penalty(transitions):
        return _gradient_penalty(backend, args[0], args[1], transitions, args[2])(transitions)

    value, grad = backend.value_and_grad(penalty)(arr(backend, a))
    assert np.isfinite(host(backend, value)) and np.isfinite(host(backend, grad)).all()
    assert_close(grad, _penalty_finite_differences(np.where(mask[..., None], e, 0.0), tags, a, mask),
                 rtol=1e-5, atol=1e-7)


def _penalty_finite_differences(e, tags, a, mask, h=1e-5):
    """Central differences, in float64 NumPy, of the penalty ``Σ (μ - one_hot)²`` at the tokens, from the
    reference's marginals (the gradient of the nll with respect to the emissions; 0 in a row whose nll is
    +inf: an impossible gold path)."""
    k = a.shape[0]
    one_hot = (tags[..., None] == np.arange(k)) & mask[..., None]
    finite = np.isfinite(R.crf_nll(e, tags, a, mask=mask))[:, None, None]

    def penalty(transitions):
        marg = R.crf_marginals(e, transitions, mask=mask)
        return np.sum(np.where(mask[..., None] & finite, marg - one_hot, 0.0) ** 2)

    fd = np.zeros_like(a)
    for idx in zip(*np.nonzero(np.isfinite(a))):
        plus, minus = a.copy(), a.copy()
        plus[idx] += h
        minus[idx] -= h
        fd[idx] = (penalty(plus) - penalty(minus)) / (2 * h)
    return fd


@pytest.mark.parametrize("constraints", [False, True])
def test_second_derivatives_torch(constraints):
    get("torch")
    import torch

    rng = np.random.default_rng(7)
    e, tags, a, _, _, mask = random_chain(rng, b=3, t=4, k=3, constraints=constraints)
    a[np.isneginf(a).all(1), 0] = 0.0
    transitions = torch.tensor(a, requires_grad=True)
    emissions = torch.tensor(np.nan_to_num(e, nan=0.0), requires_grad=True)
    loss = polyloss.crf_nll(emissions, torch.from_numpy(tags), transitions, mask=torch.from_numpy(mask)).sum()
    (grad_e,) = torch.autograd.grad(loss, [emissions], create_graph=True)
    penalty = (grad_e**2).sum()
    (grad_a,) = torch.autograd.grad(penalty, [transitions])
    assert torch.isfinite(grad_a).all()
    assert_close(grad_a, _penalty_finite_differences(np.where(mask[..., None], e, 0.0), tags, a, mask),
                 rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------
# layout: padding invariance
# --------------------------------------------------------------------------------------------
def test_padding_invariance(backend):
    """A row gives the same results alone, right-padded, left-padded and padded on both sides, whatever
    the padding holds (NaN, infinities, out-of-range tags); marginals and tags move with the tokens."""
    rng = np.random.default_rng(8)
    n, k, t = 4, 3, 7
    e_row, tags_row = rng.normal(size=(n, k)), rng.integers(0, k, n)
    a, start, end = rng.normal(size=(k, k)), rng.normal(size=k), rng.normal(size=k)
    layouts = [0, t - n, 1, 2]  # first token of each row
    e = np.full((len(layouts), t, k), np.nan)
    e[1, :, :] = np.inf
    tags = np.full((len(layouts), t), 99)
    mask = np.zeros((len(layouts), t), dtype=bool)
    for row, f in enumerate(layouts):
        e[row, f:f + n], tags[row, f:f + n], mask[row, f:f + n] = e_row, tags_row, True
    kw = {"start": arr(backend, start), "end": arr(backend, end)}
    alone = (arr(backend, e_row[None]), arr(backend, a))
    want_nll = host(backend, polyloss.crf_nll(alone[0], arr(backend, tags_row[None]), alone[1], **kw))
    want_marg = host(backend, polyloss.crf_marginals(*alone, **kw))
    want_tags, want_score = (host(backend, x) for x in polyloss.crf_decode(*alone, **kw))
    want_memm = host(backend, polyloss.memm_nll(alone[0], arr(backend, tags_row[None]), alone[1], direction="both"))
    args = (arr(backend, e), arr(backend, a))
    kw["mask"] = arr(backend, mask)
    nll = host(backend, polyloss.crf_nll(args[0], arr(backend, tags), args[1], **kw))
    marg = host(backend, polyloss.crf_marginals(*args, **kw))
    got_tags, score = (host(backend, x) for x in polyloss.crf_decode(*args, **kw))
    memm = host(backend, polyloss.memm_nll(args[0], arr(backend, tags), args[1], mask=kw["mask"], direction="both"))
    for row, f in enumerate(layouts):
        np.testing.assert_allclose(nll[row], want_nll[0], rtol=1e-13)
        np.testing.assert_allclose(memm[row], want_memm[0], rtol=1e-13)
        np.testing.assert_allclose(marg[row, f:f + n], want_marg[0], rtol=1e-12, atol=1e-15)
        assert (marg[row][~mask[row]] == 0).all()
        assert got_tags[row, f:f + n].tolist() == want_tags[0].tolist()
        assert (got_tags[row][~mask[row]] == -1).all()
        np.testing.assert_allclose(score[row], want_score[0], rtol=1e-13)


def test_empty_rows_and_empty_sequences(backend):
    e = np.zeros((2, 3, 2))
    mask = np.array([[False] * 3, [True, True, False]])
    a = np.zeros((2, 2))
    args = (arr(backend, e), arr(backend, a))
    kw = {"mask": arr(backend, mask), "start": arr(backend, np.ones(2)), "end": arr(backend, np.ones(2))}
    assert host(backend, polyloss.crf_log_partition(*args, **kw))[0] == 0.0
    zero_tags = arr(backend, np.zeros((2, 3), dtype=np.int64))
    assert host(backend, polyloss.crf_nll(args[0], zero_tags, args[1], **kw))[0] == 0
    tags, score = polyloss.crf_decode(*args, **kw, fill=-5)
    assert host(backend, tags)[0].tolist() == [-5, -5, -5] and host(backend, score)[0] == 0.0
    # T = 0: every row is empty
    none = (arr(backend, np.zeros((2, 0, 2))), args[1])
    assert_close(polyloss.crf_log_partition(*none), np.zeros(2))
    assert host(backend, polyloss.crf_marginals(*none)).shape == (2, 0, 2)
    tags, score = polyloss.crf_decode(*none)
    assert host(backend, tags).shape == (2, 0) and (host(backend, score) == 0).all()


# --------------------------------------------------------------------------------------------
# constraints
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["BIO", "IOBES"])
def test_decode_never_violates_constraints(backend, scheme):
    types = ["PER", "LOC", "ORG"]
    prefixes = ("B", "I") if scheme == "BIO" else ("B", "I", "E", "S")
    labels = ["O"] + [f"{p}-{t}" for t in types for p in prefixes]
    allowed, first, last = polyloss.allowed_transitions(labels, scheme)
    k = len(labels)
    rng = np.random.default_rng(9)
    b, t = 40, 9
    e = rng.normal(0.0, 3.0, (b, t, k))  # emissions that would happily break the scheme
    a = np.where(allowed, rng.normal(size=(k, k)), -INF)
    start, end = np.where(first, 0.0, -INF), np.where(last, 0.0, -INF)
    mask = np.arange(t)[None, :] < rng.integers(1, t + 1, (b, 1))
    tags, scores = polyloss.crf_decode(arr(backend, e), arr(backend, a), mask=arr(backend, mask),
                                       start=arr(backend, start), end=arr(backend, end))
    tags, scores = host(backend, tags), host(backend, scores)
    assert np.isfinite(scores).all()
    for row in range(b):
        path = tags[row][mask[row]].tolist()
        assert first[path[0]] and last[path[-1]]
        assert all(allowed[p, q] for p, q in zip(path, path[1:]))
    # and the nll of the decoded path is the smallest of all the paths it beats: finite, positive
    nll = host(backend, polyloss.crf_nll(arr(backend, e), arr(backend, np.where(mask, tags, 0)), arr(backend, a),
                                         mask=arr(backend, mask), start=arr(backend, start), end=arr(backend, end)))
    assert np.isfinite(nll).all() and (nll >= 0).all()


def test_soft_masks_with_hard_constraints_stay_exact(backend):
    """-1e4 "soft masks" (common in user code) next to -inf transitions: the only feasible paths run
    through an emission 1e4 below the best one. Log-space recursions keep them; an exp-space (scaled
    probability) forward algorithm would underflow to -inf."""
    e = np.array([[[0.0, -1e4, -INF], [-INF, -INF, 0.0], [0.0, 0.0, 0.0]]])
    a = np.array([[0.0, 0.0, -INF], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # 0 -> 2 forbidden: reach 2 via 1
    tags = np.array([[1, 2, 0]])
    ref = R.crf_log_partition(e, a)
    assert np.isfinite(ref) and ref[0] < -9990  # log(e^{-1e4} + ...): the -1e4 path is the only way
    assert_close(polyloss.crf_log_partition(arr(backend, e), arr(backend, a)), ref, rtol=1e-12)
    assert_close(polyloss.crf_nll(arr(backend, e), arr(backend, tags), arr(backend, a)), R.crf_nll(e, tags, a),
                 rtol=1e-9, atol=1e-12)
    got, score = polyloss.crf_decode(arr(backend, e), arr(backend, a))
    assert host(backend, got).tolist() == [[1, 2, 0]] and host(backend, score)[0] == -1e4


# --------------------------------------------------------------------------------------------
# numerics
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_with_constraints_is_float32_of_the_rounded_inputs(dtype):
    """float16 / bfloat16 emissions with -inf constraints: finite float32 results, equal to the float32
    computation on the rounded inputs, and gradients in the input dtype."""
    get("torch")
    import torch

    rng = np.random.default_rng(10)
    e, tags, a, start, end, mask = random_chain(rng, b=6, t=8, k=4, constraints=True, scale=4.0)
    a[np.isneginf(a).all(1), 0] = 0.0
    e[..., 0] = np.where(np.isneginf(e[..., 0]), 0.0, e[..., 0])
    tags[:] = 0
    half = torch.tensor(np.where(mask[..., None], e, 0.0)).to(getattr(torch, dtype)).requires_grad_(True)
    rounded = half.detach().to(torch.float64).numpy()
    kw = {"mask": torch.from_numpy(mask), "start": torch.tensor(start), "end": torch.tensor(end)}
    nll = polyloss.crf_nll(half, torch.from_numpy(tags), torch.tensor(a), **kw)
    assert nll.dtype == torch.float32 and torch.isfinite(nll).all()
    assert_close(nll, R.crf_nll(rounded, tags, a, mask=mask, start=start, end=end), rtol=2e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(nll.sum(), [half])
    assert grad.dtype == half.dtype and torch.isfinite(grad).all()
    marg = polyloss.crf_marginals(half, torch.tensor(a), **kw)
    assert marg.dtype == torch.float32
    assert_close(marg, R.crf_marginals(rounded, a, mask=mask, start=start, end=end), rtol=2e-5, atol=1e-6)


def test_long_sequences_against_the_reference(backend):
    """T = 300 (beyond enumeration: the reference's plain-loop forward / Viterbi), float64."""
    rng = np.random.default_rng(11)
    e, tags, a, start, end, mask = random_chain(rng, b=3, t=300, k=4, constraints=True, scale=2.0)
    a[np.isneginf(a).all(1), 0] = 0.0
    e[..., 0] = np.where(np.isneginf(e[..., 0]), 0.0, e[..., 0])
    tags = np.where(mask, rng.integers(0, 1, tags.shape), 0)
    kw_np = {"mask": mask, "start": start, "end": end}
    kw = {k: arr(backend, v) for k, v in kw_np.items()}
    args = (arr(backend, e), arr(backend, a))
    assert_close(polyloss.crf_log_partition(*args, **kw), R.crf_log_partition(e, a, **kw_np), rtol=1e-12)
    assert_close(polyloss.crf_nll(args[0], arr(backend, tags), args[1], **kw), R.crf_nll(e, tags, a, **kw_np),
                 rtol=1e-10)
    got, score = polyloss.crf_decode(*args, **kw)
    ref_tags, ref_score = R.crf_decode(e, a, **kw_np)
    assert_close(got, ref_tags)
    assert_close(score, ref_score, rtol=1e-12)


def test_float32_nll_of_a_confident_model_is_accurate_below_one_ulp_of_log_z():
    """A confident model: log Z ≈ S(y) ≈ 2.4e3 and nll ≈ 1e-2. One float32 ulp of log Z is 2.4e-4, the
    error of ``log Z - S(y)`` computed directly; subtracting the gold emissions first (crf_nll does)
    leaves sums of size ~1 and an absolute error ~10x below that ulp."""
    rng = np.random.default_rng(12)
    b, t, k = 2, 200, 4
    tags = rng.integers(0, k, (b, t))
    e = rng.normal(0.0, 1.0, (b, t, k))
    e[np.arange(b)[:, None], np.arange(t)[None, :], tags] += 12.0
    a = rng.normal(0.0, 0.1, (k, k))
    e32 = e.astype(np.float32).astype(np.float64)
    a32 = a.astype(np.float32).astype(np.float64)
    ref = R.crf_nll(e32, tags, a32)
    log_z = R.crf_log_partition(e32, a32)
    assert (ref < 0.02).all() and (log_z > 2000).all()
    ulp = np.spacing(log_z.astype(np.float32)).astype(np.float64)
    got = polyloss.crf_nll(e32.astype(np.float32), tags, a32.astype(np.float32))
    assert_close(got, ref, rtol=0.0, atol=float(ulp.min()) / 10)


def test_nan_in_a_used_score_makes_the_row_nan(backend):
    e = np.zeros((3, 3, 2))
    e[0, 1, 0] = np.nan  # used
    e[1, 2, 1] = np.nan  # masked: ignored
    e[2, 0, 1] = np.inf  # +inf is outside the contract: NaN
    mask = np.array([[True] * 3, [True, True, False], [True] * 3])
    a = np.zeros((2, 2))
    args = (arr(backend, e), arr(backend, a))
    kw = {"mask": arr(backend, mask)}
    tags = arr(backend, np.zeros((3, 3), dtype=np.int64))
    for out in (polyloss.crf_log_partition(*args, **kw), polyloss.crf_nll(args[0], tags, args[1], **kw),
                polyloss.memm_nll(args[0], tags, args[1], **kw)):
        assert np.isnan(host(backend, out)).tolist() == [True, False, True]
    assert np.isnan(host(backend, polyloss.crf_marginals(*args, **kw))).any(axis=(1, 2)).tolist() == [True, False, True]
    got, score = polyloss.crf_decode(*args, **kw)
    assert np.isnan(host(backend, score)).tolist() == [True, False, True]
    assert (host(backend, got)[[0, 2]] == -1).all()
    # NaN transitions matter only to rows of two tokens or more
    a_nan = np.array([[np.nan, 0.0], [0.0, 0.0]])
    one = np.array([[True, False, False], [True, True, False], [False, False, False]])
    out = host(backend, polyloss.crf_log_partition(arr(backend, np.zeros((3, 3, 2))), arr(backend, a_nan),
                                                   mask=arr(backend, one)))
    assert np.isnan(out).tolist() == [False, True, False]


# --------------------------------------------------------------------------------------------
# MEMM
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_memm_is_a_distribution_over_tag_sequences(backend, direction):
    rng = np.random.default_rng(13)
    t, k = 4, 3
    e, a = rng.normal(size=(1, t, k)), rng.normal(size=(k, k))
    paths = np.array(list(itertools.product(range(k), repeat=t)))
    nll = polyloss.memm_nll(arr(backend, np.repeat(e, len(paths), axis=0)), arr(backend, paths), arr(backend, a),
                            direction=direction)
    assert_close(np.sum(np.exp(-host(backend, nll))), 1.0, rtol=1e-12)


def test_bi_memm_is_the_mean_of_both_directions(backend):
    rng = np.random.default_rng(14)
    e, tags, a, _, _, mask = random_chain(rng, b=5, t=6, k=3)
    args = (arr(backend, e), arr(backend, tags), arr(backend, a))
    kw = {"mask": arr(backend, mask)}
    both = host(backend, polyloss.memm_nll(*args, **kw, direction="both"))
    forward = host(backend, polyloss.memm_nll(*args, **kw))
    backward = host(backend, polyloss.memm_nll(*args, **kw, direction="backward"))
    np.testing.assert_allclose(both, 0.5 * (forward + backward), rtol=1e-13)
    # the MEMM is a sum over tokens, like the CRF: a row of n tokens with zero scores costs n log K
    zeros = host(backend, polyloss.memm_nll(arr(backend, np.zeros((1, 5, 3))), arr(backend, np.zeros((1, 5), np.int64)),
                                            arr(backend, np.zeros((3, 3)))))
    np.testing.assert_allclose(zeros, [5 * math.log(3)], rtol=1e-14)


def test_memm_impossible_gold_tag_is_inf_with_zero_gradient(autograd_backend):
    backend = autograd_backend
    xp = backend.namespace
    e = np.zeros((2, 3, 2))
    a = np.array([[0.0, -INF], [0.0, 0.0]])
    tags = arr(backend, np.array([[0, 1, 1], [1, 0, 0]]))  # row 0 uses 0 -> 1
    for direction in ("forward", "backward", "both"):
        value, grad = backend.value_and_grad(
            lambda em, d=direction: xp.sum(polyloss.memm_nll(em, tags, arr(backend, a), direction=d)))(arr(backend, e))
        per_row = host(backend, polyloss.memm_nll(arr(backend, e), tags, arr(backend, a), direction=direction))
        assert per_row[0] == INF and np.isfinite(per_row[1])
        grad = host(backend, grad)
        assert (grad[0] == 0).all() and np.isfinite(grad).all() and (grad[1] != 0).any()


@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_allowed_transitions_are_numpy_and_independent_of_the_backend(name):
    get(name)
    trans, first, last = polyloss.allowed_transitions(["O", "B-X", "I-X", "E-X", "S-X"], "BIOES")
    ref = R.allowed_transitions(["O", "B-X", "I-X", "E-X", "S-X"], "BIOES")
    for got, want in zip((trans, first, last), ref):
        assert isinstance(got, np.ndarray) and got.dtype == bool
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("scheme", ["BIO", "IOB2", "IOBES", "BIOES"])
def test_allowed_transitions_match_the_reference(scheme):
    prefixes = ("B", "I") if scheme in ("BIO", "IOB2") else ("B", "I", "E", "S")
    labels = ["O"] + [f"{p}-{t}" for t in ("PER", "ORG-X") for p in prefixes]
    for got, want in zip(polyloss.allowed_transitions(labels, scheme), R.allowed_transitions(labels, scheme)):
        np.testing.assert_array_equal(got, want)


"""Tests of the float64 oracle for SPEC section F (polyloss.reference.structured) itself.

Every expected value is a hand-derived closed form (path scores listed in the comments) or an
identity: probabilities of all tag sequences sum to 1, marginals are the derivatives of log Z,
enumeration and the dynamic programmes agree, padding changes nothing. NumPy only, fast.
"""

from __future__ import annotations

import doctest
import itertools
import math
import pathlib
import re

import numpy as np
import pytest

from polyloss.reference import structured as R

INF = math.inf


def close(a, b, rtol=1e-14, atol=0.0):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol)


def lse(values):
    """log Σ e^v for a few moderate values (closed forms only)"""
    return math.log(sum(math.exp(v) for v in values))


def random_case(rng, B, T, K, *, constraints=False, boundary=True, integer=False):
    """Random emissions / transitions / start / end and a mask with left or right padding, random
    lengths (0 included) and garbage (NaN, inf, huge, out-of-range tags) at the masked positions."""
    if integer:  # many exact ties
        e = rng.integers(-2, 3, size=(B, T, K)).astype(np.float64)
        A = rng.integers(-2, 3, size=(K, K)).astype(np.float64)
        st, en = rng.integers(-1, 2, size=K).astype(np.float64), rng.integers(-1, 2, size=K).astype(np.float64)
    else:
        e = 2.0 * rng.normal(size=(B, T, K))
        A = rng.normal(size=(K, K))
        st, en = rng.normal(size=K), rng.normal(size=K)
    if constraints:
        A[rng.random((K, K)) < 0.3] = -INF
        e[rng.random(e.shape) < 0.1] = -INF
        st[rng.random(K) < 0.2] = -INF
        en[rng.random(K) < 0.2] = -INF
    lengths = rng.integers(0, T + 1, size=B)
    mask = np.zeros((B, T), dtype=bool)
    for b, n in enumerate(lengths):
        if rng.random() < 0.5:
            mask[b, :n] = True
        else:
            mask[b, T - n:] = True
    garbage = rng.choice([np.nan, INF, -INF, 1e300], size=(B, T, K))
    e = np.where(mask[..., None], e, garbage)
    tags = rng.integers(0, K, size=(B, T))
    tags = np.where(mask, tags, rng.choice([-3, K, 99], size=(B, T)))
    if not boundary:
        st = en = None
    return e, tags, A, mask, st, en


def kw(mask, st, en):
    return dict(mask=mask, start=st, end=en)


def _fail(*args):
    raise AssertionError("the other method was used")


def use_enumeration(m):
    """Every row enumerated; the dynamic programmes must not run (``m``: a monkeypatch context)."""
    m.setattr(R, "_BRUTE_FORCE_LIMIT", 10**9)
    m.setattr(R, "_forward", _fail)
    m.setattr(R, "_viterbi", _fail)


def use_dp(m):
    """Every row by the forward / backward / Viterbi loops; enumeration must not run."""
    m.setattr(R, "_BRUTE_FORCE_LIMIT", 0)
    m.setattr(R, "_Enumeration", _fail)


def all_outputs(e, tags, A, mask, st, en):
    return dict(
        nll=R.crf_nll(e, tags, A, **kw(mask, st, en)),
        log_z=R.crf_log_partition(e, A, **kw(mask, st, en)),
        marginals=R.crf_marginals(e, A, **kw(mask, st, en)),
        decode=R.crf_decode(e, A, **kw(mask, st, en)),
    )


# ---------------------------------------------------------------------------------------------
# module
# ---------------------------------------------------------------------------------------------


def test_docstring_examples():
    result = doctest.testmod(R, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 15 and result.failed == 0


def test_public_names_and_independence():
    for name in R.__all__:
        assert callable(getattr(R, name))
    source = pathlib.Path(R.__file__).read_text()
    imports = re.findall(r"^\s*(?:from|import) +([\w.]+)", source, flags=re.M)
    assert set(imports) <= {"itertools", "math", "numbers", "fractions", "numpy", "polyloss.reference"}, imports


# ---------------------------------------------------------------------------------------------
# hand-computed CRF cases
# ---------------------------------------------------------------------------------------------


def test_crf_one_token_closed_form():
    # one token: S(k) = s[k] + e[k] + u[k]; the transitions are not used (even NaN)
    e = np.array([[[0.3, -1.2]]])
    s, u = np.array([0.5, -0.25]), np.array([-1.0, 2.0])
    A = np.full((2, 2), np.nan)
    x0, x1 = 0.3 + 0.5 - 1.0, -1.2 - 0.25 + 2.0
    close(R.crf_log_partition(e, A, start=s, end=u), [lse([x0, x1])])
    close(R.crf_nll(e, [[0]], A, start=s, end=u), [math.log1p(math.exp(x1 - x0))])
    close(R.crf_nll(e, [[1]], A, start=s, end=u), [math.log1p(math.exp(x0 - x1))])
    p0 = 1.0 / (1.0 + math.exp(x1 - x0))
    close(R.crf_marginals(e, A, start=s, end=u), [[[p0, 1.0 - p0]]], atol=1e-16)
    tags, score = R.crf_decode(e, A, start=s, end=u)
    assert tags.tolist() == [[1]] and score.tolist() == [x1]  # x1 = 0.55 > x0 = -0.2
    assert tags.dtype == np.int64 and score.dtype == np.float64


# two tokens, K = 2: e = [[1, 2], [3, 0]], A = [[0.5, -1], [2, 0]]; the four path scores
#   (0,0): 1 + 3 + 0.5 = 4.5   (0,1): 1 + 0 - 1 = 0   (1,0): 2 + 3 + 2 = 7   (1,1): 2 + 0 + 0 = 2
E2 = np.array([[[1.0, 2.0], [3.0, 0.0]]])
A2 = np.array([[0.5, -1.0], [2.0, 0.0]])
S2 = {(0, 0): 4.5, (0, 1): 0.0, (1, 0): 7.0, (1, 1): 2.0}


def test_crf_two_tokens_by_hand():
    log_z = lse(S2.values())
    close(R.crf_log_partition(E2, A2), [log_z])
    for path, s in S2.items():
        close(R.crf_nll(E2, [list(path)], A2), [log_z - s], rtol=1e-13)
    z = sum(math.exp(v) for v in S2.values())
    p_first0 = (math.exp(4.5) + math.exp(0.0)) / z
    p_second0 = (math.exp(4.5) + math.exp(7.0)) / z
    close(R.crf_marginals(E2, A2), [[[p_first0, 1 - p_first0], [p_second0, 1 - p_second0]]], rtol=1e-13)
    tags, score = R.crf_decode(E2, A2)
    assert tags.tolist() == [[1, 0]] and score.tolist() == [7.0]


def test_crf_two_tokens_start_end_by_hand():
    # start = [0, -1], end = [1, 0]: (0,0) 4.5 + 0 + 1 = 5.5, (0,1) 0 + 0 + 0 = 0,
    # (1,0) 7 - 1 + 1 = 7, (1,1) 2 - 1 + 0 = 1
    st, en = [0.0, -1.0], [1.0, 0.0]
    scores = {(0, 0): 5.5, (0, 1): 0.0, (1, 0): 7.0, (1, 1): 1.0}
    log_z = lse(scores.values())
    close(R.crf_log_partition(E2, A2, start=st, end=en), [log_z])
    for path, s in scores.items():
        close(R.crf_nll(E2, [list(path)], A2, start=st, end=en), [log_z - s], rtol=1e-13)
    tags, score = R.crf_decode(E2, A2, start=st, end=en)
    assert tags.tolist() == [[1, 0]] and score.tolist() == [7.0]
    # start = end = 0 is the same as none
    zero = [0.0, 0.0]
    np.testing.assert_array_equal(R.crf_log_partition(E2, A2, start=zero, end=zero), R.crf_log_partition(E2, A2))


def test_crf_constraint_by_hand():
    # forbid 1 -> 0 in the case above: (1,0) is impossible, log Z = lse(4.5, 0, 2)
    A = A2.copy()
    A[1, 0] = -INF
    log_z = lse([4.5, 0.0, 2.0])
    close(R.crf_log_partition(E2, A), [log_z])
    assert R.crf_nll(E2, [[1, 0]], A).tolist() == [INF]
    close(R.crf_nll(E2, [[0, 0]], A), [log_z - 4.5], rtol=1e-13)
    tags, score = R.crf_decode(E2, A)
    assert tags.tolist() == [[0, 0]] and score.tolist() == [4.5]
    # a -inf emission at a real token forbids every path through it: e[1, 0] = -inf leaves (0,1), (1,1)
    e = E2.copy()
    e[0, 1, 0] = -INF
    close(R.crf_log_partition(e, A2), [lse([0.0, 2.0])])
    close(R.crf_marginals(e, A2)[0, 1], [0.0, 1.0])


def test_nll_precision_near_zero():
    # one token, e = [0, -40]: nll(0) = log(1 + e^-40) ≈ 4.25e-18 (log Z - S would give 0)
    close(R.crf_nll([[[0.0, -40.0]]], [[0]], np.zeros((2, 2))), [math.log1p(math.exp(-40.0))])
    # large scores: log Z = 1e4 + log1p(e^-2e4) = 1e4 exactly rounded; the other tag has nll 2e4
    e = [[[1e4, -1e4]]]
    assert R.crf_log_partition(e, np.zeros((2, 2))).tolist() == [1e4]
    assert R.crf_nll(e, [[1]], np.zeros((2, 2))).tolist() == [2e4]
    # two tokens whose best path dominates: nll = log1p(Σ_{y≠best} e^{S(y) - S(best)})
    e = np.array([[[30.0, 0.0], [30.0, 0.0]]])
    expected = math.log1p(2 * math.exp(-30.0) + math.exp(-60.0))
    close(R.crf_nll(e, [[0, 0]], np.zeros((2, 2))), [expected])


# ---------------------------------------------------------------------------------------------
# decode ties, infeasible rows, empty rows, NaN
# ---------------------------------------------------------------------------------------------


def test_decode_tie_rule():
    # every path scores 0: the smallest reversed path is all zeros
    tags, score = R.crf_decode(np.zeros((1, 4, 3)), np.zeros((3, 3)))
    assert tags.tolist() == [[0, 0, 0, 0]] and score.tolist() == [0.0]
    # only (0,1) and (1,0) are possible, both score 0: the last tag decides, (1, 0) wins
    # (plain lexicographic order would pick (0, 1))
    A = np.array([[-INF, 0.0], [0.0, -INF]])
    tags, score = R.crf_decode(np.zeros((1, 2, 2)), A)
    assert tags.tolist() == [[1, 0]] and score.tolist() == [0.0]
    # three tokens, K = 3, no tag repeated: the tied best paths end in 0; among those, y_2 = 1 is the
    # smallest allowed, then y_1 = 0: (0, 1, 0)
    A = np.where(np.eye(3, dtype=bool), -INF, 0.0)
    tags, _ = R.crf_decode(np.zeros((1, 3, 3)), A)
    assert tags.tolist() == [[0, 1, 0]]
    # the last tag beats the first: emissions make (2, 0) and (0, 1) the tied best, (2, 0) ends lower
    e = np.array([[[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]])
    A = np.array([[-INF, 0.0, -INF], [-INF, -INF, -INF], [0.0, -INF, -INF]])
    tags, score = R.crf_decode(e, A)
    assert tags.tolist() == [[2, 0]] and score.tolist() == [2.0]


def test_infeasible_rows():
    # row 0: two tokens, every transition forbidden; row 1: one token (transitions unused);
    # row 2: every start forbidden, one token
    e = np.zeros((3, 2, 2))
    mask = np.array([[True, True], [True, False], [False, True]])
    A = np.full((2, 2), -INF)
    assert R.crf_log_partition(e, A, mask=mask).tolist() == [-INF, math.log(2.0), math.log(2.0)]
    assert R.crf_nll(e, np.zeros((3, 2), dtype=int), A, mask=mask).tolist() == [INF, math.log(2.0), math.log(2.0)]
    marg = R.crf_marginals(e, A, mask=mask)
    np.testing.assert_array_equal(marg[0], np.zeros((2, 2)))
    tags, score = R.crf_decode(e, A, mask=mask, fill=-7)
    assert tags.tolist() == [[-7, -7], [0, -7], [-7, 0]] and score.tolist() == [-INF, 0.0, 0.0]
    st = [-INF, -INF]
    assert R.crf_log_partition(e, np.zeros((2, 2)), mask=mask, start=st).tolist() == [-INF] * 3
    assert R.crf_nll(e, np.zeros((3, 2), dtype=int), np.zeros((2, 2)), mask=mask, start=st).tolist() == [INF] * 3
    tags, score = R.crf_decode(e, np.zeros((2, 2)), mask=mask, start=st)
    assert (tags == -1).all() and score.tolist() == [-INF] * 3


def test_empty_rows_and_shapes():
    e = np.full((2, 3, 2), np.nan)  # nothing is used
    mask = np.zeros((2, 3), dtype=bool)
    tags = np.full((2, 3), 99)
    assert R.crf_nll(e, tags, np.zeros((2, 2)), mask=mask).tolist() == [0.0, 0.0]
    assert R.crf_log_partition(e, np.zeros((2, 2)), mask=mask).tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(R.crf_marginals(e, np.zeros((2, 2)), mask=mask), np.zeros((2, 3, 2)))
    t, s = R.crf_decode(e, np.zeros((2, 2)), mask=mask, fill=5)
    assert t.tolist() == [[5] * 3] * 2 and s.tolist() == [0.0, 0.0]
    for d in ("forward", "backward", "both"):
        assert R.memm_nll(e, tags, np.zeros((2, 2)), mask=mask, direction=d).tolist() == [0.0, 0.0]
    # T = 0 and B = 0
    assert R.crf_nll(np.zeros((2, 0, 3)), np.zeros((2, 0), dtype=int), np.zeros((3, 3))).tolist() == [0.0, 0.0]
    assert R.crf_marginals(np.zeros((2, 0, 3)), np.zeros((3, 3))).shape == (2, 0, 3)
    t, s = R.crf_decode(np.zeros((0, 4, 3)), np.zeros((3, 3)))
    assert t.shape == (0, 4) and s.shape == (0,)


def test_nan_and_posinf():
    e = np.zeros((2, 2, 2))
    e[0, 1, 1] = np.nan
    tags = np.zeros((2, 2), dtype=int)
    A = np.zeros((2, 2))
    for out in (R.crf_nll(e, tags, A), R.crf_log_partition(e, A)):
        assert math.isnan(out[0]) and out[1] == math.log(4.0)
    marg = R.crf_marginals(e, A)
    assert np.isnan(marg[0]).all() and (marg[1] == 0.5).all()
    t, s = R.crf_decode(e, A)
    assert t[0].tolist() == [-1, -1] and math.isnan(s[0]) and t[1].tolist() == [0, 0]
    # a NaN transition is used once a row has two tokens; +inf too
    for bad in (np.nan, INF):
        A = np.array([[0.0, bad], [0.0, 0.0]])
        assert np.isnan(R.crf_log_partition(np.zeros((1, 2, 2)), A)).all()
        assert R.crf_log_partition(np.zeros((1, 1, 2)), A).tolist() == [math.log(2.0)]


# ---------------------------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------------------------

SHAPES = [(4, 1, 2), (4, 2, 2), (4, 3, 3), (3, 5, 2), (3, 4, 4), (2, 6, 3)]  # (B, T, K)
CASES = [(seed, B, T, K) for seed, (B, T, K) in enumerate(SHAPES)]


@pytest.mark.parametrize("constraints", [False, True])
@pytest.mark.parametrize("seed,B,T,K", CASES)
def test_enumeration_matches_dynamic_programmes(seed, B, T, K, constraints, monkeypatch):
    rng = np.random.default_rng(seed)
    for integer in (False, True):
        case = random_case(rng, B, T, K, constraints=constraints, integer=integer)
        with monkeypatch.context() as m:
            use_enumeration(m)
            brute = all_outputs(*case)
        with monkeypatch.context() as m:
            use_dp(m)
            dp = all_outputs(*case)
        log_z = brute["log_z"]
        close(dp["log_z"], log_z, rtol=1e-13, atol=1e-13)  # -inf where no path is feasible
        np.testing.assert_array_equal(dp["nll"] == INF, brute["nll"] == INF)
        finite = np.isfinite(brute["nll"])
        scale = 1.0 + np.abs(log_z[finite])
        assert (np.abs(dp["nll"][finite] - brute["nll"][finite]) <= 1e-13 * scale).all()
        close(dp["marginals"], brute["marginals"], rtol=0, atol=1e-13)
        # both decoders compare exact scores and apply the same tie rule: identical results
        np.testing.assert_array_equal(dp["decode"][0], brute["decode"][0])
        np.testing.assert_array_equal(dp["decode"][1], brute["decode"][1])


def test_decode_ties_enumeration_matches_viterbi(monkeypatch):
    # scores in {-1, 0, 1} (and -inf): many exact ties, some where the reversed order and the plain
    # lexicographic order pick different paths; both decoders must apply the reversed-order rule
    rng = np.random.default_rng(21)
    B, T, K = 40, 5, 3
    e = rng.integers(-1, 2, size=(B, T, K)).astype(float)
    A = rng.integers(-1, 2, size=(K, K)).astype(float)
    A[0, 0] = -INF
    mask = np.arange(T)[None, :] < rng.integers(2, T + 1, size=(B, 1))
    with monkeypatch.context() as m:
        use_enumeration(m)
        brute = R.crf_decode(e, A, mask=mask)
        paths = [R._Enumeration(row) for row in R._rows(e, A, mask, None, None)[2]]
    with monkeypatch.context() as m:
        use_dp(m)
        dp = R.crf_decode(e, A, mask=mask)
    np.testing.assert_array_equal(dp[0], brute[0])
    np.testing.assert_array_equal(dp[1], brute[1])
    orders_differ = 0
    for row, en in enumerate(paths):
        scores = [math.fsum(t) for t in en.terms]
        tied = [p for p, s in zip(en.paths, scores) if s == max(scores)]
        assert list(brute[0][row][mask[row]]) == list(min(tied, key=lambda p: p[::-1]))
        orders_differ += min(tied) != min(tied, key=lambda p: p[::-1])
    assert orders_differ >= 3


def test_default_method_by_number_of_paths(monkeypatch):
    # 2^16 = 65536 paths are enumerated, 2^17 = 131072 are not (limit 10^5)
    assert R._BRUTE_FORCE_LIMIT == 10**5
    e = np.random.default_rng(1).normal(size=(1, 17, 2))
    with monkeypatch.context() as m:
        m.setattr(R, "_forward", _fail)
        R.crf_log_partition(e[:, :16], np.zeros((2, 2)))
    with monkeypatch.context() as m:
        m.setattr(R, "_Enumeration", _fail)
        R.crf_log_partition(e, np.zeros((2, 2)))


def test_long_rows_use_dynamic_programmes(monkeypatch):
    # 3^40 paths: enumeration would never finish; identities still hold
    monkeypatch.setattr(R, "_Enumeration", _fail)
    rng = np.random.default_rng(7)
    e, tags, A, mask, st, en = random_case(rng, 3, 40, 3, constraints=True)
    mask[:] = False  # a full row, 30 tokens right-padded, 20 left-padded: at least 3^20 paths each
    mask[0], mask[1, :30], mask[2, 20:] = True, True, True
    e = np.where(mask[..., None], rng.normal(size=e.shape), np.nan)
    e[1:][rng.random((2, 40, 3)) < 0.1] = -INF
    tags = np.where(mask, rng.integers(0, 3, size=tags.shape), -1)
    out = all_outputs(e, tags, A, mask, st, en)
    sums = out["marginals"].sum(-1)
    feasible = np.isfinite(out["log_z"])
    assert feasible[0]
    close(sums[mask & feasible[:, None]], 1.0, rtol=1e-12)
    dtags, dscore = out["decode"]
    # the decoded path's nll is log Z - its score
    assert (dtags[mask & ~feasible[:, None]] == -1).all()
    close(R.crf_nll(e, np.where(mask & feasible[:, None], dtags, 0), A, **kw(mask, st, en))[feasible],
          out["log_z"][feasible] - dscore[feasible], rtol=0, atol=1e-11)


@pytest.mark.parametrize("seed,B,T,K", CASES)
def test_marginals_are_probabilities_and_derivatives(seed, B, T, K):
    rng = np.random.default_rng(100 + seed)
    e, tags, A, mask, st, en = random_case(rng, B, T, K, constraints=seed % 2 == 1)
    log_z = R.crf_log_partition(e, A, **kw(mask, st, en))
    marg = R.crf_marginals(e, A, **kw(mask, st, en))
    feasible = np.isfinite(log_z)
    close(marg.sum(-1)[mask & feasible[:, None]], 1.0, rtol=1e-14)
    assert (marg[~(mask & feasible[:, None])] == 0).all() and (marg >= 0).all()
    # central differences of log Z with respect to each finite emission at a real token
    h = 1e-5
    for b, t, k in zip(*np.nonzero(mask[..., None] & np.isfinite(e) & feasible[:, None, None])):
        ep, em = e.copy(), e.copy()
        ep[b, t, k] += h
        em[b, t, k] -= h
        d = (R.crf_log_partition(ep[b:b + 1], A, **kw(mask[b:b + 1], st, en))
             - R.crf_log_partition(em[b:b + 1], A, **kw(mask[b:b + 1], st, en)))[0] / (2 * h)
        assert abs(d - marg[b, t, k]) < 1e-8, (b, t, k, d, marg[b, t, k])
    # emissions at masked positions do not move log Z (derivative 0 = marginal 0)
    e2 = np.where(mask[..., None], e, 123.0)
    np.testing.assert_array_equal(R.crf_log_partition(e2, A, **kw(mask, st, en)), log_z)


def every_tagging(e, A, mask, st, en, row):
    """All tag sequences of row ``row`` (garbage at the masked positions) as a batch of that row."""
    n = int(mask[row].sum())
    K = e.shape[2]
    seqs = list(itertools.product(range(K), repeat=n))
    tags = np.full((len(seqs), e.shape[1]), 77)
    tags[:, mask[row]] = np.array(seqs, dtype=int).reshape(len(seqs), n)
    rep = lambda x: np.repeat(x[row:row + 1], len(seqs), axis=0)  # noqa: E731
    return rep(e), tags, rep(mask)


@pytest.mark.parametrize("seed,B,T,K", CASES)
def test_probabilities_of_all_taggings_sum_to_one(seed, B, T, K):
    rng = np.random.default_rng(200 + seed)
    e, tags, A, mask, st, en = random_case(rng, B, T, K, constraints=seed % 2 == 0)
    log_z = R.crf_log_partition(e, A, **kw(mask, st, en))
    dtags, dscore = R.crf_decode(e, A, **kw(mask, st, en))
    for row in range(B):
        if not np.isfinite(log_z[row]):
            continue
        ee, tt, mm = every_tagging(e, A, mask, st, en, row)
        nll = R.crf_nll(ee, tt, A, **kw(mm, st, en))
        assert (nll >= 0).all()
        close(math.fsum(np.exp(-nll)), 1.0, rtol=1e-14)
        # the decoded path has the smallest nll, and nll = log Z - its score
        if np.sum(nll == nll.min()) == 1:  # no tie
            np.testing.assert_array_equal(np.where(mask[row], dtags[row], 77), tt[int(np.argmin(nll))])
        close(log_z[row] - dscore[row], nll.min(), rtol=0, atol=1e-13 * (1 + abs(log_z[row])))


@pytest.mark.parametrize("seed", range(4))
def test_left_and_right_padding_match_the_unpadded_sequence(seed):
    rng = np.random.default_rng(300 + seed)
    B, n, K, pad = 3, 4, 3, 2
    e, tags, A, _, st, en = random_case(rng, B, n, K, constraints=seed >= 2)
    base_mask = np.ones((B, n), dtype=bool)
    tags = rng.integers(0, K, size=(B, n))
    base = all_outputs(e, tags, A, base_mask, st, en)
    memm = {d: R.memm_nll(e, tags, A, direction=d) for d in ("forward", "backward", "both")}
    for left in (True, False):
        T = n + pad
        sl = slice(pad, T) if left else slice(0, n)
        mask = np.zeros((B, T), dtype=bool)
        mask[:, sl] = True
        ep = rng.choice([np.nan, INF, -INF, 5e300], size=(B, T, K))
        ep[:, sl] = e
        tp = rng.choice([-9, K, 1000], size=(B, T))
        tp[:, sl] = tags
        out = all_outputs(ep, tp, A, mask, st, en)
        np.testing.assert_array_equal(out["nll"], base["nll"])
        np.testing.assert_array_equal(out["log_z"], base["log_z"])
        np.testing.assert_array_equal(out["marginals"][:, sl], base["marginals"])
        assert (out["marginals"][~mask] == 0).all()
        np.testing.assert_array_equal(out["decode"][0][:, sl], base["decode"][0])
        assert (out["decode"][0][~mask] == -1).all()
        np.testing.assert_array_equal(out["decode"][1], base["decode"][1])
        for d, v in memm.items():
            np.testing.assert_array_equal(R.memm_nll(ep, tp, A, mask=mask, direction=d), v)


# ---------------------------------------------------------------------------------------------
# tag schemes
# ---------------------------------------------------------------------------------------------

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def valid_bio(seq):
    """Every I-X continues an entity of type X (follows B-X or I-X)."""
    prev = "O"
    for label in seq:
        if label.startswith("I-") and prev[2:] != label[2:]:
            return False
        prev = label
    return True


def valid_iobes(seq):
    """A state machine: outside, or inside an entity of type X; the sequence ends outside."""
    inside = None
    for label in seq:
        kind = label[2:]
        if label == "O" or label.startswith("S-"):
            if inside is not None:
                return False
        elif label.startswith("B-"):
            if inside is not None:
                return False
            inside = kind
        elif label.startswith("I-"):
            if inside != kind:
                return False
        elif label.startswith("E-"):
            if inside != kind:
                return False
            inside = None
    return inside is None


def mask_allows(masks, seq_ids):
    trans, first, last = masks
    return bool(first[seq_ids[0]] and last[seq_ids[-1]] and all(trans[a, b] for a, b in zip(seq_ids, seq_ids[1:])))


def test_bio_masks_by_hand():
    trans, first, last = R.allowed_transitions(BIO)
    # rows: from O, B-PER, I-PER, B-LOC, I-LOC; columns: to the same. I-PER only after B-PER / I-PER.
    expected = np.array([
        [1, 1, 0, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 1, 1],
        [1, 1, 0, 1, 1],
    ], dtype=bool)
    np.testing.assert_array_equal(trans, expected)
    np.testing.assert_array_equal(first, [True, True, False, True, False])
    np.testing.assert_array_equal(last, [True] * 5)
    assert trans.dtype == first.dtype == last.dtype == np.bool_
    for got, want in zip(R.allowed_transitions(BIO, "IOB2"), (trans, first, last)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("labels,scheme,valid", [(BIO, "BIO", valid_bio), (IOBES, "IOBES", valid_iobes),
                                                 (IOBES, "BIOES", valid_iobes), (BIO[::-1], "IOB2", valid_bio)])
def test_scheme_masks_accept_exactly_the_valid_sequences(labels, scheme, valid):
    masks = R.allowed_transitions(labels, scheme)
    K = len(labels)
    for n in (1, 2, 3):
        for ids in itertools.product(range(K), repeat=n):
            assert mask_allows(masks, ids) == valid([labels[i] for i in ids]), [labels[i] for i in ids]


@pytest.mark.parametrize("labels,scheme,valid,n", [(BIO, "BIO", valid_bio, 3), (IOBES, "IOBES", valid_iobes, 2)])
def test_constrained_crf_never_produces_an_invalid_sequence(labels, scheme, valid, n):
    trans_ok, first_ok, last_ok = R.allowed_transitions(labels, scheme)
    rng = np.random.default_rng(11)
    K = len(labels)
    A = np.where(trans_ok, rng.normal(size=(K, K)), -INF)
    st = np.where(first_ok, rng.normal(size=K), -INF)
    en = np.where(last_ok, rng.normal(size=K), -INF)
    B, T = 20, 5 if K < 6 else 4
    e = 3.0 * rng.normal(size=(B, T, K))
    mask = np.arange(T)[None, :] < rng.integers(1, T + 1, size=(B, 1))
    tags, score = R.crf_decode(e, A, mask=mask, start=st, end=en)
    assert np.isfinite(score).all()
    for row in range(B):
        assert valid([labels[i] for i in tags[row][mask[row]]])
    # unconstrained decoding does produce invalid sequences on these emissions (the test has teeth)
    free, _ = R.crf_decode(e, np.zeros((K, K)), mask=mask)
    assert not all(valid([labels[i] for i in free[row][mask[row]]]) for row in range(B))
    # every invalid gold sequence of n tokens has nll +inf, every valid one is finite
    ee = np.repeat(e[:1, :n], K**n, axis=0)
    seqs = np.array(list(itertools.product(range(K), repeat=n)))
    nll = R.crf_nll(ee, seqs, A, start=st, end=en)
    for seq, v in zip(seqs, nll):
        assert np.isfinite(v) == valid([labels[i] for i in seq])
    # and the marginal of an I- tag at the first token is 0
    marg = R.crf_marginals(e, A, mask=mask, start=st, end=en)
    for k, label in enumerate(labels):
        if label.startswith(("I-", "E-")):
            assert (marg[:, 0, k] == 0).all()


@pytest.mark.parametrize("labels,scheme,name", [
    (["O", "E-PER"], "BIO", "'E-PER'"), (["O", "B-"], "BIO", "'B-'"), (["B"], "BIO", "'B'"),
    (["PER"], "IOBES", "'PER'"), (["O", "X-PER"], "IOBES", "'X-PER'"), (["o"], "BIO", "'o'"),
    (["O", "B-PER", "O"], "BIO", "'O'"),
])
def test_bad_labels(labels, scheme, name):
    with pytest.raises(ValueError, match=name):
        R.allowed_transitions(labels, scheme)


@pytest.mark.parametrize("scheme", ["IOB1", "bio", "BILOU", ""])
def test_unknown_scheme(scheme):
    with pytest.raises(ValueError, match=f"scheme {scheme!r}"):
        R.allowed_transitions(BIO, scheme)


def test_label_types():
    with pytest.raises(TypeError, match="labels"):
        R.allowed_transitions("B-PER")
    with pytest.raises(TypeError, match="3"):
        R.allowed_transitions(["O", 3])
    # type names may contain '-': split at the first one
    trans, _, _ = R.allowed_transitions(["B-ORG-X", "I-ORG-X", "I-ORG"])
    assert trans[0, 1] and not trans[0, 2]
    # no labels: empty masks
    trans, first, last = R.allowed_transitions([])
    assert trans.shape == (0, 0) and first.shape == last.shape == (0,)


# ---------------------------------------------------------------------------------------------
# MEMM
# ---------------------------------------------------------------------------------------------


def log_softmax_at(values, k):
    return values[k] - lse(values)


def test_memm_by_hand():
    e = np.array([[[0.2, -0.5, 1.0], [1.5, 0.0, -1.0]]])
    A = np.array([[0.0, 1.0, -0.5], [2.0, 0.3, 0.0], [-1.0, 0.0, 0.7]])
    for y1, y2 in itertools.product(range(3), repeat=2):
        fwd = -log_softmax_at(list(e[0, 0]), y1) - log_softmax_at(list(A[y1] + e[0, 1]), y2)
        bwd = -log_softmax_at(list(e[0, 1]), y2) - log_softmax_at(list(A[:, y2] + e[0, 0]), y1)
        close(R.memm_nll(e, [[y1, y2]], A), [fwd], rtol=1e-13)
        close(R.memm_nll(e, [[y1, y2]], A, direction="backward"), [bwd], rtol=1e-13)
        close(R.memm_nll(e, [[y1, y2]], A, direction="both"), [(fwd + bwd) / 2], rtol=1e-13)
    # one token: a softmax cross-entropy, the same in every direction, transitions unused (NaN)
    for d in ("forward", "backward", "both"):
        close(R.memm_nll(e[:, :1], [[2]], np.full((3, 3), np.nan), direction=d), [-log_softmax_at(list(e[0, 0]), 2)])
    # zero scores: n log K
    close(R.memm_nll(np.zeros((1, 5, 3)), [[0, 1, 2, 1, 0]], np.zeros((3, 3)), direction="both"), [5 * math.log(3.0)])


@pytest.mark.parametrize("seed,B,T,K", CASES)
def test_memm_probabilities_sum_to_one(seed, B, T, K):
    rng = np.random.default_rng(400 + seed)
    e, tags, A, mask, _, _ = random_case(rng, B, T, K, constraints=seed % 2 == 1)
    # keep at least one possible tag per step so that each local softmax is a distribution
    e = np.where(np.isneginf(e).all(-1, keepdims=True), 0.0, e)
    A = np.where(np.isneginf(A).all(-1, keepdims=True) | np.isneginf(A).all(0, keepdims=True), 0.0, A)
    for row in range(B):
        ee, tt, mm = every_tagging(e, A, mask, None, None, row)
        f = R.memm_nll(ee, tt, A, mask=mm, direction="forward")
        b = R.memm_nll(ee, tt, A, mask=mm, direction="backward")
        close(math.fsum(np.exp(-f)), 1.0, rtol=1e-14)
        close(math.fsum(np.exp(-b)), 1.0, rtol=1e-14)
        assert (f >= 0).all() and (b >= 0).all()
        np.testing.assert_array_equal(R.memm_nll(ee, tt, A, mask=mm, direction="both"), 0.5 * (f + b))


def test_memm_backward_is_forward_on_the_reversed_sequence():
    rng = np.random.default_rng(5)
    e, tags, A, mask, _, _ = random_case(rng, 5, 5, 3)
    rev = lambda x: x[:, ::-1].copy()  # noqa: E731
    np.testing.assert_array_equal(
        R.memm_nll(e, tags, A, mask=mask, direction="backward"),
        R.memm_nll(rev(e), rev(tags), A.T.copy(), mask=rev(mask), direction="forward"),
    )


def test_memm_constraints():
    e = np.zeros((1, 2, 2))
    A = np.array([[0.0, -INF], [0.0, 0.0]])
    # forward: after 0, tag 1 is impossible; the step 0 -> 0 has probability 1
    assert R.memm_nll(e, [[0, 1]], A).tolist() == [INF]
    close(R.memm_nll(e, [[0, 0]], A), [math.log(2.0)])
    # backward: into 1, tag 0 is impossible
    assert R.memm_nll(e, [[0, 1]], A, direction="backward").tolist() == [INF]
    assert R.memm_nll(e, [[0, 1]], A, direction="both").tolist() == [INF]
    # a -inf emission removes a tag at its step
    e[0, 0, 1] = -INF
    assert R.memm_nll(e, [[0, 0]], A).tolist() == [0.0]  # each step has one possible tag
    assert R.memm_nll(e, [[1, 0]], A).tolist() == [INF]
    # NaN in a used transition row gives NaN; an unused one is ignored
    A = np.array([[0.0, 0.0], [np.nan, 0.0]])
    assert math.isnan(R.memm_nll(np.zeros((1, 2, 2)), [[1, 0]], A)[0])
    close(R.memm_nll(np.zeros((1, 2, 2)), [[0, 0]], A), [2 * math.log(2.0)])


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------

E = np.zeros((2, 3, 2))
T2 = np.zeros((2, 3), dtype=int)
A0 = np.zeros((2, 2))


def every_function(e=E, tags=T2, A=A0, **kwargs):
    extra = {k: v for k, v in kwargs.items() if k in ("mask",)}
    bound = {k: v for k, v in kwargs.items() if k in ("mask", "start", "end")}
    return [
        lambda: R.crf_nll(e, tags, A, **bound),
        lambda: R.crf_log_partition(e, A, **bound),
        lambda: R.crf_marginals(e, A, **bound),
        lambda: R.crf_decode(e, A, **bound),
        lambda: R.memm_nll(e, tags, A, **extra),
    ]


def test_mask_with_holes_names_the_row():
    mask = np.array([[True, True, True], [True, False, True]])
    for f in every_function(mask=mask):
        with pytest.raises(ValueError, match=r"mask row 1 has holes.*\[1\]"):
            f()


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(e=np.zeros((3, 2))), r"emissions must have shape \[B, T, K\].*\(3, 2\)"),
    (dict(e=np.zeros((2, 3, 0)), A=np.zeros((0, 0))), r"K = 0"),
    (dict(A=np.zeros((2, 3))), r"transitions has shape \(2, 3\).*\(2, 2\)"),
    (dict(A=np.zeros(2)), r"transitions has shape \(2,\)"),
    (dict(mask=np.ones((2, 4), dtype=bool)), r"mask has shape \(2, 4\).*\(2, 3\)"),
])
def test_shapes_are_named(kwargs, pattern):
    for f in every_function(**kwargs):
        with pytest.raises(ValueError, match=pattern):
            f()


def test_start_end_tags_and_types():
    for name in ("start", "end"):
        for f in every_function(**{name: np.zeros(3)})[:4]:
            with pytest.raises(ValueError, match=rf"{name} has shape \(3,\).*\(2,\)"):
                f()
    with pytest.raises(ValueError, match=r"tags has shape \(2, 2\).*\(2, 3\)"):
        R.crf_nll(E, np.zeros((2, 2), dtype=int), A0)
    with pytest.raises(ValueError, match=r"tags has shape \(3,\)"):
        R.memm_nll(E, np.zeros(3, dtype=int), A0)
    for f in (R.crf_nll, R.memm_nll):
        with pytest.raises(ValueError, match=r"tags\[1, 2\] = 2 is outside \[0, 2\)"):
            f(E, np.array([[0, 0, 0], [0, 1, 2]]), A0)
        with pytest.raises(ValueError, match=r"tags\[0, 0\] = -1"):
            f(E, np.array([[-1, 0, 0], [0, 1, 1]]), A0)
        with pytest.raises(TypeError, match="tags must be an integer array"):
            f(E, np.zeros((2, 3)), A0)
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        R.crf_log_partition(E, A0, mask=np.ones((2, 3), dtype=int))
    with pytest.raises(TypeError, match="emissions"):
        R.crf_log_partition(np.zeros((2, 3, 2), dtype=bool), A0)
    for fill in (True, 1.0, None):
        with pytest.raises(TypeError, match="fill must be an int"):
            R.crf_decode(E, A0, fill=fill)
    for d in ("fwd", "Forward", None):
        with pytest.raises(ValueError, match="direction must be one of"):
            R.memm_nll(E, T2, A0, direction=d)

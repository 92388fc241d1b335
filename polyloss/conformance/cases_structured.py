"""Conformance cases of the structured-prediction family (``docs/structured.md``): the linear-chain CRF
and the MEMM, on small chains (K <= 4 tags, T <= 6 positions) that the reference enumerates path by
path. Masks with left and right padding, rows of one token and of none, ``-inf`` constraints (a row
with an impossible gold path, a row with no feasible path), NaN and out-of-range tags under the mask,
start / end scores, half precision.

``start`` and ``end`` are keyword-only in the library; the cases pass them positionally through
``call`` / ``reference_call`` so that their gradients are checked too. ``crf_decode`` returns
``(tags, scores)``: one case compares the integer tags exactly, another the scores (and their
gradient, the indicator of the decoded path).
"""

from __future__ import annotations

import numpy as np

from polyloss.conformance.registry import ALL_DTYPES, Case, register

_INF = np.inf


def _mask(rng, b, t, padding, lengths=None):
    """``[B, T]`` contiguous runs: row 0 full, then random lengths (0 and 1 included when B >= 4)."""
    if lengths is None:
        lengths = rng.integers(1, t + 1, size=b)
        lengths[0] = t
        if b >= 4:
            lengths[2], lengths[3] = 1, 0
    lengths = np.asarray(lengths)
    if padding == "right":
        firsts = np.zeros(b, dtype=np.int64)
    elif padding == "left":
        firsts = t - lengths
    else:  # both: tokens anywhere in the row
        firsts = np.array([rng.integers(0, t - n + 1) for n in lengths])
    positions = np.arange(t)[None, :]
    return (positions >= firsts[:, None]) & (positions < (firsts + lengths)[:, None])


def _chain(rng, b=4, t=5, k=3, *, padding="right", scale=1.5, constraints=False, garbage=True, lengths=None):
    """Emissions, gold tags, transitions, start, end and mask of a small chain. ``constraints``: about a
    quarter of the transitions and a few emissions are ``-inf``, with gold paths drawn among the
    feasible ones; ``garbage``: NaN emissions and out-of-range tags at masked positions."""
    e = rng.normal(0.0, scale, (b, t, k))
    a = rng.normal(0.0, 1.0, (k, k))
    start, end = rng.normal(0.0, 1.0, k), rng.normal(0.0, 1.0, k)
    mask = _mask(rng, b, t, padding, lengths)
    tags = rng.integers(0, k, (b, t))
    if constraints:
        a[rng.random((k, k)) < 0.25] = -_INF
        np.fill_diagonal(a, np.where(np.isneginf(np.diag(a)), 0.0, np.diag(a)))  # staying is always allowed
        start[k - 1] = -_INF
        e[rng.random((b, t, k)) < 0.1] = -_INF
        e[:, :, 0] = np.where(np.isneginf(e[:, :, 0]), 0.0, e[:, :, 0])  # tag 0 always emits
        tags[:] = 0  # the all-zero path is feasible; a few rows keep a random (maybe impossible) path
        tags[1] = rng.integers(0, k, t)
    if garbage:
        e[~mask] = np.nan
        tags[~mask] = -100
    return e, tags, a, start, end, mask


def _with_boundary(function, e, tags, a, start, end, mask):
    return function(e, tags, a, mask=mask, start=start, end=end)


def _no_tags_with_boundary(function, e, a, start, end, mask):
    return function(e, a, mask=mask, start=start, end=end)


# --------------------------------------------------------------------------------------------
# F1 crf_nll
# --------------------------------------------------------------------------------------------
def _nll_full(rng, dtype):
    e, tags, a, *_ = _chain(rng, b=3, t=5, k=3, garbage=False)
    return (e, tags, a), {}


def _nll_right(rng, dtype):
    e, tags, a, start, end, mask = _chain(rng, padding="right")
    return (e, tags, a, start, end), {"mask": mask}


def _nll_left_constraints(rng, dtype):
    e, tags, a, start, end, mask = _chain(rng, padding="left", constraints=True)
    return (e, tags, a, start, end), {"mask": mask}


def _nll_anywhere(rng, dtype):
    e, tags, a, start, end, mask = _chain(rng, b=4, t=6, k=3, padding="both", scale=3.0)
    return (e, tags, a, start, end), {"mask": mask}


def _nll_four_tags(rng, dtype):
    e, tags, a, start, end, mask = _chain(rng, b=3, t=6, k=4, padding="both", constraints=True)
    return (e, tags, a, start, end), {"mask": mask}


def _nll_infeasible(rng, dtype):
    """Row 0: no feasible path (every transition out of the tags its first token allows is -inf); row 1:
    the gold path uses a -inf transition; row 2: fine. nll = +inf, +inf, finite."""
    e, tags, a, start, end, mask = _chain(rng, b=3, t=4, k=3, garbage=False, lengths=[4, 4, 3])
    a[0, :] = -_INF
    e[0, 0, 1:] = -_INF  # row 0 must start in tag 0, which cannot go on
    tags[1, :2] = 0
    a[1, 2] = 0.0
    tags[2] = [1, 2, 2, 0]
    return (e, tags, a, start, end), {"mask": mask}


def _nll_half(rng, dtype):
    e, tags, a, start, end, mask = _chain(rng, padding="both", constraints=True, scale=2.0)
    return (e, tags, a, start, end), {"mask": mask}


register(
    Case("crf_nll/full", "crf_nll", _nll_full, grad_args=(0, 2)),
    Case("crf_nll/right-padding", "crf_nll", _nll_right, grad_args=(0, 2, 3, 4), call=_with_boundary,
         reference_call=_with_boundary),
    Case("crf_nll/left-padding-constraints", "crf_nll", _nll_left_constraints, grad_args=(0, 2, 3, 4),
         call=_with_boundary, reference_call=_with_boundary),
    Case("crf_nll/padding-anywhere", "crf_nll", _nll_anywhere, grad_args=(0, 2, 3, 4), call=_with_boundary,
         reference_call=_with_boundary),
    Case("crf_nll/four-tags", "crf_nll", _nll_four_tags, grad_args=(), call=_with_boundary,
         reference_call=_with_boundary, note="K = 4, T = 6: values only (4096 paths a row make finite "
                                              "differences of the reference slow)"),
    Case("crf_nll/infeasible", "crf_nll", _nll_infeasible, grad_args=(0, 2, 3, 4), call=_with_boundary,
         reference_call=_with_boundary, note="+inf losses have a zero gradient, as the finite differences"),
    Case("crf_nll/half", "crf_nll", _nll_half, grad_args=(0, 2, 3, 4), dtypes=ALL_DTYPES, call=_with_boundary,
         reference_call=_with_boundary, seed=1,
         note="half-precision emissions with -inf constraints: finite, computed in float32"),
)


# --------------------------------------------------------------------------------------------
# F1 crf_log_partition, crf_marginals
# --------------------------------------------------------------------------------------------
def _no_tags(generator):
    def inputs(rng, dtype):
        (e, _tags, a, *rest), kwargs = generator(rng, dtype)
        return (e, a, *rest), kwargs

    return inputs


for _function in ("crf_log_partition", "crf_marginals"):
    register(
        Case(f"{_function}/full", _function, _no_tags(_nll_full), grad_args=(0, 1)),
        Case(f"{_function}/right-padding", _function, _no_tags(_nll_right), grad_args=(0, 1, 2, 3),
             call=_no_tags_with_boundary, reference_call=_no_tags_with_boundary),
        Case(f"{_function}/left-padding-constraints", _function, _no_tags(_nll_left_constraints),
             grad_args=(0, 1, 2, 3), call=_no_tags_with_boundary, reference_call=_no_tags_with_boundary),
        Case(f"{_function}/infeasible", _function, _no_tags(_nll_infeasible), grad_args=(0, 1, 2, 3),
             call=_no_tags_with_boundary, reference_call=_no_tags_with_boundary),
        Case(f"{_function}/half", _function, _no_tags(_nll_half), grad_args=(0, 1, 2, 3), dtypes=ALL_DTYPES,
             call=_no_tags_with_boundary, reference_call=_no_tags_with_boundary, seed=1),
    )


# --------------------------------------------------------------------------------------------
# F2 crf_decode: tags (exactly) and scores
# --------------------------------------------------------------------------------------------
def _decode_tags(function, e, a, start, end, mask):
    return function(e, a, mask=mask, start=start, end=end)[0]


def _decode_scores(function, e, a, start, end, mask):
    return function(e, a, mask=mask, start=start, end=end)[1]


def _decode_ties(rng, dtype):
    """Integer scores in {-1, 0, 1}: many exact ties, broken by the smallest last tag, then the one
    before it (exact in every dtype)."""
    b, t, k = 8, 5, 3
    e = rng.integers(-1, 2, (b, t, k)).astype(float)
    a = rng.integers(-1, 2, (k, k)).astype(float)
    start, end = rng.integers(-1, 2, k).astype(float), rng.integers(-1, 2, k).astype(float)
    mask = _mask(rng, b, t, "both")
    e[~mask] = np.nan
    return (e, a, start, end), {"mask": mask}


_DECODE_INPUTS = {
    "right-padding": _no_tags(_nll_right),
    "left-padding-constraints": _no_tags(_nll_left_constraints),
    "infeasible": _no_tags(_nll_infeasible),
    "half": _no_tags(_nll_half),
}
for _label, _inputs in _DECODE_INPUTS.items():
    _dtypes = ALL_DTYPES if _label == "half" else ("float64", "float32")
    _seed = 1 if _label == "half" else 0
    register(
        Case(f"crf_decode/tags-{_label}", "crf_decode", _inputs, grad_args=(), exact=True, dtypes=_dtypes,
             call=_decode_tags, reference_call=_decode_tags, seed=_seed),
        Case(f"crf_decode/scores-{_label}", "crf_decode", _inputs, grad_args=(0, 1, 2, 3), dtypes=_dtypes,
             call=_decode_scores, reference_call=_decode_scores, seed=_seed,
             note="the gradient of the best score is the decoded path's indicator"),
    )
register(
    Case("crf_decode/tags-ties", "crf_decode", _decode_ties, grad_args=(), exact=True, dtypes=ALL_DTYPES,
         call=_decode_tags, reference_call=_decode_tags, note="exact ties: the reference's tie rule"),
)


# --------------------------------------------------------------------------------------------
# F3 memm_nll
# --------------------------------------------------------------------------------------------
def _memm(padding, constraints, scale=1.5):
    def inputs(rng, dtype):
        e, tags, a, _, _, mask = _chain(rng, padding=padding, constraints=constraints, scale=scale)
        return (e, tags, a), {"mask": mask}

    return inputs


for _direction in ("forward", "backward", "both"):
    register(
        Case(f"memm_nll/{_direction}-right", "memm_nll", _memm("right", False), grad_args=(0, 2),
             options={}, call=lambda f, e, y, a, mask, d=_direction: f(e, y, a, mask=mask, direction=d),
             reference_call=lambda f, e, y, a, mask, d=_direction: f(e, y, a, mask=mask, direction=d)),
        Case(f"memm_nll/{_direction}-left-constraints", "memm_nll", _memm("left", True), grad_args=(0, 2),
             dtypes=ALL_DTYPES,
             call=lambda f, e, y, a, mask, d=_direction: f(e, y, a, mask=mask, direction=d),
             reference_call=lambda f, e, y, a, mask, d=_direction: f(e, y, a, mask=mask, direction=d)),
    )

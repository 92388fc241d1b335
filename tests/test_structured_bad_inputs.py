"""Bad input to the structured-prediction family, on every backend: shapes that do not match (named),
wrong dtypes, transitions not [K, K], a mask with holes, tags out of range at a token, gold paths
through a -inf score (not an error: +inf, said so in the docstrings), unknown tag schemes and labels
the scheme cannot parse. Value checks run in eager mode only; compiled, the rows concerned are NaN."""

from __future__ import annotations

import re

import numpy as np
import pytest

import polyloss

from helpers import get

E = np.random.default_rng(0).normal(size=(2, 4, 3))
TAGS = np.array([[0, 1, 2, 1], [2, 2, 0, 0]])
A = np.random.default_rng(1).normal(size=(3, 3))
MASK = np.array([[True, True, True, False], [False, True, True, True]])


def arr(backend, a, dtype="float32"):
    a = np.asarray(a)
    return backend.from_numpy(a, dtype=dtype if a.dtype.kind == "f" else None)


def crf_calls(backend, e=E, tags=TAGS, a=A, **kw):
    """Every CRF / MEMM function on the same inputs (keywords shared; start / end only for the CRF)."""
    e, tags, a = arr(backend, e), arr(backend, tags), arr(backend, a)
    boundary = {k: kw.pop(k) for k in ("start", "end") if k in kw}
    return [
        lambda: polyloss.crf_nll(e, tags, a, **kw, **boundary),
        lambda: polyloss.crf_log_partition(e, a, **kw, **boundary),
        lambda: polyloss.crf_marginals(e, a, **kw, **boundary),
        lambda: polyloss.crf_decode(e, a, **kw, **boundary),
        lambda: polyloss.memm_nll(e, tags, a, **kw),
    ]


# --------------------------------------------------------------------------------------------
# shapes and dtypes: always checked, every backend
# --------------------------------------------------------------------------------------------
def test_emissions_must_be_batch_time_tags(backend):
    for call in crf_calls(backend, e=E[0]):
        with pytest.raises(ValueError, match=re.escape("emissions must have shape [B, T, K] (batch first), "
                                                       "got shape (4, 3)")):
            call()
    with pytest.raises(ValueError, match=r"have no tag \(K = 0\)"):
        polyloss.crf_log_partition(arr(backend, np.zeros((2, 4, 0))), arr(backend, np.zeros((0, 0))))


def test_transitions_must_be_k_by_k(backend):
    for bad in (np.zeros((3, 4)), np.zeros(3), np.zeros((2, 2))):
        for call in crf_calls(backend, a=bad):
            message = f"transitions has shape {bad.shape} but emissions of shape (2, 4, 3) need transitions of shape "
            with pytest.raises(ValueError, match=re.escape(message + "[K, K] = (3, 3)")):
                call()


def test_start_end_tags_mask_shapes_are_named(backend):
    with pytest.raises(ValueError, match=re.escape("start has shape (4,) but emissions of shape (2, 4, 3) need "
                                                   "start of shape [K] = (3,)")):
        crf_calls(backend, start=arr(backend, np.zeros(4)))[0]()
    with pytest.raises(ValueError, match=re.escape("end has shape (1, 3)")):
        crf_calls(backend, end=arr(backend, np.zeros((1, 3))))[3]()
    for call in crf_calls(backend, mask=arr(backend, MASK[:, :3])):
        with pytest.raises(ValueError, match=re.escape("mask has shape (2, 3) but emissions of shape (2, 4, 3) need "
                                                       "a mask of shape [B, T] = (2, 4)")):
            call()
    for index in (0, 4):
        with pytest.raises(ValueError, match=re.escape("tags has shape (2, 3) but emissions of shape (2, 4, 3) need "
                                                       "tags of shape [B, T] = (2, 4)")):
            crf_calls(backend, tags=TAGS[:, :3])[index]()


def test_dtypes(backend):
    with pytest.raises(TypeError, match="emissions must be a real floating-point array"):
        polyloss.crf_nll(arr(backend, np.zeros((2, 4, 3), dtype=np.int64)), arr(backend, TAGS), arr(backend, A))
    message = ("transitions must be a real floating-point array, got a boolean array (apply a mask from "
               "allowed_transitions as where(mask, transitions, -inf))")
    with pytest.raises(TypeError, match=re.escape(message)):
        polyloss.crf_decode(arr(backend, E), arr(backend, np.ones((3, 3), dtype=bool)))
    with pytest.raises(TypeError, match="transitions must be a real floating-point array"):
        polyloss.crf_decode(arr(backend, E), arr(backend, np.ones((3, 3), dtype=np.int64)))
    with pytest.raises(TypeError, match="tags must be an integer array"):
        polyloss.crf_nll(arr(backend, E), arr(backend, TAGS.astype(np.float64)), arr(backend, A))
    with pytest.raises(TypeError, match=r"mask must be a boolean array \(True = token\)"):
        polyloss.crf_log_partition(arr(backend, E), arr(backend, A), mask=arr(backend, MASK.astype(np.int64)))
    with pytest.raises(TypeError, match="start must be a real floating-point array"):
        polyloss.crf_log_partition(arr(backend, E), arr(backend, A), start=arr(backend, np.zeros(3, dtype=np.int64)))


def test_options(backend):
    with pytest.raises(ValueError, match=r"direction must be one of \('forward', 'backward', 'both'\), got 'left'"):
        polyloss.memm_nll(arr(backend, E), arr(backend, TAGS), arr(backend, A), direction="left")
    with pytest.raises(TypeError, match="fill must be an int, got 0.5"):
        polyloss.crf_decode(arr(backend, E), arr(backend, A), fill=0.5)


@pytest.mark.parametrize("first, second", [("torch", "jax"), ("jax", "tensorflow"), ("tensorflow", "torch"),
                                           ("numpy", "torch"), ("torch", "array_api_strict")])
def test_two_frameworks_are_a_type_error_naming_both(first, second):
    a, b = get(first), get(second)
    with pytest.raises(TypeError, match=f"emissions is a {first} array but transitions is a {second} array"):
        polyloss.crf_log_partition(arr(a, E), arr(b, A))
    with pytest.raises(TypeError, match=f"emissions is a {first} array but mask is a {second} array"):
        polyloss.crf_decode(arr(a, E), arr(a, A), mask=arr(b, MASK))


def test_python_and_numpy_secondary_inputs_are_converted(backend):
    expected = backend.to_numpy(polyloss.crf_nll(arr(backend, E), arr(backend, TAGS), arr(backend, A),
                                                 mask=arr(backend, MASK)))
    out = polyloss.crf_nll(arr(backend, E), TAGS.tolist(), A, mask=MASK.tolist(), start=[0.0, 0.0, 0.0])
    assert backend.is_array(out)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# values: checked in eager mode
# --------------------------------------------------------------------------------------------
def test_mask_with_holes_names_the_row(backend):
    holes = np.array([[True, True, True, True], [True, False, True, True]])
    for call in crf_calls(backend, mask=arr(backend, holes)):
        with pytest.raises(ValueError, match=re.escape("mask row 1 has holes: its tokens (True) must form one "
                                                       "contiguous run (left or right padding), but positions [1] "
                                                       "between its first token (0) and last token (3) are False")):
            call()


def test_tags_out_of_range_at_a_token_name_the_position(backend):
    bad = TAGS.copy()
    bad[1, 2] = 3
    for index in (0, 4):
        with pytest.raises(ValueError, match=re.escape("tags[1, 2] = 3 is outside [0, 3) at a token (mask True)")):
            crf_calls(backend, tags=bad)[index]()
    bad[1, 2] = -1
    with pytest.raises(ValueError, match=re.escape("tags[1, 2] = -1 is outside [0, 3)")):
        crf_calls(backend, tags=bad)[0]()


def test_tags_at_masked_positions_are_ignored_whatever_their_value(backend):
    junk = np.where(MASK, TAGS, -100)
    junk[0, 3] = 10**6
    for index in (0, 4):
        got = backend.to_numpy(crf_calls(backend, tags=junk, mask=arr(backend, MASK))[index]())
        want = backend.to_numpy(crf_calls(backend, tags=np.where(MASK, TAGS, 0), mask=arr(backend, MASK))[index]())
        np.testing.assert_array_equal(got, want)


def test_gold_path_through_a_minus_inf_score_is_infinite_not_an_error(backend):
    """Documented: a gold path that uses a -inf transition, start, end or emission has nll = +inf."""
    a = A.copy()
    a[0, 1] = -np.inf  # TAGS[0] starts 0 -> 1
    e = E.copy()
    e[1, 0, 2] = -np.inf  # TAGS[1] starts in tag 2
    nll = backend.to_numpy(polyloss.crf_nll(arr(backend, e), arr(backend, TAGS), arr(backend, a)))
    assert nll.tolist() == [np.inf, np.inf]
    memm = backend.to_numpy(polyloss.memm_nll(arr(backend, e), arr(backend, TAGS), arr(backend, a)))
    assert memm.tolist() == [np.inf, np.inf]
    start = np.array([-np.inf, 0.0, 0.0])
    nll = backend.to_numpy(polyloss.crf_nll(arr(backend, E), arr(backend, TAGS), arr(backend, A),
                                            start=arr(backend, start)))
    assert nll[0] == np.inf and np.isfinite(nll[1])


def test_value_checks_can_be_turned_off():
    holes = np.array([[True, True, True, True], [True, False, True, True]])
    with polyloss.value_checks(False):
        polyloss.crf_log_partition(E, A, mask=holes)  # no check, no error
    with pytest.raises(ValueError, match="has holes"):
        polyloss.crf_log_partition(E, A, mask=holes)


@pytest.mark.parametrize("name", ["jax", "tensorflow"])
def test_compiled_code_skips_value_checks_and_gives_nan_for_out_of_range_tags(name):
    be = get(name)
    mode = "jit" if name == "jax" else "function"
    bad = TAGS.copy()
    bad[1, 2] = 7
    for function in (polyloss.crf_nll, polyloss.memm_nll):
        compiled = be.compile(lambda e, y, a, f=function: f(e, y, a), mode)
        out = be.to_numpy(compiled(arr(be, E, "float64"), arr(be, bad), arr(be, A, "float64")))
        assert np.isfinite(out[0]) and np.isnan(out[1])
    # a mask with holes cannot be refused compiled: the row comes out NaN
    holes = np.array([[True, True, True, True], [True, False, True, True]])
    compiled = be.compile(lambda e, a, m: polyloss.crf_log_partition(e, a, mask=m), mode)
    out = be.to_numpy(compiled(arr(be, E, "float64"), arr(be, A, "float64"), arr(be, holes)))
    assert np.isfinite(out[0]) and np.isnan(out[1])
    compiled = be.compile(lambda e, a, m: polyloss.crf_decode(e, a, mask=m), mode)
    tags, score = compiled(arr(be, E, "float64"), arr(be, A, "float64"), arr(be, holes))
    assert np.isnan(be.to_numpy(score)[1]) and (be.to_numpy(tags)[1] == -1).all()


# --------------------------------------------------------------------------------------------
# tag schemes
# --------------------------------------------------------------------------------------------
def test_unknown_scheme():
    with pytest.raises(ValueError, match=r"unknown tag scheme 'BILOU': expected one of \('BIO', 'IOB2', 'IOBES', "
                                         r"'BIOES'\)"):
        polyloss.allowed_transitions(["O", "B-X"], "BILOU")
    with pytest.raises(ValueError, match="unknown tag scheme 'bio'"):
        polyloss.allowed_transitions(["O", "B-X"], "bio")


@pytest.mark.parametrize("label, scheme", [("E-PER", "BIO"), ("PER", "BIO"), ("B-", "BIO"), ("U-PER", "IOBES"),
                                           ("o", "IOBES"), ("B_PER", "IOB2")])
def test_labels_the_scheme_cannot_parse(label, scheme):
    with pytest.raises(ValueError, match=re.escape(f"label {label!r} cannot be parsed in the {scheme} scheme")):
        polyloss.allowed_transitions(["O", "B-PER", label], scheme)


def test_labels_must_be_distinct_strings():
    with pytest.raises(ValueError, match="label 'B-X' appears more than once in labels"):
        polyloss.allowed_transitions(["O", "B-X", "B-X"])
    with pytest.raises(TypeError, match="labels must be a sequence of label strings, got the string 'O B-X'"):
        polyloss.allowed_transitions("O B-X")
    with pytest.raises(TypeError, match="labels must be strings, got 3"):
        polyloss.allowed_transitions(["O", 3])

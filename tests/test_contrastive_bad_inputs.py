"""Bad input to the contrastive family (, similarity and margin losses): clear errors that name
the shapes and values, a documented finite result for zero-norm embeddings, and no NaN from finite
inputs (values and, on the autograd backends, gradients), on every backend.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import polyloss

from helpers import AUTOGRAD_BACKENDS, get

RNG = np.random.default_rng(0)
E43 = RNG.normal(0, 1, (4, 3))  # four embeddings of width 3
S34 = RNG.normal(0, 1, (3, 4))  # three rows of four candidates
IDS = np.array([0, 1, 3])
BAD_IDS = np.array([0, 4, -1])

SCORE_LOSSES = {
    "infonce": polyloss.infonce,
    "flatnce": polyloss.flatnce,
    "am_softmax": polyloss.am_softmax,
    "arcface": polyloss.arcface,
    "unified_pairwise_loss": polyloss.unified_pairwise_loss,
    "circle_loss": polyloss.circle_loss,
}
ONE_HOT_LOSSES = {"am_softmax": polyloss.am_softmax, "arcface": polyloss.arcface}
MULTI_HOT_LOSSES = {"unified_pairwise_loss": polyloss.unified_pairwise_loss, "circle_loss": polyloss.circle_loss}
IDS_ONLY_LOSSES = {"infonce": polyloss.infonce, "flatnce": polyloss.flatnce}


def _f(backend, a, dtype="float32"):
    return backend.from_numpy(np.asarray(a), dtype=dtype if np.asarray(a).dtype.kind == "f" else None)


def _value_and_grads(backend, fn, *args, argnums=0):
    """``fn(*args)`` as NumPy, and (autograd backends only) the gradients of its sum with respect to
    ``args[argnums]`` as a tuple of NumPy arrays; ``()`` elsewhere."""
    if backend.name not in AUTOGRAD_BACKENDS:
        return backend.to_numpy(fn(*args)), ()
    xp = backend.namespace
    vg = backend.value_and_grad(lambda *a: xp.sum(fn(*a)), argnums)

    def both(*a):
        return fn(*a), vg(*a)[1]

    value, g = both(*args)
    grads = g if isinstance(g, tuple) else (g,)
    return backend.to_numpy(value), tuple(backend.to_numpy(x) for x in grads)


def _assert_finite(value, grads):
    assert np.all(np.isfinite(value)), value
    for g in grads:
        assert np.all(np.isfinite(g)), g


# --------------------------------------------------------------------------------------------
# infonce_from_embeddings: shapes, pairings, temperature
# --------------------------------------------------------------------------------------------
def test_embeddings_of_different_widths_name_both_shapes(backend):
    a = _f(backend, E43)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 5\).*same width"):
        polyloss.infonce_from_embeddings(a, _f(backend, np.ones((4, 5))))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 3\).*same width"):
        polyloss.infonce_from_embeddings(_f(backend, np.ones((4, 5))), a)


@pytest.mark.parametrize("shape", [(3,), (1, 4, 3), ()])
@pytest.mark.parametrize("which", ["a", "b"])
def test_embeddings_must_be_2d(backend, shape, which):
    bad = _f(backend, np.ones(shape))
    good = _f(backend, E43)
    a, b = (bad, good) if which == "a" else (good, bad)
    with pytest.raises(ValueError, match=rf"{which} must be 2-D.*got shape {re.escape(str(shape))}"):
        polyloss.infonce_from_embeddings(a, b)


def test_simcse_embeddings_must_be_2d(backend):
    with pytest.raises(ValueError, match=r"a must be 2-D.*\(2, 2, 3\)"):
        polyloss.infonce_from_embeddings(_f(backend, np.ones((2, 2, 3))), pairing="simcse")


def test_keys_need_at_least_as_many_rows_as_queries(backend):
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(2, 3\).*at least as many rows"):
        polyloss.infonce_from_embeddings(_f(backend, E43), _f(backend, E43[:2]))
    # more keys than queries is fine (extra hard negatives)
    out = backend.to_numpy(polyloss.infonce_from_embeddings(_f(backend, E43[:2]), _f(backend, E43)))
    assert out.shape == (2,) and np.all(np.isfinite(out))


def test_pairing_rules(backend):
    a = _f(backend, E43)
    with pytest.raises(ValueError, match=r"even number of rows.*\(3, 3\)"):
        polyloss.infonce_from_embeddings(_f(backend, E43[:3]), pairing="simcse")
    with pytest.raises(ValueError, match="pairing='simcse'.*b must be None"):
        polyloss.infonce_from_embeddings(a, a, pairing="simcse")
    with pytest.raises(ValueError, match="pairing='diagonal' needs the keys b"):
        polyloss.infonce_from_embeddings(a)
    for bad in ("clip", "Diagonal", None, ["diagonal"]):
        with pytest.raises(ValueError, match=r"pairing must be one of \('diagonal', 'simcse'\), got"):
            polyloss.infonce_from_embeddings(a, a, pairing=bad)


@pytest.mark.parametrize("bad, shown", [
    (0.0, "0.0"), (-0.5, "-0.5"), (float("nan"), "nan"), (float("inf"), "inf"), (np.float64(-1.0), "-1.0"),
])
def test_temperature_numbers_are_checked(backend, bad, shown):
    a = _f(backend, E43)
    for pairing, b in (("diagonal", a), ("simcse", None)):
        with pytest.raises(ValueError, match=rf"temperature must .*{shown}"):
            polyloss.infonce_from_embeddings(a, b, temperature=bad, pairing=pairing)


def test_temperature_of_the_wrong_kind_is_a_type_error(backend):
    a = _f(backend, E43)
    for bad in (None, "abc", [0.05], {"t": 0.05}):
        with pytest.raises(TypeError, match="temperature must be a real number"):
            polyloss.infonce_from_embeddings(a, a, temperature=bad)


@pytest.mark.parametrize("call", [
    lambda a, s, y: polyloss.infonce_from_embeddings(a, a, temperature="0.05"),
    lambda a, s, y: polyloss.am_softmax(s, y, margin="0.35"),
    lambda a, s, y: polyloss.circle_loss(s, y, gamma="80"),
], ids=["temperature", "margin", "gamma"])
def test_numeric_strings_are_not_numbers(call):
    with pytest.raises(TypeError, match="must be a real number"):
        call(E43, S34, IDS)


@pytest.mark.parametrize("bad", [-0.1, 0.0, float("nan")])
def test_temperature_arrays_are_checked(backend, bad):
    a = _f(backend, E43)
    t = _f(backend, np.array(bad))
    with pytest.raises(ValueError, match="temperature must"):
        polyloss.infonce_from_embeddings(a, a, temperature=t)


def test_infinite_temperature_array_is_rejected(backend):
    # the float inf is rejected ("must lie in (0, inf)"); the same value as a 0-d array of the
    # embeddings' framework is accepted and silently gives the uniform loss log(N)
    a = _f(backend, E43)
    with pytest.raises(ValueError, match="temperature must.*inf"):
        polyloss.infonce_from_embeddings(a, a, temperature=_f(backend, np.array(np.inf)))


@pytest.mark.parametrize("shape", [(2,), (1,), (1, 1)])
def test_non_scalar_temperature_array_is_a_value_error_naming_the_shape(backend, shape):
    a = _f(backend, E43)
    t = _f(backend, np.full(shape, 0.1))
    with pytest.raises(ValueError, match=rf"temperature must be a scalar.*{re.escape(str(shape))}"):
        polyloss.infonce_from_embeddings(a, a, temperature=t)


def test_embeddings_must_be_real_floating(backend):
    ints = _f(backend, np.ones((2, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="a must be a real floating-point array, got dtype"):
        polyloss.infonce_from_embeddings(ints, ints)
    with pytest.raises(TypeError, match="b must be a real floating-point array, got dtype"):
        polyloss.infonce_from_embeddings(_f(backend, np.ones((2, 3))), ints)
    bools = _f(backend, np.ones((2, 3), dtype=bool))
    with pytest.raises(TypeError, match="a must be a real floating-point array"):
        polyloss.infonce_from_embeddings(bools, pairing="simcse")


def test_empty_batch_gives_an_empty_loss(backend):
    # every other loss of the library returns an empty result for an empty batch (infonce included)
    z = _f(backend, np.zeros((0, 3)))
    assert backend.to_numpy(polyloss.infonce_from_embeddings(z, z)).shape == (0,)
    assert backend.to_numpy(polyloss.infonce_from_embeddings(z, pairing="simcse")).shape == (0,)


def test_zero_width_embeddings_are_zero_norm_or_a_clear_error(backend):
    # width 0: every row is a zero vector, so either the documented zero-norm result (log N) or a
    # ValueError naming the shape; never the framework's own reduction error
    z = _f(backend, np.zeros((2, 0)))
    try:
        out = backend.to_numpy(polyloss.infonce_from_embeddings(z, z))
    except ValueError as exc:
        assert "(2, 0)" in str(exc), exc
    else:
        np.testing.assert_allclose(out, [math.log(2)] * 2, rtol=1e-6)


def test_nan_embedding_gives_nan_for_its_query(backend):
    # NaN in, NaN out (as every other loss): a NaN row must not be mistaken for a zero-norm row
    a = _f(backend, np.array([[np.nan, 1.0], [1.0, 0.0]]))
    diag = backend.to_numpy(polyloss.infonce_from_embeddings(a, _f(backend, np.eye(2))))
    assert np.isnan(diag[0]) and np.isfinite(diag[1])
    simcse = backend.to_numpy(polyloss.infonce_from_embeddings(a, pairing="simcse"))
    assert np.all(np.isnan(simcse))  # row 0 is row 1's positive


# --------------------------------------------------------------------------------------------
# Zero-norm embeddings: the documented finite result, value and gradient
# --------------------------------------------------------------------------------------------
ZERO_MIXED_A = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 2.0]])
ZERO_MIXED_B = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("learnable_tau", [False, True])
@pytest.mark.parametrize("rows", ["some", "all"])
def test_zero_norm_embeddings_diagonal(backend, rows, learnable_tau):
    a_np, b_np = (ZERO_MIXED_A, ZERO_MIXED_B) if rows == "some" else (np.zeros((4, 3)), np.zeros((4, 3)))
    args = [_f(backend, a_np), _f(backend, b_np)]
    if learnable_tau and backend.name != "numpy":
        args.append(_f(backend, np.array(0.05)))
        fn = lambda a, b, t: polyloss.infonce_from_embeddings(a, b, temperature=t)  # noqa: E731
        argnums = (0, 1, 2)
    else:
        fn = lambda a, b: polyloss.infonce_from_embeddings(a, b, temperature=0.05)  # noqa: E731
        argnums = (0, 1)
    value, grads = _value_and_grads(backend, fn, *args, argnums=argnums)
    _assert_finite(value, grads)
    zero_queries = np.flatnonzero(~a_np.any(axis=1))
    # a zero query has cosine 0 with every key: log of the number of keys
    np.testing.assert_allclose(value[zero_queries], math.log(4), rtol=1e-5)
    if grads:
        np.testing.assert_array_equal(grads[0][zero_queries], 0.0)  # documented: gradient 0
        np.testing.assert_array_equal(grads[1][~b_np.any(axis=1)], 0.0)


@pytest.mark.parametrize("learnable_tau", [False, True])
@pytest.mark.parametrize("rows", ["some", "all"])
def test_zero_norm_embeddings_simcse(backend, rows, learnable_tau):
    a_np = ZERO_MIXED_A if rows == "some" else np.zeros((4, 3))
    args = [_f(backend, a_np)]
    if learnable_tau and backend.name != "numpy":
        args.append(_f(backend, np.array(0.05)))
        fn = lambda a, t: polyloss.infonce_from_embeddings(a, pairing="simcse", temperature=t)  # noqa: E731
        argnums = (0, 1)
    else:
        fn = lambda a: polyloss.infonce_from_embeddings(a, pairing="simcse", temperature=0.05)  # noqa: E731
        argnums = 0
    value, grads = _value_and_grads(backend, fn, *args, argnums=argnums)
    _assert_finite(value, grads)
    zero = np.flatnonzero(~a_np.any(axis=1))
    # the row itself is removed: log of the other N - 1 candidates
    np.testing.assert_allclose(value[zero], math.log(3), rtol=1e-5)
    if grads:
        np.testing.assert_array_equal(grads[0][zero], 0.0)


@pytest.mark.parametrize("pairing", ["diagonal", "simcse"])
def test_zero_norm_embeddings_without_normalize(backend, pairing):
    z = _f(backend, np.zeros((4, 3)))
    b = z if pairing == "diagonal" else None
    value, grads = _value_and_grads(
        backend, lambda a: polyloss.infonce_from_embeddings(a, b, pairing=pairing, normalize=False), z)
    _assert_finite(value, grads)
    np.testing.assert_allclose(value, math.log(4 if pairing == "diagonal" else 3), rtol=1e-5)


@pytest.mark.parametrize("magnitude", [1e-30, 1e30, 1e37])
def test_extreme_but_normal_embedding_magnitudes_are_finite(backend, magnitude):
    # the norm is taken after dividing by the row's peak: no square overflows or underflows
    a = _f(backend, ZERO_MIXED_A * magnitude)
    b = _f(backend, ZERO_MIXED_B + np.eye(4, 3))
    value, grads = _value_and_grads(backend, lambda a, b: polyloss.infonce_from_embeddings(a, b), a, b,
                                    argnums=(0, 1))
    reference = backend.to_numpy(polyloss.infonce_from_embeddings(_f(backend, ZERO_MIXED_A), b))
    _assert_finite(value, grads)
    np.testing.assert_allclose(value, reference, rtol=1e-4)


@pytest.mark.parametrize("pairing", ["diagonal", "simcse"])
def test_float32_embeddings_near_the_largest_float_are_finite(backend, pairing):
    a_np = np.array([[1e38, 0.0, 0.0], [0.0, 3e38, -1e38], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    a = _f(backend, a_np)
    if pairing == "diagonal":
        b = _f(backend, np.eye(4, 3))
        fn = lambda a: polyloss.infonce_from_embeddings(a, b)  # noqa: E731
        reference = polyloss.infonce_from_embeddings(a_np / np.abs(a_np).max(1, keepdims=True), np.eye(4, 3))
    else:
        fn = lambda a: polyloss.infonce_from_embeddings(a, pairing="simcse")  # noqa: E731
        reference = polyloss.infonce_from_embeddings(a_np / np.abs(a_np).max(1, keepdims=True), pairing="simcse")
    value, grads = _value_and_grads(backend, fn, a)
    _assert_finite(value, grads)
    np.testing.assert_allclose(value, reference, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Options and hyperparameters of the score losses and CoSENT
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda s, y, p: polyloss.flatnce(s, y, form="exp"), r"form must be one of \('log', 'paper'\), got 'exp'"),
    (lambda s, y, p: polyloss.flatnce(s, y, form=None), r"form must be one of .*got None"),
    (lambda s, y, p: polyloss.cosent_loss(p, y, method="fast"),
     r"method must be one of \('auto', 'pairwise', 'sorted'\), got 'fast'"),
    (lambda s, y, p: polyloss.am_softmax(s, y, scale=0.0), r"scale must lie in \(0, inf\); got 0.0"),
    (lambda s, y, p: polyloss.am_softmax(s, y, scale=-30.0), r"scale must lie in \(0, inf\); got -30.0"),
    (lambda s, y, p: polyloss.arcface(s, y, scale=0.0), r"scale must lie in \(0, inf\); got 0.0"),
    (lambda s, y, p: polyloss.arcface(s, y, scale=float("nan")), r"scale must lie in \(0, inf\); got nan"),
    (lambda s, y, p: polyloss.cosent_loss(p, y, scale=-1.0), r"scale must lie in \(0, inf\); got -1.0"),
    (lambda s, y, p: polyloss.cosent_loss(p, y, scale=float("inf")), r"scale must lie in \(0, inf\); got inf"),
    (lambda s, y, p: polyloss.unified_pairwise_loss(s, y, gamma=0.0), r"gamma must lie in \(0, inf\); got 0.0"),
    (lambda s, y, p: polyloss.unified_pairwise_loss(s, y, gamma=-1.0), r"gamma must lie in \(0, inf\); got -1.0"),
    (lambda s, y, p: polyloss.circle_loss(s, y, gamma=0.0), r"gamma must lie in \(0, inf\); got 0.0"),
    (lambda s, y, p: polyloss.circle_loss(s, y, gamma=float("inf")), r"gamma must lie in \(0, inf\); got inf"),
    (lambda s, y, p: polyloss.am_softmax(s, y, margin=float("inf")), r"margin must lie in \(-inf, inf\); got inf"),
    (lambda s, y, p: polyloss.arcface(s, y, margin=float("-inf")), r"margin must lie in \(-inf, inf\); got -inf"),
    (lambda s, y, p: polyloss.arcface(s, y, margin=float("nan")), r"margin must lie in \(-inf, inf\); got nan"),
    (lambda s, y, p: polyloss.unified_pairwise_loss(s, y, margin=float("inf")), r"margin must lie .*got inf"),
    (lambda s, y, p: polyloss.circle_loss(s, y, margin=float("inf")), r"margin must lie .*got inf"),
    (lambda s, y, p: polyloss.infonce(s, y, axis=2), r"axis=2 is out of range for an array with 2 dimensions"),
])
def test_options_and_hyperparameters_are_checked(backend, call, message):
    s = _f(backend, S34)
    y = _f(backend, np.array([0, 1, 3]))
    p = _f(backend, S34[0, :3])
    with pytest.raises(ValueError, match=message):
        call(s, y, p)


@pytest.mark.parametrize("call, message", [
    (lambda s, y: polyloss.am_softmax(s, y, margin="abc"), "margin must be a real number, got 'abc'"),
    (lambda s, y: polyloss.arcface(s, y, margin=None), "margin must be a real number, got None"),
    (lambda s, y: polyloss.circle_loss(s, y, gamma=[80.0]), "gamma must be a real number"),
    (lambda s, y: polyloss.unified_pairwise_loss(s, y, gamma=None), "gamma must be a real number"),
    (lambda s, y: polyloss.cosent_loss(s, y, scale="x"), "scale must be a real number"),
    (lambda s, y: polyloss.am_softmax(s, y, scale=None), "scale must be a real number"),
    (lambda s, y: polyloss.infonce(s, y, axis=1.0), "axis must be an int"),
])
def test_hyperparameters_of_the_wrong_kind_are_type_errors(backend, call, message):
    with pytest.raises(TypeError, match=message):
        call(_f(backend, S34), _f(backend, IDS))


# --------------------------------------------------------------------------------------------
# Labels of the score losses
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SCORE_LOSSES))
def test_class_ids_out_of_range_name_the_range_and_values(backend, name):
    fn = SCORE_LOSSES[name]
    s = _f(backend, S34)
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 4\); found -1 \.\. 4"):
        fn(s, _f(backend, BAD_IDS))
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 4\); found 7"):
        fn(s, _f(backend, np.array([0, 7, 2])))
    # the class axis elsewhere: the range is the length of that axis
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 3\); found 3"):
        fn(s, _f(backend, np.array([0, 1, 2, 3])), axis=0)


@pytest.mark.parametrize("name", list(SCORE_LOSSES))
@pytest.mark.parametrize("shape", [(2,), (4,), (3, 4, 1), (), (3, 3)])
def test_labels_of_the_wrong_shape_name_both_shapes(backend, name, shape):
    fn = SCORE_LOSSES[name]
    s = _f(backend, S34)
    shown = re.escape(str(shape))
    with pytest.raises(ValueError, match=rf"{shown}.*\(3, 4\)"):
        fn(s, _f(backend, np.zeros(shape, dtype=np.int64)))


@pytest.mark.parametrize("name", list(SCORE_LOSSES))
def test_class_ids_must_be_integers(backend, name):
    fn = SCORE_LOSSES[name]
    s = _f(backend, S34)
    with pytest.raises(TypeError, match="class-id labels must be integers, got dtype"):
        fn(s, _f(backend, np.array([0.0, 1.0, 3.0])))
    with pytest.raises(TypeError, match="class-id labels must be integers, got dtype"):
        fn(s, _f(backend, np.array([True, False, True])))


@pytest.mark.parametrize("name", list(IDS_ONLY_LOSSES))
@pytest.mark.parametrize("labels", [np.full((3, 4), 0.25), np.eye(4)[IDS], np.eye(4, dtype=np.int64)[IDS]])
def test_infonce_and_flatnce_take_class_ids_only(backend, name, labels):
    with pytest.raises(ValueError, match=r"takes class ids .*\(3,\).*not probabilities"):
        IDS_ONLY_LOSSES[name](_f(backend, S34), _f(backend, labels))


@pytest.mark.parametrize("name", list(ONE_HOT_LOSSES))
@pytest.mark.parametrize("row", [
    [1.0, 1.0, 0.0, 0.0],  # two 1s
    [0.5, 0.5, 0.0, 0.0],  # soft
    [0.0, 0.5, 0.0, 0.0],  # a 0.5 alone
    [0.0, 0.0, 0.0, 0.0],  # no class
    [np.nan, 0.0, 0.0, 1.0],  # NaN
])
def test_one_hot_labels_must_be_one_hot(backend, name, row):
    y = np.eye(4)[IDS]
    y[1] = row
    with pytest.raises(ValueError, match="one-hot labels need exactly one 1 per row"):
        ONE_HOT_LOSSES[name](_f(backend, S34), _f(backend, y))


@pytest.mark.parametrize("name", list(ONE_HOT_LOSSES))
def test_integer_one_hot_out_of_range(backend, name):
    y = np.eye(4, dtype=np.int64)[IDS]
    y[0, 0] = 2
    with pytest.raises(ValueError, match="must be 0 or 1.*found 2"):
        ONE_HOT_LOSSES[name](_f(backend, S34), _f(backend, y))


@pytest.mark.parametrize("name", list(ONE_HOT_LOSSES))
@pytest.mark.parametrize("dtype", [np.float32, np.int64, bool])
def test_valid_one_hot_equals_class_ids(backend, name, dtype):
    fn = ONE_HOT_LOSSES[name]
    s = _f(backend, np.clip(S34 / 3, -1, 1))
    by_ids = backend.to_numpy(fn(s, _f(backend, IDS)))
    by_one_hot = backend.to_numpy(fn(s, _f(backend, np.eye(4, dtype=dtype)[IDS])))
    np.testing.assert_allclose(by_one_hot, by_ids, rtol=1e-6)


@pytest.mark.parametrize("name", list(MULTI_HOT_LOSSES))
@pytest.mark.parametrize("row", [[0.5, 1.0, 0.0, 0.0], [0.0, 0.9, 0.1, 0.0], [np.nan, 1.0, 0.0, 0.0]])
def test_multi_hot_labels_must_be_zero_or_one(backend, name, row):
    y = np.eye(4)[IDS]
    y[2] = row
    with pytest.raises(ValueError, match="multi-hot labels must be 0 or 1"):
        MULTI_HOT_LOSSES[name](_f(backend, S34), _f(backend, y))


@pytest.mark.parametrize("name", list(MULTI_HOT_LOSSES))
def test_multi_hot_labels_outside_zero_one(backend, name):
    fn = MULTI_HOT_LOSSES[name]
    s = _f(backend, S34)
    y = np.eye(4, dtype=np.int64)[IDS]
    y[0, 2] = 2
    with pytest.raises(ValueError, match="must be 0 or 1.*found 2"):
        fn(s, _f(backend, y))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]; found values from -1"):
        fn(s, _f(backend, np.where(np.eye(4)[IDS] == 1, 1.0, -1.0)))


@pytest.mark.parametrize("name", list(MULTI_HOT_LOSSES))
def test_valid_multi_hot_with_one_positive_equals_class_ids(backend, name):
    fn = MULTI_HOT_LOSSES[name]
    s = _f(backend, np.clip(S34 / 3, -1, 1))
    np.testing.assert_allclose(backend.to_numpy(fn(s, _f(backend, np.eye(4)[IDS]))),
                               backend.to_numpy(fn(s, _f(backend, IDS))), rtol=1e-6)


def test_bad_one_hot_and_multi_hot_messages_name_the_values():
    y = np.eye(4)[IDS]
    y[1] = [0.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="0.5"):
        polyloss.am_softmax(S34, y)
    with pytest.raises(ValueError, match="0.5"):
        polyloss.unified_pairwise_loss(S34, y)


@pytest.mark.parametrize("name", list(SCORE_LOSSES))
def test_where_of_the_wrong_dtype_or_shape(backend, name):
    fn = SCORE_LOSSES[name]
    s, y = _f(backend, S34), _f(backend, IDS)
    with pytest.raises(TypeError, match="where must be a boolean array, got dtype"):
        fn(s, y, where=_f(backend, np.ones((3, 4))))
    with pytest.raises(TypeError, match="where must be a boolean array, got dtype"):
        fn(s, y, where=_f(backend, np.ones((3, 4), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"where has shape \(3, 3\).*scores shape \(3, 4\)|"
                                         r"where has shape \(3, 3\).*cosines shape \(3, 4\)"):
        fn(s, y, where=_f(backend, np.ones((3, 3), dtype=bool)))


@pytest.mark.parametrize("name", list(SCORE_LOSSES))
def test_scores_must_be_real_floating(backend, name):
    with pytest.raises(TypeError, match="must be a real floating-point array, got dtype"):
        SCORE_LOSSES[name](_f(backend, np.ones((3, 4), dtype=np.int64)), _f(backend, IDS))


# --------------------------------------------------------------------------------------------
# CoSENT
# --------------------------------------------------------------------------------------------
def test_cosent_shapes(backend):
    with pytest.raises(ValueError, match=r"similarities must be 1-D .*got shape \(3, 4\)"):
        polyloss.cosent_loss(_f(backend, S34), _f(backend, np.zeros((3, 4))))
    with pytest.raises(ValueError, match=r"similarities must be 1-D .*got shape \(\)"):
        polyloss.cosent_loss(_f(backend, np.array(0.5)), _f(backend, np.array(1)))
    p = _f(backend, S34[0])
    with pytest.raises(ValueError, match=r"labels has shape \(3,\) but similarities has shape \(4,\)"):
        polyloss.cosent_loss(p, _f(backend, np.array([0, 1, 0])))
    with pytest.raises(ValueError, match=r"labels has shape \(4, 1\) but similarities has shape \(4,\)"):
        polyloss.cosent_loss(p, _f(backend, np.zeros((4, 1))))
    with pytest.raises(ValueError, match=r"where has shape \(3,\).*\(4,\)"):
        polyloss.cosent_loss(p, _f(backend, np.array([0, 1, 0, 1])), where=_f(backend, np.ones(3, dtype=bool)))


@pytest.mark.parametrize("method", ["pairwise", "sorted", "auto"])
def test_cosent_labels_must_be_finite(backend, method):
    p = _f(backend, S34[0])
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match=r"labels must be finite \(NaN or inf found\)"):
            polyloss.cosent_loss(p, _f(backend, np.array([0.0, bad, 1.0, 0.5])), method=method)
    # a NaN label on a pair that where leaves out is fine
    out = polyloss.cosent_loss(p, _f(backend, np.array([np.nan, 0.0, 1.0, 0.5])), method=method,
                               where=_f(backend, np.array([False, True, True, True])))
    assert np.isfinite(backend.to_numpy(out))


def test_cosent_dtypes(backend):
    with pytest.raises(TypeError, match="similarities must be a real floating-point array, got dtype"):
        polyloss.cosent_loss(_f(backend, np.array([1, 0, 1, 0])), _f(backend, np.array([0, 1, 0, 1])))
    p = _f(backend, S34[0])
    with pytest.raises(TypeError, match="where must be a boolean array, got dtype"):
        polyloss.cosent_loss(p, _f(backend, np.array([0, 1, 0, 1])), where=_f(backend, np.array([1, 0, 1, 1])))
    with pytest.raises(TypeError, match="where must be a boolean array, got dtype"):
        polyloss.cosent_loss(p, _f(backend, np.array([0, 1, 0, 1])), where=_f(backend, np.ones(4)))
    # boolean labels are binary labels
    np.testing.assert_allclose(
        backend.to_numpy(polyloss.cosent_loss(p, _f(backend, np.array([True, False, True, False])))),
        backend.to_numpy(polyloss.cosent_loss(p, _f(backend, np.array([1, 0, 1, 0])))), rtol=1e-6)


def test_cosent_string_labels_are_a_type_error():
    with pytest.raises(TypeError, match="labels must be boolean, integer or real floating, got dtype"):
        polyloss.cosent_loss(S34[0], np.array(["a", "b", "c", "d"]))


# --------------------------------------------------------------------------------------------
# Mixing frameworks
# --------------------------------------------------------------------------------------------
def test_mixing_frameworks_is_a_type_error_naming_both():
    torch_be, jax_be = get("torch"), get("jax")
    ts, js = _f(torch_be, S34), _f(jax_be, S34)
    t_ids, j_ids = _f(torch_be, IDS), _f(jax_be, IDS)
    for fn in SCORE_LOSSES.values():
        with pytest.raises(TypeError, match=r"scores is a torch array but labels is a jax array|"
                                            r"cosines is a torch array but labels is a jax array"):
            fn(ts, j_ids)
        with pytest.raises(TypeError, match=r"is a jax array but labels is a torch array"):
            fn(js, t_ids)
        with pytest.raises(TypeError, match=r"is a torch array but where is a jax array"):
            fn(ts, t_ids, where=_f(jax_be, np.ones((3, 4), dtype=bool)))
    ta, ja = _f(torch_be, E43), _f(jax_be, E43)
    with pytest.raises(TypeError, match=r"a is a torch array but b is a jax array"):
        polyloss.infonce_from_embeddings(ta, ja)
    with pytest.raises(TypeError, match=r"a is a jax array but b is a torch array"):
        polyloss.infonce_from_embeddings(ja, ta)
    with pytest.raises(TypeError, match=r"similarities is a torch array but labels is a jax array"):
        polyloss.cosent_loss(ts[0], _f(jax_be, np.array([0, 1, 0, 1])))
    with pytest.raises(TypeError, match=r"similarities is a torch array but where is a jax array"):
        polyloss.cosent_loss(ts[0], _f(torch_be, np.array([0, 1, 0, 1])), where=_f(jax_be, np.ones(4, dtype=bool)))


def test_mixing_frameworks_with_tensorflow():
    torch_be, tf_be = get("torch"), get("tensorflow")
    with pytest.raises(TypeError, match=r"tensorflow array but labels is a torch array"):
        polyloss.circle_loss(_f(tf_be, S34), _f(torch_be, IDS))
    with pytest.raises(TypeError, match=r"a is a torch array but b is a tensorflow array"):
        polyloss.infonce_from_embeddings(_f(torch_be, E43), _f(tf_be, E43))


def test_temperature_of_another_framework_is_a_type_error_naming_both():
    torch_be, jax_be = get("torch"), get("jax")
    with pytest.raises(TypeError, match=r"torch.*jax|jax.*torch"):
        polyloss.infonce_from_embeddings(_f(torch_be, E43), _f(torch_be, E43), temperature=_f(jax_be, np.array(0.1)))


# --------------------------------------------------------------------------------------------
# Never NaN from finite inputs: values and gradients
# --------------------------------------------------------------------------------------------
COS_PM1 = np.array([[1.0, -1.0, 0.5], [-1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
COS_PM1_IDS = np.array([0, 0, 2, 1])  # targets at cos = 1, -1, 1, -1


@pytest.mark.parametrize("margin, labels", [(0.5, "ids"), (-0.5, "ids"), (0.0, "ids"), (3.0, "ids"),
                                            (0.5, "one_hot")])
def test_arcface_at_cosine_plus_minus_one(backend, margin, labels):
    # exactly ±1 (rows 0-3) and rounded just outside [-1, 1] (rows 4-7)
    c = np.concatenate([COS_PM1, COS_PM1 * (1 + 1e-7)])
    ids = np.concatenate([COS_PM1_IDS, COS_PM1_IDS])
    y = _f(backend, ids if labels == "ids" else np.eye(3)[ids])
    value, grads = _value_and_grads(backend, lambda c: polyloss.arcface(c, y, margin=margin), _f(backend, c))
    _assert_finite(value, grads)


@pytest.mark.parametrize("name", ["am_softmax", "circle_loss", "unified_pairwise_loss", "infonce", "flatnce"])
def test_cosines_at_plus_minus_one(backend, name):
    value, grads = _value_and_grads(backend, lambda c: SCORE_LOSSES[name](c, _f(backend, COS_PM1_IDS)),
                                    _f(backend, COS_PM1))
    _assert_finite(value, grads)


BIG = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, 1e4, -1e4, -1e4], [1e4, 1e4, 1e4, 1e4]])
BIG_IDS = np.array([1, 0, 2])


@pytest.mark.parametrize("call", [
    lambda s, y: polyloss.infonce(s, y),
    lambda s, y: polyloss.flatnce(s, y),
    lambda s, y: polyloss.flatnce(s, y, form="paper"),
    lambda s, y: polyloss.unified_pairwise_loss(s, y),
    lambda s, y: polyloss.unified_pairwise_loss(s, y, gamma=80.0, margin=0.5),
    lambda s, y: polyloss.unified_pairwise_loss(s, np.array([[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]])),
    lambda s, y: polyloss.circle_loss(s, y),
    lambda s, y: polyloss.am_softmax(s, y),
    lambda s, y: polyloss.arcface(s, y),
], ids=["infonce", "flatnce", "flatnce_paper", "unified", "unified_g80", "unified_multihot", "circle",
        "am_softmax", "arcface"])
def test_scores_of_ten_thousand_in_float32(backend, call):
    value, grads = _value_and_grads(backend, lambda s: call(s, _f(backend, BIG_IDS)), _f(backend, BIG))
    _assert_finite(value, grads)


@pytest.mark.parametrize("method", ["pairwise", "sorted"])
def test_cosent_similarities_of_ten_thousand(backend, method):
    if backend.name == "array_api_strict" and method == "sorted":
        pytest.skip("documented: the sorted method without a log-space scan needs λ·(max s - min s) < ~80")
    value, grads = _value_and_grads(
        backend, lambda s: polyloss.cosent_loss(s, _f(backend, np.array([0, 1, 0, 1])), method=method),
        _f(backend, BIG[0]))
    _assert_finite(value, grads)


WHERE_EMPTY_ROW = np.array([[False] * 4, [True, True, False, False], [True] * 4])
WHERE_IDS = np.array([0, 0, 1])


@pytest.mark.parametrize("call", [
    lambda s, y, w: polyloss.infonce(s, y, where=w),
    lambda s, y, w: polyloss.flatnce(s, y, where=w),
    lambda s, y, w: polyloss.flatnce(s, y, where=w, form="paper"),
    lambda s, y, w: polyloss.am_softmax(s, y, where=w),
    lambda s, y, w: polyloss.arcface(s, y, where=w),
    lambda s, y, w: polyloss.unified_pairwise_loss(s, y, where=w),
    lambda s, y, w: polyloss.circle_loss(s, y, where=w),
], ids=["infonce", "flatnce", "flatnce_paper", "am_softmax", "arcface", "unified", "circle"])
def test_a_row_with_every_candidate_removed(backend, call):
    s = _f(backend, np.array([[0.3, 0.2, -0.1, 0.5]] * 3))
    value, grads = _value_and_grads(backend, lambda s: call(s, _f(backend, WHERE_IDS), _f(backend, WHERE_EMPTY_ROW)), s)
    _assert_finite(value, grads)
    assert value[0] == 0.0  # documented: a row with no valid candidate has loss 0
    for g in grads:
        np.testing.assert_array_equal(g[0], 0.0)


@pytest.mark.parametrize("name", list(SCORE_LOSSES))
def test_minus_inf_scores_remove_candidates(backend, name):
    s = _f(backend, np.array([[-np.inf] * 4, [0.0, 0.5, -np.inf, 0.9], [0.1, 0.2, 0.3, 0.4]]))
    value, grads = _value_and_grads(backend, lambda s: SCORE_LOSSES[name](s, _f(backend, WHERE_IDS)), s)
    _assert_finite(value, grads)
    assert value[0] == 0.0


@pytest.mark.parametrize("method", ["pairwise", "sorted"])
def test_cosent_with_every_pair_removed(backend, method):
    value, grads = _value_and_grads(
        backend, lambda s: polyloss.cosent_loss(s, _f(backend, np.array([0, 1, 0, 1])), method=method,
                                                where=_f(backend, np.zeros(4, dtype=bool))),
        _f(backend, S34[0]))
    _assert_finite(value, grads)
    assert float(value) == 0.0
    for g in grads:
        np.testing.assert_array_equal(g, 0.0)

"""Bad input to the multi-label family: clear errors naming shapes, dtypes and frameworks; value checks in
eager mode only; NaN in gives NaN out, finite in gives finite out."""

from __future__ import annotations

import re

import numpy as np
import pytest

import polyloss

from helpers import get

S = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
Y = np.array([[True, False, True], [False, True, False]])


def arr(be, a, dtype="float32"):
    return be.from_numpy(a, dtype=dtype if np.issubdtype(np.asarray(a).dtype, np.floating) else None)


# --------------------------------------------------------------------------------------------
# shapes and dtypes: always checked, every backend
# --------------------------------------------------------------------------------------------
def test_mismatched_shapes_name_both_shapes(backend):
    with pytest.raises(ValueError, match=re.escape("(2, 2)") + ".*" + re.escape("(2, 3)")):
        polyloss.multilabel_crossentropy(arr(backend, S), arr(backend, Y[:, :2]))
    with pytest.raises(ValueError, match=re.escape("logits_b has shape (3, 3) but logits_a has shape (2, 3)")):
        polyloss.multilabel_divergence(arr(backend, S), arr(backend, np.zeros((3, 3))))
    with pytest.raises(ValueError, match=r"indices has shape \(3, 2\) but logits has shape \(2, 3\)"):
        polyloss.sparse_multilabel_crossentropy(arr(backend, S), arr(backend, np.zeros((3, 2), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"\[L, L\]|\[\.\.\., L, L\]"):
        polyloss.global_pointer_crossentropy(arr(backend, S), arr(backend, Y))
    with pytest.raises(ValueError, match=r"spans has shape .* spans must be \[2, K, 2\]"):
        polyloss.sparse_global_pointer_crossentropy(arr(backend, np.zeros((2, 4, 4))),
                                                    arr(backend, np.zeros((2, 3), dtype=np.int64)))


def test_where_must_be_boolean_and_broadcast(backend):
    with pytest.raises(TypeError, match="where must be a boolean array"):
        polyloss.multilabel_crossentropy(arr(backend, S), arr(backend, Y), where=arr(backend, np.ones((2, 3))))
    with pytest.raises(
        ValueError, match=r"where has shape \(2, 2\), which does not broadcast to logits shape \(2, 3\)"
    ):
        polyloss.multilabel_crossentropy(arr(backend, S), arr(backend, Y), where=arr(backend, np.ones((2, 2), bool)))


def test_integer_logits_are_a_type_error(backend):
    with pytest.raises(TypeError, match="logits must be a real floating-point array, got dtype .*int"):
        polyloss.multilabel_crossentropy(arr(backend, np.array([[1, 2]])), arr(backend, np.array([[True, False]])))
    with pytest.raises(TypeError, match="logits_a must be a real floating-point array"):
        polyloss.multilabel_divergence(arr(backend, np.array([[1, 2]])), arr(backend, np.array([[1, 2]])))
    with pytest.raises(TypeError, match="indices must be an integer array"):
        polyloss.sparse_multilabel_crossentropy(arr(backend, S), arr(backend, np.zeros((2, 1))))


def test_axis_errors(backend):
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        polyloss.multilabel_crossentropy(arr(backend, S), arr(backend, Y), axis=2)
    with pytest.raises(ValueError, match="repeats an axis"):
        polyloss.multilabel_crossentropy(arr(backend, S), arr(backend, Y), axis=(1, -1))
    with pytest.raises(TypeError, match="axis must be an int or a tuple of ints"):
        polyloss.multilabel_crossentropy(arr(backend, S), arr(backend, Y), axis=1.0)


def test_first_argument_must_be_an_array():
    with pytest.raises(TypeError, match=r"logits must be an array of a supported framework .* got builtins\.list"):
        polyloss.multilabel_crossentropy(S.tolist(), Y)


def test_reduce_rejects_unknown_reduction():
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum'\), got 'max'"):
        polyloss.reduce(np.ones(3), "max")


# --------------------------------------------------------------------------------------------
# two frameworks together: TypeError naming both
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "first, second",
    [
        ("torch", "jax"),
        ("jax", "tensorflow"),
        ("tensorflow", "torch"),
        ("numpy", "torch"),
        ("torch", "array_api_strict"),
    ],
)
def test_two_frameworks_are_a_type_error_naming_both(first, second):
    a, b = get(first), get(second)
    with pytest.raises(TypeError, match=f"logits is a {first} array but labels is a {second} array"):
        polyloss.multilabel_crossentropy(arr(a, S), arr(b, Y))


def test_python_and_numpy_secondary_inputs_are_converted(backend):
    logits = arr(backend, S)
    expected = backend.to_numpy(polyloss.multilabel_crossentropy(logits, arr(backend, Y)))
    for labels in (Y, Y.tolist(), Y.astype(np.float64), Y.astype(np.int64).tolist()):
        out = polyloss.multilabel_crossentropy(logits, labels)
        assert backend.is_array(out)
        np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-6)


def test_converted_inputs_land_on_the_logits_device():
    strict = get("array_api_strict")
    import array_api_strict as xs

    device = xs.Device("device1")
    logits = xs.asarray(S, device=device)
    out = polyloss.multilabel_crossentropy(logits, Y.tolist(), where=np.ones((2, 3), bool))
    assert out.device == device
    out = polyloss.sparse_multilabel_crossentropy(logits, [[0, 2], [1, -1]], pad_index=-1)
    assert out.device == device
    out = polyloss.reduce(logits, weights=[1.0, 2.0, 3.0])
    assert out.device == device and strict.is_array(out)


def test_torch_inputs_on_two_devices_are_an_error():
    torch = pytest.importorskip("torch")
    get("torch")
    labels = torch.zeros(2, 3, dtype=torch.bool, device="meta")
    with pytest.raises(ValueError, match="labels is on meta but the first array is on cpu"):
        polyloss.multilabel_crossentropy(torch.tensor(S), labels)


# --------------------------------------------------------------------------------------------
# value checks: eager mode raises ValueError; compiled code cannot look at values
# --------------------------------------------------------------------------------------------
def test_soft_labels_outside_unit_interval(backend):
    bad = np.array([[0.5, 1.5, 0.0], [0.0, -0.25, 1.0]])
    with pytest.raises(ValueError, match=r"soft labels must lie in \[0, 1\]; found values from -0\.25 to 1\.5"):
        polyloss.multilabel_crossentropy(arr(backend, S), arr(backend, bad))
    with pytest.raises(ValueError, match=r"integer labels must be 0 or 1 .*found 2"):
        polyloss.multilabel_crossentropy(arr(backend, S), arr(backend, np.array([[0, 2, 1], [1, 0, 0]])))


def test_labels_under_the_mask_are_not_checked(backend):
    where = np.array([[True, False, True], [True, True, False]])
    labels = np.where(where, Y, -100.0)  # an ignore-index style filler under the mask
    out = polyloss.multilabel_crossentropy(arr(backend, S), arr(backend, labels), where=arr(backend, where))
    expected = polyloss.multilabel_crossentropy(S, Y, where=where)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-6)


def test_sparse_indices_out_of_range_or_repeated(backend):
    s = arr(backend, np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\) or equal pad_index=-1; found 5 \.\. 7"):
        polyloss.sparse_multilabel_crossentropy(s, arr(backend, np.array([[0, 5], [7, -1]])), pad_index=-1)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\); found -1"):
        polyloss.sparse_multilabel_crossentropy(s, arr(backend, np.array([[0, 1], [-1, 2]])))
    with pytest.raises(ValueError, match=r"indices list a class twice in one row \(3\)"):
        polyloss.sparse_multilabel_crossentropy(s, arr(backend, np.array([[3, 1, 3], [0, -1, -1]])), pad_index=-1)


def test_sparse_spans_checked(backend):
    s = arr(backend, np.zeros((1, 1, 4, 4)))
    for spans, message in [
        ([[[[2, 1]]]], "0 <= start <= end < L=4"),
        ([[[[0, 4]]]], "0 <= start <= end < L=4"),
        ([[[[0, -1]]]], "one coordinate equal to pad_index=-1"),
        ([[[[1, 2], [1, 2]]]], r"spans list a class twice in one row"),
    ]:
        with pytest.raises(ValueError, match=message):
            polyloss.sparse_global_pointer_crossentropy(s, arr(backend, np.array(spans)), pad_index=-1)


def test_value_checks_can_be_turned_off():
    bad = np.array([[0.5, 1.5, 0.0], [0.0, -0.25, 1.0]])
    with polyloss.value_checks(False):
        polyloss.multilabel_crossentropy(S, bad)  # no check, no error
    with pytest.raises(ValueError):
        polyloss.multilabel_crossentropy(S, bad)


@pytest.mark.parametrize("name", ["jax", "tensorflow"])
def test_compiled_code_skips_value_checks_and_ignores_out_of_range_indices(name):
    be = get(name)
    s = np.random.default_rng(0).normal(size=(2, 5))
    indices = np.array([[1, 9], [4, -1]])  # 9 is out of range: ignored when values cannot be checked
    compiled = be.compile(
        lambda x, i: polyloss.sparse_multilabel_crossentropy(x, i, pad_index=-1), "jit" if name == "jax" else "function"
    )
    out = be.to_numpy(compiled(arr(be, s, "float64"), arr(be, indices)))
    expected = polyloss.sparse_multilabel_crossentropy(s, np.array([[1, -1], [4, -1]]), pad_index=-1)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    soft = be.compile(lambda x, t: polyloss.multilabel_crossentropy(x, t), "jit" if name == "jax" else "function")
    soft(arr(be, s, "float64"), arr(be, np.full((2, 5), 1.5), "float64"))  # no error under compilation


# --------------------------------------------------------------------------------------------
# NaN in, NaN out; finite in, finite out
# --------------------------------------------------------------------------------------------
def test_nan_propagates_per_row(backend):
    s = S.copy()
    s[1, 2] = np.nan
    t = np.where(Y, 0.9, 0.2)
    t_nan = t.copy()
    t_nan[0, 0] = np.nan
    for labels, logits, bad_row in ((Y, s, 1), (t, s, 1), (t_nan, S, 0)):
        out = backend.to_numpy(polyloss.multilabel_crossentropy(arr(backend, logits), arr(backend, labels)))
        assert np.isnan(out[bad_row]) and np.isfinite(out[1 - bad_row])
    d = backend.to_numpy(polyloss.multilabel_divergence(arr(backend, s), arr(backend, S)))
    assert np.isnan(d[1]) and np.isfinite(d[0])
    idx = backend.to_numpy(polyloss.sparse_multilabel_crossentropy(arr(backend, s), arr(backend, np.array([[0], [1]]))))
    assert np.isnan(idx[1]) and np.isfinite(idx[0])


def test_finite_inputs_give_finite_outputs_at_the_extremes(backend):
    big = np.float32(3e38)
    s = np.array([[big, -big, 0.0], [-big, big, 1.0], [big, big, big]], dtype=np.float32) / 8  # sums stay finite
    y = np.array([[True, False, True], [True, False, False], [False, False, True]])
    out = backend.to_numpy(polyloss.multilabel_crossentropy(arr(backend, s), arr(backend, y)))
    assert np.all(np.isfinite(out))
    d = backend.to_numpy(polyloss.multilabel_divergence(arr(backend, s), arr(backend, -s)))
    assert np.all(np.isfinite(d))

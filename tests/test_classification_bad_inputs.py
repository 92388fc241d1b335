"""Bad input to the classification family: clear errors that name the shapes and values, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss

from helpers import get

RNG = np.random.default_rng(0)
S34 = RNG.normal(0, 1, (3, 4))


def _f(backend, a, dtype="float32"):
    return backend.from_numpy(np.asarray(a), dtype=dtype if np.asarray(a).dtype.kind == "f" else None)


def test_mismatched_shapes_name_both_shapes(backend):
    s = _f(backend, S34)
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
        polyloss.sigmoid_crossentropy(s, _f(backend, np.zeros((3, 5))))
    with pytest.raises(ValueError, match=r"\(2,\).*\(3, 4\)"):
        polyloss.softmax_crossentropy(s, _f(backend, np.array([0, 1])))
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
        polyloss.softmax_crossentropy(s, _f(backend, np.full((3, 5), 0.2)))
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(3, 4\)"):
        polyloss.rdrop_divergence(s, _f(backend, np.zeros((3, 3))))


def test_prior_length_must_match_the_classes(backend):
    s = _f(backend, S34)
    y = _f(backend, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"prior has shape \(3,\).*4 classes"):
        polyloss.logit_adjusted_crossentropy(s, y, [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"prior has shape \(5,\).*3 classes"):
        polyloss.adjust_logits(s, np.full(5, 0.2), axis=0)
    with pytest.raises(ValueError, match="prior must be positive.*-0.1"):
        polyloss.logit_adjusted_crossentropy(s, y, [0.5, 0.6, 0.0, -0.1])


def test_class_ids_out_of_range_name_the_values(backend):
    s = _f(backend, S34)
    with pytest.raises(ValueError, match=r"\[0, 4\).*found 4 .. 7"):
        polyloss.softmax_crossentropy(s, _f(backend, np.array([0, 4, 7])))
    with pytest.raises(ValueError, match=r"ignore_index=-100.*found -1"):
        polyloss.poly1_crossentropy(s, _f(backend, np.array([0, -100, -1])), ignore_index=-100)
    # ignore_index itself is fine
    out = polyloss.softmax_crossentropy(s, _f(backend, np.array([0, -100, 3])), ignore_index=-100)
    assert float(backend.to_numpy(out)[1]) == 0.0


def test_binary_labels_out_of_range(backend):
    s = _f(backend, S34)
    with pytest.raises(ValueError, match=r"integer labels must be 0 or 1 .*; found 2"):
        polyloss.sigmoid_crossentropy(s, _f(backend, np.array([[0, 1, 2, 0]] * 3)))
    with pytest.raises(ValueError, match=r"soft labels must lie in \[0, 1\]; found values from 1.5"):
        polyloss.focal_loss(s, _f(backend, np.full((3, 4), 1.5)))
    with pytest.raises(ValueError, match=r"probability labels must lie in \[0, 1\]"):
        polyloss.softmax_crossentropy(s, _f(backend, np.full((3, 4), -0.5)))


@pytest.mark.parametrize("call, message", [
    (lambda s, y, b: polyloss.focal_loss(s, b, gamma=-1.0), r"gamma must lie in \[0, inf\); got -1.0"),
    (lambda s, y, b: polyloss.focal_loss(s, b, alpha=1.5), r"alpha must lie in \[0, 1\]; got 1.5"),
    (lambda s, y, b: polyloss.flooding(s, -0.1), r"level must lie in \[0, inf\); got -0.1"),
    (lambda s, y, b: polyloss.squareplus(s, b=0.0), r"b must lie in \(0, inf\); got 0.0"),
    (lambda s, y, b: polyloss.hard_truncation_loss(s, b, m=0.3), r"m must lie in \[0.5, 1\]; got 0.3"),
    (lambda s, y, b: polyloss.softened_truncation_loss(s, b, k=-2), r"k must lie in \[0, inf\); got -2"),
    (lambda s, y, b: polyloss.softmax_crossentropy(s, y, label_smoothing=1.2), r"label_smoothing must lie in \[0, 1\]"),
    (lambda s, y, b: polyloss.smoothed_f1_weighted_crossentropy(s, b, f1=2.0), r"f1 must lie in \[0, 1\]"),
    (lambda s, y, b: polyloss.focal_loss(s, y, gamma=float("nan"), activation="softmax"), "gamma must lie"),
    (lambda s, y, b: polyloss.focal_loss(s, b, activation="relu"), "activation must be one of"),
    (lambda s, y, b: polyloss.focal_loss(s, b, where=np.ones((3, 4), bool)), "where applies to activation='softmax'"),
    (lambda s, y, b: polyloss.softmax_crossentropy(s, np.full((3, 4), 0.25), ignore_index=-1),
     "ignore_index applies to class-id labels"),
    (lambda s, y, b: polyloss.hard_truncation_loss(s, np.full((3, 4), 0.25), activation="softmax"),
     "takes class ids"),
    (lambda s, y, b: polyloss.focal_loss(s, y, activation="softmax", alpha=[1.0, 2.0]),
     r"alpha has shape \(2,\).*shape \(4,\)"),
])
def test_hyperparameters_and_options_are_checked(backend, call, message):
    s = _f(backend, S34)
    y = _f(backend, np.array([0, 1, 3]))
    b = _f(backend, np.zeros((3, 4), dtype=bool))
    with pytest.raises(ValueError, match=message):
        call(s, y, b)


def test_type_errors(backend):
    s = _f(backend, S34)
    with pytest.raises(TypeError, match="class-id labels must be integers"):
        polyloss.softmax_crossentropy(s, _f(backend, np.array([0.0, 1.0, 2.0])))
    for bad in (True, 1.5, "a"):
        with pytest.raises(TypeError, match="ignore_index must be an int"):
            polyloss.softmax_crossentropy(s, _f(backend, np.array([0, 1, 2])), ignore_index=bad)
    with pytest.raises(TypeError, match="loss must be a real floating-point array"):
        polyloss.flooding(_f(backend, np.ones(3, dtype=np.int64)), 0.5)
    with pytest.raises(TypeError, match="axis must be a single int"):
        polyloss.softmax_crossentropy(s, _f(backend, np.array([0, 1, 2])), axis=(0, 1))
    with pytest.raises(TypeError, match="logits must be a real floating-point array"):
        polyloss.sigmoid_crossentropy(_f(backend, np.zeros((2, 2), dtype=np.int64)), _f(backend, np.zeros((2, 2))))


def test_nan_in_nan_out(backend):
    s_np = S34.copy()
    s_np[1, 2] = np.nan
    s = _f(backend, s_np)
    ce = backend.to_numpy(polyloss.softmax_crossentropy(s, _f(backend, np.array([0, 1, 3]))))
    assert np.isnan(ce[1]) and np.all(np.isfinite(ce[[0, 2]]))
    bce = backend.to_numpy(polyloss.sigmoid_crossentropy(s, _f(backend, np.zeros((3, 4)))))
    assert np.isnan(bce[1, 2]) and np.isfinite(np.delete(bce.reshape(-1), 6)).all()
    assert np.isnan(backend.to_numpy(polyloss.squareplus(s))[1, 2])


@pytest.mark.parametrize("name", ["jax", "tensorflow"])
def test_compiled_code_skips_value_checks(name):
    be = get(name)
    s = be.from_numpy(S34, dtype="float32")
    y = be.from_numpy(np.array([0, 7, 2]))
    out = be.to_numpy(
        be.compile(lambda a, b: polyloss.softmax_crossentropy(a, b), "jit" if name == "jax" else "function")(s, y)
    )
    assert np.all(np.isfinite(out))  # out of range under compilation reads class 0 (documented)

"""Bad input to the metrics (polyloss.metrics): clear errors that name the shapes, dtypes and
values, on every backend; value checks (NaN, labels not 0/1, class ids out of range, non-positive
means) only in eager mode, never under ``jax.jit`` / ``tf.function``, never on Dask (lazy: a check
would compute the graph) and not after ``polyloss.value_checks(False)``; empty inputs; hyper-parameters;
mixed frameworks; the mapping form of ``leaderboard_mean``; ``span_f1``'s Python spans; merging and
reducing the metric state objects.

Tests that document a defect are ``xfail(strict=True)`` with "BUG:" in the reason.
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest

import polyloss
from polyloss import metrics as M

from helpers import get

S23 = np.array([[0.5, -1.0, 2.0], [-0.3, 0.8, 0.1]])  # two rows of three classes
Y23 = np.array([[1, 0, 1], [0, 1, 0]])  # 0/1 labels of S23's shape
IDS2 = np.array([2, 1])  # class ids of S23's rows
S5 = np.array([0.3, -1.2, 2.5, 0.0, -0.4])  # binary scores
Y5 = np.array([1, 0, 1, 0, 1])
X5 = np.array([1.0, 2.0, 4.0, 3.0, 5.0])  # correlation inputs
GP = np.full((1, 2, 3, 3), -1.0)  # GlobalPointer logits [B, types, L, L]
GP[0, 0, 0, 1] = 2.0
GP_Y = np.zeros((1, 2, 3, 3))
GP_Y[0, 0, 0, 1] = 1
BOARD = np.array([[0.7, 0.5, 0.9], [0.6, 0.8, 0.4]])

# the functions that take (scores, 0/1 labels of the scores' shape), by their name in messages
ELEMENTWISE = {
    "precision_recall_f1": M.precision_recall_f1,
    "accuracy": M.accuracy,
    "best_threshold": M.best_threshold,
    "PrecisionRecallF1.update": lambda s, y: M.PrecisionRecallF1().update(s, y),
    "Accuracy.update": lambda s, y: M.Accuracy().update(s, y),
    "BestThreshold.update": lambda s, y: M.BestThreshold().update(s, y),
}
# the functions that take (scores [N, C], class ids [N])
CLASS_IDS = {
    "precision_recall_f1": M.precision_recall_f1,
    "accuracy": M.accuracy,
    "best_threshold_vector": M.best_threshold_vector,
    "PrecisionRecallF1.update": lambda s, y: M.PrecisionRecallF1().update(s, y),
    "Accuracy.update": lambda s, y: M.Accuracy().update(s, y),
}
# functions that Dask runs (Backend.supports); best_threshold_vector is not one of them
DASK_FUNCTIONS = {"precision_recall_f1", "accuracy", "best_threshold", "global_pointer_f1", "pearson", "spearman",
                  "leaderboard_mean", "PrecisionRecallF1.update", "Accuracy.update", "BestThreshold.update",
                  "GlobalPointerF1.update", "Pearson.update", "Spearman.update"}
STATE_CLASSES = [M.PrecisionRecallF1, M.Accuracy, M.GlobalPointerF1, M.SpanF1, M.BestThreshold, M.Spearman,
                 M.Pearson]


def _f(backend, a, dtype=None):
    """``a`` as an array of ``backend`` (float64 for floating input unless ``dtype``)."""
    return backend.from_numpy(np.asarray(a), dtype=dtype)


def _np(backend, result):
    """A result (array or tuple of arrays) as NumPy."""
    if isinstance(result, tuple):
        return tuple(_np(backend, r) for r in result)
    return backend.to_numpy(result)


def _shapes(*shapes):
    """A regex matching each shape, in order, anywhere in a message."""
    return ".*".join(re.escape(str(tuple(s))) for s in shapes)


# --------------------------------------------------------------------------------------------
# Shapes (checked always: every backend, Dask included)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels_shape", [(3,), (2, 2), (3, 2), (2, 3, 1), ()])
@pytest.mark.parametrize("name", list(ELEMENTWISE) + ["best_threshold_vector"])
def test_labels_of_another_shape_name_both_shapes(metric_backend, name, labels_shape):
    fn = ELEMENTWISE.get(name, M.best_threshold_vector)
    for dtype in (np.int64, np.float64):
        labels = _f(metric_backend, np.zeros(labels_shape, dtype=dtype))
        with pytest.raises(ValueError, match=rf"labels has shape {_shapes(labels_shape)}.*scores of shape "
                                             rf"{_shapes((2, 3))}"):
            fn(_f(metric_backend, S23), labels)


def test_binary_scores_with_labels_of_another_length(metric_backend):
    with pytest.raises(ValueError, match=_shapes((4,), (5,))):
        M.precision_recall_f1(_f(metric_backend, S5), _f(metric_backend, Y5[:4]))
    with pytest.raises(ValueError, match=_shapes((4,), (5,))):
        M.best_threshold(_f(metric_backend, S5), _f(metric_backend, Y5[:4]))


def test_global_pointer_labels_of_another_shape_name_both_shapes(metric_backend):
    for shape in [(1, 2, 3), (2, 3, 3), (1, 2, 3, 2)]:
        with pytest.raises(ValueError, match=rf"global_pointer_f1: labels has shape {_shapes(shape)}.*logits of "
                                             rf"shape {_shapes(GP.shape)}"):
            M.global_pointer_f1(_f(metric_backend, GP), _f(metric_backend, np.zeros(shape)))
    with pytest.raises(ValueError, match=_shapes((1, 2, 3))):  # class ids are not entities
        M.global_pointer_f1(_f(metric_backend, GP), _f(metric_backend, np.zeros((1, 2, 3), dtype=np.int64)))


@pytest.mark.parametrize("name", list(ELEMENTWISE) + ["best_threshold_vector", "global_pointer_f1"])
def test_zero_dimensional_scores(metric_backend, name):
    fn = {**ELEMENTWISE, "best_threshold_vector": M.best_threshold_vector,
          "global_pointer_f1": M.global_pointer_f1}[name]
    with pytest.raises(ValueError, match=r"must have at least one dimension, got a 0-d array"):
        fn(_f(metric_backend, np.array(0.5)), _f(metric_backend, np.array(1)))


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), (1, 2, 2, 3), (1, 3, 2)])
def test_global_pointer_needs_square_last_dims(metric_backend, shape):
    with pytest.raises(ValueError, match=rf"logits must have shape \[\.\.\., L, L\].*got {_shapes(shape)}"):
        M.global_pointer_f1(_f(metric_backend, np.zeros(shape)), _f(metric_backend, np.zeros(shape)))
    with pytest.raises(ValueError, match=r"\[\.\.\., L, L\]"):
        M.GlobalPointerF1().update(_f(metric_backend, np.zeros(shape)), _f(metric_backend, np.zeros(shape)))


@pytest.mark.parametrize("fn", [M.pearson, M.spearman], ids=["pearson", "spearman"])
def test_correlation_shapes(metric_backend, fn):
    name = fn.__name__
    cases = [((2, 3), (2, 3)), ((5,), (5, 1)), ((5,), (4,)), ((4,), (5,)), ((), ())]
    for sx, sy in cases:
        with pytest.raises(ValueError, match=rf"{name}: x and y must be 1-D of the same length; got shapes "
                                             rf"{_shapes(sx)} and {_shapes(sy)}"):
            fn(_f(metric_backend, np.ones(sx)), _f(metric_backend, np.ones(sy)))
    for n in (0, 1):
        with pytest.raises(ValueError, match=rf"{name}: needs at least 2 pairs, got {n}"):
            fn(_f(metric_backend, np.ones(n)), _f(metric_backend, np.ones(n)))


def test_leaderboard_shapes(metric_backend):
    with pytest.raises(ValueError, match=r"leaderboard_mean: scores must be \[\.\.\., tasks\], got a 0-d array"):
        M.leaderboard_mean(_f(metric_backend, np.array(0.5)))
    for shape in [(0,), (3, 0), (2, 3, 0)]:
        with pytest.raises(ValueError, match=rf"leaderboard_mean: no tasks \(scores have shape {_shapes(shape)}"):
            M.leaderboard_mean(_f(metric_backend, np.ones(shape)))


def test_best_threshold_refuses_class_ids(metric_backend):
    # class ids [N] next to scores [N, C]: a ValueError that shows what best_threshold wants
    for fn in (M.best_threshold, lambda s, y: M.BestThreshold().update(s, y)):
        with pytest.raises(
            ValueError,
            match=r"labels has shape \(2,\); for scores of shape \(2, 3\) it must be "
            r"\(2, 3\) \(0/1 per entry\); class ids are not accepted here \(for multi-class scores "
            r"see best_threshold_vector\)$",
        ):
            fn(_f(metric_backend, S23), _f(metric_backend, IDS2))


def test_best_threshold_vector_needs_class_ids_and_2d_scores(backend):
    with pytest.raises(
        ValueError,
        match=r"needs scores \[N, C\] and integer class ids \[N\]; got scores \(2, 3\) "
        r"and labels \(2, 3\) \(for 0/1 labels use best_threshold\)",
    ):
        M.best_threshold_vector(_f(backend, S23), _f(backend, Y23))
    with pytest.raises(ValueError, match=r"needs scores \[N, C\].*got scores \(5,\) and labels \(5,\)"):
        M.best_threshold_vector(_f(backend, S5), _f(backend, Y5))
    with pytest.raises(ValueError, match=r"needs scores \[N, C\].*got scores \(2, 2, 3\) and labels \(2, 2\)"):
        M.best_threshold_vector(_f(backend, np.ones((2, 2, 3))), _f(backend, np.zeros((2, 2), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"needs scores \[N, C\].*got scores \(3,\) and labels \(\)"):
        M.best_threshold_vector(_f(backend, np.ones(3)), _f(backend, np.array(1)))


# --------------------------------------------------------------------------------------------
# Dtypes (checked always)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128])
def test_scores_must_be_real_floating(metric_backend, dtype):
    be = metric_backend
    s = _f(be, S23.astype(dtype)) if dtype is not np.bool_ else _f(be, S23 > 0)
    calls = {
        **ELEMENTWISE,
        "best_threshold_vector": lambda s, y: M.best_threshold_vector(s, _f(be, IDS2)),
        "global_pointer_f1": lambda s, y: M.global_pointer_f1(s[:, :2], y[:, :2]),
        "pearson": lambda s, y: M.pearson(s[0, ...], _f(be, X5[:3])),
        "spearman": lambda s, y: M.spearman(s[0, ...], _f(be, X5[:3])),
        "leaderboard_mean": lambda s, y: M.leaderboard_mean(s),
    }
    expected = {"pearson": "x", "spearman": "x", "global_pointer_f1": "logits"}
    for name, fn in calls.items():
        if be.name == "dask" and name not in DASK_FUNCTIONS:
            continue
        what = expected.get(name, "scores")
        with pytest.raises(TypeError, match=rf"{what} must be a real floating-point array, got dtype"):
            fn(s, _f(be, Y23))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.bool_])
@pytest.mark.parametrize("name", list(CLASS_IDS))
def test_class_ids_must_be_integers(metric_backend, name, dtype):
    labels = _f(metric_backend, IDS2.astype(dtype))
    with pytest.raises(
        TypeError,
        match=rf"{re.escape(name)}: labels of shape \(2,\) next to scores \(2, 3\) are "
        r"class ids and must be integers, got dtype",
    ):
        CLASS_IDS[name](_f(metric_backend, S23), labels)


def test_complex_labels_and_thresholds(metric_backend):
    be = metric_backend
    for fn in ELEMENTWISE.values():
        with pytest.raises(TypeError, match="labels must be a bool, integer or floating array of 0/1, got dtype"):
            fn(_f(be, S23), _f(be, Y23.astype(np.complex128)))
    with pytest.raises(TypeError, match="threshold must be a real floating-point array"):
        M.precision_recall_f1(_f(be, S23), _f(be, Y23), threshold=_f(be, np.array(0.5 + 0j)))
    with pytest.raises(TypeError, match="threshold must be a real number or a 0-d array, got 1j"):
        M.precision_recall_f1(_f(be, S23), _f(be, Y23), threshold=1j)
    for fn in (M.pearson, M.spearman):
        with pytest.raises(TypeError, match=rf"{fn.__name__}: y must be a real array, got dtype"):
            fn(_f(be, X5), _f(be, X5.astype(np.complex128)))


def test_string_scores_are_a_type_error():
    with pytest.raises(TypeError, match=r"scores must be an array of a supported framework.*got builtins\.str"):
        M.precision_recall_f1("0.5 0.2", np.array([1, 0]))
    with pytest.raises(TypeError, match=r"x must be an array of a supported framework.*got builtins\.list"):
        M.pearson([1.0, 2.0], np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="scores must be a real floating-point array, got dtype <U"):
        M.precision_recall_f1(np.array(["a", "b"]), np.array([1, 0]))
    with pytest.raises(TypeError, match="scores must be a real floating-point array, got dtype <U"):
        M.leaderboard_mean(np.array([["0.5", "0.7"]]))


@pytest.mark.parametrize(
    "name",
    [
        "numpy",
        "array_api_strict",
        "torch",
        "jax",
        "tensorflow",
        "dask",
    ],
)
def test_string_labels_are_a_type_error_naming_the_argument(name):
    be = get(name)
    with pytest.raises(TypeError, match=r"labels .*dtype"):
        M.precision_recall_f1(_f(be, S23), [["1", "0", "1"], ["0", "1", "0"]])
    with pytest.raises(TypeError, match=r"labels .*dtype"):
        M.accuracy(_f(be, S23), ["a", "b"])
    with pytest.raises(TypeError, match=r"y must hold real numbers or booleans, got dtype <U"):
        M.pearson(_f(be, X5[:3]), ["a", "b", "c"])


def test_bool_and_integer_y_are_accepted_by_the_correlations(metric_backend):
    be = metric_backend
    x = _f(be, X5)
    yb = np.array([True, False, True, False, True])
    for fn in (M.pearson, M.spearman):
        want = float(_np(be, fn(x, _f(be, yb.astype(np.float64)))))
        assert np.isfinite(want)
        assert float(_np(be, fn(x, _f(be, yb)))) == pytest.approx(want, rel=1e-12)
        assert float(_np(be, fn(x, _f(be, yb.astype(np.int64))))) == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Values: checked eagerly on the five eager backends
# --------------------------------------------------------------------------------------------
def _nan_at(a, index):
    a = np.array(a, dtype=np.float64)
    a[index] = np.nan
    return a


def test_nan_scores_are_a_value_error_everywhere(backend):
    be = backend
    s_nan, s5_nan, gp_nan, x_nan = _nan_at(S23, (1, 2)), _nan_at(S5, 3), _nan_at(GP, (0, 1, 2, 2)), _nan_at(X5, 0)
    calls = [
        ("precision_recall_f1 0/1", lambda: M.precision_recall_f1(_f(be, s_nan), _f(be, Y23)), "scores contains NaN"),
        ("precision_recall_f1 ids", lambda: M.precision_recall_f1(_f(be, s_nan), _f(be, IDS2)), "scores contains NaN"),
        (
            "precision_recall_f1 binary",
            lambda: M.precision_recall_f1(_f(be, s5_nan), _f(be, Y5)),
            "scores contains NaN",
        ),
        ("accuracy 0/1", lambda: M.accuracy(_f(be, s_nan), _f(be, Y23)), "scores contains NaN"),
        ("accuracy ids", lambda: M.accuracy(_f(be, s_nan), _f(be, IDS2)), "scores contains NaN"),
        ("best_threshold", lambda: M.best_threshold(_f(be, s5_nan), _f(be, Y5)), "scores contains NaN"),
        (
            "best_threshold acc",
            lambda: M.best_threshold(_f(be, s_nan), _f(be, Y23), metric="accuracy"),
            "scores contains NaN",
        ),
        ("best_threshold_vector", lambda: M.best_threshold_vector(_f(be, s_nan), _f(be, IDS2)), "NaN"),
        ("global_pointer_f1", lambda: M.global_pointer_f1(_f(be, gp_nan), _f(be, GP_Y)), "logits contains NaN"),
        ("pearson x", lambda: M.pearson(_f(be, x_nan), _f(be, X5)), "pearson: x contains NaN"),
        ("pearson y", lambda: M.pearson(_f(be, X5), _f(be, x_nan)), "pearson: y contains NaN"),
        ("spearman x", lambda: M.spearman(_f(be, x_nan), _f(be, X5)), "spearman: x contains NaN"),
        ("spearman y", lambda: M.spearman(_f(be, X5), _f(be, x_nan)), "spearman: y contains NaN"),
        ("leaderboard_mean", lambda: M.leaderboard_mean(_f(be, _nan_at(BOARD, (1, 0)))), "scores contain NaN"),
        ("PrecisionRecallF1", lambda: M.PrecisionRecallF1().update(_f(be, s_nan), _f(be, Y23)), "scores contains NaN"),
        ("Accuracy", lambda: M.Accuracy().update(_f(be, s_nan), _f(be, IDS2)), "scores contains NaN"),
        ("GlobalPointerF1", lambda: M.GlobalPointerF1().update(_f(be, gp_nan), _f(be, GP_Y)), "logits contains NaN"),
        ("BestThreshold", lambda: M.BestThreshold().update(_f(be, s5_nan), _f(be, Y5)), "scores contains NaN"),
        ("Pearson", lambda: M.Pearson().update(_f(be, x_nan), _f(be, X5)), "x contains NaN"),
        ("Spearman", lambda: M.Spearman().update(_f(be, X5), _f(be, x_nan)), "y contains NaN"),
    ]
    for _, call, message in calls:
        with pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize(
    "bad, found",
    [
        (np.array([[1, 2, 0], [0, 1, 0]]), r"found 2$"),
        (np.array([[1, -1, 0], [0, 1, 0]]), r"found -1$"),
        (np.array([[1, -1, 0], [5, 2, 0]]), r"found -1 \.\. 5$"),
        (np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0]]), r"found values from 0\.5 to 0\.5$"),
        (np.array([[-0.25, 0.5, 0.0], [0.0, 2.0, 1.0]]), r"found values from -0\.25 to 2\.0$"),
        (np.array([[1.0, np.nan, 0.0], [0.0, 1.0, 0.0]]), r"found NaN$"),
    ],
    ids=["2", "-1", "-1..5", "0.5", "float range", "nan"],
)
def test_labels_that_are_not_0_or_1_name_the_values_found(backend, bad, found):
    be = backend
    calls = dict(ELEMENTWISE)
    calls["global_pointer_f1"] = lambda s, y: M.global_pointer_f1(s[:, :2], y[:, :2])
    calls["GlobalPointerF1.update"] = lambda s, y: M.GlobalPointerF1().update(s[:, :2], y[:, :2])
    for fn in calls.values():
        y = _f(be, bad)  # the bad values sit in the first two columns: the square slice keeps them
        with pytest.raises(ValueError, match=rf"labels must be 0 or 1 \(a metric counts hard labels\); {found}"):
            fn(_f(be, S23), y)


@pytest.mark.parametrize("ids, found", [([0, 3], "3"), ([-1, 1], "-1"), ([-1, 5], r"-1 \.\. 5")])
@pytest.mark.parametrize("name", list(CLASS_IDS))
def test_class_ids_out_of_range_name_the_range(backend, name, ids, found):
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(name)}: class ids in labels must lie in \[0, 3\); "
        rf"found {found}$",
    ):
        CLASS_IDS[name](_f(backend, S23), _f(backend, np.array(ids)))


@pytest.mark.parametrize("kind", ["geometric", "harmonic"])
def test_geometric_and_harmonic_means_need_positive_scores(backend, kind):
    for bad, shown in [(0.0, r"values from 0\.0 to 0\.0"), (-0.5, r"values from -0\.5 to -0\.5")]:
        board = BOARD.copy()
        board[1, 2] = bad
        with pytest.raises(ValueError, match=rf"the {kind} mean needs positive scores; found non-positive {shown}"):
            M.leaderboard_mean(_f(backend, board), kind=kind)
    with pytest.raises(ValueError, match="non-positive"):
        M.leaderboard_mean({"A": {"t1": 0.5, "t2": 0.0}, "B": {"t1": 0.5, "t2": 0.6}}, kind=kind)
    # the arithmetic mean takes any finite score
    board = BOARD.copy()
    board[1, 2] = -0.5
    np.testing.assert_allclose(_np(backend, M.leaderboard_mean(_f(backend, board))), board.mean(axis=-1))


def test_nan_in_the_leaderboard(backend):
    for kind in ("arithmetic", "geometric", "harmonic"):
        with pytest.raises(ValueError, match=r"leaderboard_mean: scores contain NaN \(a missing task\?\)"):
            M.leaderboard_mean(_f(backend, _nan_at(BOARD, (0, 1))), kind=kind)
        with pytest.raises(ValueError, match="scores contain NaN"):
            M.leaderboard_mean({"A": {"t1": 0.5, "t2": math.nan}, "B": {"t1": 0.5, "t2": 0.6}}, kind=kind)


def test_pearson_needs_finite_inputs_spearman_ranks_infinities(backend):
    be = backend
    for value in (np.inf, -np.inf, np.nan):
        bad = X5.copy()
        bad[2] = value
        with pytest.raises(ValueError, match=r"pearson: x contains NaN or infinite values"):
            M.pearson(_f(be, bad), _f(be, X5))
        with pytest.raises(ValueError, match=r"pearson: y contains NaN or infinite values"):
            M.pearson(_f(be, X5), _f(be, bad))
    # +-inf are ordinary extreme values for Spearman: ranks 1..5 unchanged
    x = np.array([1.0, 2.0, np.inf, -np.inf, 5.0])
    got = float(_np(be, M.spearman(_f(be, x), _f(be, np.array([2.0, 3.0, 5.0, 1.0, 4.0])))))
    assert got == pytest.approx(1.0, abs=1e-12)
    # the Pearson state refuses them in the batch that brings them (Spearman's takes them)
    with pytest.raises(ValueError, match=r"Pearson.update: x contains NaN or infinite values"):
        M.Pearson().update(_f(be, x), _f(be, X5))
    with pytest.raises(ValueError, match=r"Pearson.update: y contains NaN or infinite values"):
        M.Pearson().update(_f(be, X5), _f(be, x))
    M.Spearman().update(_f(be, x), _f(be, X5))


def test_best_threshold_vector_needs_finite_scores(backend):
    for value in (np.inf, -np.inf):
        s = S23.copy()
        s[0, 1] = value
        with pytest.raises(ValueError, match=r"best_threshold_vector: scores must be finite"):
            M.best_threshold_vector(_f(backend, s), _f(backend, IDS2))
    # best_threshold takes +-inf (a -inf score is never positive)
    t, v = _np(
        backend,
        M.best_threshold(
            _f(backend, np.array([-np.inf, 0.0, np.inf, 1.0, -1.0])), _f(backend, np.array([0, 1, 1, 1, 0]))
        ),
    )
    assert float(v) == 1.0 and -1.0 <= float(t) < 0.0


# --------------------------------------------------------------------------------------------
# Values are not checked under jax.jit / tf.function, on Dask, or after value_checks(False)
# --------------------------------------------------------------------------------------------
def _unchecked_cases():
    """(name, function of arrays, NumPy inputs): each would fail a value check in eager mode."""
    gp_bad = GP_Y.copy()
    gp_bad[0, 1, 2, 2] = 2
    board0 = BOARD.copy()
    board0[0, 0] = 0.0
    x_inf = X5.copy()
    x_inf[1] = np.inf
    return [
        ("prf nan", lambda s, y: M.precision_recall_f1(s, y), [_nan_at(S23, (0, 1)), Y23]),
        ("prf label 2", lambda s, y: M.precision_recall_f1(s, y), [S23, Y23 * 2]),
        ("prf label 0.5", lambda s, y: M.precision_recall_f1(s, y), [S23, Y23 * 0.5]),
        ("prf nan threshold", lambda s, y, t: M.precision_recall_f1(s, y, threshold=t), [S23, Y23, np.array(np.nan)]),
        ("accuracy id 7", lambda s, y: M.accuracy(s, y), [S23, np.array([0, 7])]),
        ("accuracy id -1", lambda s, y: M.accuracy(s, y), [S23, np.array([-1, 0])]),
        ("best_threshold nan", lambda s, y: M.best_threshold(s, y), [_nan_at(S5, 1), Y5]),
        ("best_threshold label 2", lambda s, y: M.best_threshold(s, y, metric="accuracy"), [S23, Y23 * 2]),
        (
            "best_threshold_vector inf",
            lambda s, y: M.best_threshold_vector(s, y, rounds=1),
            [np.array([[np.inf, 0.0, 1.0], [0.0, 1.0, 2.0]]), IDS2],
        ),
        ("global_pointer_f1 label 2", lambda s, y: M.global_pointer_f1(s, y), [GP, gp_bad]),
        ("global_pointer_f1 nan", lambda s, y: M.global_pointer_f1(s, y), [_nan_at(GP, (0, 0, 1, 1)), GP_Y]),
        ("pearson inf", lambda x, y: M.pearson(x, y), [x_inf, X5]),
        ("pearson nan", lambda x, y: M.pearson(x, y), [X5, _nan_at(X5, 2)]),
        ("spearman nan", lambda x, y: M.spearman(x, y), [_nan_at(X5, 2), X5]),
        ("leaderboard nan", lambda s: M.leaderboard_mean(s), [_nan_at(BOARD, (1, 1))]),
        ("leaderboard zero harmonic", lambda s: M.leaderboard_mean(s, kind="harmonic"), [board0]),
    ]


UNCHECKED = _unchecked_cases()


@pytest.mark.parametrize("name, mode", [("jax", "jit"), ("tensorflow", "function")])
def test_compiled_code_skips_value_checks(name, mode):
    be = get(name)
    for label, fn, inputs in UNCHECKED:
        out = be.compile(fn, mode)(*(_f(be, a) for a in inputs))
        out = out if isinstance(out, tuple) else (out,)
        for o in out:  # runs to the end; NaN in, NaN (or a number) out
            assert isinstance(_np(be, o), np.ndarray | np.generic), label


def test_dask_unknown_chunk_sizes_ask_for_compute_chunk_sizes():
    be = get("dask")
    scores = _f(be, np.arange(10.0) - 4.5)
    kept = scores[scores > -2.0]  # boolean indexing: shape (nan,)
    labels = kept > 0.0
    calls = {
        "precision_recall_f1 scores": lambda: M.precision_recall_f1(kept, be.from_numpy(np.ones(7))),
        "best_threshold labels": lambda: M.best_threshold(scores[3:], labels),
        "spearman y": lambda: M.spearman(scores[3:], kept),
        "Accuracy.update scores": lambda: M.Accuracy().update(kept, labels),
    }
    for label, call in calls.items():
        name = label.split()[1]
        with pytest.raises(
            ValueError,
            match=rf"{name} is a Dask array of unknown chunk sizes \(shape \(nan,\).*"
            rf"call {name}.compute_chunk_sizes\(\) first",
        ):
            call()
    # after compute_chunk_sizes the same arrays work
    kept.compute_chunk_sizes()
    labels = kept > 0.0
    assert float(be.to_numpy(M.accuracy(kept, labels))) == 1.0


def test_dask_does_not_check_values_and_does_not_compute():
    be = get("dask")
    import dask

    def refuse(*args, **kwargs):
        raise AssertionError("the graph was computed")

    outputs = []
    with dask.config.set(scheduler=refuse):
        for label, fn, inputs in UNCHECKED:
            if label.startswith("best_threshold_vector"):
                continue  # not a Dask metric
            outputs.append(fn(*(_f(be, a) for a in inputs)))
        m = M.Accuracy().update(_f(be, S23), _f(be, np.array([0, 7])))
        outputs.append(m.compute())
        with pytest.raises(AssertionError, match="the graph was computed"):  # the guard does guard
            be.to_numpy(outputs[0][0])
    with np.errstate(all="ignore"):  # NaN in, NaN out: NumPy warns on the way
        for out in outputs:  # the graphs are valid and compute afterwards
            _np(be, out)


def _run_unchecked(be):
    with np.errstate(all="ignore"):  # NaN in, NaN out: NumPy warns on the way
        for _, fn, inputs in UNCHECKED:
            _np(be, fn(*(_f(be, a) for a in inputs)))
        _np(be, M.PrecisionRecallF1().update(_f(be, _nan_at(S23, 0)), _f(be, Y23 * 3)).compute())
        _np(be, M.Accuracy().update(_f(be, S23), _f(be, np.array([5, 0]))).compute())
        _np(be, M.Pearson().update(_f(be, X5), _f(be, _nan_at(X5, 1))).compute())


@pytest.mark.parametrize("form", ["context", "call"])
def test_value_checks_off_skips_value_checks(backend, form):
    if form == "context":
        with polyloss.value_checks(False):
            _run_unchecked(backend)
    else:
        polyloss.value_checks(False)
        try:
            _run_unchecked(backend)
        finally:
            polyloss.value_checks(True)
    # the checks are back on
    with pytest.raises(ValueError, match=r"class ids in labels must lie in \[0, 3\); found 7"):
        M.accuracy(_f(backend, S23), _f(backend, np.array([0, 7])))


def test_value_checks_context_restores_the_previous_setting(backend):
    s = _f(backend, _nan_at(S23, 0))
    with polyloss.value_checks(False):
        with polyloss.value_checks(True):
            with pytest.raises(ValueError, match="NaN"):
                M.accuracy(s, _f(backend, Y23))
        M.accuracy(s, _f(backend, Y23))  # off again
    with pytest.raises(ValueError, match="NaN"):
        M.accuracy(s, _f(backend, Y23))


def test_shape_and_dtype_checks_still_run_without_value_checks(backend):
    with polyloss.value_checks(False):
        with pytest.raises(ValueError, match=_shapes((3,), (2, 3))):
            M.precision_recall_f1(_f(backend, S23), _f(backend, np.zeros(3)))
        with pytest.raises(TypeError, match="real floating-point"):
            M.accuracy(_f(backend, Y23), _f(backend, Y23))
        with pytest.raises(ValueError, match="threshold is NaN"):  # a hyper-parameter, not data
            M.accuracy(_f(backend, S23), _f(backend, Y23), threshold=math.nan)


# --------------------------------------------------------------------------------------------
# Empty inputs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("average", ["micro", "macro", "none"])
def test_no_examples_give_zero_division_values(metric_backend, average):
    for zero_division in (0.0, 0.25, math.nan):
        _check_no_examples(metric_backend, average, zero_division)


def _check_no_examples(be, average, zero_division):
    cases = [
        (np.zeros(0), np.zeros(0, dtype=np.int64), ()),  # binary
        (np.zeros((0, 3)), np.zeros((0, 3)), (3,)),  # multi-label
        (np.zeros((0, 3)), np.zeros(0, dtype=np.int64), (3,)),  # class ids
        (np.zeros((2, 0, 3)), np.zeros((2, 0, 3), dtype=bool), (3,)),
    ]
    for scores, labels, per_class in cases:
        out = _np(
            be, M.precision_recall_f1(_f(be, scores), _f(be, labels), average=average, zero_division=zero_division)
        )
        shape = per_class if average == "none" else ()
        for v in out:
            assert v.shape == shape, (scores.shape, labels.shape, v.shape)
            np.testing.assert_array_equal(v, np.full(shape, zero_division))
    # the state object after empty batches only: the same
    m = M.PrecisionRecallF1(average=average, zero_division=zero_division)
    m.update(_f(be, np.zeros((0, 3))), _f(be, np.zeros((0, 3)))).update(
        _f(be, np.zeros((0, 3))), _f(be, np.zeros((0, 3)))
    )
    for v in _np(be, m.compute()):
        np.testing.assert_array_equal(v, np.full((3,) if average == "none" else (), zero_division))


def test_global_pointer_and_span_f1_without_entities(metric_backend):
    be = metric_backend
    empty = np.full((2, 1, 3, 3), -np.inf)
    for zd in (0.0, 1.0, math.nan):
        out = _np(be, M.global_pointer_f1(_f(be, empty), _f(be, np.zeros(empty.shape)), zero_division=zd))
        np.testing.assert_array_equal(out, [zd, zd, zd])
        out = _np(
            be, M.global_pointer_f1(_f(be, np.zeros((0, 1, 3, 3))), _f(be, np.zeros((0, 1, 3, 3))), zero_division=zd)
        )
        np.testing.assert_array_equal(out, [zd, zd, zd])
        np.testing.assert_array_equal(M.span_f1([], [], zero_division=zd), [zd, zd, zd])
        np.testing.assert_array_equal(M.span_f1([[], set()], [(), []], zero_division=zd), [zd, zd, zd])


def test_accuracy_without_rows_is_a_value_error(metric_backend):
    be = metric_backend
    cases = [
        (np.zeros(0), np.zeros(0)),
        (np.zeros((0, 3)), np.zeros((0, 3))),
        (np.zeros((0, 3)), np.zeros(0, dtype=np.int64)),
        (np.zeros((4, 0, 3)), np.zeros((4, 0), dtype=np.int64)),
    ]
    for scores, labels in cases:
        with pytest.raises(ValueError, match=rf"accuracy: no examples \(scores have shape {_shapes(scores.shape)}"):
            M.accuracy(_f(be, scores), _f(be, labels))


def test_best_threshold_without_scores_is_a_value_error(metric_backend):
    be = metric_backend
    for shape in [(0,), (0, 3), (2, 0, 3)]:
        for metric in ("f1", "accuracy"):
            with pytest.raises(ValueError, match=rf"best_threshold: no scores \(shape {_shapes(shape)}\)"):
                M.best_threshold(_f(be, np.zeros(shape)), _f(be, np.zeros(shape)), metric=metric)
    if be.name != "dask":
        with pytest.raises(ValueError, match=r"best_threshold_vector: no examples"):
            M.best_threshold_vector(_f(be, np.zeros((0, 3))), _f(be, np.zeros(0, dtype=np.int64)))


def test_a_class_axis_of_size_zero_is_a_value_error(metric_backend):
    be = metric_backend
    elementwise = (np.zeros((2, 0)), np.zeros((2, 0)))
    ids = (np.zeros((2, 0)), np.zeros(2, dtype=np.int64))
    calls = [
        ("precision_recall_f1", M.precision_recall_f1, elementwise),
        ("precision_recall_f1", M.precision_recall_f1, ids),
        ("accuracy", M.accuracy, elementwise),
        ("accuracy", M.accuracy, ids),
        ("best_threshold", M.best_threshold, elementwise),
        ("best_threshold_vector", M.best_threshold_vector, ids),
        ("PrecisionRecallF1.update", lambda s, y: M.PrecisionRecallF1().update(s, y), ids),
        ("precision_recall_f1", M.precision_recall_f1, (np.zeros(0), np.array(0))),  # scores [0], one class id
    ]
    for name, fn, (scores, labels) in calls:
        if be.name == "dask" and name not in DASK_FUNCTIONS:
            continue
        with pytest.raises(
            ValueError,
            match=rf"{re.escape(name)}: scores has shape {_shapes(scores.shape)}, with "
            "no classes on its last axis",
        ):
            fn(_f(be, scores), _f(be, labels))


@pytest.mark.parametrize("cls", STATE_CLASSES, ids=lambda c: c.__name__)
def test_compute_before_update_is_a_value_error(cls):
    m = cls()
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.compute\(\): no data yet \(call update first\)"):
        m.compute()
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.compute\(\): no data yet"):
        m.merge(cls()).compute()  # merging empty objects adds nothing
    if cls is not M.SpanF1:
        with pytest.raises(ValueError, match=rf"{cls.__name__}\.all_reduce\(\): update at least once first"):
            m.all_reduce()


def test_compute_after_reset_is_a_value_error(backend):
    m = M.Accuracy().update(_f(backend, S23), _f(backend, IDS2))
    float(_np(backend, m.compute()))
    with pytest.raises(ValueError, match=r"Accuracy\.compute\(\): no data yet"):
        m.reset().compute()
    assert m.state == {}


def test_accuracy_state_after_only_empty_batches(backend):
    m = M.Accuracy()
    m.update(_f(backend, np.zeros((0, 3))), _f(backend, np.zeros(0, dtype=np.int64)))
    m.update(_f(backend, np.zeros(0)), _f(backend, np.zeros(0)))
    with pytest.raises(ValueError, match=r"Accuracy\.compute\(\): no examples"):
        m.compute()
    # one real batch makes it computable
    m.update(_f(backend, S23), _f(backend, IDS2))
    assert float(_np(backend, m.compute())) == 1.0


def test_best_threshold_state_after_only_empty_batches(backend):
    m = M.BestThreshold().update(_f(backend, np.zeros(0)), _f(backend, np.zeros(0)))
    with pytest.raises(ValueError, match=r"best_threshold: no scores"):
        m.compute()


@pytest.mark.parametrize("cls", [M.Pearson, M.Spearman], ids=lambda c: c.__name__)
def test_correlation_state_takes_batches_of_one_or_no_pair(backend, cls):
    m = cls()
    m.update(_f(backend, X5[:0]), _f(backend, X5[:0]))
    m.update(_f(backend, X5[:1]), _f(backend, X5[::-1][:1]))
    m.update(_f(backend, X5[1:]), _f(backend, X5[::-1][1:]))
    want = float(_np(backend, cls._function(_f(backend, X5), _f(backend, X5[::-1]))))
    assert float(_np(backend, m.compute())) == want


def test_correlation_state_with_fewer_than_two_pairs_in_all_fails_at_compute(backend):
    m = M.Pearson().update(_f(backend, X5[:2]), _f(backend, X5[:2]))
    m.reset()
    with pytest.raises(ValueError, match=r"no data yet"):
        m.compute()


# --------------------------------------------------------------------------------------------
# Hyper-parameters
# --------------------------------------------------------------------------------------------
BAD_AVERAGES = ["weighted", "binary", "Micro", "micro ", "", None, ["micro"], 0]


def test_average_must_be_one_of_the_choices(backend):
    for bad in BAD_AVERAGES:
        message = rf"average must be one of 'micro', 'macro', 'none'; got {re.escape(repr(bad))}"
        with pytest.raises(ValueError, match=message):
            M.precision_recall_f1(_f(backend, S23), _f(backend, Y23), average=bad)
        with pytest.raises(ValueError, match=message):
            M.PrecisionRecallF1(average=bad)


def test_metric_must_be_f1_or_accuracy(backend):
    for bad in ["F1", "f1 ", "precision", "macro_f1", None, ""]:
        message = rf"metric must be one of 'f1', 'accuracy'; got {re.escape(repr(bad))}"
        with pytest.raises(ValueError, match=message):
            M.best_threshold(_f(backend, S5), _f(backend, Y5), metric=bad)
        with pytest.raises(ValueError, match=message):
            M.best_threshold_vector(_f(backend, S23), _f(backend, IDS2), metric=bad)
        with pytest.raises(ValueError, match=message):
            M.BestThreshold(metric=bad)


def test_kind_must_be_a_known_mean(backend):
    for bad in ["mean", "Geometric", "quadratic", None, ""]:
        message = rf"kind must be one of 'arithmetic', 'geometric', 'harmonic'; got {re.escape(repr(bad))}"
        with pytest.raises(ValueError, match=message):
            M.leaderboard_mean(_f(backend, BOARD), kind=bad)
        with pytest.raises(ValueError, match=message):
            M.leaderboard_mean({"A": {"t": 0.5}}, kind=bad)


ZD_CALLS = {
    "precision_recall_f1": lambda be, zd: M.precision_recall_f1(_f(be, S23), _f(be, Y23), zero_division=zd),
    "best_threshold": lambda be, zd: M.best_threshold(_f(be, S5), _f(be, Y5), zero_division=zd),
    "global_pointer_f1": lambda be, zd: M.global_pointer_f1(_f(be, GP), _f(be, GP_Y), zero_division=zd),
    "span_f1": lambda be, zd: M.span_f1([[("PER", 0, 1)]], [[]], zero_division=zd),
    "PrecisionRecallF1": lambda be, zd: M.PrecisionRecallF1(zero_division=zd),
    "GlobalPointerF1": lambda be, zd: M.GlobalPointerF1(zero_division=zd),
    "SpanF1": lambda be, zd: M.SpanF1(zero_division=zd),
    "BestThreshold": lambda be, zd: M.BestThreshold(zero_division=zd),
}


@pytest.mark.parametrize("name", list(ZD_CALLS))
def test_zero_division_must_be_finite_or_nan(backend, name):
    for bad in (math.inf, -math.inf, np.float64(np.inf)):
        with pytest.raises(ValueError, match=r"zero_division must be finite or nan, got"):
            ZD_CALLS[name](backend, bad)
    for bad in ("0", "nan", b"1", None, True, False, [0.0], np.array([0.0, 1.0])):
        with pytest.raises(TypeError, match=r"zero_division must be a real number or nan, got"):
            ZD_CALLS[name](backend, bad)
    for good in (0, 1.0, np.float32(0.5), math.nan):
        ZD_CALLS[name](backend, good)


THRESHOLD_CALLS = {
    "precision_recall_f1": lambda s, y, t: M.precision_recall_f1(s, y, threshold=t),
    "accuracy": lambda s, y, t: M.accuracy(s, y, threshold=t),
    "global_pointer_f1": lambda s, y, t: M.global_pointer_f1(s[:, :2], y[:, :2], threshold=t),
    "PrecisionRecallF1.update": lambda s, y, t: M.PrecisionRecallF1(threshold=t).update(s, y),
    "Accuracy.update": lambda s, y, t: M.Accuracy(threshold=t).update(s, y),
    "GlobalPointerF1.update": lambda s, y, t: M.GlobalPointerF1(threshold=t).update(s[:, :2], y[:, :2]),
}


@pytest.mark.parametrize("name", list(THRESHOLD_CALLS))
def test_threshold_must_be_a_real_scalar(backend, name):
    be, fn = backend, THRESHOLD_CALLS[name]
    s, y = _f(be, S23), _f(be, Y23)
    for bad in (math.nan, np.float64(np.nan), _f(be, np.array(np.nan))):
        with pytest.raises(ValueError, match=r"threshold is NaN"):
            fn(s, y, bad)
    for bad in (True, False):
        with pytest.raises(
            TypeError, match=rf"threshold must be a real number or a 0-d array, got {re.escape(repr(bad))}"
        ):
            fn(s, y, bad)
    for bad in ("0.5", b"0"):
        with pytest.raises(
            TypeError, match=rf"threshold must be a real number or a 0-d array, got {re.escape(repr(bad))}"
        ):
            fn(s, y, bad)
    with pytest.raises(TypeError, match=r"threshold is a builtins \(dict\)"):
        fn(s, y, {"t": 0.5})
    for bad in (None, [0.5], [], 1j):
        with pytest.raises(TypeError, match=r"threshold must be a real number or a 0-d array"):
            fn(s, y, bad)
    for shape in [(1,), (2,), (1, 1)]:
        with pytest.raises(ValueError, match=rf"threshold must be a scalar \(0-d\), got shape {_shapes(shape)}"):
            fn(s, y, _f(be, np.full(shape, 0.5)))
    with pytest.raises(TypeError, match="threshold must be a real floating-point array, got dtype"):
        fn(s, y, _f(be, np.array(0)))
    # +-inf are valid thresholds (nothing / everything positive)
    fn(s, y, math.inf)
    fn(s, y, _f(be, np.array(-np.inf)))


@pytest.mark.parametrize("name", ["precision_recall_f1", "accuracy", "PrecisionRecallF1.update", "Accuracy.update"])
def test_threshold_with_class_ids_explains_argmax(backend, name):
    be, fn = backend, THRESHOLD_CALLS[name]
    for bad in (0.5, -1.0, math.nan, math.inf, _f(be, np.array(0.5)), None, [0.0]):
        with pytest.raises(
            ValueError,
            match=r"with class-id labels the prediction is the argmax over the classes; "
            r"threshold is not used and must be left at 0\.0 \(got",
        ):
            fn(_f(be, S23), _f(be, IDS2), bad)
    for bad in (True, False, np.False_):  # booleans are never thresholds, in either mode
        with pytest.raises(TypeError, match=r"threshold must be a real number or a 0-d array"):
            fn(_f(be, S23), _f(be, IDS2), bad)
    fn(_f(be, S23), _f(be, IDS2), 0.0)
    fn(_f(be, S23), _f(be, IDS2), 0)


@pytest.mark.parametrize("bad", ["0.5", b"0"])
def test_string_threshold_message_says_real_number(bad):
    with pytest.raises(TypeError, match=rf"threshold must be a real number or a 0-d array, got {re.escape(repr(bad))}"):
        M.precision_recall_f1(S23, Y23, threshold=bad)


@pytest.mark.parametrize(
    "name",
    [
        "numpy",
        "array_api_strict",
        "torch",
        "jax",
        "tensorflow",
    ],
)
def test_numpy_bool_threshold_is_refused(name):
    be = get(name)
    for bad in (np.True_, np.False_):
        with pytest.raises(TypeError, match=r"threshold must be a real"):
            M.precision_recall_f1(_f(be, S23), _f(be, Y23), threshold=bad)


def test_bool_threshold_is_refused_with_class_ids_too():
    with pytest.raises((TypeError, ValueError), match="threshold"):
        M.precision_recall_f1(S23, IDS2, threshold=False)


def test_rounds_must_be_a_positive_int(backend):
    s, y = _f(backend, S23), _f(backend, IDS2)
    for bad in (0, -1, 1.5, 2.0, True, False, "3", None):
        with pytest.raises(ValueError, match=rf"rounds must be a positive int, got {re.escape(repr(bad))}"):
            M.best_threshold_vector(s, y, rounds=bad)
    M.best_threshold_vector(s, y, rounds=1)


def test_rounds_of_a_numpy_integer_type_is_accepted():
    M.best_threshold_vector(S23, IDS2, rounds=np.int64(2))


# --------------------------------------------------------------------------------------------
# Mixing frameworks
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "first, second",
    [
        ("torch", "jax"),
        ("jax", "torch"),
        ("tensorflow", "torch"),
        ("numpy", "jax"),
        ("array_api_strict", "tensorflow"),
        ("dask", "torch"),
    ],
)
def test_arrays_of_two_frameworks_name_both(first, second):
    a, b = get(first), get(second)
    message = rf"{{}} is a {first} array but {{}} is a {second} array; pass {{}} as a {first} array"
    pairs = [
        ("scores", "labels", lambda: M.precision_recall_f1(_f(a, S23), _f(b, Y23))),
        ("scores", "labels", lambda: M.precision_recall_f1(_f(a, S23), _f(b, IDS2))),
        ("scores", "labels", lambda: M.accuracy(_f(a, S23), _f(b, IDS2))),
        ("scores", "labels", lambda: M.best_threshold(_f(a, S5), _f(b, Y5))),
        ("logits", "labels", lambda: M.global_pointer_f1(_f(a, GP), _f(b, GP_Y))),
        ("x", "y", lambda: M.pearson(_f(a, X5), _f(b, X5))),
        ("x", "y", lambda: M.spearman(_f(a, X5), _f(b, X5))),
        ("scores", "threshold", lambda: M.precision_recall_f1(_f(a, S23), _f(a, Y23), threshold=_f(b, np.array(0.1)))),
        ("scores", "labels", lambda: M.PrecisionRecallF1().update(_f(a, S23), _f(b, Y23))),
        ("x", "y", lambda: M.Spearman().update(_f(a, X5), _f(b, X5))),
    ]
    if first != "dask":
        pairs.append(("scores", "labels", lambda: M.best_threshold_vector(_f(a, S23), _f(b, IDS2))))
    for name_a, name_b, call in pairs:
        with pytest.raises(TypeError, match=message.format(name_a, name_b, name_b)):
            call()


@pytest.mark.parametrize(
    "first, second", [("torch", "jax"), ("numpy", "torch"), ("torch", "numpy"), ("jax", "numpy"), ("dask", "numpy")]
)
def test_merging_states_of_two_frameworks_names_both(first, second):
    a, b = get(first), get(second)
    m = M.PrecisionRecallF1().update(_f(a, S23), _f(a, Y23))
    other = M.PrecisionRecallF1().update(_f(b, S23), _f(b, Y23))
    with pytest.raises(TypeError, match=rf"state is a {first} array but update is a {second} array"):
        m.merge(other)
    m = M.Accuracy().update(_f(a, S23), _f(a, IDS2))
    with pytest.raises(TypeError, match=rf"state is a {first} array but update is a {second} array"):
        m.update(_f(b, S23), _f(b, IDS2))
    m = M.Spearman().update(_f(a, X5), _f(a, X5))  # values as counts
    with pytest.raises(TypeError, match=rf"state is a {first} array but update is a {second} array"):
        m.update(_f(b, X5), _f(b, X5))


# --------------------------------------------------------------------------------------------
# leaderboard_mean: the mapping form
# --------------------------------------------------------------------------------------------
def test_systems_scored_on_different_task_sets():
    base = {"afqmc": 0.7, "tnews": 0.5}
    cases = [
        ({"A": base, "B": {"afqmc": 0.6}}, r"against 'A': 'B' lacks tnews$"),
        ({"A": base, "B": {**base, "iflytek": 0.4}}, r"against 'A': 'B' has iflytek in addition$"),
        ({"A": base, "B": {"afqmc": 0.6, "cmnli": 0.3}}, r"against 'A': 'B' lacks tnews and has cmnli in addition$"),
        (
            {"A": base, "B": base, "C": {"tnews": 0.1}, "D": {}},
            r"against 'A': 'C' lacks afqmc; 'D' lacks afqmc, tnews$",
        ),
        ({"A": {"afqmc": 0.6}, "B": base}, r"against 'A': 'B' has tnews in addition$"),
    ]
    for board, names in cases:
        for kind in ("arithmetic", "geometric", "harmonic"):
            with pytest.raises(
                ValueError,
                match=r"leaderboard_mean: systems scored on different task sets cannot be "
                r"compared; " + names,
            ):
                M.leaderboard_mean(board, kind=kind)


def test_leaderboard_mapping_structure():
    with pytest.raises(ValueError, match=r"leaderboard_mean: no systems"):
        M.leaderboard_mean({})
    for inner, shown in [([0.5, 0.6], "list"), (0.5, "float"), (np.array([0.5]), "ndarray"), (None, "NoneType")]:
        with pytest.raises(
            TypeError,
            match=rf"leaderboard_mean: scores\['B'\] must be a mapping task -> score, got "
            rf"{shown}",
        ):
            M.leaderboard_mean({"A": {"t": 0.5}, "B": inner})
    with pytest.raises(ValueError, match=r"no tasks \(scores have shape \(2, 0\)\)"):
        M.leaderboard_mean({"A": {}, "B": {}})
    # the same tasks in another order are the same task set
    out = M.leaderboard_mean({"A": {"x": 0.5, "y": 1.0}, "B": {"y": 0.25, "x": 0.75}})
    assert out == {"A": 0.75, "B": 0.5}


def test_leaderboard_mapping_non_numeric_score_names_system_and_task():
    for bad in (None, "abc", [0.5]):
        with pytest.raises((TypeError, ValueError), match=r"'B'.*'tnews'|'tnews'.*'B'"):
            M.leaderboard_mean({"A": {"afqmc": 0.5, "tnews": 0.5}, "B": {"afqmc": 0.5, "tnews": bad}})


def test_leaderboard_mapping_numeric_string_score_is_refused():
    with pytest.raises(TypeError):
        M.leaderboard_mean({"A": {"t": "0.5"}})


# --------------------------------------------------------------------------------------------
# span_f1
# --------------------------------------------------------------------------------------------
SPAN_CALLS = {"span_f1": M.span_f1, "SpanF1.update": lambda p, t: M.SpanF1().update(p, t)}


@pytest.mark.parametrize("name", list(SPAN_CALLS))
def test_span_f1_needs_the_same_number_of_sentences(name):
    fn = SPAN_CALLS[name]
    with pytest.raises(ValueError, match=r"pred_spans has 2 sentences but true_spans has 1; pass one collection"):
        fn([[("PER", 0, 1)], []], [[("PER", 0, 1)]])
    with pytest.raises(ValueError, match=r"pred_spans has 0 sentences but true_spans has 3"):
        fn([], [[], [], []])


@pytest.mark.parametrize("name", list(SPAN_CALLS))
def test_span_f1_wants_sequences_of_collections(name):
    fn = SPAN_CALLS[name]
    for bad, shown in [
        ("PER 0 1", "str"),
        (b"x", "bytes"),
        ({("PER", 0, 1)}, "set"),
        (None, "NoneType"),
        ((s for s in [[]]), "generator"),
        (5, "int"),
    ]:
        with pytest.raises(
            TypeError,
            match=rf"pred_spans must be a sequence with one collection of spans per "
            rf"sentence, got {shown}",
        ):
            fn(bad, [[]])
        with pytest.raises(TypeError, match=rf"true_spans must be a sequence .*got {shown}"):
            fn([[]], bad)
    for entry, shown in [("PER", "str"), (7, "int"), (None, "NoneType")]:
        with pytest.raises(
            TypeError,
            match=rf"true_spans\[1\] must be an iterable of spans such as \(type, start, "
            rf"end\), got {shown}",
        ):
            fn([[], []], [[], entry])


@pytest.mark.parametrize("name", list(SPAN_CALLS))
def test_unhashable_spans_are_a_type_error(name):
    fn = SPAN_CALLS[name]
    for span in ({"type": "PER", "start": 0}, {("PER", 0)}, ["PER", [0, 1]]):
        with pytest.raises(TypeError, match=r"pred_spans\[0\] holds an unhashable span"):
            fn([[span]], [[]])
        with pytest.raises(TypeError, match=r"true_spans\[1\] holds an unhashable span"):
            fn([[], []], [[], [("PER", 0, 1), span]])
    # lists and array rows are turned into tuples: they match
    assert M.span_f1([[["PER", 0, 1]], np.array([[1, 2, 3]])], [[("PER", 0, 1)], [(1, 2, 3)]]) == (1.0, 1.0, 1.0)


# --------------------------------------------------------------------------------------------
# State objects: merge and all_reduce
# --------------------------------------------------------------------------------------------
def test_merging_another_metric_is_a_type_error(backend):
    prf = M.PrecisionRecallF1().update(_f(backend, S23), _f(backend, Y23))
    acc = M.Accuracy().update(_f(backend, S23), _f(backend, Y23))
    with pytest.raises(
        TypeError,
        match=r"cannot merge PrecisionRecallF1\(.*\) into Accuracy\(.*\): a different "
        r"metric or settings",
    ):
        acc.merge(prf)
    with pytest.raises(TypeError, match=r"cannot merge Accuracy\(.*\) into PrecisionRecallF1"):
        prf.merge(acc)
    with pytest.raises(TypeError, match=r"cannot merge Pearson\(\) into Spearman\(\)"):
        M.Spearman().merge(M.Pearson())
    with pytest.raises(TypeError, match=r"cannot merge .* into SpanF1"):
        M.SpanF1().merge(M.GlobalPointerF1())
    with pytest.raises(TypeError, match=r"cannot merge \(1, 2\) into"):
        acc.merge((1, 2))


def test_merging_other_settings_is_a_type_error(backend):
    cases = [
        (M.PrecisionRecallF1(average="micro"), M.PrecisionRecallF1(average="macro")),
        (M.PrecisionRecallF1(zero_division=0.0), M.PrecisionRecallF1(zero_division=1.0)),
        (M.GlobalPointerF1(zero_division=0.0), M.GlobalPointerF1(zero_division=math.nan)),
        (M.SpanF1(), M.SpanF1(zero_division=1.0)),
        (M.BestThreshold(metric="f1"), M.BestThreshold(metric="accuracy")),
    ]
    for mine, theirs in cases:
        with pytest.raises(TypeError, match=r"a different metric or settings"):
            mine.merge(theirs)


@pytest.mark.parametrize("cls", [M.PrecisionRecallF1, M.Accuracy, M.GlobalPointerF1], ids=lambda c: c.__name__)
def test_merging_another_threshold_is_a_type_error(cls):
    with pytest.raises(TypeError, match=r"a different metric or settings"):
        cls(threshold=0.0).merge(cls(threshold=0.5))


@pytest.mark.parametrize(
    "cls", [M.PrecisionRecallF1, M.GlobalPointerF1, M.SpanF1, M.BestThreshold], ids=lambda c: c.__name__
)
def test_merging_objects_with_nan_zero_division(cls):
    m = cls(zero_division=float("nan"))
    m.merge(pickle.loads(pickle.dumps(m)))
    m.merge(cls(zero_division=float("nan")))


def test_merging_counts_of_another_number_of_classes(backend):
    be = backend
    m = M.PrecisionRecallF1(average="none").update(_f(be, np.zeros((2, 4))), _f(be, np.zeros((2, 4))))
    with pytest.raises(
        ValueError,
        match=r"PrecisionRecallF1: counts of shape \(3,\) \(e\.g\. a different number of "
        r"classes\) cannot join earlier ones of shape \(4,\)",
    ):
        m.update(_f(be, S23), _f(be, Y23))
    with pytest.raises(ValueError, match=r"counts of shape \(\) .* shape \(4,\)"):  # binary next to 4 classes
        m.merge(M.PrecisionRecallF1(average="none").update(_f(be, S5), _f(be, Y5)))
    with pytest.raises(ValueError, match=r"counts of shape \(3,\) .* shape \(4,\)"):  # class ids of 3 classes
        m.update(_f(be, S23), _f(be, IDS2))
    # a failed update leaves the state as it was
    np.testing.assert_array_equal(_np(be, m.compute()[0]), np.zeros(4))
    b = M.BestThreshold().update(_f(be, np.zeros((2, 4))), _f(be, np.zeros((2, 4))))
    with pytest.raises(
        ValueError,
        match=r"BestThreshold: scores of shape \(2, 3\) cannot join earlier batches of "
        r"shape \(2, 4\)",
    ):
        b.update(_f(be, S23), _f(be, Y23))
    with pytest.raises(
        ValueError,
        match=r"BestThreshold: scores of shape \(5,\) cannot join earlier batches of "
        r"shape \(2, 4\)",
    ):
        b.merge(M.BestThreshold().update(_f(be, S5), _f(be, Y5)))


def test_span_f1_has_no_all_reduce():
    m = M.SpanF1().update([[("PER", 0, 1)]], [[("PER", 0, 1)]])
    with pytest.raises(
        TypeError,
        match=r"SpanF1 counts Python spans: sum its three counts with your framework's "
        r"all-reduce, or gather the objects and merge them",
    ):
        m.all_reduce()
    with pytest.raises(TypeError, match=r"SpanF1 counts Python spans"):
        M.SpanF1().all_reduce()


@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "tensorflow", "dask"])
def test_all_reduce_without_collectives_is_a_type_error(name):
    be = get(name)
    states = [
        M.PrecisionRecallF1().update(_f(be, S23), _f(be, Y23)),
        M.Accuracy().update(_f(be, S23), _f(be, IDS2)),
        M.GlobalPointerF1().update(_f(be, GP), _f(be, GP_Y)),
        M.BestThreshold().update(_f(be, S5), _f(be, Y5)),  # gathers values
        M.Spearman().update(_f(be, X5), _f(be, X5)),
    ]
    for m in states:
        before = {k: _np(be, v) for k, v in m.state.items()}
        with pytest.raises(
            TypeError,
            match=rf"needs torch\.distributed \(a process group\) or a JAX collective "
            rf"\(the axis name of shard_map / pmap\); the {name} backend has neither",
        ):
            m.all_reduce()
        after = {k: _np(be, v) for k, v in m.state.items()}
        assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)


def test_torch_all_reduce_needs_an_initialised_process_group():
    be = get("torch")
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    for m in (M.PrecisionRecallF1().update(_f(be, S23), _f(be, Y23)), M.Pearson().update(_f(be, X5), _f(be, X5))):
        for group in (True, None):
            with pytest.raises(
                RuntimeError,
                match=r"reducing across processes needs an initialised "
                r"torch\.distributed process group",
            ):
                m.all_reduce(group)


def test_jax_all_reduce_needs_an_axis_name():
    be = get("jax")
    m = M.Accuracy().update(_f(be, S23), _f(be, IDS2))
    for group in (True, None, 0):
        with pytest.raises(
            TypeError,
            match=rf"for JAX arrays, group is the axis name of the enclosing shard_map / "
            rf"pmap, got {group!r}",
        ):
            m.all_reduce(group)
    with pytest.raises(TypeError, match=r"for JAX arrays, (gather|group) is the axis name"):
        M.Spearman().update(_f(be, X5), _f(be, X5)).all_reduce(True)

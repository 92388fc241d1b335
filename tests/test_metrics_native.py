"""The metrics (``docs/metrics.md``) against the libraries practitioners evaluate with.

Every test runs the library on every backend of the metrics (``metric_backend``: NumPy,
array-api-strict, PyTorch, JAX, TensorFlow and Dask) in float32 and float64 where it is cheap, and
compares with the established implementation on the same values (cast to the dtype first, so that
both sides see identical inputs):

- scikit-learn 1.9: ``precision_recall_fscore_support`` / ``precision_score`` / ``recall_score`` /
  ``f1_score`` (``average="binary"`` for 1-D input; ``"micro"``, ``"macro"`` and ``None`` with
  ``labels=range(C)`` otherwise; ``zero_division`` 0 and 1) and ``accuracy_score`` (binary,
  multi-label subset accuracy, multi-class) on predictions made in the test: ``scores > threshold``
  and ``numpy.argmax`` (the first maximum on ties, which the test checks is not the last one).
  Scores lie on a coarse grid so that ties, argmax ties and entries exactly at the threshold occur.
- ``best_threshold``: the best scikit-learn ``f1_score`` / ``accuracy_score`` over every candidate
  threshold, computed by brute force in the test (every distinct score, every midpoint, below the
  minimum), and scikit-learn at the returned threshold reproduces the returned value.
- SciPy 1.17: ``stats.pearsonr`` and ``stats.spearmanr`` (random, tied, integer ``y``, a large
  common offset, float32), ``stats.gmean`` and ``stats.hmean``.
- ``global_pointer_f1`` against the set-based loop of Su Jianlin's GlobalPointer evaluation
  (``X += len(R & T); Y += len(R); Z += len(T)``), and ``span_f1`` on the same spans.
- ``span_f1`` against a seqeval-style evaluation. seqeval itself is not installable here; a small
  BIO decoder written below (conlleval / seqeval default-mode chunking: a chunk starts at ``B-X``,
  at ``I-X`` after ``O`` or after another type, and ends before ``O``, ``B-*`` or a change of
  type) stands in for it, checked on hand-decoded sequences, and the entity counts are taken
  independently of ``span_f1``.

Tolerances come from the dtype: ~1e-12 in float64, ~1e-6 in float32.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

import polyloss.metrics as M
from polyloss.testing import assert_close

from helpers import grid, host, hosts, tolerance

skm = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")

DTYPES = ("float32", "float64")
TOL = {"float32": dict(rtol=1e-6, atol=1e-6, equal_nan=False), "float64": dict(rtol=1e-12, atol=1e-12, equal_nan=False)}
ZERO_DIVISIONS = (0.0, 1.0)
# one length for every 1-D case and every [N, C] case: JAX compiles each operation once per shape
N = 40
ROWS, C = 8, 5  # multi-label [ROWS, C]: N entries too
# (threshold, zero_division) pairs: both thresholds, both zero_division values
T_ZD = ((0.0, 0.0), (0.5, 1.0))


def in_dtype(a, dtype):
    """``a`` rounded to ``dtype`` and back to float64: what the library sees."""
    return np.asarray(a, dtype=dtype).astype(np.float64)


def sk_prf(y_true, y_pred, *, average, zero_division, labels=None):
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=average, labels=labels,
                                                     zero_division=zero_division)
    return p, r, f


# ============================================================================================
# precision / recall / F1 / accuracy against scikit-learn
# ============================================================================================
def binary_cases():
    rng = np.random.default_rng(10)
    s = grid(rng, (N,))
    s[:3], s[3:6] = 0.0, 0.5  # entries exactly at both thresholds
    y = rng.integers(0, 2, N)
    return {
        "random": (s, y),
        "no positives": (s, np.zeros(N, dtype=np.int64)),
        "nothing predicted": (-np.abs(s) - 1.0, y),
        "nothing at all": (-np.abs(s) - 1.0, np.zeros(N, dtype=np.int64)),
        "all right": (np.where(y == 1, 1.0, -1.0), y),
    }


def test_binary_data_exercises_ties_and_the_threshold():
    s, y = binary_cases()["random"]
    for t in (0.0, 0.5):
        assert np.sum(s == t) >= 3
        # the strict ">" matters: ">=" would give other sklearn values on this data
        assert sk_prf(y, s >= t, average="binary", zero_division=0.0) != sk_prf(y, s > t, average="binary",
                                                                                 zero_division=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_precision_recall_f1_sklearn(metric_backend, dtype):
    be = metric_backend
    # binary input: the three averages coincide (checked in test_metrics_properties); here each
    # (case, threshold, zero_division) takes one of them in turn, and labels as int, bool or float
    variants = itertools.cycle([("micro", "int"), ("macro", "bool"), ("none", "float"), ("micro", "float"),
                                ("none", "int"), ("macro", "int"), ("micro", "bool")])
    for (name, (s, y)), (t, zd) in itertools.product(binary_cases().items(), T_ZD):
        pred = in_dtype(s, dtype) > t
        expected = sk_prf(y, pred, average="binary", zero_division=zd)
        assert expected == (skm.precision_score(y, pred, zero_division=zd), skm.recall_score(y, pred, zero_division=zd),
                            skm.f1_score(y, pred, zero_division=zd))
        average, labels_as = next(variants)
        labels = {"int": y, "bool": y.astype(bool), "float": y.astype(np.float64)}[labels_as]
        got = M.precision_recall_f1(be.from_numpy(s, dtype=dtype), be.from_numpy(labels), threshold=t,
                                    average=average, zero_division=zd)
        assert all(tuple(v.shape) == () for v in got), (name, average)
        assert_close(
            hosts(be, got), expected, **tolerance(TOL, dtype), err_msg=f"{name} t={t} zd={zd} {average} {labels_as}"
        )


def multilabel_cases():
    rng = np.random.default_rng(11)
    s = grid(rng, (ROWS, C))
    y = rng.integers(0, 2, (ROWS, C))
    y[:, 3] = 0  # a class that is never true
    s[:, 4] = -np.abs(s[:, 4]) - 1.0  # a class that is never predicted
    s3 = grid(rng, (2, ROWS // 2, C))
    y3 = rng.integers(0, 2, (2, ROWS // 2, C))
    return {"2-D": (s, y), "3-D": (s3, y3)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_precision_recall_f1_sklearn(metric_backend, dtype):
    be = metric_backend
    for (name, (s, y)), (t, zd) in itertools.product(multilabel_cases().items(), T_ZD):
        c = s.shape[-1]
        pred = (in_dtype(s, dtype) > t).reshape(-1, c).astype(np.int64)
        truth = y.reshape(-1, c)
        for average, sk_average in (("micro", "micro"), ("macro", "macro"), ("none", None)):
            expected = sk_prf(truth, pred, average=sk_average, zero_division=zd)
            if average == "macro":
                assert expected[2] == skm.f1_score(truth, pred, average="macro", zero_division=zd)
            got = M.precision_recall_f1(
                be.from_numpy(s, dtype=dtype), be.from_numpy(y), threshold=t, average=average, zero_division=zd
            )
            assert tuple(got[0].shape) == (() if average != "none" else (c,))
            assert_close(hosts(be, got), expected, **tolerance(TOL, dtype), err_msg=f"{name} t={t} zd={zd} {average}")


def multiclass_cases():
    rng = np.random.default_rng(12)
    s = grid(rng, (N, C), step=1.0)  # five values per entry: many argmax ties
    ids = rng.integers(0, C - 1, N)  # the last class is never true
    s3 = grid(rng, (2, N // 2, C), step=1.0)
    ids3 = rng.integers(0, C, (2, N // 2))
    # +-inf take part in the argmax: ties between +inf, rows of -inf only
    s_inf = grid(rng, (N, C), step=1.0)
    s_inf[:6, 1:3] = np.inf
    s_inf[6:10] = -np.inf
    s_inf[10:14, 0] = np.inf
    s_inf[14:18, :2] = -np.inf
    ids_inf = rng.integers(0, C, N)
    return {"2-D": (s, ids), "3-D": (s3, ids3), "infinities": (s_inf, ids_inf)}


def test_multiclass_data_has_argmax_ties():
    """The first maximum and the last one differ on these scores, so the tie rule is tested."""
    for s, ids in multiclass_cases().values():
        flat = s.reshape(-1, s.shape[-1])
        first = np.argmax(flat, axis=-1)
        last = flat.shape[-1] - 1 - np.argmax(flat[:, ::-1], axis=-1)
        assert np.sum(first != last) >= 3
        c = flat.shape[-1]
        assert skm.f1_score(
            ids.reshape(-1), first, average="macro", labels=range(c), zero_division=0.0
        ) != skm.f1_score(ids.reshape(-1), last, average="macro", labels=range(c), zero_division=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multiclass_precision_recall_f1_sklearn(metric_backend, dtype):
    be = metric_backend
    for (name, (s, ids)), zd in itertools.product(multiclass_cases().items(), ZERO_DIVISIONS):
        c = s.shape[-1]
        pred = np.argmax(s.reshape(-1, c), axis=-1)  # NumPy: the first maximum
        truth = ids.reshape(-1)
        for average, sk_average in (("micro", "micro"), ("macro", "macro"), ("none", None)):
            expected = sk_prf(truth, pred, average=sk_average, labels=list(range(c)), zero_division=zd)
            got = M.precision_recall_f1(
                be.from_numpy(s, dtype=dtype), be.from_numpy(ids), average=average, zero_division=zd
            )
            assert tuple(got[0].shape) == (() if average != "none" else (c,))
            assert_close(hosts(be, got), expected, **tolerance(TOL, dtype), err_msg=f"{name} zd={zd} {average}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_accuracy_sklearn(metric_backend, dtype):
    be = metric_backend
    for s, y in binary_cases().values():
        for t in (0.0, 0.5):
            got = M.accuracy(be.from_numpy(s, dtype=dtype), be.from_numpy(y), threshold=t)
            assert_close(host(be, got), skm.accuracy_score(y, in_dtype(s, dtype) > t), **tolerance(TOL, dtype))
    for s, y in multilabel_cases().values():
        c = s.shape[-1]
        for t in (0.0, 0.5):
            expected = skm.accuracy_score(y.reshape(-1, c), (in_dtype(s, dtype) > t).reshape(-1, c).astype(int))
            # subset accuracy is far from the per-entry accuracy on this data: the test tells them apart
            assert abs(expected - np.mean(y == (s > t))) > 0.1
            got = M.accuracy(be.from_numpy(s, dtype=dtype), be.from_numpy(y), threshold=t)
            assert_close(host(be, got), expected, **tolerance(TOL, dtype))
    for s, ids in multiclass_cases().values():
        c = s.shape[-1]
        expected = skm.accuracy_score(ids.reshape(-1), np.argmax(s.reshape(-1, c), axis=-1))
        got = M.accuracy(be.from_numpy(s, dtype=dtype), be.from_numpy(ids))
        assert_close(host(be, got), expected, **tolerance(TOL, dtype))


# ============================================================================================
# best_threshold: brute force over every candidate threshold, evaluated by scikit-learn
# ============================================================================================
def threshold_cases():
    rng = np.random.default_rng(13)
    s_ml = grid(rng, (ROWS, C))
    y_ml = rng.integers(0, 2, (ROWS, C))
    y_ml[:5] = s_ml[:5] > 0.5 * rng.integers(-1, 2, (5, 1))  # rows that some threshold gets right
    return {
        "grid 1-D": (grid(rng, (N,)), rng.integers(0, 2, N)),
        "continuous 1-D": (rng.normal(size=N), rng.integers(0, 2, N)),
        "no positives 1-D": (grid(rng, (N,)), np.zeros(N, dtype=np.int64)),
        "grid [N, C]": (s_ml, y_ml),
    }


def sk_metric(metric, y, pred, zd):
    if metric == "accuracy":
        return skm.accuracy_score(y, pred)
    return skm.f1_score(y, pred, average="binary" if y.ndim == 1 else "micro", zero_division=zd)


def candidate_thresholds(s):
    """Every distinct score, every midpoint of neighbours, and a value below the minimum."""
    u = np.unique(s)
    return np.concatenate([[u[0] - 1.0], u, (u[:-1] + u[1:]) / 2])


@functools.cache
def brute_force_best(case, dtype, metric, zd):
    s, y = threshold_cases()[case]
    s = in_dtype(s, dtype)
    return max(sk_metric(metric, y, (s > t).astype(np.int64), zd) for t in candidate_thresholds(s))


@pytest.mark.parametrize("dtype", DTYPES)
def test_best_threshold_sklearn_brute_force(metric_backend, dtype):
    be = metric_backend
    np_dtype = np.dtype(dtype)
    for case, (s, y) in threshold_cases().items():
        for metric, zd in (("f1", 0.0), ("f1", 1.0), ("accuracy", 0.0)):
            t, value = M.best_threshold(
                be.from_numpy(s, dtype=dtype), be.from_numpy(y), metric=metric, zero_division=zd
            )
            assert tuple(t.shape) == () and tuple(value.shape) == ()
            best = brute_force_best(case, dtype, metric, zd)
            t_host, value_host = hosts(be, (t, value))
            assert_close(value_host, best, **tolerance(TOL, dtype), err_msg=f"{case} {metric} zd={zd}")
            # the returned threshold, in the scores' dtype, reproduces the value through sklearn
            t_np = t_host.astype(np_dtype)
            assert t_host == float(t_np), "the threshold is not a value of the scores' dtype"
            pred = (np.asarray(s, dtype=np_dtype) > t_np).astype(np.int64)
            assert_close(
                sk_metric(metric, y, pred, zd),
                best,
                **tolerance(TOL, dtype),
                err_msg=f"{case} {metric} zd={zd} at t={t_np}",
            )


def test_best_threshold_no_positives_zero_division_sklearn():
    """No positive label: F1 is 0 wherever something is predicted, zero_division where nothing is."""
    s, y = threshold_cases()["no positives 1-D"]
    t0, v0 = M.best_threshold(s, y, zero_division=0.0)
    assert float(v0) == 0.0 == skm.f1_score(y, s > float(t0), zero_division=0.0)
    t1, v1 = M.best_threshold(s, y, zero_division=1.0)
    assert float(v1) == 1.0 == skm.f1_score(y, s > float(t1), zero_division=1.0)
    assert not np.any(s > float(t1))


# ============================================================================================
# Pearson and Spearman against SciPy; leaderboard means against SciPy
# ============================================================================================
def correlation_cases():
    rng = np.random.default_rng(14)
    x = rng.normal(size=N)
    return {
        "random": (x, 0.6 * x + rng.normal(size=N)),
        "tied": (grid(rng, (N,)), grid(rng, (N,), step=1.0)),
        "integer y": (rng.normal(size=N), rng.integers(0, 6, N)),
        "offset 1e4": (1e4 + rng.normal(size=N), rng.normal(size=N)),
        "anti": (x, -x + 0.1 * rng.normal(size=N)),
    }


def scipy_pair(x, y, dtype):
    xd = in_dtype(x, dtype)
    yd = y if np.issubdtype(np.asarray(y).dtype, np.integer) else in_dtype(y, dtype)
    return xd, np.asarray(yd, dtype=np.float64)


def to_backend(be, y, dtype):
    return be.from_numpy(y) if np.issubdtype(np.asarray(y).dtype, np.integer) else be.from_numpy(y, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pearson_scipy(metric_backend, dtype):
    be = metric_backend
    for name, (x, y) in correlation_cases().items():
        xd, yd = scipy_pair(x, y, dtype)
        expected = stats.pearsonr(xd, yd).statistic
        got = M.pearson(be.from_numpy(x, dtype=dtype), to_backend(be, y, dtype))
        assert tuple(got.shape) == ()
        assert_close(host(be, got), expected, **tolerance(TOL, dtype), err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_spearman_scipy(metric_backend, dtype):
    be = metric_backend
    cases = dict(correlation_cases())
    rng = np.random.default_rng(15)
    x_inf = grid(rng, (N,))
    x_inf[[2, 7]], x_inf[[4, 11, 12]] = np.inf, -np.inf
    cases["with infinities"] = (x_inf, rng.normal(size=N))
    for name, (x, y) in cases.items():
        xd, yd = scipy_pair(x, y, dtype)
        expected = stats.spearmanr(xd, yd).statistic
        got = M.spearman(be.from_numpy(x, dtype=dtype), to_backend(be, y, dtype))
        assert tuple(got.shape) == ()
        assert_close(host(be, got), expected, **tolerance(TOL, dtype), err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaderboard_mean_scipy(metric_backend, dtype):
    be = metric_backend
    rng = np.random.default_rng(16)
    board = rng.uniform(0.05, 0.95, (4, 7))
    bd = in_dtype(board, dtype)
    expected = {
        "arithmetic": np.mean(bd, axis=-1),
        "geometric": stats.gmean(bd, axis=-1),
        "harmonic": stats.hmean(bd, axis=-1),
    }
    assert expected["arithmetic"][0] - expected["harmonic"][0] > 1e-3  # the three differ on this board
    for kind, want in expected.items():
        got = M.leaderboard_mean(be.from_numpy(board, dtype=dtype), kind=kind)
        assert tuple(got.shape) == (4,)
        assert_close(host(be, got), want, **tolerance(TOL, dtype), err_msg=kind)


def test_leaderboard_mean_mapping_scipy():
    rng = np.random.default_rng(17)
    tasks = ["afqmc", "tnews", "iflytek", "cmnli", "wsc"]
    board = {f"system {i}": {t: float(v) for t, v in zip(tasks, rng.uniform(0.2, 0.9, 5))} for i in range(3)}
    for kind, f in (("arithmetic", np.mean), ("geometric", stats.gmean), ("harmonic", stats.hmean)):
        got = M.leaderboard_mean(board, kind=kind)
        assert list(got) == list(board) and all(type(v) is float for v in got.values())
        for system, scores in board.items():
            assert_close(got[system], f(list(scores.values())), **tolerance(TOL, "float64"))


# ============================================================================================
# Entities: Su Jianlin's GlobalPointer evaluation loop, and a seqeval-style BIO evaluation
# ============================================================================================
def su_global_pointer_counts(logits, labels, threshold):
    """The evaluation loop of Su's GlobalPointer NER example: per sentence, the predicted entities
    ``(type, start, end)`` where the logit is above the threshold, the true ones from the labels,
    and ``X += len(R & T); Y += len(R); Z += len(T)``."""
    x = y = z = 0
    pred_spans, true_spans = [], []
    for b in range(logits.shape[0]):
        r = set(zip(*(idx.tolist() for idx in np.where(logits[b] > threshold))))
        t = set(zip(*(idx.tolist() for idx in np.where(labels[b] > 0))))
        x, y, z = x + len(r & t), y + len(r), z + len(t)
        pred_spans.append(r)
        true_spans.append(t)
    return (x, y, z), pred_spans, true_spans


def global_pointer_case(seed, batch=3, types=2, length=7):
    rng = np.random.default_rng(seed)
    logits = grid(rng, (batch, types, length, length))
    lower = np.tril(np.ones((length, length), dtype=bool), k=-1)
    logits[..., lower] = -np.inf  # what polyloss.global_pointer_mask writes
    labels = (rng.random((batch, types, length, length)) < 0.25).astype(np.int64)
    labels[..., lower] = 0
    # make agreement likely enough that X is well above 0
    agree = rng.random(labels.shape) < 0.5
    logits = np.where(agree & (labels == 1) & ~lower, np.abs(logits) + 0.5, logits)
    return logits, labels


def ratios(x, y, z, zd):
    return (x / y if y else zd, x / z if z else zd, 2 * x / (y + z) if y + z else zd)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_pointer_f1_su_loop_and_span_f1(metric_backend, dtype):
    be = metric_backend
    logits, labels = global_pointer_case(18)
    for t, zd in ((0.0, 0.0), (0.5, 1.0)):
        assert np.sum(logits == t) >= 3  # entries exactly at the threshold are never predicted
        (x, y, z), pred_spans, true_spans = su_global_pointer_counts(in_dtype(logits, dtype), labels, t)
        assert x >= 5 and y > x and z > x
        expected = ratios(x, y, z, zd)
        got = M.global_pointer_f1(
            be.from_numpy(logits, dtype=dtype), be.from_numpy(labels), threshold=t, zero_division=zd
        )
        assert_close(hosts(be, got), expected, **tolerance(TOL, dtype), err_msg=f"t={t}")
        # span_f1 on the decoded spans agrees to the last bit (Python floats of the same counts)
        assert M.span_f1(pred_spans, true_spans, zero_division=zd) == expected


def test_global_pointer_f1_su_epsilon_is_zero_division_one():
    """Su's loop starts X, Y, Z at 1e-10: nothing predicted gives P = 1, nothing at all gives F1 = 1,
    which is ``zero_division=1.0``; ``0.0`` is seqeval's / scikit-learn's choice."""
    logits, labels = global_pointer_case(19)
    nothing = np.full_like(logits, -1.0)
    for lg, lb in ((nothing, labels), (nothing, np.zeros_like(labels)), (logits, np.zeros_like(labels))):
        (x, y, z), _, _ = su_global_pointer_counts(lg, lb, 0.0)
        eps = 1e-10
        su = ((x + eps) / (y + eps), (x + eps) / (z + eps), 2 * (x + eps) / (y + z + 2 * eps))
        got = [float(v) for v in M.global_pointer_f1(lg, lb, zero_division=1.0)]
        np.testing.assert_allclose(got, su, atol=1e-9)
        got0 = [float(v) for v in M.global_pointer_f1(lg, lb, zero_division=0.0)]
        assert got0 == list(ratios(x, y, z, 0.0))


# -------------------------------------------------------------------------------------------------
# span_f1 against a seqeval-style evaluation (stand-in: seqeval is not installable here)
# -------------------------------------------------------------------------------------------------
def bio_entities(tags):
    """Entities ``(type, start, end)`` (end inclusive) of a BIO sequence, chunked as conlleval and
    seqeval's default mode do: a chunk starts at ``B-X``, or at ``I-X`` when the previous tag is ``O``
    or of another type; it ends before ``O``, before ``B-*`` and before a change of type."""
    out = []
    kind = start = None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        ends = kind is not None and (prefix in ("O", "B") or label != kind)
        if ends:
            out.append((kind, start, i - 1))
            kind = None
        if prefix == "B" or (prefix == "I" and kind is None):
            kind, start = label, i
    return out


@pytest.mark.parametrize(
    "tags, entities",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
        (["I-PER", "I-PER", "O"], [("PER", 0, 1)]),
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),
        (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),
        (["O", "O"], []),
        (["B-ORG", "I-ORG", "I-ORG"], [("ORG", 0, 2)]),
    ],
)
def test_bio_decoder_stand_in(tags, entities):
    assert bio_entities(tags) == entities


def random_bio(rng, length, types=("PER", "LOC", "ORG")):
    tags = []
    for _ in range(length):
        u = rng.random()
        if u < 0.5:
            tags.append("O")
        elif u < 0.8 or not tags or tags[-1] == "O":
            tags.append("B-" + types[rng.integers(len(types))])
        else:
            tags.append("I-" + tags[-1].partition("-")[2])
    return tags


def corrupt(rng, tags, p=0.2, types=("PER", "LOC", "ORG")):
    out = list(tags)
    for i in range(len(out)):
        if rng.random() < p:
            out[i] = rng.choice(["O", *(f"{b}-{t}" for b in "BI" for t in types)])
    return out


@pytest.mark.parametrize("zd", ZERO_DIVISIONS)
def test_span_f1_bio_corpus(zd):
    rng = np.random.default_rng(20)
    true_tags = [random_bio(rng, int(rng.integers(0, 15))) for _ in range(40)]
    pred_tags = [corrupt(rng, t) for t in true_tags]
    pred = [bio_entities(t) for t in pred_tags]
    true = [bio_entities(t) for t in true_tags]
    # an independent count: corpus-wide lists keyed by sentence, compared by sorting
    flat_p = sorted({(i, *e) for i, ents in enumerate(pred) for e in ents})
    flat_t = sorted({(i, *e) for i, ents in enumerate(true) for e in ents})
    x = sum(1 for e in flat_p if e in flat_t)
    y, z = len(flat_p), len(flat_t)
    assert 10 < x < min(y, z)
    expected = (float(Fraction(x, y)), float(Fraction(x, z)), float(Fraction(2 * x, y + z)))
    assert M.span_f1(pred, true, zero_division=zd) == expected
    # the spans of one sentence never match those of another: shifting the sentences changes X
    assert M.span_f1(pred[1:] + pred[:1], true, zero_division=zd)[2] < expected[2]


def test_span_f1_bio_zero_division():
    pred = [bio_entities(["O", "O"]), bio_entities(["O"])]
    true_some = [bio_entities(["B-PER", "O"]), []]
    for zd in ZERO_DIVISIONS:
        assert M.span_f1(pred, true_some, zero_division=zd) == (zd, 0.0, 0.0)
        assert M.span_f1(true_some, pred, zero_division=zd) == (0.0, zd, 0.0)
        assert M.span_f1(pred, [[], []], zero_division=zd) == (zd, zd, zd)


def test_no_runtime_warnings_from_scipy_cases():
    """SciPy warns on constant input; the cases above are all non-constant (a warning would be an
    error under the project's ``filterwarnings``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x, y in correlation_cases().values():
            stats.pearsonr(x, np.asarray(y, dtype=np.float64))
            assert math.isfinite(stats.spearmanr(x, y).statistic)

"""The mergeable metric state objects (``polyloss.metrics.state``) on every metric backend.

What is proved here, in float64 on CPU:

* **Batches and merges are exact.** For every state class (``PrecisionRecallF1`` with each
  ``average`` on binary, multi-label and class-id inputs; ``Accuracy`` in its three modes;
  ``GlobalPointerF1``; ``SpanF1``; ``BestThreshold`` with ``metric="f1"`` and ``"accuracy"``;
  ``Spearman``; ``Pearson``) and every backend of the metrics (Dask inputs built with
  ``dask.array.from_array`` in several chunks), updating batch by batch over an uneven split of the
  rows (one batch empty, one of a single row) -- or updating one object per batch and merging them,
  in order and as a tree -- gives bit for bit the one-shot function on all the rows.
* **The state** is a dict of arrays of the inputs' framework; counting metrics hold integer counts,
  equal to counts taken here with plain NumPy; ``update`` / ``merge`` / ``reset`` return the
  object; ``reset`` forgets everything.
* **Dask stays lazy**: on a 10^7-element chunked input, ``precision_recall_f1`` (binary and
  multi-label ``[N, C]``), ``accuracy`` and ``PrecisionRecallF1`` updated block by block build graphs
  without computing anything (the calls run under a scheduler that raises, and a callback counts
  zero computations), and ``dask.compute`` then gives the NumPy one-shot result exactly.

For Pearson and Spearman on Dask the exact comparison is with the one-shot function on the same
rows chunked as the merged state is (a floating sum over Dask chunks depends on the chunking); the
comparison with the NumPy one-shot result is to a few ulp.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from polyloss import metrics as M

from helpers import get

N, C, L, H = 37, 4, 5, 2  # rows, classes, GlobalPointer length and types
SPLIT = (0, 5, 5, 16, 17, 37)  # batches of 5, 0, 11, 1 and 20 rows


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def _data(seed=0):
    rng = np.random.default_rng(seed)
    # scores rounded to a coarse grid: ties (equal scores, equal maxima) on purpose
    s1 = np.round(rng.normal(size=N), 1)
    sc = np.round(rng.normal(size=(N, C)), 1)
    logits = np.round(rng.normal(size=(N, H, L, L)), 1)
    logits[..., np.tril_indices(L, -1)[0], np.tril_indices(L, -1)[1]] = -np.inf  # masked spans
    gp_labels = (rng.random((N, H, L, L)) < 0.3).astype(np.int64)
    gp_labels[..., np.tril_indices(L, -1)[0], np.tril_indices(L, -1)[1]] = 0
    return {
        "binary": (s1, (rng.random(N) < 0.4).astype(np.int64)),
        "multilabel": (sc, (rng.random((N, C)) < 0.4).astype(np.int64)),
        "classid": (sc, rng.integers(0, C, size=N)),
        "gp": (logits, gp_labels),
        "pairs": (rng.normal(size=N), rng.integers(0, 5, size=N)),  # y with ties
    }


DATA = _data()
for _pair in DATA.values():  # shared by every test: nothing may write into them
    for _a in _pair:
        _a.setflags(write=False)


def _spans(seed=1, n=N):
    rng = np.random.default_rng(seed)
    kinds = ("PER", "LOC", "ORG")

    def sentence():
        return [(kinds[rng.integers(3)], int(a), int(a + rng.integers(0, 3))) for a in rng.integers(0, 6, 3)]

    true = [set(sentence()[: rng.integers(0, 4)]) for _ in range(n)]
    # predictions: some of the true spans (as lists, with a duplicate) and some others
    pred = [[s for s in t if rng.random() < 0.6] + sentence()[: rng.integers(0, 3)] for t in true]
    pred[3] = pred[3] + pred[3]
    return pred, true


def _to(be, a, chunks=3):
    """``a`` as an array of ``be``; Dask arrays from ``dask.array.from_array`` in ``chunks`` chunks
    along the first axis (and two along the last one when it is wide enough)."""
    if be.name != "dask":
        return be.from_numpy(a)
    import dask.array as da

    a = np.array(a, copy=True)
    rows = max(1, -(-a.shape[0] // chunks)) if a.ndim else ()
    spec = (rows,) + tuple(-(-n // 2) if i == a.ndim - 2 and n > 1 else n for i, n in enumerate(a.shape[1:]))
    return da.from_array(a, chunks=spec[: a.ndim])


def _host(be, x):
    """``x`` (a result) as NumPy; Dask graphs are computed here, after the calls."""
    if isinstance(x, (float, int)):
        return np.float64(x)
    return be.to_numpy(x)


def _same(be, got, expected, what=""):
    """Bitwise equality of two results (tuples or single values) of one backend, NaN equal to NaN,
    dtypes included."""
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(got) == len(expected), what
    for i, (g, e) in enumerate(zip(got, expected)):
        assert type(g) is type(e), (what, i, type(g), type(e))
        if hasattr(e, "dtype"):
            assert g.dtype == e.dtype, (what, i, g.dtype, e.dtype)
            assert tuple(g.shape) == tuple(e.shape), (what, i, g.shape, e.shape)
        np.testing.assert_array_equal(_host(be, g), _host(be, e), err_msg=f"{what} [{i}]")


# ---------------------------------------------------------------------------------------------
# the cases: (state factory, one-shot function, data key)
# ---------------------------------------------------------------------------------------------
CASES = {}
for _key in ("binary", "multilabel", "classid"):
    for _avg in ("micro", "macro", "none"):
        CASES[f"prf-{_key}-{_avg}"] = (
            lambda avg=_avg: M.PrecisionRecallF1(average=avg),
            lambda s, y, avg=_avg: M.precision_recall_f1(s, y, average=avg),
            _key,
        )
    CASES[f"accuracy-{_key}"] = (M.Accuracy, M.accuracy, _key)
CASES["prf-multilabel-threshold-zd1"] = (
    lambda: M.PrecisionRecallF1(threshold=0.5, average="macro", zero_division=1.0),
    lambda s, y: M.precision_recall_f1(s, y, threshold=0.5, average="macro", zero_division=1.0),
    "multilabel",
)
CASES["accuracy-binary-threshold"] = (lambda: M.Accuracy(threshold=-0.3),
                                      lambda s, y: M.accuracy(s, y, threshold=-0.3), "binary")
CASES["global_pointer"] = (M.GlobalPointerF1, M.global_pointer_f1, "gp")
CASES["global_pointer-threshold"] = (lambda: M.GlobalPointerF1(threshold=0.5, zero_division=math.nan),
                                     lambda s, y: M.global_pointer_f1(s, y, threshold=0.5,
                                                                      zero_division=math.nan), "gp")
for _key in ("binary", "multilabel"):
    for _metric in ("f1", "accuracy"):
        CASES[f"best_threshold-{_key}-{_metric}"] = (
            lambda metric=_metric: M.BestThreshold(metric=metric),
            lambda s, y, metric=_metric: M.best_threshold(s, y, metric=metric),
            _key,
        )
CASES["spearman"] = (M.Spearman, M.spearman, "pairs")
CASES["pearson"] = (M.Pearson, M.pearson, "pairs")

COUNTING = {"PrecisionRecallF1", "Accuracy", "GlobalPointerF1", "SpanF1"}


def _split_of(key):
    return SPLIT


def _batches(be, key):
    s, y = DATA[key]
    split = _split_of(key)
    return [(_to(be, s[a:b]), _to(be, y[a:b])) for a, b in zip(split[:-1], split[1:])]


def _one_shot(be, case):
    """The one-shot function on all the rows. For the correlations on Dask: the rows chunked as the
    merged state is (one chunk group per batch), so that the floating sums run in the same order."""
    _, fn, key = CASES[case]
    s, y = DATA[key]
    if be.name == "dask" and key == "pairs":
        import dask.array as da

        parts = _batches(be, key)
        return fn(da.concatenate([p[0] for p in parts]), da.concatenate([p[1] for p in parts]))
    return fn(_to(be, s), _to(be, y))


# eager JAX compiles every operation once per new shape (seconds per case): it runs one case of each
# kind of state and input; the merging itself is the same array code on every backend
JAX_SUBSET = {"prf-binary-micro", "prf-multilabel-none", "prf-classid-macro", "accuracy-multilabel",
              "global_pointer", "best_threshold-multilabel-accuracy", "spearman", "pearson"}


def _backend_cases():
    from polyloss import backends

    for name in backends.BACKEND_NAMES:
        for case in sorted(CASES):
            if name != "jax" or case in JAX_SUBSET:
                yield pytest.param(name, case, id=f"{name}-{case}")


@pytest.mark.parametrize("name, case", list(_backend_cases()))
def test_batches_and_merges_equal_the_one_shot_result(name, case):
    be = get(name)
    factory, fn, key = CASES[case]
    batches = _batches(be, key)
    expected = _one_shot(be, case)

    # one object, updated batch by batch (update returns the object itself)
    m = factory()
    for s, y in batches:
        assert m.update(s, y) is m
    _same(be, m.compute(), expected, f"{case}: sequential updates")

    # one object per batch, merged in order into the first (merge returns the object itself)
    parts = [factory().update(s, y) for s, y in batches]
    first = parts[0]
    assert first.merge(*parts[1:]) is first
    _same(be, first.compute(), expected, f"{case}: merged in order")

    # merged as a tree, and into an object that has seen nothing yet
    parts = [factory().update(s, y) for s, y in batches]
    half = len(parts) // 2
    left = parts[0]
    for p in parts[1:half]:
        left = left.merge(p)
    right = factory().merge(*parts[half:])
    _same(be, left.merge(right).compute(), expected, f"{case}: merged as a tree")

    # the state arrays: of the inputs' framework; counts are integers, values keep their rows
    state = m.state
    assert isinstance(state, dict) and state
    xp = be.namespace
    for name, v in state.items():
        assert be.is_array(v), (case, name, type(v))
        if type(m).__name__ in COUNTING:
            assert xp.isdtype(v.dtype, "integral"), (case, name, v.dtype)
        else:
            assert v.shape[0] == N, (case, name, v.shape)  # every row, concatenated

    # compute() does not consume the state: a second call gives the same
    _same(be, m.compute(), expected, f"{case}: compute twice")

    if be.name == "dask" and key == "pairs":  # other chunks, other rounding: a few ulp of NumPy's
        s, y = DATA[key]
        np.testing.assert_allclose(_host(be, m.compute()), fn(s, y), rtol=1e-14, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reset_forgets_everything(metric_backend, case):
    be = metric_backend
    factory, _, key = CASES[case]
    batches = _batches(be, key)
    m = factory()
    assert m.state == {}
    with pytest.raises(ValueError, match="no data yet"):
        m.compute()
    m.update(*batches[0]).update(*batches[2])
    assert m.reset() is m
    assert m.state == {}
    with pytest.raises(ValueError, match="no data yet"):
        m.compute()
    for s, y in batches:
        m.update(s, y)
    _same(be, m.compute(), _one_shot(be, case), f"{case}: after reset")


# ---------------------------------------------------------------------------------------------
# the counts themselves, against plain NumPy
# ---------------------------------------------------------------------------------------------
def _numpy_counts(key, kind, threshold=0.0):
    s, y = DATA[key]
    if key == "classid":
        pred = np.argmax(s, axis=-1)
        hit_p = pred[:, None] == np.arange(C)
        hit_t = y[:, None] == np.arange(C)
    else:
        hit_p, hit_t = s > threshold, y == 1
    if kind == "prf":
        axes = None if key == "binary" else tuple(range(s.ndim - 1))
        tp = np.sum(hit_p & hit_t, axis=axes)
        return {"tp": tp, "fp": np.sum(hit_p & ~hit_t, axis=axes), "fn": np.sum(~hit_p & hit_t, axis=axes)}
    if kind == "accuracy":
        if key == "classid":
            right = pred == y
        else:
            right = hit_p == hit_t
            right = right if key == "binary" else right.all(axis=-1)
        return {"correct": right.sum(), "total": right.size}
    return {"x": np.sum(hit_p & hit_t), "y": np.sum(hit_p), "z": np.sum(hit_t)}


@pytest.mark.parametrize("key", ["binary", "multilabel", "classid"])
def test_counts_are_exact_integers(metric_backend, key):
    be = metric_backend
    xp = be.namespace
    objects = {
        "prf": M.PrecisionRecallF1(average="none"),
        "accuracy": M.Accuracy(),
    }
    if key == "binary":
        objects["gp"] = M.GlobalPointerF1()
    for kind, m in objects.items():
        data_key = "gp" if kind == "gp" else key
        for s, y in _batches(be, data_key):
            m.update(s, y)
        expected = _numpy_counts(data_key, kind)
        assert set(m.state) == set(expected), (kind, set(m.state))
        for name, v in m.state.items():
            assert be.is_array(v) and xp.isdtype(v.dtype, "integral"), (kind, name, v.dtype)
            assert tuple(v.shape) == np.shape(expected[name]), (kind, name, v.shape)
            np.testing.assert_array_equal(be.to_numpy(v), expected[name], err_msg=f"{kind}.{name}")
    # the state is a copy of the object's dict: changing it changes nothing
    m = objects["prf"]
    m.state.clear()
    assert set(m.state) == {"tp", "fp", "fn"}


def test_best_threshold_and_correlation_state_are_the_rows(metric_backend):
    be = metric_backend
    bt = M.BestThreshold()
    for s, y in _batches(be, "multilabel"):
        bt.update(s, y)
    st = bt.state
    assert set(st) == {"scores", "labels"}
    np.testing.assert_array_equal(be.to_numpy(st["scores"]), DATA["multilabel"][0])
    np.testing.assert_array_equal(be.to_numpy(st["labels"]), DATA["multilabel"][1] == 1)
    sp = M.Spearman()
    for x, y in _batches(be, "pairs"):
        sp.update(x, y)
    np.testing.assert_array_equal(be.to_numpy(sp.state["x"]), DATA["pairs"][0])
    np.testing.assert_array_equal(be.to_numpy(sp.state["y"]), DATA["pairs"][1].astype(np.float64))


# ---------------------------------------------------------------------------------------------
# SpanF1: Python spans, NumPy int64 counts, Python float results
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_span_f1_batches_and_merges_equal_the_one_shot_result(zero_division):
    pred, true = _spans()
    expected = M.span_f1(pred, true, zero_division=zero_division)
    assert all(type(v) is float for v in expected)
    m = M.SpanF1(zero_division=zero_division)
    parts = []
    for a, b in zip(SPLIT[:-1], SPLIT[1:]):
        assert m.update(pred[a:b], true[a:b]) is m
        parts.append(M.SpanF1(zero_division=zero_division).update(pred[a:b], true[a:b]))
    assert m.compute() == expected
    assert parts[0].merge(*parts[1:]) is parts[0]
    assert parts[0].compute() == expected
    # counts: NumPy int64, equal to the sums of set sizes
    x = sum(len(set(map(tuple, p)) & t) for p, t in zip(pred, true))
    y = sum(len(set(map(tuple, p))) for p in pred)
    z = sum(len(t) for t in true)
    assert {k: (type(v), int(v)) for k, v in m.state.items()} == {
        "x": (np.int64, x), "y": (np.int64, y), "z": (np.int64, z)}
    assert m.reset() is m and m.state == {}
    with pytest.raises(ValueError, match="no data yet"):
        m.compute()
    # nothing at all: zero_division everywhere
    assert M.SpanF1(zero_division=zero_division).update([], []).compute() == (zero_division,) * 3
    with pytest.raises(TypeError, match="SpanF1 counts Python spans"):
        m.update(pred, true).all_reduce()


# ---------------------------------------------------------------------------------------------
# merging what does not belong together
# ---------------------------------------------------------------------------------------------
def test_merge_refuses_other_metrics_settings_and_shapes():
    s, y = DATA["multilabel"]
    with pytest.raises(TypeError, match="different metric or settings"):
        M.PrecisionRecallF1(average="macro").merge(M.PrecisionRecallF1(average="micro"))
    with pytest.raises(TypeError, match="different metric or settings"):
        M.PrecisionRecallF1().merge(M.Accuracy())
    with pytest.raises(TypeError, match="different metric or settings"):
        M.BestThreshold(metric="f1").merge(M.BestThreshold(metric="accuracy"))
    m = M.PrecisionRecallF1().update(s, y)
    with pytest.raises(ValueError, match="counts of shape"):
        m.update(s[:, :2], y[:, :2])
    b = M.BestThreshold().update(s, y)
    with pytest.raises(ValueError, match="cannot join"):
        b.update(s[:, :2], y[:, :2])


# ---------------------------------------------------------------------------------------------
# a batch of fewer than two pairs for the correlations
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [M.Spearman, M.Pearson])
@pytest.mark.parametrize("rows", [0, 1])
def test_correlation_accepts_a_batch_of_fewer_than_two_pairs(cls, rows):
    x, y = DATA["pairs"]
    m = cls().update(x[:10], y[:10]).update(x[10:10 + rows], y[10:10 + rows]).update(x[10 + rows:], y[10 + rows:])
    np.testing.assert_array_equal(m.compute(), cls._function(x, y))


# ---------------------------------------------------------------------------------------------
# a caller that reuses one buffer for every batch
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["numpy", "torch", "array_api_strict"])
@pytest.mark.parametrize("case", ["best_threshold-binary-f1", "best_threshold-multilabel-accuracy", "spearman",
                                  "pearson"])
def test_values_state_does_not_alias_a_reused_input_buffer(name, case):
    be = get(name)
    factory, fn, key = CASES[case]
    s, y = DATA[key]
    half = 18
    # private buffers (array_api_strict's asarray may share the NumPy memory: never write into DATA)
    buf_s, buf_y = be.from_numpy(np.array(s[:half], copy=True)), be.from_numpy(np.array(y[:half], copy=True))
    m = factory()
    for lo in (0, half):  # two batches of 18 rows through the same two buffers
        buf_s[...] = be.from_numpy(s[lo:lo + half])
        buf_y[...] = be.from_numpy(y[lo:lo + half])
        m.update(buf_s, buf_y)
    _same(be, m.compute(), fn(be.from_numpy(s[: 2 * half]), be.from_numpy(y[: 2 * half])), case)


@pytest.mark.parametrize("name", ["numpy", "torch", "array_api_strict"])
def test_counting_state_does_not_alias_a_reused_input_buffer(name):
    be = get(name)
    s, y = DATA["multilabel"]
    half = 18
    # private buffers (array_api_strict's asarray may share the NumPy memory: never write into DATA)
    buf_s, buf_y = be.from_numpy(np.array(s[:half], copy=True)), be.from_numpy(np.array(y[:half], copy=True))
    m = M.PrecisionRecallF1(average="none")
    for lo in (0, half):
        buf_s[...] = be.from_numpy(s[lo:lo + half])
        buf_y[...] = be.from_numpy(y[lo:lo + half])
        m.update(buf_s, buf_y)
    _same(be, m.compute(), M.precision_recall_f1(be.from_numpy(s[: 2 * half]), be.from_numpy(y[: 2 * half]),
                                                 average="none"))


# ---------------------------------------------------------------------------------------------
# Dask: lazy all the way, exact after dask.compute
# ---------------------------------------------------------------------------------------------
def _refuse_to_compute(*args, **kwargs):
    raise AssertionError("a Dask graph was computed during a call that should only build it")


def test_dask_stays_lazy_on_ten_million_entries():
    get("dask")
    import dask
    import dask.array as da
    from dask.callbacks import Callback

    rng = np.random.default_rng(7)
    size, chunk = 10**7, 10**6
    s1 = rng.normal(size=size).astype(np.float64)
    y1 = rng.random(size) < 0.3
    n_rows, n_cls = 10**6, 10
    s2 = s1.reshape(n_rows, n_cls)
    y2 = y1.reshape(n_rows, n_cls)
    ids = rng.integers(0, n_cls, size=n_rows)

    computes = []

    class Count(Callback):
        def _start(self, dsk):
            computes.append(len(dsk))

    d1, l1 = da.from_array(s1, chunks=chunk), da.from_array(y1, chunks=chunk)
    d2, l2 = da.from_array(s2, chunks=(chunk // n_cls, n_cls)), da.from_array(y2, chunks=(chunk // n_cls, n_cls))
    dids = da.from_array(ids, chunks=chunk // n_cls)
    assert d1.numblocks == (10,) and d2.numblocks == (10, 1)

    start = time.perf_counter()
    with Count(), dask.config.set(scheduler=_refuse_to_compute):
        lazy = {
            "binary": M.precision_recall_f1(d1, l1, threshold=0.5),
            "multilabel": M.precision_recall_f1(d2, l2, average="macro"),
            "multilabel-none": M.precision_recall_f1(d2, l2, average="none"),
            "classid": M.precision_recall_f1(d2, dids, average="macro"),
            "accuracy-binary": M.accuracy(d1, l1),
            "accuracy-subset": M.accuracy(d2, l2),
            "accuracy-classid": M.accuracy(d2, dids),
        }
        state = M.PrecisionRecallF1(average="macro")
        acc = M.Accuracy()
        for i in range(d2.numblocks[0]):
            state.update(d2.blocks[i], l2.blocks[i])
            acc.update(d2.blocks[i], dids.blocks[i])
        lazy["state"] = state.compute()
        lazy["state-accuracy"] = acc.compute()
        lazy_counts = state.state
    assert computes == [], computes
    build = time.perf_counter() - start

    def leaves(v):
        return v if isinstance(v, tuple) else (v,)

    for name, v in lazy.items():
        assert all(isinstance(a, da.Array) for a in leaves(v)), (name, [type(a) for a in leaves(v)])
    assert all(isinstance(v, da.Array) for v in lazy_counts.values())

    (values, counts) = dask.compute(lazy, lazy_counts)
    expected = {
        "binary": M.precision_recall_f1(s1, y1, threshold=0.5),
        "multilabel": M.precision_recall_f1(s2, y2, average="macro"),
        "multilabel-none": M.precision_recall_f1(s2, y2, average="none"),
        "classid": M.precision_recall_f1(s2, ids, average="macro"),
        "accuracy-binary": M.accuracy(s1, y1),
        "accuracy-subset": M.accuracy(s2, y2),
        "accuracy-classid": M.accuracy(s2, ids),
    }
    expected["state"] = expected["multilabel"]
    expected["state-accuracy"] = expected["accuracy-classid"]
    for name, e in expected.items():
        for g, x in zip(leaves(values[name]), leaves(e)):
            assert np.asarray(g).dtype == x.dtype, name
            np.testing.assert_array_equal(np.asarray(g), x, err_msg=name)
    np.testing.assert_array_equal(counts["tp"], np.sum((s2 > 0) & y2, axis=0))
    np.testing.assert_array_equal(counts["fp"], np.sum((s2 > 0) & ~y2, axis=0))
    np.testing.assert_array_equal(counts["fn"], np.sum((s2 <= 0) & y2, axis=0))
    assert counts["tp"].dtype == np.int64
    assert build < 10, f"building the graphs took {build:.1f} s"


def test_update_shows_its_real_signature():
    """help(PrecisionRecallF1.update) shows the arguments, not ``*inputs``."""
    import inspect

    from polyloss import metrics

    expected = {"PrecisionRecallF1": ["scores", "labels"], "Accuracy": ["scores", "labels"],
                "GlobalPointerF1": ["logits", "labels"], "SpanF1": ["pred_spans", "true_spans"],
                "BestThreshold": ["scores", "labels"], "Spearman": ["x", "y"], "Pearson": ["x", "y"]}
    for name, arguments in expected.items():
        update = getattr(metrics, name).update
        assert list(inspect.signature(update).parameters)[1:] == arguments, name
        assert update.__doc__ and "Returns ``self``" in update.__doc__, name

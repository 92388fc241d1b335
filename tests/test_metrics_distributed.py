"""Metric state across processes and devices: ``Metric.all_reduce`` (and the manual recipe).

What is proved here, in float64 on CPU:

* **torch.distributed** (gloo, two real processes). The ranks hold different, unequal shares of the
  rows (rank 0: 23 rows in batches of 10, 0 and 13; rank 1: 14 rows, then an empty batch), update
  ``PrecisionRecallF1`` (macro, class ids), ``Accuracy`` (class ids and subset accuracy),
  ``GlobalPointerF1``, ``BestThreshold`` (F1 on multi-label scores, accuracy on binary ones) and
  ``Spearman``, and call ``all_reduce()`` (``group=True``; and with an explicit ``ProcessGroup`` from
  ``dist.new_group``). On BOTH ranks ``compute()`` equals bit for bit the one-shot function on the
  concatenated rows in a single process, and the reduced state is the global counts (or all the rows,
  in rank order). A rank whose only update is an empty batch takes part like any other. The recipe of
  the ``state`` module's docstring (``torch.distributed.all_reduce`` of each array of
  ``metric.state``, in place) gives the same counts and results.
* **JAX** (two host CPU devices, a subprocess). Inside ``jax.shard_map`` over a mesh axis (eagerly and
  under ``jax.jit``) and ``jax.pmap``, each device updates the state objects with its own rows (in
  uneven batches, one of them empty), ``all_reduce(axis_name)`` sums the counts (``psum``) or gathers
  the rows, and ``compute()`` equals the one-shot function on all the rows; ``jax.lax.psum`` of each
  array of ``metric.state`` gives the same counts. The gathered values of ``BestThreshold`` and
  ``Spearman`` are typed as replicated, so ``shard_map`` returns them with ``out_specs=P()`` under the
  default ``check_vma=True``.
* **In-process errors**: frameworks without collectives refuse ``all_reduce`` with ``TypeError``;
  torch without a process group raises ``RuntimeError``; a group that is not a ``ProcessGroup`` (torch)
  or an axis name (JAX) raises ``TypeError``; ``all_reduce`` before any update raises ``ValueError``;
  a one-process gloo group leaves every result as it was.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

from polyloss import metrics as M

from helpers import GLOO_WORKER_END, get, run_python

WORLD = 2
N, C, L, H = 37, 4, 5, 2
CUT = 23  # rank 0 holds rows [0, 23), rank 1 rows [23, 37)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    logits = np.round(rng.normal(size=(N, H, L, L)), 1)
    low = np.tril_indices(L, -1)
    logits[..., low[0], low[1]] = -np.inf
    gp = (rng.random((N, H, L, L)) < 0.3).astype(np.int64)
    gp[..., low[0], low[1]] = 0
    return {
        "scores": np.round(rng.normal(size=(N, C)), 1),  # ties on purpose
        "ids": rng.integers(0, C, size=N),
        "multi": (rng.random((N, C)) < 0.4).astype(np.int64),
        "s1": np.round(rng.normal(size=N), 1),
        "y1": (rng.random(N) < 0.4).astype(np.int64),
        "logits": logits,
        "gp_labels": gp,
        "x": rng.normal(size=N),
        "y": rng.integers(0, 5, size=N).astype(np.float64),
    }


# name -> (state factory source, one-shot function, scores key, labels key); the worker evaluates the
# factory source, the test the function
CASES = {
    "prf": ("M.PrecisionRecallF1(average='macro')", lambda s, y: M.precision_recall_f1(s, y, average="macro"),
            "scores", "ids"),
    "accuracy": ("M.Accuracy()", M.accuracy, "scores", "ids"),
    "accuracy_subset": ("M.Accuracy()", M.accuracy, "scores", "multi"),
    "gp": ("M.GlobalPointerF1()", M.global_pointer_f1, "logits", "gp_labels"),
    "best_threshold": ("M.BestThreshold()", M.best_threshold, "scores", "multi"),
    "best_threshold_acc": ("M.BestThreshold(metric='accuracy')",
                           lambda s, y: M.best_threshold(s, y, metric="accuracy"), "s1", "y1"),
    "spearman": ("M.Spearman()", M.spearman, "x", "y"),
}
COUNTING = ("prf", "accuracy", "accuracy_subset", "gp")


def _counts(data, kind, a, b):
    """The global counts of a counting metric (``kind``: prf, accuracy or gp) on ``data[a]``,
    ``data[b]``, with plain NumPy."""
    s, y = data[a], data[b]
    if b == "ids":
        p = np.argmax(s, axis=-1)[:, None] == np.arange(C)
        t = y[:, None] == np.arange(C)
    else:
        p, t = s > 0, y == 1
    if kind == "prf":
        return {"tp": (p & t).sum(0), "fp": (p & ~t).sum(0), "fn": (~p & t).sum(0)}
    if kind == "accuracy":
        right = (np.argmax(s, axis=-1) == y) if b == "ids" else (p == t).all(-1)
        return {"correct": right.sum(), "total": np.int64(right.size)}
    return {"x": (p & t).sum(), "y": p.sum(), "z": t.sum()}


def _expected_counts(data, case):
    _, _, a, b = CASES[case]
    return _counts(data, {"prf": "prf", "gp": "gp"}.get(case, "accuracy"), a, b)


# --------------------------------------------------------------------------------------------
# torch.distributed: two gloo processes
# --------------------------------------------------------------------------------------------
TORCH_WORKER = r'''
import datetime, os, sys
import numpy as np, torch, torch.distributed as dist
import polyloss.metrics as M

rank, world, store, folder, sections = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=world,
                        timeout=datetime.timedelta(seconds=60))
# <header>
data = {k: torch.from_numpy(v) for k, v in np.load(folder + "/inputs.npz").items()}
BATCHES = {
    # rank 0: 23 rows in batches of 10, 0 and 13; rank 1: 14 rows, then an empty batch
    "uneven": [(0, 10), (10, 10), (10, CUT)] if rank == 0 else [(CUT, 37), (37, 37)],
    # Spearman: a batch of one pair and an empty one
    "pairs": [(0, 1), (1, 1), (1, CUT)] if rank == 0 else [(CUT, 37), (37, 37)],
    # rank 1 has no rows at all: its only update is an empty batch
    "idle": [(0, 37)] if rank == 0 else [(37, 37)],
}
out = {}

def filled(case, scenario):
    m = eval(CASES[case])
    for lo, hi in BATCHES[scenario]:
        a, b = KEYS[case]
        assert m.update(data[a][lo:hi], data[b][lo:hi]) is m
    return m

def agreed(ok):
    """Whether every rank succeeded: no rank is left waiting alone in a collective."""
    flag = torch.tensor([int(ok)])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag)

def save(prefix, m):
    result = m.compute()
    result = result if isinstance(result, tuple) else (result,)
    for i, v in enumerate(result):
        out[f"{prefix}/result/{i}"] = v.numpy()
        out[f"{prefix}/rdtype/{i}"] = np.array(str(v.dtype))
    for name, v in m.state.items():
        out[f"{prefix}/state/{name}"] = v.numpy()
        out[f"{prefix}/sdtype/{name}"] = np.array(str(v.dtype))

def run(prefix, case, scenario, group=True, manual=False):
    try:
        m, error = filled(case, scenario), None
    except Exception as exc:
        m, error = None, f"{type(exc).__name__}: {exc}"
    if not agreed(m is not None):
        out[prefix + "/error"] = np.array(error or "another rank failed")
        return None
    if manual:  # the recipe of the state module's docstring, in place
        for name, counts in m.state.items():
            dist.all_reduce(counts)
    else:
        assert m.all_reduce(group) is m
    save(prefix, m)
    return m

if "main" in sections:
    explicit = dist.new_group([0, 1])
    assert isinstance(explicit, dist.ProcessGroup) and explicit is not dist.group.WORLD
    for case in CASES:
        scenario = "pairs" if case == "spearman" else "uneven"
        run(f"true/{case}", case, scenario)
        run(f"group/{case}", case, scenario, group=explicit)
        if case != "spearman":
            run(f"idle/{case}", case, "idle")
        if case in COUNTING:
            run(f"manual/{case}", case, scenario, manual=True)
    dist.barrier()

if "idle_spearman" in sections:
    run("idle/spearman", "spearman", "idle")

if "alias" in sections:
    # the recipe on an object that another one was merged into: the other must keep its own counts
    local = filled("prf", "uneven")
    before = {k: v.clone() for k, v in local.state.items()}
    total = M.PrecisionRecallF1(average="macro").merge(local)
    for counts in total.state.values():
        dist.all_reduce(counts)
    for k, v in local.state.items():
        out["alias/local/" + k] = v.numpy()
        out["alias/before/" + k] = before[k].numpy()

np.savez(folder + "/rank%d.npz" % rank, **out)
''' + GLOO_WORKER_END


def _worker_source():
    """The worker, after a header with the cases (factories as source text) and the split."""
    factories = {case: spec[0] for case, spec in CASES.items()}
    keys = {case: (spec[2], spec[3]) for case, spec in CASES.items()}
    header = f"CASES = {factories!r}\nKEYS = {keys!r}\nCOUNTING = {COUNTING!r}\nCUT = {CUT}\n"
    return TORCH_WORKER.replace("# <header>\n", header, 1)


def _run_torch_ranks(folder):
    """Run the two gloo ranks; ``(inputs, [rank 0 results, rank 1 results])``."""
    data = _inputs()
    np.savez(folder / "inputs.npz", **data)
    script = folder / "worker.py"
    script.write_text(_worker_source())
    store = folder / "store"  # a FileStore rendezvous: no port to pick
    with concurrent.futures.ThreadPoolExecutor(WORLD) as pool:
        runs = [pool.submit(run_python, str(script), str(rank), str(WORLD), str(store), str(folder),
                            "main,idle_spearman,alias", timeout=120) for rank in range(WORLD)]
        for r in runs:
            r.result()
    return data, [dict(np.load(folder / f"rank{rank}.npz")) for rank in range(WORLD)]


@pytest.fixture(scope="module")
def torch_ranks(tmp_path_factory):
    """One two-process run for the three tests below (each process start costs seconds; under
    pytest-xdist at most once per worker)."""
    get("torch")
    return _run_torch_ranks(tmp_path_factory.mktemp("gloo"))


def _torch_one_shot(data, case):
    import torch

    _, fn, a, b = CASES[case]
    result = fn(torch.from_numpy(data[a]), torch.from_numpy(data[b]))
    return result if isinstance(result, tuple) else (result,)


def _check_rank(res, data, prefix, case, rank):
    """Rank ``rank``'s result for ``prefix/case`` against the single-process one-shot result."""
    where = f"{prefix}/{case} on rank {rank}"
    assert f"{prefix}/{case}/error" not in res, (where, str(res.get(f"{prefix}/{case}/error")))
    expected = _torch_one_shot(data, case)
    got = [k for k in res if k.startswith(f"{prefix}/{case}/result/")]
    assert len(got) == len(expected), where
    for i, e in enumerate(expected):
        assert str(res[f"{prefix}/{case}/rdtype/{i}"]) == str(e.dtype) == "torch.float64", where
        np.testing.assert_array_equal(res[f"{prefix}/{case}/result/{i}"], e.numpy(), err_msg=where)
    state = {k.rsplit("/", 1)[1]: v for k, v in res.items() if k.startswith(f"{prefix}/{case}/state/")}
    if case in COUNTING:
        counts = _expected_counts(data, case)
        assert set(state) == set(counts), where
        for name, v in state.items():
            assert str(res[f"{prefix}/{case}/sdtype/{name}"]) == "torch.int64", where
            np.testing.assert_array_equal(v, counts[name], err_msg=f"{where}: {name}")
    else:  # every row, in rank order: the data as it was
        _, _, a, b = CASES[case]
        first, second = sorted(state)
        values = {"scores": data[a], "labels": data[b] == 1, "x": data[a], "y": data[b]}
        for name in (first, second):
            np.testing.assert_array_equal(state[name], values[name], err_msg=f"{where}: {name}")


@pytest.mark.slow
def test_torch_gloo_two_ranks_equal_the_single_process_result(torch_ranks):
    data, results = torch_ranks
    for rank, res in enumerate(results):
        for case in CASES:
            _check_rank(res, data, "true", case, rank)
            _check_rank(res, data, "group", case, rank)
            if case != "spearman":
                _check_rank(res, data, "idle", case, rank)
            if case in COUNTING:
                _check_rank(res, data, "manual", case, rank)
    # the shares really were unequal: a rank alone does not give the global result
    local = M.precision_recall_f1(data["scores"][:CUT], data["ids"][:CUT], average="macro")
    assert not np.array_equal(np.asarray(local), results[0]["true/prf/result/0"])


@pytest.mark.slow
def test_torch_gloo_idle_rank_spearman(torch_ranks):
    data, results = torch_ranks
    for rank in (1, 0):  # rank 1, the idle one, holds the error itself
        _check_rank(results[rank], data, "idle", "spearman", rank)


@pytest.mark.slow
def test_torch_manual_recipe_on_a_merged_object_leaves_the_source_alone(torch_ranks):
    _, results = torch_ranks
    for rank, res in enumerate(results):
        for name in ("tp", "fp", "fn"):
            np.testing.assert_array_equal(res[f"alias/local/{name}"], res[f"alias/before/{name}"],
                                          err_msg=f"rank {rank}: {name}")


# --------------------------------------------------------------------------------------------
# JAX: two host CPU devices, shard_map (eager and jit) and pmap
# --------------------------------------------------------------------------------------------
JAX_WORKER = r'''
import sys
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P
import polyloss.metrics as M

assert jax.device_count() == 2, jax.devices()
assert jnp.zeros(1).dtype == jnp.float64
folder = sys.argv[1]
data = {k: jnp.asarray(v) for k, v in np.load(folder + "/inputs.npz").items()}
mesh = Mesh(np.array(jax.devices()), ("batch",))
out = {}

COUNTING = {
    "prf": (lambda: M.PrecisionRecallF1(average="macro"), "scores", "ids"),
    "prf_multi": (lambda: M.PrecisionRecallF1(average="none"), "scores", "multi"),
    "accuracy": (M.Accuracy, "scores", "ids"),
    "accuracy_subset": (M.Accuracy, "scores", "multi"),
    "gp": (M.GlobalPointerF1, "logits", "gp_labels"),
}
VALUES = {
    "best_threshold": (M.BestThreshold, "scores", "multi"),
    "best_threshold_acc": (lambda: M.BestThreshold(metric="accuracy"), "s1", "y1"),
    "spearman": (M.Spearman, "x", "y"),
}
ONE_SHOT = {
    "prf": lambda s, y: M.precision_recall_f1(s, y, average="macro"),
    "prf_multi": lambda s, y: M.precision_recall_f1(s, y, average="none"),
    "accuracy": M.accuracy, "accuracy_subset": M.accuracy, "gp": M.global_pointer_f1,
    "best_threshold": M.best_threshold,
    "best_threshold_acc": lambda s, y: M.best_threshold(s, y, metric="accuracy"),
    "spearman": M.spearman,
}

def local(cases, empty):
    """Per device: its rows in uneven batches (5 rows, an empty one when ``empty``, the rest), then
    all_reduce over the axis and compute; also psum of each state array by hand."""
    def f(*arrays):
        res = {}
        for i, (case, (factory, _, _)) in enumerate(cases.items()):
            s, y = arrays[2 * i], arrays[2 * i + 1]
            m = factory().update(s[:5], y[:5])
            if empty:
                m.update(s[5:5], y[5:5])
            m.update(s[5:], y[5:])
            if empty:
                res[case + "/manual"] = {k: jax.lax.psum(v, "batch") for k, v in m.state.items()}
            assert m.all_reduce("batch") is m
            r = m.compute()
            res[case + "/result"] = r if isinstance(r, tuple) else (r,)
            res[case + "/state"] = m.state
        return res
    return f

def args_of(cases):
    return [data[k] for _, a, b in cases.values() for k in (a, b)]

def record(mode, res, stacked=False):
    for key, tree in res.items():
        leaves = tree.items() if isinstance(tree, dict) else enumerate(tree)
        for name, v in leaves:
            v = np.asarray(v)
            if stacked:  # pmap: one copy per device, both must agree
                assert np.array_equal(v[0], v[1], equal_nan=True), (mode, key, name)
                v = v[0]
            out[f"{mode}/{key}/{name}"] = v

# shard_map's default check_vma=True: the summed counts and the gathered values come back replicated
for cases, empty in ((COUNTING, True), (VALUES, False)):
    fn = jax.shard_map(local(cases, empty), mesh=mesh, in_specs=P("batch"), out_specs=P())
    args = args_of(cases)
    record("shard_map_jit", jax.jit(fn)(*args))
    halves = [a.reshape((2, a.shape[0] // 2) + a.shape[1:]) for a in args]
    record("pmap", jax.pmap(local(cases, empty), axis_name="batch")(*halves), stacked=True)
# shard_map outside jit (op by op: seconds per case, so one case)
eager = {"accuracy": COUNTING["accuracy"]}
record("shard_map", jax.shard_map(local(eager, True), mesh=mesh, in_specs=P("batch"), out_specs=P())(
    *args_of(eager)))
for case, (_, a, b) in {**COUNTING, **VALUES}.items():
    for mode, fn in (("single", ONE_SHOT[case]), ("single_jit", jax.jit(ONE_SHOT[case]))):
        if mode == "single" and case not in eager:
            continue
        r = fn(data[a], data[b])
        for i, v in enumerate(r if isinstance(r, tuple) else (r,)):
            out[f"{mode}/{case}/result/{i}"] = np.asarray(v)
out["tensorflow_imported"] = np.array("tensorflow" in sys.modules)
np.savez(folder + "/jax.npz", **out)
'''

# case -> (one-shot function, counts kind or None for the gathered values, scores key, labels key)
JAX_CASES = {
    "prf": (lambda s, y: M.precision_recall_f1(s, y, average="macro"), "prf", "scores", "ids"),
    "prf_multi": (lambda s, y: M.precision_recall_f1(s, y, average="none"), "prf", "scores", "multi"),
    "accuracy": (M.accuracy, "accuracy", "scores", "ids"),
    "accuracy_subset": (M.accuracy, "accuracy", "scores", "multi"),
    "gp": (M.global_pointer_f1, "gp", "logits", "gp_labels"),
    "best_threshold": (M.best_threshold, None, "scores", "multi"),
    "best_threshold_acc": (lambda s, y: M.best_threshold(s, y, metric="accuracy"), None, "s1", "y1"),
    "spearman": (M.spearman, None, "x", "y"),
}
JAX_ENV = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}


def _jax_inputs():
    data = _inputs(1)
    return {k: v[:36] for k, v in data.items()}  # 18 rows per device


def _run_jax(folder):
    data = _jax_inputs()
    np.savez(folder / "inputs.npz", **data)
    script = folder / "worker.py"
    script.write_text(JAX_WORKER)
    run_python(str(script), str(folder), timeout=180, env=JAX_ENV)
    return data, dict(np.load(folder / "jax.npz"))


@pytest.mark.slow
def test_jax_two_devices_equal_the_single_device_result(tmp_path):
    get("jax")
    data, res = _run_jax(tmp_path)
    runs = [("shard_map", "accuracy")] + [(mode, case) for mode in ("shard_map_jit", "pmap") for case in JAX_CASES]
    for mode, case in runs:
        _, kind, a, b = JAX_CASES[case]
        where = f"{mode}/{case}"
        # the one-shot function on one device, compiled as the collective version is (under jit, XLA
        # may order a floating sum differently from op-by-op dispatch: Spearman's, by an ulp)
        single = sorted(k for k in res if k.startswith(f"{'single' if mode == 'shard_map' else 'single_jit'}/"
                                                       f"{case}/result/"))
        got = sorted(k for k in res if k.startswith(f"{where}/result/"))
        assert len(got) == len(single) > 0, where
        for g, e in zip(got, single):
            assert res[g].dtype == res[e].dtype == np.float64, where
            assert res[g].shape == res[e].shape, where
            if kind is not None:  # counts: exact
                np.testing.assert_array_equal(res[g], res[e], err_msg=where)
            else:  # the gathered values enter another XLA program, whose float sums may differ by an ulp
                np.testing.assert_allclose(res[g], res[e], rtol=8 * np.finfo(np.float64).eps, err_msg=where)
        state = {k.rsplit("/", 1)[1]: v for k, v in res.items() if k.startswith(f"{where}/state/")}
        if kind is not None:
            counts = _counts(data, kind, a, b)
            assert set(state) == set(counts), where
            for name, v in state.items():
                assert v.dtype == np.int64, (where, name, v.dtype)
                np.testing.assert_array_equal(v, counts[name], err_msg=f"{where}: {name}")
                # jax.lax.psum of each state array, by hand: the same counts
                np.testing.assert_array_equal(res[f"{where}/manual/{name}"], counts[name],
                                              err_msg=f"{where}: psum of {name}")
        else:  # every row, in device order: the data as it was
            expected = ({"scores": data[a], "labels": data[b] == 1} if case.startswith("best")
                        else {"x": data[a], "y": data[b]})
            assert set(state) == set(expected), where
            for name, v in state.items():
                np.testing.assert_array_equal(v, expected[name], err_msg=f"{where}: {name}")
    # the JAX one-shot results against NumPy's (other reductions: a few ulp at most)
    for case, (fn, _, a, b) in JAX_CASES.items():
        expected = fn(data[a], data[b])
        for i, e in enumerate(expected if isinstance(expected, tuple) else (expected,)):
            np.testing.assert_allclose(res[f"single_jit/{case}/result/{i}"], e, rtol=1e-14, atol=0, err_msg=case)


# --------------------------------------------------------------------------------------------
# Errors and the one-process group, in this process
# --------------------------------------------------------------------------------------------
def _small(be):
    s = be.from_numpy(np.array([[2.0, -1.0], [0.5, 1.5], [-1.0, 3.0]]))
    return s, be.from_numpy(np.array([0, 1, 0]))


@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "tensorflow", "dask"])
@pytest.mark.parametrize("group", [True, "batch"])
def test_frameworks_without_collectives_refuse_all_reduce(name, group):
    be = get(name)
    s, y = _small(be)
    for m in (M.PrecisionRecallF1().update(s, y), M.Accuracy().update(s, y)):
        with pytest.raises(TypeError, match=r"torch\.distributed .* JAX collective .*" + name + " backend has neither"):
            m.all_reduce(group)
    x = be.from_numpy(np.array([0.1, 0.5, 0.3]))
    with pytest.raises(TypeError, match=name + " backend has neither"):
        M.Spearman().update(x, x).all_reduce(group)


def test_all_reduce_before_any_update_raises():
    with pytest.raises(ValueError, match="update at least once"):
        M.PrecisionRecallF1().all_reduce()
    with pytest.raises(ValueError, match="update at least once"):
        M.BestThreshold().all_reduce("batch")


def test_torch_all_reduce_without_a_process_group_raises():
    be = get("torch")
    import torch.distributed as dist

    assert not dist.is_initialized()
    s, y = _small(be)
    with pytest.raises(RuntimeError, match="initialised torch.distributed process group"):
        M.Accuracy().update(s, y).all_reduce()


def test_torch_one_process_group_changes_nothing(one_process_group):
    import torch

    dist = one_process_group
    data = _inputs(3)
    for case in CASES:
        factory, fn, a, b = CASES[case]
        s, y = torch.from_numpy(data[a]), torch.from_numpy(data[b])
        expected = fn(s, y)
        for group in (True, dist.group.WORLD):
            m = eval(factory, {"M": M}).update(s[:11], y[:11]).update(s[11:], y[11:])
            before = {k: v.clone() for k, v in m.state.items()}
            got = m.all_reduce(group).compute()
            for e, g in zip(expected if isinstance(expected, tuple) else (expected,),
                            got if isinstance(got, tuple) else (got,)):
                assert torch.equal(e, g) or (e.isnan() & g.isnan()).all(), case
            for k, v in m.state.items():
                assert torch.equal(v, before[k]), (case, k)
        with pytest.raises(TypeError, match="ProcessGroup or True .* got 'batch'"):
            m.all_reduce("batch")


def test_jax_group_must_be_an_axis_name():
    be = get("jax")
    s, y = _small(be)
    with pytest.raises(TypeError, match="axis name .* got 3"):
        M.PrecisionRecallF1().update(s, y).all_reduce(3)
    with pytest.raises(TypeError, match="axis name"):
        M.PrecisionRecallF1().update(s, y).all_reduce(True)

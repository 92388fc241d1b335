"""``infonce_from_embeddings(..., gather=...)``: negatives gathered across processes and devices.

What is proved here, in float64 on CPU:

* **torch.distributed** (gloo, two real processes): every rank computes the loss of its own queries
  against the keys gathered from both ranks. The ranks' losses, put together, equal the
  single-process loss on the concatenated batch row by row, and the gradient of the sum of every
  rank's loss with respect to each rank's own ``a`` / ``b`` (through the all-reduce in the
  backward pass) equals the matching rows of the single-process gradient. This holds for
  ``pairing="diagonal"`` (with hard negatives, and with ``gather=True`` or an explicit
  ``ProcessGroup``), for ``pairing="simcse"``, and for a learnable 0-d temperature (the ranks'
  temperature gradients sum to the single-process one). A rank without queries still serves its
  keys (an empty loss, its keys' gradient from the other rank's loss). Unequal local batch sizes raise
  ``ValueError`` naming the sizes on *both* ranks, without a hang.
* **JAX** (two host CPU devices): the same equalities under ``jax.shard_map`` and ``jax.pmap``
  (values and gradients under ``jax.jit``; a ``shard_map`` value also eagerly), with ``gather``
  the mesh / pmap axis name.
* **Errors in-process**: frameworks without collectives raise ``TypeError``; torch without a process
  group raises ``RuntimeError``; a group that is not a ``ProcessGroup`` (torch) or not an axis name
  (JAX) raises ``TypeError``; a one-process gloo group gives exactly the ungathered loss.

With hard negatives (``b`` has ``N > B`` rows on every member) the gathered keys are
``[b_0; b_1]``, each ``b_r`` being ``B`` positives followed by ``N - B`` hard negatives, so the
single-process equivalent puts the positives first, ``[b_0[:B]; b_1[:B]; b_0[B:]; b_1[B:]]`` (the
order of the candidates does not change a softmax); with ``N == B`` that is the plain concatenation.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

import polyloss
from polyloss.testing import assert_close

from helpers import GLOO_WORKER_END, get, run_python

WORLD = 2
B, N, M2, D = 3, 5, 4, 6  # queries, keys (2 hard negatives) and SimCSE rows per member; width
RTOL, ATOL = 1e-10, 1e-13


def _inputs(seed):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(size=(WORLD * B, D)),  # member r holds rows [r*B, (r+1)*B)
        "b": rng.normal(size=(WORLD * N, D)),  # member r holds rows [r*N, (r+1)*N): B positives, then hard negatives
        "b_eq": rng.normal(size=(WORLD * B, D)),  # keys without hard negatives
        "s": rng.normal(size=(WORLD * M2, D)),  # SimCSE: pairs (2k, 2k+1) stay on one member
    }


def _key_order(rows_per_member, queries_per_member):
    """Indices into the members' keys concatenated in member order ``[b_0; b_1; ...]`` that put every
    member's positives first, in member order, and then every member's hard negatives."""
    starts = [r * rows_per_member for r in range(WORLD)]
    positives = [s + i for s in starts for i in range(queries_per_member)]
    hard = [s + i for s in starts for i in range(queries_per_member, rows_per_member)]
    return np.array(positives + hard)


def _torch_reference(a, b, *, pairing, tau, learnable=False, normalize=True):
    """Single process, whole batch: ``(loss per row, {name: gradient of the summed loss})``, the
    gradients with respect to the arrays as the members hold them (``b`` in member order) and, when
    ``learnable``, to the temperature (a 0-d tensor)."""
    import torch

    a = torch.tensor(a, requires_grad=True)
    wrt = {"a": a}
    t = tau
    if learnable:
        t = wrt["tau"] = torch.tensor(tau, dtype=torch.float64, requires_grad=True)
    if pairing == "simcse":
        loss = polyloss.infonce_from_embeddings(a, temperature=t, pairing="simcse", normalize=normalize)
    else:
        keys = wrt["b"] = torch.tensor(b, requires_grad=True)
        order = torch.from_numpy(_key_order(b.shape[0] // WORLD, a.shape[0] // WORLD))
        loss = polyloss.infonce_from_embeddings(a, keys[order], temperature=t, normalize=normalize)
    grads = torch.autograd.grad(loss.sum(), list(wrt.values()))
    return loss.detach().numpy(), {k: g.numpy() for k, g in zip(wrt, grads)}


def test_key_order_puts_the_positives_first():
    np.testing.assert_array_equal(_key_order(B, B), np.arange(WORLD * B))
    np.testing.assert_array_equal(_key_order(N, B), [0, 1, 2, 5, 6, 7, 3, 4, 8, 9])


# --------------------------------------------------------------------------------------------
# torch.distributed: two gloo processes
# --------------------------------------------------------------------------------------------
TORCH_WORKER = r'''
import datetime, os, sys
import numpy as np, torch, torch.distributed as dist
import polyloss

rank, world, store, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=world,
                        timeout=datetime.timedelta(seconds=60))
data = np.load(folder + "/inputs.npz")
tau = float(data["tau"])

def mine(name):
    x = data[name]
    rows = x.shape[0] // world
    return torch.tensor(x[rank * rows:(rank + 1) * rows], requires_grad=True)

out = {}

def case(name, fn, **wrt):
    loss = fn(**wrt)
    assert loss.shape == (next(iter(wrt.values())).shape[0],), loss.shape
    grads = torch.autograd.grad(loss.sum(), list(wrt.values()))  # every rank runs the backward
    out[name + "/loss"] = loss.detach().numpy()
    for key, g in zip(wrt, grads):
        out[name + "/" + key] = g.numpy()

learnable = lambda: torch.tensor(tau, dtype=torch.float64, requires_grad=True)
case("diagonal", lambda a, b: polyloss.infonce_from_embeddings(a, b, temperature=tau, gather=True),
     a=mine("a"), b=mine("b"))
case("diagonal_group", lambda a, b: polyloss.infonce_from_embeddings(
    a, b, temperature=tau, normalize=False, gather=dist.group.WORLD), a=mine("a"), b=mine("b_eq"))
case("simcse", lambda s: polyloss.infonce_from_embeddings(s, temperature=tau, pairing="simcse", gather=True),
     s=mine("s"))
case("diagonal_tau", lambda a, b, tau: polyloss.infonce_from_embeddings(a, b, temperature=tau, gather=True),
     a=mine("a"), b=mine("b"), tau=learnable())
case("simcse_tau", lambda s, tau: polyloss.infonce_from_embeddings(s, temperature=tau, pairing="simcse",
                                                                     gather=True), s=mine("s"), tau=learnable())

# a member without queries still serves its keys: rank 0 passes none, rank 1 two (no hang)
queries = torch.tensor(data["a"][rank * 3:rank * 3 + (0 if rank == 0 else 2)], requires_grad=True)
keys = mine("b")
loss = polyloss.infonce_from_embeddings(queries, keys, temperature=tau, gather=True)
out["noquery/loss"] = loss.detach().numpy()
out["noquery/b"] = torch.autograd.grad(loss.sum(), [keys])[0].numpy()

# unequal local batch sizes: rank 0 has 3 rows, rank 1 has 2; both ranks must raise
rows = 3 - rank
x = torch.ones(rows, 4, dtype=torch.float64)
try:
    polyloss.infonce_from_embeddings(x, x, gather=True)
except ValueError as exc:
    out["unequal"] = np.array(str(exc))
dist.barrier()  # the group is still in step after the error
np.savez(folder + "/rank%d.npz" % rank, **out)
''' + GLOO_WORKER_END


def _run_torch_ranks(folder):
    """Run the two gloo ranks; ``(inputs, [rank 0 results, rank 1 results])``."""
    data = {**_inputs(0), "tau": np.array(0.1)}
    np.savez(folder / "inputs.npz", **data)
    script = folder / "worker.py"
    script.write_text(TORCH_WORKER)
    store = folder / "store"  # a FileStore rendezvous: no port to pick
    with concurrent.futures.ThreadPoolExecutor(WORLD) as pool:
        runs = [pool.submit(run_python, str(script), str(rank), str(WORLD), str(store), str(folder), timeout=120)
                for rank in range(WORLD)]
        for run in runs:
            run.result()
    return data, [dict(np.load(folder / f"rank{rank}.npz")) for rank in range(WORLD)]


def _split(x, rows):
    return [x[r * rows:(r + 1) * rows] for r in range(WORLD)]


def _check_members(results, case, loss, grads):
    """``results[r][case/...]`` are member r's rows of ``loss`` and of each gradient; a temperature
    gradient is the sum over the members."""
    assert set(grads) | {"loss"} == {k.split("/")[1] for k in results[0] if k.startswith(case + "/")}, case
    losses = np.concatenate([res[case + "/loss"] for res in results])
    assert_close(losses, loss, rtol=RTOL, atol=ATOL, err_msg=f"{case}: loss")
    for key, g in grads.items():
        if key == "tau":
            assert_close(sum(res[case + "/tau"] for res in results), g, rtol=RTOL, atol=ATOL, err_msg=f"{case}: d/dtau")
            continue
        for r, part in enumerate(_split(g, g.shape[0] // WORLD)):
            assert_close(
                results[r][f"{case}/{key}"], part, rtol=RTOL, atol=ATOL, err_msg=f"{case}: d/d{key} on rank {r}"
            )


# one test per subprocess run: under pytest-xdist a module-scoped fixture would run once per worker
@pytest.mark.slow
def test_torch_gloo_two_ranks_equal_the_single_process_loss(tmp_path):
    get("torch")
    from polyloss import reference

    data, results = _run_torch_ranks(tmp_path)
    tau = float(data["tau"])
    for case in ("diagonal", "diagonal_tau", "simcse", "simcse_tau"):
        learnable = case.endswith("_tau")
        if case.startswith("simcse"):
            loss, grads = _torch_reference(data["s"], None, pairing="simcse", tau=tau, learnable=learnable)
            grads["s"] = grads.pop("a")
        else:
            loss, grads = _torch_reference(data["a"], data["b"], pairing="diagonal", tau=tau, learnable=learnable)
        _check_members(results, case, loss, grads)
    loss, grads = _torch_reference(data["a"], data["b_eq"], pairing="diagonal", tau=tau, normalize=False)
    _check_members(results, "diagonal_group", loss, grads)

    # the values against polyloss.reference (exact dot products, row by row), which shares no code
    # with the loss used as the single-process reference above
    oracle = {
        "diagonal": reference.infonce_from_embeddings(data["a"], data["b"][_key_order(N, B)], temperature=tau),
        "diagonal_group": reference.infonce_from_embeddings(data["a"], data["b_eq"], temperature=tau, normalize=False),
        "simcse": reference.infonce_from_embeddings(data["s"], temperature=tau, pairing="simcse"),
    }
    for case, expected in oracle.items():
        assert_close(
            np.concatenate([res[case + "/loss"] for res in results]),
            expected,
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"{case}: oracle",
        )
    # the order of the keys matters: the plain concatenation of b gives other positives
    plain = reference.infonce_from_embeddings(data["a"], data["b"], temperature=tau)
    assert np.abs(plain - oracle["diagonal"]).max() > 1e-3

    # rank 0 without queries: an empty loss, and its keys get the gradient of rank 1's loss
    import torch
    import torch.nn.functional as F

    keys = torch.tensor(data["b"], requires_grad=True)  # [b_0; b_1] in member order
    q1 = torch.tensor(data["a"][B : B + 2])
    scores = F.normalize(q1, dim=-1) @ F.normalize(keys, dim=-1).T / tau
    single = F.cross_entropy(scores, N + torch.arange(2), reduction="none")  # rank 1's positives: keys N + i
    (g_keys,) = torch.autograd.grad(single.sum(), keys)
    assert results[0]["noquery/loss"].shape == (0,)
    assert_close(
        results[1]["noquery/loss"], single.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg="no-query member: loss"
    )
    for r in range(WORLD):
        assert_close(
            results[r]["noquery/b"],
            g_keys[r * N : (r + 1) * N].numpy(),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"no-query member: d/db on rank {r}",
        )
    assert np.abs(results[0]["noquery/b"]).max() > 1e-3

    # unequal local batch sizes (3 rows and 2): ValueError on both ranks
    for rank, res in enumerate(results):
        assert "unequal" in res, f"rank {rank} did not raise"
        message = str(res["unequal"])
        assert "same number of rows" in message and "[3, 2]" in message, message
        assert f"rank {rank} has {3 - rank}" in message, message


# --------------------------------------------------------------------------------------------
# JAX: two host CPU devices, shard_map (eager and jit) and pmap
# --------------------------------------------------------------------------------------------
JAX_WORKER = r'''
import sys
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P
import polyloss

assert jax.device_count() == 2, jax.devices()
assert jnp.zeros(1).dtype == jnp.float64
folder = sys.argv[1]
data = {k: jnp.asarray(v) for k, v in np.load(folder + "/inputs.npz").items()}
order = jnp.asarray(np.load(folder + "/order.npy"))
loss_fn = polyloss.infonce_from_embeddings
mesh = Mesh(np.array(jax.devices()), ("batch",))
out = {}

def local(pairing, gather, normalize=True):
    if pairing == "simcse":
        return lambda s, tau: loss_fn(s, temperature=tau, pairing="simcse", normalize=normalize, gather=gather)
    return lambda a, b, tau: loss_fn(a, b, temperature=tau, normalize=normalize, gather=gather)

def single(pairing, normalize=True):
    if pairing == "simcse":
        return local(pairing, None, normalize)
    return lambda a, b, tau: loss_fn(a, b[order], temperature=tau, normalize=normalize)

def record(name, fn, *args):
    """Save fn(*args) (the loss per row of the whole batch) and the gradient of its sum, under jit."""
    def total(*x):
        loss = fn(*x)
        return loss.sum(), loss
    (_, loss), grads = jax.jit(jax.value_and_grad(total, argnums=tuple(range(len(args))), has_aux=True))(*args)
    out[name + "/loss"] = np.asarray(loss)
    for i, g in enumerate(grads):
        out[name + "/" + str(i)] = np.asarray(g)

split = lambda x: x.reshape((2, x.shape[0] // 2) + x.shape[1:])  # pmap: one half per device
for pairing in ("diagonal", "simcse"):
    args = (data["s"],) if pairing == "simcse" else (data["a"], data["b"])
    args = args + (data["tau"],)  # a learnable temperature, replicated
    spec = (P("batch"),) * (len(args) - 1) + (P(),)
    sharded = jax.shard_map(local(pairing, "batch"), mesh=mesh, in_specs=spec, out_specs=P("batch"))
    mapped = jax.pmap(local(pairing, "batch"), axis_name="batch", in_axes=(0,) * (len(args) - 1) + (None,))
    record(f"single/{pairing}", single(pairing), *args)
    if pairing == "diagonal":  # shard_map outside jit (seconds per call: once is enough)
        out[f"eager/{pairing}/loss"] = np.asarray(sharded(*args))
    record(f"shard_map/{pairing}", sharded, *args)
    record(f"pmap/{pairing}", lambda *x: mapped(*map(split, x[:-1]), x[-1]).reshape(-1), *args)

# a Python-float temperature, raw dot products
float_tau = float(data["tau"])
sharded = jax.shard_map(lambda a, b: loss_fn(a, b, temperature=float_tau, normalize=False, gather="batch"),
                        mesh=mesh, in_specs=(P("batch"), P("batch")), out_specs=P("batch"))
record("shard_map/raw", sharded, data["a"], data["b"])
record("single/raw", lambda a, b: loss_fn(a, b[order], temperature=float_tau, normalize=False),
       data["a"], data["b"])
np.savez(folder + "/jax.npz", **out)
'''


@pytest.mark.slow
def test_jax_two_devices_equal_the_single_device_loss(tmp_path):
    """``eager``: the loss of ``shard_map`` outside ``jit``; ``shard_map`` and ``pmap``: the loss and
    the gradients with respect to every input (the temperature last), under ``jit``; ``raw``: a
    Python-float temperature and ``normalize=False`` under ``shard_map``."""
    get("jax")
    data = {k: v for k, v in _inputs(1).items() if k != "b_eq"}
    np.savez(tmp_path / "inputs.npz", **data, tau=np.array(0.07))
    np.save(tmp_path / "order.npy", _key_order(N, B))
    script = tmp_path / "worker.py"
    script.write_text(JAX_WORKER)
    run_python(
        str(script),
        str(tmp_path),
        timeout=180,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"},
    )
    res = dict(np.load(tmp_path / "jax.npz"))

    runs = [("eager", "diagonal", {"loss"}), ("shard_map", "raw", {"loss", "0", "1"})]
    for mode in ("shard_map", "pmap"):
        runs += [(mode, "diagonal", {"loss", "0", "1", "2"}), (mode, "simcse", {"loss", "0", "1"})]
    for mode, pairing, parts in runs:
        assert {k.rsplit("/", 1)[1] for k in res if k.startswith(f"{mode}/{pairing}/")} == parts
        for part in parts:
            reference = res[f"single/{pairing}/{part}"]
            assert res[f"{mode}/{pairing}/{part}"].shape == reference.shape
            assert_close(
                res[f"{mode}/{pairing}/{part}"], reference, rtol=RTOL, atol=ATOL, err_msg=f"{mode}/{pairing}/{part}"
            )
    assert res["single/diagonal/loss"].shape == (WORLD * B,)
    assert res["single/simcse/loss"].shape == (WORLD * M2,)

    # the single-device JAX reference is the torch one (a check of the reference, not of the gather)
    get("torch")
    loss, grads = _torch_reference(data["a"], data["b"], pairing="diagonal", tau=0.07, learnable=True)
    assert_close(res["single/diagonal/loss"], loss, rtol=RTOL, atol=ATOL, err_msg="JAX vs torch: loss")
    for i, key in enumerate(("a", "b", "tau")):
        assert_close(res[f"single/diagonal/{i}"], grads[key], rtol=RTOL, atol=ATOL, err_msg=f"JAX vs torch: d/d{key}")


# --------------------------------------------------------------------------------------------
# Errors and the one-process group, in this process
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "tensorflow"])
@pytest.mark.parametrize("gather", [True, "batch"])
def test_frameworks_without_collectives_refuse_gather(name, gather):
    be = get(name)
    x = be.from_numpy(np.eye(2, 3), dtype="float64")
    with pytest.raises(TypeError, match=r"torch\.distributed .* JAX collective .*" + name + " backend has neither"):
        polyloss.infonce_from_embeddings(x, x, gather=gather)


def test_torch_gather_without_a_process_group_raises():
    get("torch")
    import torch
    import torch.distributed as dist

    assert not dist.is_initialized()
    x = torch.eye(2, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="initialised torch.distributed process group"):
        polyloss.infonce_from_embeddings(x, x, gather=True)


@pytest.mark.parametrize("pairing", ["diagonal", "simcse"])
def test_torch_one_process_group_equals_the_ungathered_loss(one_process_group, pairing):
    import torch

    dist = one_process_group
    data = _inputs(2)
    tau = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(data["s"] if pairing == "simcse" else data["a"], requires_grad=True)
    b = None if pairing == "simcse" else torch.tensor(data["b"], requires_grad=True)
    wrt = [a, tau] if b is None else [a, b, tau]
    results = []
    for gather in (None, True, dist.group.WORLD):
        loss = polyloss.infonce_from_embeddings(a, b, temperature=tau, pairing=pairing, gather=gather)
        results.append((loss.detach().numpy(), [g.numpy() for g in torch.autograd.grad(loss.sum(), wrt)]))
    (loss, grads), *gathered = results
    for other_loss, other_grads in gathered:
        assert_close(other_loss, loss, rtol=RTOL, atol=ATOL, err_msg="loss")
        for g, h in zip(other_grads, grads):
            assert_close(g, h, rtol=RTOL, atol=ATOL, err_msg="gradient")


def test_torch_gather_must_be_a_process_group(one_process_group):
    import torch

    x = torch.eye(2, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="ProcessGroup or True .* got 'batch'"):
        polyloss.infonce_from_embeddings(x, x, gather="batch")


def test_jax_gather_must_be_an_axis_name():
    be = get("jax")
    x = be.from_numpy(np.eye(2, 3), dtype="float32")
    with pytest.raises(TypeError, match="axis name .* got 3"):
        polyloss.infonce_from_embeddings(x, x, gather=3)

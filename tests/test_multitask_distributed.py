"""``combine_gradients(..., group=...)``: the direction of the whole batch under data parallelism.

Each member holds half of the batch and computes its per-task gradients (of the mean loss over its
half) with ``task_gradients``; ``group=`` averages every task's gradient over the members before the
combination. What is proved here, in float64 on CPU:

* **torch.distributed** (gloo, two real processes): the direction and the weights on both ranks equal
  the single-process ones on the whole batch, for "min_norm", "primary", "normalized" and "pcgrad"
  (fixed order), the gradients being pytrees (a dict). The Gram matrix of the averages is not the
  average of the members' Gram matrices: MGDA on the latter gives other weights (checked, so that the
  equality is not vacuous).
* **JAX** (two host CPU devices), under ``jax.jit``: ``jax.shard_map`` with the parameters cast to
  varying (``jax.lax.pcast``: each device's own per-task gradients) and the mesh axis name as
  ``group``; ``shard_map`` with replicated parameters, whose gradients JAX has already summed over the
  axis (the transpose of the implicit broadcast), divided by the number of devices and no ``group``;
  and global arrays sharded over the devices (XLA partitions the whole-batch computation). All three
  equal the single-device direction and the torch single-process one.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

from polyloss import multitask as MT
from polyloss.testing import assert_close

from helpers import GLOO_WORKER_END, get, run_python

WORLD, BATCH, FEATURES, TASKS = 2, 6, 4, 3
RTOL, ATOL = 1e-11, 1e-13
METHODS = {"min_norm": {}, "primary": {"primary": 1}, "normalized": {}, "pcgrad": {"order": "fixed"}}


def _problem(seed=0):
    """A shared linear layer, tanh, and three linear task heads with squared errors; [WORLD * BATCH] rows."""
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(WORLD * BATCH, FEATURES)), "y": rng.normal(size=(WORLD * BATCH, TASKS)),
            "w": rng.normal(size=(FEATURES, 5)), "b": rng.normal(size=5), "heads": rng.normal(size=(5, TASKS))}


def _torch_task_gradients(data, rows):
    """Per-task gradients (dicts) of the mean loss over ``rows``, by task_gradients (torch)."""
    import torch

    t = {k: torch.tensor(v) for k, v in data.items()}
    params = {"w": t["w"].clone().requires_grad_(True), "b": t["b"].clone().requires_grad_(True)}
    rep = torch.tanh(t["x"][rows] @ params["w"] + params["b"])
    losses = ((rep @ t["heads"] - t["y"][rows]) ** 2).mean(0)
    return MT.task_gradients(losses, params)


def _single_process(data):
    """The whole batch in one process: {method: (direction["w"], direction["b"], weights)}."""
    grads = _torch_task_gradients(data, slice(None))
    out = {}
    for method, options in METHODS.items():
        u, w = MT.combine_gradients(grads, method=method, **options)
        out[method] = (u["w"].numpy(), u["b"].numpy(), w.numpy())
    return out


TORCH_WORKER = r'''
import datetime, os, sys
import numpy as np, torch, torch.distributed as dist
from polyloss import multitask as MT

rank, world, store, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=world,
                        timeout=datetime.timedelta(seconds=60))
data = {k: torch.tensor(v) for k, v in np.load(folder + "/inputs.npz").items()}
rows = data["x"].shape[0] // world
mine = slice(rank * rows, (rank + 1) * rows)
params = {"w": data["w"].clone().requires_grad_(True), "b": data["b"].clone().requires_grad_(True)}
rep = torch.tanh(data["x"][mine] @ params["w"] + params["b"])
losses = ((rep @ data["heads"] - data["y"][mine]) ** 2).mean(0)
grads = MT.task_gradients(losses, params)
out = {}
methods = {"min_norm": {}, "primary": {"primary": 1}, "normalized": {}, "pcgrad": {"order": "fixed"}}
for method, options in methods.items():
    group = True if method != "pcgrad" else dist.group.WORLD
    u, w = MT.combine_gradients(grads, method=method, group=group, **options)
    out[method + "/w"], out[method + "/b"], out[method + "/weights"] = u["w"].numpy(), u["b"].numpy(), w.numpy()
# the local Gram matrix, to show that averaging Gram matrices is not the same
out["local_gram"] = MT.gram_matrix(grads).numpy()
np.savez(folder + "/rank%d.npz" % rank, **out)
''' + GLOO_WORKER_END


@pytest.mark.slow
def test_torch_gloo_two_ranks_give_the_whole_batch_direction(tmp_path):
    get("torch")
    data = _problem(0)
    np.savez(tmp_path / "inputs.npz", **data)
    script = tmp_path / "worker.py"
    script.write_text(TORCH_WORKER)
    store = tmp_path / "store"
    with concurrent.futures.ThreadPoolExecutor(WORLD) as pool:
        runs = [pool.submit(run_python, str(script), str(rank), str(WORLD), str(store), str(tmp_path), timeout=180)
                for rank in range(WORLD)]
        for run in runs:
            run.result()
    results = [dict(np.load(tmp_path / f"rank{rank}.npz")) for rank in range(WORLD)]
    expected = _single_process(data)
    for method, (u_w, u_b, weights) in expected.items():
        for rank, res in enumerate(results):
            assert_close(res[method + "/w"], u_w, rtol=RTOL, atol=ATOL, err_msg=f"{method} rank {rank}: direction w")
            assert_close(res[method + "/b"], u_b, rtol=RTOL, atol=ATOL, err_msg=f"{method} rank {rank}: direction b")
            assert_close(res[method + "/weights"], weights, rtol=RTOL, atol=ATOL, err_msg=f"{method} rank {rank}")
    # MGDA on the average of the members' Gram matrices: other weights (the equality above is not vacuous)
    averaged_grams = (results[0]["local_gram"] + results[1]["local_gram"]) / WORLD
    wrong = MT.min_norm_weights(averaged_grams)
    assert np.max(np.abs(wrong - expected["min_norm"][2])) > 1e-3


def test_torch_one_process_group_is_the_plain_combination(one_process_group):
    data = _problem(1)
    grads = _torch_task_gradients(data, slice(None))
    for method, options in METHODS.items():
        u, w = MT.combine_gradients(grads, method=method, group=True, **options)
        u0, w0 = MT.combine_gradients(grads, method=method, **options)
        assert_close(w, w0, rtol=1e-15)
        assert_close(u["w"], u0["w"], rtol=1e-15)


JAX_WORKER = r'''
import sys
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P
from polyloss import multitask as MT

assert jax.device_count() == 2, jax.devices()
folder = sys.argv[1]
data = {k: jnp.asarray(v) for k, v in np.load(folder + "/inputs.npz").items()}
mesh = Mesh(np.array(jax.devices()), ("batch",))
methods = {"min_norm": {}, "primary": {"primary": 1}, "normalized": {}, "pcgrad": {"order": "fixed"}}

def losses_on(x, y):
    def losses(p):
        rep = jnp.tanh(x @ p["w"] + p["b"])
        return jnp.mean((rep @ data["heads"] - y) ** 2, axis=0)
    return losses

out = {}
params = {"w": data["w"], "b": data["b"]}
varying = lambda p: jax.tree_util.tree_map(lambda a: jax.lax.pcast(a, "batch", to="varying"), p)
sharding = jax.sharding.NamedSharding(mesh, P("batch"))
for method, options in methods.items():
    def member(p, x, y):
        # params cast to varying: each device's own per-task gradients, averaged by group=
        grads = MT.task_gradients(losses_on(x, y), varying(p))
        return MT.combine_gradients(grads, method=method, group="batch", **options)

    def summed(p, x, y):
        # replicated (invariant) params: JAX sums their gradients over the axis itself (the transpose of
        # the implicit broadcast); no group=, divide by the number of devices
        grads = MT.task_gradients(losses_on(x, y), p)
        grads = [jax.tree_util.tree_map(lambda g: g / jax.lax.axis_size("batch"), t) for t in grads]
        return MT.combine_gradients(grads, method=method, **options)

    whole = lambda p, x, y: MT.combine_gradients(MT.task_gradients(losses_on(x, y), p), method=method, **options)
    specs = dict(mesh=mesh, in_specs=(P(), P("batch"), P("batch")), out_specs=P())
    runs = {"": jax.jit(jax.shard_map(member, **specs)), "summed_": jax.jit(jax.shard_map(summed, **specs)),
            "single_": jax.jit(whole)}
    for prefix, run in runs.items():
        u, w = run(params, data["x"], data["y"])
        out[method + "/" + prefix + "w"], out[method + "/" + prefix + "b"] = np.asarray(u["w"]), np.asarray(u["b"])
        out[method + "/" + prefix + "weights"] = np.asarray(w)
    # global arrays sharded over the devices under jit: XLA partitions the whole-batch computation
    u, w = jax.jit(whole)(params, jax.device_put(data["x"], sharding), jax.device_put(data["y"], sharding))
    out[method + "/global_w"], out[method + "/global_b"], out[method + "/global_weights"] = (
        np.asarray(u["w"]), np.asarray(u["b"]), np.asarray(w))
np.savez(folder + "/jax.npz", **out)
'''


@pytest.mark.slow
def test_jax_two_devices_give_the_whole_batch_direction(tmp_path):
    get("jax")
    data = _problem(2)
    np.savez(tmp_path / "inputs.npz", **data)
    script = tmp_path / "worker.py"
    script.write_text(JAX_WORKER)
    run_python(str(script), str(tmp_path), timeout=300,
               env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_ENABLE_X64": "1",
                    "JAX_PLATFORMS": "cpu"})
    res = dict(np.load(tmp_path / "jax.npz"))
    get("torch")
    expected = _single_process(data)
    for method, (u_w, u_b, weights) in expected.items():
        for prefix in ("", "summed_", "single_", "global_"):
            assert_close(res[f"{method}/{prefix}w"], u_w, rtol=RTOL, atol=ATOL, err_msg=f"{method} {prefix}w")
            assert_close(res[f"{method}/{prefix}b"], u_b, rtol=RTOL, atol=ATOL, err_msg=f"{method} {prefix}b")
            assert_close(res[f"{method}/{prefix}weights"], weights, rtol=RTOL, atol=ATOL, err_msg=method)

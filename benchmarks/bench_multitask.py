"""Speed and memory of ``polyloss.multitask.combine_gradients`` (docs/multitask.md) against LibMTL and TorchJD.

What is measured
----------------
MGDA (min-norm) on K = 4 task gradients of a 10M-parameter model, float32, torch eager on the CPU:

  (a) ``combine_gradients(grads, method="min_norm")`` with the gradients as they come from a model: a
      list of K pytrees (dicts of 8 leaves, the shapes of a 2-layer transformer-sized MLP); the Gram
      matrix is built leaf by leaf, never concatenated;
  (b) the same on the flattened ``[K, dim]`` matrix (what the peers take);
  (c) LibMTL 1.1.5's MGDA on the ``[K, dim]`` matrix: ``MGDA._find_min_norm_element`` (its Gram matrix,
      Sener & Koltun's iterative solver) followed by LibMTL's update ``Σ_i sol[i] · grads[i]``;
  (d) TorchJD 0.18.0's ``aggregation.MGDA()`` on the ``[K, dim]`` Jacobian (Gramian, Frank-Wolfe with
      ε = 1e-3 and 100 iterations, ``weights @ J``).

The peers get the ``[K, dim]`` matrix for free: building it from a model's gradients (LibMTL's
trainer copies every parameter's gradient into it) costs another ``K · dim`` floats and a copy, which
(a) never pays. The accuracy column is ``α^T G α`` of each candidate's weights over that of (b), minus
1, on the float64 Gram matrix of the same gradients: the exact solver is the baseline.

How
---
- Time: after warm-up calls, the candidates run round by round in an order rotated every round (the
  machine is shared: the noise falls on all alike); median and minimum milliseconds per call.
- Memory: one fresh subprocess per candidate builds the gradients, runs the candidate once, resets the
  peak resident set size (``5`` into ``/proc/self/clear_refs``), reads ``VmRSS``, runs it again and
  reads ``VmHWM``: the peak above the inputs, the returned direction included (every allocation from
  64 KiB up is its own mmap, returned to the OS when freed).

Run ``python benchmarks/bench_multitask.py [--quick] [--repeats N]``; results go to stdout (a
Markdown table) and are recorded in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

MIB = 2**20
K = 4
SEED = 0
WARMUP_CALLS = 2
MALLOC_MMAP_THRESHOLD = 64 * 1024

# a 10M-parameter model: the leaf shapes of two transformer-sized MLP blocks and an embedding
LEAVES = {
    "embed": (8000, 256),
    "block0.up": (256, 4096),
    "block0.up_bias": (4096,),
    "block0.down": (4096, 256),
    "block1.up": (256, 4096),
    "block1.up_bias": (4096,),
    "block1.down": (4096, 256),
    "head": (256, 512),
}
CANDIDATES = ("polyloss pytree", "polyloss [K, dim]", "LibMTL MGDA", "TorchJD MGDA")


def parameter_count() -> int:
    return int(sum(np.prod(s) for s in LEAVES.values()))


def make_gradients():
    """K task gradients (dicts of float32 tensors) with a shared component and task-specific parts,
    so that the tasks partly conflict, as real ones do; and the flattened [K, dim] matrix."""
    import torch

    generator = torch.Generator().manual_seed(SEED)
    grads = [{} for _ in range(K)]
    for name, shape in LEAVES.items():
        shared = torch.randn(shape, generator=generator)
        for k in range(K):
            grads[k][name] = (0.5 * shared * (1 if k % 2 == 0 else -0.3)
                              + torch.randn(shape, generator=generator) * (1.0 + k))
    flat = torch.stack([torch.cat([g[name].reshape(-1) for name in LEAVES]) for g in grads])
    return grads, flat


def libmtl_weighting():
    """``LibMTL.weighting`` without ``LibMTL/__init__.py`` (which imports torchvision's removed
    ``models.utils``, LibMTL issue 62)."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("LibMTL")
    if spec is None:
        return None
    if "LibMTL" not in sys.modules:
        package = types.ModuleType("LibMTL")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["LibMTL"] = package
    import LibMTL.weighting as weighting

    return weighting


def candidates(grads, flat):
    """name -> function returning (direction, weights or None)."""
    import torch

    from polyloss import multitask

    out = {
        "polyloss pytree": lambda: multitask.combine_gradients(grads, method="min_norm"),
        "polyloss [K, dim]": lambda: multitask.combine_gradients(flat, method="min_norm"),
    }
    weighting = libmtl_weighting()
    if weighting is not None:
        mgda = weighting.MGDA()

        def libmtl():
            sol = mgda._find_min_norm_element(flat)
            return sum(sol[i] * flat[i] for i in range(K)), sol

        out["LibMTL MGDA"] = libmtl
    try:
        from torchjd.aggregation import MGDA, MGDAWeighting
    except ImportError:
        pass
    else:
        aggregator = MGDA()
        weigher = MGDAWeighting()

        def torchjd():
            return aggregator(flat), None

        out["TorchJD MGDA"] = torchjd
        out["_torchjd_weights"] = lambda: (None, weigher(flat @ flat.T))
    del torch
    return out


def time_interleaved(calls, repeats):
    for call in calls.values():
        for _ in range(WARMUP_CALLS):
            call()
    keys = list(calls)
    times = {k: [] for k in keys}
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            shift = r % len(keys)
            for key in keys[shift:] + keys[:shift]:
                start = time.perf_counter()
                calls[key]()
                times[key].append(time.perf_counter() - start)
    finally:
        gc.enable()
    return times


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(field)


def memory_child(name: str) -> None:
    """Run in a fresh process: the peak resident memory of one call of candidate ``name`` above its inputs."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    grads, flat = make_gradients()
    call = candidates(grads, flat)[name]
    result = call()
    del result
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status("VmRSS")
    result = call()  # kept alive while the peak is read: the returned direction counts
    peak = _status("VmHWM")
    print(json.dumps({"peak_mib": peak - base, "outputs": len(result)}))


def measure_memory(name: str) -> float | None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MALLOC_MMAP_THRESHOLD)}
    done = subprocess.run([sys.executable, __file__, "--memory-child", name], capture_output=True, text=True,
                          env=env, timeout=900)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds instead of 30")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    repeats = args.repeats or (10 if args.quick else 30)
    grads, flat = make_gradients()
    calls = candidates(grads, flat)
    exact_weights = calls["polyloss [K, dim]"]()[1]
    gram64 = (flat.double() @ flat.double().T).numpy()

    def excess(weights):
        w = np.asarray(weights, dtype=np.float64)
        e = np.asarray(exact_weights, dtype=np.float64)
        return (w @ gram64 @ w) / (e @ gram64 @ e) - 1.0

    accuracy = {"polyloss pytree": excess(calls["polyloss pytree"]()[1]),
                "polyloss [K, dim]": 0.0}
    if "LibMTL MGDA" in calls:
        accuracy["LibMTL MGDA"] = excess(calls["LibMTL MGDA"]()[1])
    if "_torchjd_weights" in calls:
        accuracy["TorchJD MGDA"] = excess(calls.pop("_torchjd_weights")()[1])
    direction = calls["polyloss pytree"]()[0]
    reference = calls["polyloss [K, dim]"]()[0]
    same = float((torch.cat([direction[n].reshape(-1) for n in LEAVES]) - reference).abs().max()
                 / reference.abs().max())
    times = time_interleaved(calls, repeats)
    memory = {name: measure_memory(name) for name in calls}
    print(f"K = {K} tasks, {parameter_count() / 1e6:.1f}M float32 parameters ({len(LEAVES)} leaves), "
          f"torch {torch.__version__} eager, {torch.get_num_threads()} threads, {repeats} rounds")
    print(f"pytree vs [K, dim] direction: max relative difference {same:.1e}")
    print()
    print("| candidate | median ms | min ms | peak MiB above inputs | α^T G α / exact - 1 |")
    print("|---|---|---|---|---|")
    for name in calls:
        t = times[name]
        mem = memory.get(name)
        print(f"| {name} | {1e3 * statistics.median(t):.1f} | {1e3 * min(t):.1f} | "
              f"{'failed' if mem is None else f'{mem:.0f}'} | {accuracy.get(name, float('nan')):.1e} |")


if __name__ == "__main__":
    main()

"""Speed, memory and compile time of polyloss's linear-chain CRF against pytorch-crf and torch-struct.

What is measured
----------------
Emissions ``[B, T, K]`` float32 (B = 32, K = 9, T = 128 and 512), a right-padded mask (lengths drawn in
``[T/2, T]``, the first row full), learnable transitions, start and end. Candidates:

- forward+backward: the summed negative log-likelihood of the gold tags and its gradient with respect
  to the emissions, the transitions, start and end:
  (p) ``polyloss.crf_nll`` (the forward and backward recursions side by side in one scan, the gradient
      written out; in torch eager on the CPU the scaled recursion in exp space, guarded; compiled the
      log-space scan: docs/structured.md);
  (c) pytorch-crf 0.7.2 ``-CRF(...)(emissions, tags, mask)`` (a Python loop over time, autograd);
  (s) torch-struct 0.5 ``-LinearChainCRF(edges, lengths).log_prob(parts)`` (a log-depth associative
      scan over ``K x K`` matrices in the log semiring, autograd), the edges folded from the same
      scores (torch eager only).
- decode: the Viterbi path of every row, ``polyloss.crf_decode`` (a padded tensor and the scores; in
  torch eager two dispatches per step and the backtrace in NumPy)
  against pytorch-crf's ``decode`` (Python lists) and torch-struct's ``argmax`` (one-hot edges).

Frameworks: torch eager (all candidates, interleaved in one process), ``jax.jit`` and ``tf.function``
(polyloss only). Timing as in ``bench_multilabel.py`` (its interleaved timer is reused): warm-up calls,
then rounds that call every candidate once in a rotated order; medians and minima in milliseconds.
Compile time: the first call of ``jax.jit`` / ``tf.function`` (with T unknown, ``TensorSpec([None, None,
K])``) of the forward+backward at T = 512. Memory: peak resident memory of one forward+backward above
the inputs, in a fresh process per candidate (as ``bench_multilabel.py`` measures it).

Run ``python benchmarks/bench_structured.py [--quick] [--frameworks torch,jax,tensorflow] [--lengths 128,512]
[--threads 1]``;
``benchmarks/README.md`` records the figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import bench_multilabel as base  # noqa: E402  (the interleaved timer, /proc readers, memory settings)

import polyloss  # noqa: E402

BATCH, TAGS = 32, 9
LENGTHS = (128, 512)
# the targets: pytorch-crf (torch eager) time / polyloss time, forward+backward by T, and decode
FB_TARGET = {128: 3.0, 512: 5.0}
DECODE_TARGET = 3.0
COMPILE_TARGET_S = 5.0


def host_inputs(t: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(base.SEED)
    lengths = rng.integers(t // 2, t + 1, size=BATCH)
    lengths[0] = t
    return {
        "emissions": rng.standard_normal((BATCH, t, TAGS), dtype=np.float32),
        "tags": rng.integers(0, TAGS, (BATCH, t)),
        "mask": np.arange(t)[None, :] < lengths[:, None],
        "lengths": lengths,
        "transitions": (0.1 * rng.standard_normal((TAGS, TAGS))).astype(np.float32),
        "start": (0.1 * rng.standard_normal(TAGS)).astype(np.float32),
        "end": (0.1 * rng.standard_normal(TAGS)).astype(np.float32),
    }


# --------------------------------------------------------------------------------------------
# torch eager
# --------------------------------------------------------------------------------------------
def torch_candidates(host: dict) -> dict:
    """``{name: (forward_backward, decode, per_example_nll)}`` in torch eager."""
    import torch

    torch.manual_seed(0)
    e = torch.tensor(host["emissions"], requires_grad=True)
    a, s, u = (torch.tensor(host[k], requires_grad=True) for k in ("transitions", "start", "end"))
    tags, mask = torch.from_numpy(host["tags"]), torch.from_numpy(host["mask"])
    params = [e, a, s, u]
    out = {}

    def p_nll():
        return polyloss.crf_nll(e, tags, a, mask=mask, start=s, end=u)

    def p_fb():
        return torch.autograd.grad(p_nll().sum(), params)

    def p_decode():
        with torch.no_grad():
            return polyloss.crf_decode(e, a, mask=mask, start=s, end=u)

    out["(p) polyloss"] = (p_fb, p_decode, p_nll)
    try:
        import torchcrf
    except ImportError:
        torchcrf = None
    if torchcrf is not None:
        crf = torchcrf.CRF(TAGS, batch_first=True)
        with torch.no_grad():
            crf.transitions.copy_(a)
            crf.start_transitions.copy_(s)
            crf.end_transitions.copy_(u)
        c_params = [e, crf.transitions, crf.start_transitions, crf.end_transitions]

        def c_nll():
            return -crf(e, tags, mask=mask, reduction="none")

        def c_fb():
            return torch.autograd.grad(-crf(e, tags, mask=mask, reduction="sum"), c_params)

        def c_decode():
            with torch.no_grad():
                return crf.decode(e, mask=mask)

        out["(c) pytorch-crf"] = (c_fb, c_decode, c_nll)
    try:
        import torch_struct
    except ImportError:
        torch_struct = None
    if torch_struct is not None:
        lengths = torch.from_numpy(host["lengths"])
        last = lengths - 2  # the edge into each row's last token
        rows = torch.arange(BATCH)

        def edges():
            # torch-struct's potentials phi[b, n, to, from]: ours with A transposed, the first emission and
            # start on the first edge, end on each row's last edge
            phi = a.T[None, None] + e[:, 1:, :, None]
            first = torch.zeros_like(phi)
            first[:, 0] = (e[:, 0] + s)[:, None, :]
            ends = torch.zeros_like(phi)
            ends[rows, last] = u[:, None].expand(TAGS, TAGS)
            return (phi + first + ends).contiguous()

        def dist():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch_struct.LinearChainCRF(edges(), lengths=lengths)

        parts = torch_struct.LinearChainCRF.struct.to_parts(tags, TAGS, lengths=lengths).to(e.dtype).contiguous()

        def s_nll():
            return -dist().log_prob(parts)

        def s_fb():
            return torch.autograd.grad(s_nll().sum(), params)

        def s_decode():
            with torch.no_grad():
                return dist().argmax

        out["(s) torch-struct"] = (s_fb, s_decode, s_nll)
    return out


# --------------------------------------------------------------------------------------------
# jax.jit and tf.function (polyloss only)
# --------------------------------------------------------------------------------------------
def jax_candidates(host: dict) -> dict:
    import jax
    import jax.numpy as jnp

    arrays = {k: jnp.asarray(v) for k, v in host.items()}

    def loss(e, a, s, u):
        return jnp.sum(polyloss.crf_nll(e, arrays["tags"], a, mask=arrays["mask"], start=s, end=u))

    fb = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
    decode = jax.jit(lambda e, a, s, u: polyloss.crf_decode(e, a, mask=arrays["mask"], start=s, end=u))
    args = tuple(arrays[k] for k in ("emissions", "transitions", "start", "end"))

    def wait(out):
        return jax.block_until_ready(out)

    return {"(p) polyloss": (lambda: wait(fb(*args)), lambda: wait(decode(*args)), None)}


def tf_candidates(host: dict) -> dict:
    import tensorflow as tf

    arrays = {k: tf.constant(v) for k, v in host.items()}

    @tf.function
    def fb(e, a, s, u):
        with tf.GradientTape() as tape:
            tape.watch([e, a, s, u])
            loss = tf.reduce_sum(polyloss.crf_nll(e, arrays["tags"], a, mask=arrays["mask"], start=s, end=u))
        return loss, tape.gradient(loss, [e, a, s, u])

    @tf.function
    def decode(e, a, s, u):
        return polyloss.crf_decode(e, a, mask=arrays["mask"], start=s, end=u)

    args = tuple(arrays[k] for k in ("emissions", "transitions", "start", "end"))
    return {"(p) polyloss": (lambda: [x.numpy() for x in tf.nest.flatten(fb(*args))],
                             lambda: [x.numpy() for x in decode(*args)], None)}


CANDIDATES = {"torch": torch_candidates, "jax": jax_candidates, "tensorflow": tf_candidates}


def compile_times(t: int) -> dict[str, float]:
    """Seconds of the first call (trace + compile + run) of the forward+backward, and of a second call."""
    host = host_inputs(t)
    out = {}
    import jax
    import jax.numpy as jnp

    jargs = [jnp.asarray(host[k]) for k in ("emissions", "tags", "transitions", "start", "end", "mask")]

    def jloss(e, y, a, s, u, m):
        return jnp.sum(polyloss.crf_nll(e, y, a, mask=m, start=s, end=u))

    fb = jax.jit(jax.value_and_grad(jloss, argnums=(0, 2, 3, 4)))
    start = time.perf_counter()
    jax.block_until_ready(fb(*jargs))
    out["jax.jit"] = time.perf_counter() - start
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None, TAGS], tf.float32), tf.TensorSpec([None, None], tf.int64),
            tf.TensorSpec([TAGS, TAGS], tf.float32), tf.TensorSpec([TAGS], tf.float32),
            tf.TensorSpec([TAGS], tf.float32), tf.TensorSpec([None, None], tf.bool)]

    @tf.function(input_signature=spec)
    def tfb(e, y, a, s, u, m):
        with tf.GradientTape() as tape:
            tape.watch([e, a, s, u])
            loss = tf.reduce_sum(polyloss.crf_nll(e, y, a, mask=m, start=s, end=u))
        return loss, tape.gradient(loss, [e, a, s, u])

    targs = [tf.constant(host[k]) for k in ("emissions", "tags", "transitions", "start", "end", "mask")]
    start = time.perf_counter()
    [x.numpy() for x in tf.nest.flatten(tfb(*targs))]
    out["tf.function, T unknown"] = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------------------------
# memory (one fresh process per candidate)
# --------------------------------------------------------------------------------------------
def memory_child(spec: str) -> dict:
    framework, t, name = spec.split(":", 2)
    candidates = CANDIDATES[framework](host_inputs(int(t)))
    fb = candidates[name][0]
    fb()  # compiles, first touch
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    baseline = base._proc_status_bytes("VmRSS")
    out = fb()
    peak = base._proc_status_bytes("VmHWM")
    del out
    return {"peak_mib": (peak - baseline) / base.MIB}


def measure_memory(specs: list[str]) -> dict[str, dict]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MALLOC_MMAP_THRESHOLD_=str(base.MALLOC_MMAP_THRESHOLD))

    def one(spec):
        child_env = {**env, **base.TF_MEMORY_ENV} if spec.startswith("tensorflow:") else env
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", spec],
                              capture_output=True, text=True, env=child_env, timeout=base.MEMORY_CHILD_TIMEOUT_S)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
        return json.loads(lines[-1][len("RESULT "):])

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # one at a time: the timings are done by then
        return dict(zip(specs, pool.map(one, specs)))


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
def run(framework: str, t: int, repeats: int, memory: bool) -> list[tuple]:
    host = host_inputs(t)
    candidates = CANDIDATES[framework](host)
    calls = {}
    for name, (fb, decode, _) in candidates.items():
        calls[f"{name} f+b"] = fb
        calls[f"{name} decode"] = decode
    times = base.time_interleaved(calls, repeats)
    diffs = {}
    reference = candidates["(p) polyloss"][2]
    if reference is not None:
        want = reference().detach().numpy()
        for name, (_, _, nll) in candidates.items():
            if name != "(p) polyloss":
                diffs[name] = float(np.max(np.abs(nll().detach().numpy() - want)))
    mem = measure_memory([f"{framework}:{t}:{name}" for name in candidates]) if memory else {}
    rows = []
    for name in candidates:
        row = [name]
        for kind in ("f+b", "decode"):
            v = times[f"{name} {kind}"]
            row += [statistics.median(v) * 1e3, min(v) * 1e3]
        m = mem.get(f"{framework}:{t}:{name}", {})
        row += [m.get("peak_mib"), diffs.get(name)]
        rows.append(tuple(row))
    return rows


def report(label: str, t: int, rows: list[tuple], targets: list) -> None:
    print(f"\n{label}, T = {t}: medians (minima) in ms; ratio = other / polyloss (above 1: polyloss faster)")
    header = ("candidate", "f+b", "decode", "f+b ratio", "decode ratio", "peak MiB", "max |Δ nll|")
    p = rows[0]
    table = []
    for name, fb_med, fb_min, dec_med, dec_min, mib, diff in rows:
        fb_ratio = f"{fb_med / p[1]:.2f} ({fb_min / p[2]:.2f})"
        dec_ratio = f"{dec_med / p[3]:.2f} ({dec_min / p[4]:.2f})"
        table.append((name, f"{fb_med:.1f} ({fb_min:.1f})", f"{dec_med:.1f} ({dec_min:.1f})",
                      "—" if name.startswith("(p)") else fb_ratio, "—" if name.startswith("(p)") else dec_ratio,
                      "—" if mib is None else f"{mib:.1f}", "—" if diff is None else f"{diff:.1e}"))
        if name.startswith("(c)"):
            targets.append((f"f+b vs pytorch-crf at T = {t}", fb_med / p[1], FB_TARGET.get(t)))
            targets.append((f"decode vs pytorch-crf at T = {t}", dec_med / p[3], DECODE_TARGET))
    base.print_table(header, table, right_from=1)


def _set_threads(threads: int) -> None:
    """The same intra-op thread count for every framework (before JAX and TensorFlow start; the memory
    children inherit it through the environment). Small per-step operations: one thread is fastest."""
    os.environ["POLYLOSS_BENCH_THREADS"] = str(threads)
    if threads == 1 and "--xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    import torch

    torch.set_num_threads(threads)
    try:
        import tensorflow as tf
    except ImportError:
        return
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 rounds instead of 30, no memory")
    parser.add_argument("--frameworks", default="torch,jax,tensorflow")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of torch, XLA (jax) and TensorFlow (default 1: a loaded machine)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _set_threads(int(os.environ.get("POLYLOSS_BENCH_THREADS", "1")))
        print("RESULT " + json.dumps(memory_child(args.memory_child)))
        return 0
    repeats = args.repeats or (8 if args.quick else 30)
    _set_threads(args.threads)
    import torch

    print(f"emissions float32 [{BATCH}, T, {TAGS}], right padding (lengths in [T/2, T]); {repeats} rounds; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}; "
          f"{args.threads} intra-op thread(s) in torch, XLA and TensorFlow")
    targets: list = []
    for framework in args.frameworks.split(","):
        for t in (int(v) for v in args.lengths.split(",")):
            label = {"torch": "torch eager", "jax": "jax.jit", "tensorflow": "tf.function"}[framework]
            report(label, t, run(framework, t, repeats, memory=not args.quick), targets)
    if "jax" in args.frameworks and "tensorflow" in args.frameworks:
        for name, seconds in compile_times(max(int(v) for v in args.lengths.split(","))).items():
            targets.append((f"compile + first call, {name}", seconds, COMPILE_TARGET_S))
    print("\ntargets:")
    for name, value, target in targets:
        if target is None:
            continue
        if name.startswith("compile"):
            print(f"  {name}: {value:.2f} s (target < {target:g} s): {'PASS' if value < target else 'MISS'}")
        else:
            print(f"  {name}: {value:.2f}x (target >= {target:g}x): {'PASS' if value >= target else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

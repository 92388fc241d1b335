"""Speed and memory of polyloss's contrastive family (docs/contrastive.md) against straightforward ports.

Two parts, float32, forward+backward (the loss and its gradient), torch eager and ``jax.jit``:

1. ``cosent_loss`` at B = 256, 4096 and 32768 pairs (graded labels 0..5): polyloss's pairwise form
   (the B x B matrix), its sorted form (sort + log-space scan, O(B log B) time and O(B) memory) and a
   port of Su's Keras code (the B x B matrix masked with ``1e12``). Each configuration runs in a
   fresh process under a 16 GiB address-space limit, so one that needs more memory is reported as
   such instead of taking the machine down. Memory columns: the growth of the process's peak RSS
   during the timed calls, and the framework's own count (torch: bytes saved for the backward pass;
   JAX: XLA's temporary buffers of the compiled gradient).
2. In-batch InfoNCE (B = 4096 queries and keys of width 256, CLIP/DPR style), AM-Softmax and ArcFace
   (cosines [4096, 8192]): polyloss against the port everyone writes (``F.normalize`` + matmul +
   ``F.cross_entropy``; the insightface head; their optax equivalents), with the largest difference of
   the per-example values.

Timing: warm-up calls, then interleaved rounds (``bench_multilabel.time_interleaved``); medians in ms.
Run ``python benchmarks/bench_contrastive.py [--quick] [--frameworks torch,jax]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import bench_multilabel as base  # noqa: E402  (the interleaved timer)

import polyloss  # noqa: E402

SIZES = (256, 4096, 32768)
COSENT = ("pairwise", "sorted", "port")
ADDRESS_LIMIT = 16 << 30
SCALE = 20.0


# --------------------------------------------------------------------------------------------
# Part 1: cosent_loss, one configuration per process
# --------------------------------------------------------------------------------------------
def _cosent_inputs(n):
    rng = np.random.default_rng(n)
    return rng.uniform(-1, 1, n).astype(np.float32), rng.integers(0, 6, n).astype(np.float32)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cosent_torch(method, s_np, y_np):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    s, y = torch.tensor(s_np, requires_grad=True), torch.tensor(y_np)

    def port(s, y):  # Su's Keras cosent_loss, in torch
        d = SCALE * (s[None, :] - s[:, None])  # d[i, j] = λ(s_j - s_i)
        d = d - (1 - (y[:, None] > y[None, :]).to(s.dtype)) * 1e12
        return torch.logsumexp(torch.cat([torch.zeros(1), d.reshape(-1)]), dim=0)

    loss = (lambda s, y: port(s, y)) if method == "port" else (
        lambda s, y: polyloss.cosent_loss(s, y, scale=SCALE, method=method))
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        value = loss(s, y)
    framework_mib = saved[0] / 2**20

    def call():
        torch.autograd.grad(loss(s, y), s)

    return float(value), call, framework_mib


def _cosent_jax(method, s_np, y_np):
    import jax
    import jax.numpy as jnp

    s, y = jnp.asarray(s_np), jnp.asarray(y_np)

    def port(s, y):
        d = SCALE * (s[None, :] - s[:, None])
        d = d - (1 - (y[:, None] > y[None, :]).astype(s.dtype)) * 1e12
        return jax.nn.logsumexp(jnp.concatenate([jnp.zeros(1, s.dtype), d.reshape(-1)]))

    loss = port if method == "port" else (lambda s, y: polyloss.cosent_loss(s, y, scale=SCALE, method=method))
    grad = jax.jit(jax.grad(loss))
    compiled = grad.lower(s, y).compile()
    analysis = compiled.memory_analysis()
    framework_mib = analysis.temp_size_in_bytes / 2**20 if analysis is not None else math.nan

    def call():
        grad(s, y).block_until_ready()

    return float(jax.jit(loss)(s, y)), call, framework_mib


def cosent_one(framework: str, method: str, n: int, repeats: int) -> dict:
    """Time and memory of one configuration (run in its own process by :func:`cosent_table`)."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT, ADDRESS_LIMIT))
    s_np, y_np = _cosent_inputs(n)
    setup = _cosent_torch if framework == "torch" else _cosent_jax
    try:
        value, call, framework_mib = setup(method, s_np, y_np)
        before = _peak_rss_mib()
        times = base.time_interleaved({"c": call}, repeats)["c"]
    except (MemoryError, RuntimeError) as exc:  # torch / XLA allocation failures
        if "memory" not in str(exc).lower() and not isinstance(exc, MemoryError):
            raise
        return {"error": f"out of memory (> {ADDRESS_LIMIT >> 30} GiB)"}
    return {"ms": 1e3 * statistics.median(times), "rss_mib": _peak_rss_mib() - before,
            "framework_mib": framework_mib, "value": value}


def _exact_cosent(n) -> float:
    """The loss by label groups in float64 (the check of every row): Σ_k (Σ_{y=k} e^{λs})(Σ_{y>k} e^{-λs})."""
    s, y = (a.astype(np.float64) for a in _cosent_inputs(n))
    up = [math.fsum(np.exp(SCALE * s[y == k])) for k in range(6)]
    down = [math.fsum(np.exp(-SCALE * s[y == k])) for k in range(6)]
    return math.log1p(math.fsum(up[k] * math.fsum(down[k + 1:]) for k in range(6)))


def cosent_table(frameworks, sizes, quick):
    print("\ncosent_loss, float32, forward+backward: median ms; peak-RSS growth and framework memory in MiB;"
          " rel. error vs the float64 grouped sum")
    header = f"{'framework':<10} {'B':>6} {'method':<9} {'ms':>10} {'RSS MiB':>9} {'fw MiB':>9} {'rel err':>9}"
    print(header + "\n" + "-" * len(header))
    for fw in frameworks:
        for n in sizes:
            exact = _exact_cosent(n)
            for method in COSENT:
                repeats = 3 if n >= 32768 else (5 if quick else 15)
                cmd = [sys.executable, os.path.abspath(__file__), "--one", fw, method, str(n), str(repeats)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                try:
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                except (IndexError, json.JSONDecodeError):
                    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    killed = done.returncode < 0 or "memory" in done.stderr.lower()
                    row = {"error": f"out of memory (> {ADDRESS_LIMIT >> 30} GiB)" if killed else tail[:60]}
                if "error" in row:
                    print(f"{fw:<10} {n:>6} {method:<9} {row['error']}")
                    continue
                err = abs(row["value"] - exact) / exact
                print(f"{fw:<10} {n:>6} {method:<9} {row['ms']:>10.2f} {row['rss_mib']:>9.1f} "
                      f"{row['framework_mib']:>9.1f} {err:>9.1e}", flush=True)


# --------------------------------------------------------------------------------------------
# Part 2: in-batch InfoNCE, AM-Softmax, ArcFace against ports
# --------------------------------------------------------------------------------------------
def _ports_torch():
    import torch
    import torch.nn.functional as F

    def clip(a, b, tau):
        logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau
        return F.cross_entropy(logits, torch.arange(a.shape[0]), reduction="none")

    def am(c, y, s, m):
        return F.cross_entropy(s * (c - m * F.one_hot(y, c.shape[1])), y, reduction="none")

    def arc(c, y, s, m):  # the insightface head, without easy margin and fallback
        sine = torch.sqrt((1.0 - c * c).clamp(0, 1))
        phi = c * math.cos(m) - sine * math.sin(m)
        hot = F.one_hot(y, c.shape[1]).bool()
        return F.cross_entropy(s * torch.where(hot, phi, c), y, reduction="none")

    return torch, clip, am, arc


def _ports_jax():
    import jax
    import jax.numpy as jnp
    import optax

    def normalize(x):
        return x / jnp.linalg.norm(x, axis=-1, keepdims=True)

    def clip(a, b, tau):
        logits = normalize(a) @ normalize(b).T / tau
        return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(a.shape[0]))

    def am(c, y, s, m):
        return optax.softmax_cross_entropy_with_integer_labels(s * (c - m * jax.nn.one_hot(y, c.shape[1])), y)

    def arc(c, y, s, m):
        sine = jnp.sqrt(jnp.clip(1.0 - c * c, 0, 1))
        phi = c * math.cos(m) - sine * math.sin(m)
        hot = jax.nn.one_hot(y, c.shape[1], dtype=bool)
        return optax.softmax_cross_entropy_with_integer_labels(s * jnp.where(hot, phi, c), y)

    return jax, clip, am, arc


def ratio_table(frameworks, quick):
    rng = np.random.default_rng(0)
    b, d, classes = (1024, 128, 2048) if quick else (4096, 256, 8192)
    emb_a = rng.normal(size=(b, d)).astype(np.float32)
    emb_b = (emb_a + 0.5 * rng.normal(size=(b, d))).astype(np.float32)
    cos = np.clip(rng.normal(0, 0.3, (b, classes)), -1, 1).astype(np.float32)
    ids = rng.integers(0, classes, b)
    print(f"\nforward+backward, float32: in-batch InfoNCE [{b}, {d}] x [{b}, {d}]; margin losses on cosines "
          f"[{b}, {classes}]; median ms; ratio = polyloss / port")
    header = f"{'framework':<10} {'loss':<26} {'polyloss':>9} {'port':>9} {'ratio':>6} {'max |diff|':>10}"
    print(header + "\n" + "-" * len(header))
    for fw in frameworks:
        if fw == "torch":
            torch, clip, am, arc = _ports_torch()
            torch.set_num_threads(os.cpu_count() or 1)
            A, B, C = (torch.tensor(x, requires_grad=True) for x in (emb_a, emb_b, cos))
            Y = torch.tensor(ids)

            def fb(f, *xs):
                return lambda: torch.autograd.grad(f(*xs).sum(), xs)

            to_np = lambda t: t.detach().numpy()  # noqa: E731
        else:
            jax, clip, am, arc = _ports_jax()
            A, B, C, Y = (jax.numpy.asarray(x) for x in (emb_a, emb_b, cos, ids))

            def fb(f, *xs):
                g = jax.jit(jax.grad(lambda *v: f(*v).sum(), argnums=tuple(range(len(xs)))))
                return lambda: jax.block_until_ready(g(*xs))

            to_np = np.asarray
        rows = [
            ("infonce_from_embeddings", lambda a, b_: polyloss.infonce_from_embeddings(a, b_, temperature=0.05),
             lambda a, b_: clip(a, b_, 0.05), (A, B)),
            ("am_softmax (s=30, m=0.35)", lambda c: polyloss.am_softmax(c, Y), lambda c: am(c, Y, 30.0, 0.35), (C,)),
            ("arcface (s=64, m=0.5)", lambda c: polyloss.arcface(c, Y), lambda c: arc(c, Y, 64.0, 0.5), (C,)),
        ]
        for name, ours, port, xs in rows:
            diff = float(np.max(np.abs(to_np(ours(*xs)) - to_np(port(*xs)))))
            calls = {"p": fb(ours, *xs), "h": fb(port, *xs)}
            times = base.time_interleaved(calls, 5 if quick else 15)
            p, h = (1e3 * statistics.median(times[k]) for k in ("p", "h"))
            print(f"{fw:<10} {name:<26} {p:>9.2f} {h:>9.2f} {p / h:>6.2f} {diff:>10.1e}", flush=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        fw, method, n, repeats = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(cosent_one(fw, method, n, repeats)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer rounds (B <= 4096)")
    parser.add_argument("--frameworks", default="torch,jax")
    args = parser.parse_args()
    frameworks = [f for f in args.frameworks.split(",") if f]
    cosent_table(frameworks, SIZES[:2] if args.quick else SIZES, args.quick)
    ratio_table(frameworks, args.quick)


if __name__ == "__main__":
    main()

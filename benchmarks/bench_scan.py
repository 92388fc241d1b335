"""Compile time and run time of ``Backend.scan`` for a long recurrence: the forward algorithm of a
linear-chain CRF (``h_t = logsumexp(h_{t-1}[:, :, None] + W) + x_t``) over T steps, value and gradient.

Under ``jax.jit`` the loop is one ``lax.scan`` and under ``tf.function`` one ``tf.while_loop``, so
compiling costs the same for any T; an unrolled Python loop (measured beside it, for comparison)
costs time proportional to T. Eager torch runs the Python loop.

    python benchmarks/bench_scan.py [--steps 512] [--batch 32] [--tags 9]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from polyloss import _ops  # noqa: E402
from polyloss.backends import get_backend  # noqa: E402


def recurrence(backend, xs, w, *, unrolled=False):
    xp = backend.namespace

    def step(h, x):
        return _ops.logsumexp(xp, backend, h[:, :, None] + w[None, ...], axis=1) + x, None

    h = xp.zeros(backend.shape(xs)[1:], dtype=xs.dtype)
    if unrolled:
        for t in range(xs.shape[0]):
            h, _ = step(h, xs[t])
    else:
        h, _ = backend.scan(step, h, xs)
    return xp.sum(_ops.logsumexp(xp, backend, h, axis=-1))


def timed(f, *args, repeats=5):
    start = time.perf_counter()
    out = f(*args)
    _block(out)
    first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(f(*args))
        runs.append(time.perf_counter() - start)
    return first, min(runs)


def _block(out):
    for leaf in out if isinstance(out, (tuple, list)) else (out,):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
        elif hasattr(leaf, "detach"):
            leaf.detach().numpy()
        elif hasattr(leaf, "numpy"):
            leaf.numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tags", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    xs_np = rng.normal(size=(args.steps, args.batch, args.tags)).astype(np.float32)
    w_np = rng.normal(size=(args.tags, args.tags)).astype(np.float32)
    print(f"recurrence of {args.steps} steps, [{args.batch}, {args.tags}] carry, float32, value and gradient")
    print(f"{'backend':<24} {'first call (s)':>15} {'later calls (ms)':>17}")

    import jax

    jx = get_backend("jax")
    xs, w = jx.from_numpy(xs_np), jx.from_numpy(w_np)
    for label, unrolled in (("jax.jit, scan", False), ("jax.jit, unrolled", True)):
        f = jax.jit(jax.value_and_grad(lambda a, b, u=unrolled: recurrence(jx, a, b, unrolled=u), argnums=(0, 1)))
        first, later = timed(f, xs, w)
        print(f"{label:<24} {first:>15.2f} {1e3 * later:>17.1f}")

    import tensorflow as tf

    tfb = get_backend("tensorflow")
    xs, w = tf.constant(xs_np), tf.constant(w_np)
    for label, unrolled, signature in (
        ("tf.function, scan", False, None),
        ("tf.function, scan, T=?", False, [tf.TensorSpec([None, args.batch, args.tags]), tf.TensorSpec(w_np.shape)]),
        ("tf.function, unrolled", True, None),
    ):
        def value_and_grad(a, b, u=unrolled):
            with tf.GradientTape() as tape:
                tape.watch([a, b])
                v = recurrence(tfb, a, b, unrolled=u)
            return v, tape.gradient(v, [a, b])

        first, later = timed(tf.function(value_and_grad, input_signature=signature), xs, w)
        print(f"{label:<24} {first:>15.2f} {1e3 * later:>17.1f}")

    import torch

    tb = get_backend("torch")
    xs = torch.tensor(xs_np, requires_grad=True)
    w = torch.tensor(w_np, requires_grad=True)

    def torch_value_and_grad(a, b):
        v = recurrence(tb, a, b)
        return v, torch.autograd.grad(v, [a, b])

    first, later = timed(torch_value_and_grad, xs, w)
    print(f"{'torch eager, scan':<24} {first:>15.2f} {1e3 * later:>17.1f}")


if __name__ == "__main__":
    main()

"""Speed of polyloss's gradient-based regularisers against the same step written by hand.

What is measured
----------------
One training step's gradient with respect to every weight of a small text classifier (an embedding
lookup ``[V, D]``, a token-wise MLP ``D -> H -> D`` with tanh, mean pooling, a linear layer to ``C``
classes, the framework's own softmax cross-entropy), float32, on a batch of ``[B, L]`` token ids:

  (a) FGM with ``polyloss.adversarial_loss(loss_fn, x)`` on the embedding output ``x`` (one global
      norm), then the gradient of ``loss + adversarial_loss``;
  (b) the same by hand: the gradient of the loss at ``x`` (``torch.autograd.grad(retain_graph=True)``,
      ``jax.grad``, a ``GradientTape``), ``δ = ε g/‖g‖`` held constant, the loss at ``x + δ``, the
      gradient of the sum: two forward and two backward passes, FGM's floor;
  (c) the gradient penalty ``polyloss.gradient_penalty(loss_fn, x)`` and the gradient of
      ``loss + λ·penalty`` (double backprop);
  (d) the same by hand (``create_graph=True``, ``jax.grad`` of ``jax.grad``, nested tapes).

under torch eager, ``jax.jit`` (the whole step, ``jax.value_and_grad`` inside) and ``tf.function``. The
project's target: (a)/(b) and (c)/(d) within 1.15x in torch eager and under ``jax.jit``.

Timing: three warm-up calls, then interleaved rounds in a rotated order
(``bench_multilabel.time_interleaved``), so that a loaded machine slows every candidate alike; medians
and minima in ms, including the wait for the result.

Run ``python benchmarks/bench_adversarial.py [--quick] [--frameworks torch,jax,tensorflow]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import bench_multilabel as base  # noqa: E402  (the interleaved timer)

import polyloss  # noqa: E402

SHAPES = {"B": 32, "L": 128, "V": 8000, "D": 256, "H": 512, "C": 10}
EPSILON = 0.5
PENALTY_WEIGHT = 0.1
TARGET = {"torch": 1.15, "jax": 1.15}
CANDIDATES = ("fgm-polyloss", "fgm-hand", "penalty-polyloss", "penalty-hand")


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    s = SHAPES
    return {
        "embeddings": (rng.normal(size=(s["V"], s["D"])) * 0.1).astype(np.float32),
        "w1": (rng.normal(size=(s["D"], s["H"])) / np.sqrt(s["D"])).astype(np.float32),
        "b1": np.zeros(s["H"], np.float32),
        "w2": (rng.normal(size=(s["H"], s["D"])) / np.sqrt(s["H"])).astype(np.float32),
        "wc": (rng.normal(size=(s["D"], s["C"])) / np.sqrt(s["D"])).astype(np.float32),
        "bc": np.zeros(s["C"], np.float32),
    }


def _batch(seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, SHAPES["V"], (SHAPES["B"], SHAPES["L"])), rng.integers(0, SHAPES["C"], SHAPES["B"])


# --------------------------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------------------------
def torch_steps():
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in _weights().items()}
    ids, labels = (torch.tensor(a) for a in _batch())
    order = list(params)

    def head(x):
        h = torch.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + x
        return F.cross_entropy(h.mean(1) @ params["wc"] + params["bc"], labels)

    def embedded():
        return F.embedding(ids, params["embeddings"])

    def fgm_polyloss():
        loss, adversarial = polyloss.adversarial_loss(head, embedded(), epsilon=EPSILON)
        return torch.autograd.grad(loss + adversarial, [params[k] for k in order])

    def fgm_hand():
        x = embedded()
        loss = head(x)
        (g,) = torch.autograd.grad(loss, x, retain_graph=True)
        adversarial = head(x + EPSILON * g / g.norm())
        return torch.autograd.grad(loss + adversarial, [params[k] for k in order])

    def penalty_polyloss():
        loss, penalty = polyloss.gradient_penalty(head, embedded())
        return torch.autograd.grad(loss + PENALTY_WEIGHT * penalty, [params[k] for k in order])

    def penalty_hand():
        x = embedded()
        loss = head(x)
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        return torch.autograd.grad(loss + PENALTY_WEIGHT * 0.5 * (g * g).sum(), [params[k] for k in order])

    def run(step):
        return lambda: [g.sum().item() for g in step()[:1]]

    steps = {"fgm-polyloss": fgm_polyloss, "fgm-hand": fgm_hand, "penalty-polyloss": penalty_polyloss,
             "penalty-hand": penalty_hand}
    agreement = {"fgm": _max_diff([g.numpy() for g in fgm_polyloss()], [g.numpy() for g in fgm_hand()]),
                 "penalty": _max_diff([g.numpy() for g in penalty_polyloss()], [g.numpy() for g in penalty_hand()])}
    return {k: run(v) for k, v in steps.items()}, agreement


# --------------------------------------------------------------------------------------------
# JAX (the whole step under jax.jit)
# --------------------------------------------------------------------------------------------
def jax_steps():
    import jax
    import jax.numpy as jnp

    params = {k: jnp.asarray(v) for k, v in _weights().items()}
    ids, labels = (jnp.asarray(a) for a in _batch())

    def head(p, x):
        h = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + x
        logits = h.mean(1) @ p["wc"] + p["bc"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

    def fgm_polyloss(p):
        loss, adversarial = polyloss.adversarial_loss(lambda x: head(p, x), p["embeddings"][ids], epsilon=EPSILON)
        return loss + adversarial

    def fgm_hand(p):
        x = p["embeddings"][ids]
        loss, g = jax.value_and_grad(head, argnums=1)(p, x)
        g = jax.lax.stop_gradient(g)
        return loss + head(p, x + EPSILON * g / jnp.linalg.norm(g))

    def penalty_polyloss(p):
        loss, penalty = polyloss.gradient_penalty(lambda x: head(p, x), p["embeddings"][ids])
        return loss + PENALTY_WEIGHT * penalty

    def penalty_hand(p):
        x = p["embeddings"][ids]
        loss, g = jax.value_and_grad(head, argnums=1)(p, x)
        return loss + PENALTY_WEIGHT * 0.5 * jnp.sum(g * g)

    steps = {"fgm-polyloss": fgm_polyloss, "fgm-hand": fgm_hand, "penalty-polyloss": penalty_polyloss,
             "penalty-hand": penalty_hand}
    compiled = {k: jax.jit(jax.grad(v)) for k, v in steps.items()}

    def grads(k):
        return [np.asarray(compiled[k](params)[n]) for n in sorted(params)]

    agreement = {"fgm": _max_diff(grads("fgm-polyloss"), grads("fgm-hand")),
                 "penalty": _max_diff(grads("penalty-polyloss"), grads("penalty-hand"))}
    return {k: (lambda f=f: jax.block_until_ready(f(params))) for k, f in compiled.items()}, agreement


# --------------------------------------------------------------------------------------------
# TensorFlow (the whole step inside tf.function)
# --------------------------------------------------------------------------------------------
def tensorflow_steps():
    import tensorflow as tf

    params = {k: tf.Variable(v) for k, v in _weights().items()}
    ids, labels = (tf.constant(a) for a in _batch())
    variables = [params[k] for k in sorted(params)]

    def head(x):
        h = tf.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + x
        logits = tf.reduce_mean(h, axis=1) @ params["wc"] + params["bc"]
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    def fgm_polyloss():
        with tf.GradientTape() as tape:
            loss, adversarial = polyloss.adversarial_loss(head, tf.gather(params["embeddings"], ids),
                                                          epsilon=EPSILON)
            total = loss + adversarial
        return tape.gradient(total, variables)

    def fgm_hand():
        with tf.GradientTape() as tape:
            x = tf.gather(params["embeddings"], ids)
            with tf.GradientTape() as inner:
                inner.watch(x)
                loss = head(x)
            g = tf.stop_gradient(inner.gradient(loss, x))
            total = loss + head(x + EPSILON * g / tf.norm(g))
        return tape.gradient(total, variables)

    def penalty_polyloss():
        with tf.GradientTape() as tape:
            loss, penalty = polyloss.gradient_penalty(head, tf.gather(params["embeddings"], ids))
            total = loss + PENALTY_WEIGHT * penalty
        return tape.gradient(total, variables)

    def penalty_hand():
        with tf.GradientTape() as tape:
            x = tf.gather(params["embeddings"], ids)
            with tf.GradientTape() as inner:
                inner.watch(x)
                loss = head(x)
            g = inner.gradient(loss, x)
            total = loss + PENALTY_WEIGHT * 0.5 * tf.reduce_sum(g * g)
        return tape.gradient(total, variables)

    steps = {"fgm-polyloss": fgm_polyloss, "fgm-hand": fgm_hand, "penalty-polyloss": penalty_polyloss,
             "penalty-hand": penalty_hand}
    compiled = {k: tf.function(v) for k, v in steps.items()}

    def grads(k):
        return [tf.convert_to_tensor(g).numpy() for g in compiled[k]()]

    agreement = {"fgm": _max_diff(grads("fgm-polyloss"), grads("fgm-hand")),
                 "penalty": _max_diff(grads("penalty-polyloss"), grads("penalty-hand"))}
    return {k: (lambda f=f: [tf.convert_to_tensor(g).numpy() for g in f()[:1]]) for k, f in compiled.items()}, agreement


def _max_diff(a, b):
    """The largest difference between two lists of gradients, relative to the largest entry."""
    scale = max(float(np.max(np.abs(y))) for y in b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) / scale


FRAMEWORKS = {"torch": torch_steps, "jax": jax_steps, "tensorflow": tensorflow_steps}
LABELS = {"torch": "torch eager", "jax": "jax.jit", "tensorflow": "tf.function"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 rounds instead of 40")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    repeats = args.repeats or (8 if args.quick else 40)
    print(f"shapes {SHAPES}, float32, epsilon {EPSILON}, {repeats} rounds")
    results, misses = {}, []
    for name in args.frameworks.split(","):
        try:
            steps, agreement = FRAMEWORKS[name]()
        except ImportError as exc:
            print(f"{name}: not installed ({exc})")
            continue
        times = base.time_interleaved(steps, repeats)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        low = {k: min(v) * 1e3 for k, v in times.items()}
        results[name] = {"median_ms": med, "min_ms": low, "agreement": agreement}
        print(f"\n{LABELS[name]}")
        print("| candidate | med ms | min ms |")
        print("|---|---|---|")
        for k in CANDIDATES:
            print(f"| {k} | {med[k]:.1f} | {low[k]:.1f} |")
        for what in ("fgm", "penalty"):
            ratio = med[f"{what}-polyloss"] / med[f"{what}-hand"]
            ratio_min = low[f"{what}-polyloss"] / low[f"{what}-hand"]
            verdict = ""
            if name in TARGET:
                ok = ratio <= TARGET[name]
                verdict = f"  target <= {TARGET[name]}x: {'PASS' if ok else 'MISS'}"
                if not ok:
                    misses.append(f"{name} {what}")
            print(f"{what}: polyloss / hand {ratio:.3f}x (minima {ratio_min:.3f}x), gradients agree to "
                  f"{agreement[what]:.1e} (relative){verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())

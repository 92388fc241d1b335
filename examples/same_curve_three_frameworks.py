"""One training, three frameworks: PyTorch, JAX and TensorFlow from the same initial weights give the
same loss curve.

A small network (13 -> 16 -> 3, tanh) classifies scikit-learn's wine data with
``polyloss.softmax_crossentropy`` (label smoothing 0.1) by full-batch gradient descent, in float64.
The initial weights are drawn once with NumPy; each framework takes its own gradient (``torch.autograd``,
``jax.grad`` under ``jax.jit``, ``tf.GradientTape`` under ``tf.function``) of the same polyloss function.
The curves agree to rounding: the table shows the largest difference between the frameworks' losses.

    python examples/same_curve_three_frameworks.py [--quick] [--plot curves.png]
"""

from __future__ import annotations

import numpy as np
from _shared import Timer, arguments, print_table, save_figure
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

import polyloss

LEARNING_RATE, SMOOTHING = 0.5, 0.1


def initial_weights(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 13 ** -0.5, (13, 16)), np.zeros(16), rng.normal(0, 16 ** -0.5, (16, 3)), np.zeros(3)]


def train_torch(x, y, weights, steps):
    import torch

    torch.set_num_threads(1)
    params = [torch.tensor(w, requires_grad=True) for w in weights]
    x, y = torch.as_tensor(x), torch.as_tensor(y)

    def loss_fn(w1, b1, w2, b2):
        logits = torch.tanh(x @ w1 + b1) @ w2 + b2
        return polyloss.softmax_crossentropy(logits, y, label_smoothing=SMOOTHING).mean()

    curve = []
    for _ in range(steps):
        loss = loss_fn(*params)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= LEARNING_RATE * g
        curve.append(float(loss.detach()))
    return curve


def train_jax(x, y, weights, steps):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    params = [jnp.asarray(w) for w in weights]
    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss_fn(params):
        w1, b1, w2, b2 = params
        logits = jnp.tanh(x @ w1 + b1) @ w2 + b2
        return jnp.mean(polyloss.softmax_crossentropy(logits, y, label_smoothing=SMOOTHING))

    @jax.jit
    def step(params):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        return [p - LEARNING_RATE * g for p, g in zip(params, grads)], loss

    curve = []
    for _ in range(steps):
        params, loss = step(params)
        curve.append(float(loss))
    return curve


def train_tensorflow(x, y, weights, steps):
    import tensorflow as tf

    params = [tf.Variable(w) for w in weights]
    x, y = tf.constant(x), tf.constant(y)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            w1, b1, w2, b2 = params
            logits = tf.tanh(x @ w1 + b1) @ w2 + b2
            loss = tf.reduce_mean(polyloss.softmax_crossentropy(logits, y, label_smoothing=SMOOTHING))
        for p, g in zip(params, tape.gradient(loss, params)):
            p.assign_sub(LEARNING_RATE * g)
        return loss

    return [float(step()) for _ in range(steps)]


def main():
    args = arguments(__doc__.splitlines()[0])
    data = load_wine()
    x = StandardScaler().fit_transform(data.data)  # float64
    y = data.target
    steps = 20 if args.quick else 300
    weights = initial_weights(args.seed)
    curves, seconds = {}, {}
    for name, train in (("PyTorch", train_torch), ("JAX", train_jax), ("TensorFlow", train_tensorflow)):
        with Timer() as timer:
            curves[name] = np.array(train(x, y, weights, steps))
        seconds[name] = timer.seconds
    stacked = np.stack(list(curves.values()))
    spread = stacked.max(0) - stacked.min(0)
    shown = sorted({0, 1, steps // 10, steps // 2, steps - 1})
    print_table(f"training loss of the same network on wine ({len(y)} examples, float64, full batch)",
                ("step", *curves, "largest difference"),
                [(s + 1, *(float(c[s]) for c in curves.values()), f"{spread[s]:.1e}") for s in shown])
    print(f"largest difference over all {steps} steps: {spread.max():.1e}; seconds: "
          + ", ".join(f"{name} {s:.1f}" for name, s in seconds.items()))

    def draw(plt):
        figure, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.4))
        for (name, curve), style in zip(curves.items(), ("-", "--", ":")):
            left.plot(range(1, steps + 1), curve, style, lw=2, label=name)
        left.set_xlabel("step")
        left.set_ylabel("loss")
        left.set_yscale("log")
        left.set_title("the same curve, three times")
        left.legend()
        right.semilogy(range(1, steps + 1), np.maximum(spread, 1e-18))
        right.set_xlabel("step")
        right.set_ylabel("largest difference")
        right.set_title("between the frameworks (float64)")

    save_figure(args.plot, draw)


if __name__ == "__main__":
    main()

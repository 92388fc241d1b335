"""``Backend.scan`` on its own: a log-space recurrence (the shape of a CRF's forward algorithm) against
the same recurrence written as a NumPy loop, values and gradients, eager and compiled, on every backend.

The gradients are compared with central finite differences of the float64 NumPy loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from polyloss import _ops
from polyloss.testing import assert_close

from helpers import AUTOGRAD_BACKENDS, LOSS_BACKENDS, get

T, B, K = 6, 3, 4


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(T, B, K)), rng.normal(size=(K, K)), rng.normal(size=(B, K)), rng.normal(size=(T, B)),
            rng.normal(size=(B, K)))


def numpy_recurrence(xs, w, reverse=False):
    """``h_t = log Σ_j exp(h_{t-1, j} + w[j, :]) + x_t`` from ``h = 0``; ``y_t = Σ_k h_t``."""
    h = np.zeros(xs.shape[1:])
    ys = np.zeros(xs.shape[:2])
    steps = range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0])
    for t in steps:
        z = h[:, :, None] + w[None]
        m = z.max(axis=1)
        h = m + np.log(np.exp(z - m[:, None, :]).sum(axis=1)) + xs[t]
        ys[t] = h.sum(axis=-1)
    return h, ys


def numpy_objective(xs, w, u, v, reverse=False):
    h, ys = numpy_recurrence(xs, w, reverse)
    return float((h * u).sum() + (ys * v).sum())


def numerical_gradient(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        g[idx] = (f(plus) - f(minus)) / (2 * h)
    return g


def scanned(backend, xs, w, *, reverse=False, structured=False):
    """The recurrence through ``backend.scan``; ``structured``: the carry is a dict, the inputs a tuple
    and each step also returns a tuple (trees of arrays)."""
    xp = backend.namespace

    def step(h, x):
        x_t = x[0] if structured else x
        h = h["h"] if structured else h
        h = _ops.logsumexp(xp, backend, h[:, :, None] + w[None, ...], axis=1) + x_t
        y = xp.sum(h, axis=-1)
        return ({"h": h}, (y, None)) if structured else (h, y)

    init = xp.zeros(backend.shape(xs)[1:], dtype=xs.dtype)
    if structured:
        carry, (ys, nothing) = backend.scan(step, {"h": init}, (xs, xs[..., 0]), reverse=reverse)
        assert nothing is None
        return carry["h"], ys
    return backend.scan(step, init, xs, reverse=reverse)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("structured", [False, True])
@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_scan_values_match_the_numpy_loop(name, structured, reverse):
    backend = get(name)
    xs, w, *_ = _data()
    want_h, want_ys = numpy_recurrence(xs, w, reverse)
    for mode in backend.modes:
        if mode == "compile":
            continue  # torch.compile unrolls the Python loop of eager torch: not a compiled scan
        run = backend.compile(lambda a, b: scanned(backend, a, b, reverse=reverse, structured=structured), mode)
        h, ys = run(backend.from_numpy(xs, dtype="float64"), backend.from_numpy(w, dtype="float64"))
        assert_close(h, want_h, dtype=backend.dtype("float64"), err_msg=mode)
        assert_close(ys, want_ys, dtype=backend.dtype("float64"), err_msg=mode)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", AUTOGRAD_BACKENDS)
def test_scan_gradients_match_finite_differences(name, reverse):
    backend = get(name)
    xp = backend.namespace
    xs, w, u, v, _ = _data(1)
    want_xs = numerical_gradient(lambda a: numpy_objective(a, w, u, v, reverse), xs)
    want_w = numerical_gradient(lambda a: numpy_objective(xs, a, u, v, reverse), w)
    uu, vv = backend.from_numpy(u, dtype="float64"), backend.from_numpy(v, dtype="float64")

    def objective(a, b):
        h, ys = scanned(backend, a, b, reverse=reverse)
        return xp.sum(h * uu) + xp.sum(ys * vv)

    for mode in backend.modes:
        if mode == "compile":
            continue
        grad = backend.compile(backend.grad(objective, argnums=(0, 1)), mode)
        g_xs, g_w = grad(backend.from_numpy(xs, dtype="float64"), backend.from_numpy(w, dtype="float64"))
        assert_close(g_xs, want_xs, rtol=1e-6, atol=1e-7, err_msg=mode)  # finite differences: ~1e-8 absolute
        assert_close(g_w, want_w, rtol=1e-6, atol=1e-7, err_msg=mode)


def test_tensorflow_scan_runs_in_a_graph_with_an_unknown_length():
    """Inside ``tf.function`` with ``None`` dimensions the loop is a ``tf.while_loop`` (never unrolled),
    and its gradient is the eager one; one trace serves every length."""
    backend = get("tensorflow")
    import tensorflow as tf

    def value_and_grads(xs, w):
        with tf.GradientTape() as tape:
            tape.watch([xs, w])
            h, ys = scanned(backend, xs, w)
            value = tf.reduce_sum(h) + tf.reduce_sum(ys)
        return value, tape.gradient(value, [xs, w])

    graph = tf.function(value_and_grads, input_signature=[tf.TensorSpec([None, None, K], tf.float64),
                                                          tf.TensorSpec([K, K], tf.float64)])
    for length in (1, 4, 9):
        xs, w, *_ = _data(length)
        xs = np.concatenate([xs] * 2)[:length]
        eager = value_and_grads(tf.constant(xs), tf.constant(w))
        traced = graph(tf.constant(xs), tf.constant(w))
        assert_close(traced[0], eager[0])
        for a, b in zip(traced[1], eager[1]):
            assert_close(a, b)
    kinds = {op.type for op in graph.get_concrete_function().graph.get_operations()}
    assert kinds & {"While", "StatelessWhile"}  # a loop in the graph (the length is unknown when tracing)
    assert graph.experimental_get_tracing_count() == 1


def test_jax_scan_is_one_lax_scan_under_jit():
    backend = get("jax")
    import jax

    xs, w, *_ = _data()
    jaxpr = jax.make_jaxpr(lambda a, b: scanned(backend, a, b))(xs, w)
    primitives = [eqn.primitive.name for eqn in jaxpr.jaxpr.eqns]
    assert primitives.count("scan") == 1


def test_scan_needs_an_array_to_scan_over():
    backend = get("numpy")
    with pytest.raises(ValueError, match="at least one array"):
        backend.scan(lambda c, x: (c, None), np.zeros(2), ())

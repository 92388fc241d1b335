"""The adapter hooks of the gradient-based regularisers, on their own (docs/design.md, the hook table):
``value_and_grad_nested`` (a user's function differentiated inside the caller's own differentiation,
with ``create_graph`` semantics) and ``random_normal`` (keys, generators, seeds), on every autograd
backend, eagerly and compiled."""

from __future__ import annotations

import numpy as np
import pytest

from polyloss.testing import assert_close

from helpers import AUTOGRAD_BACKENDS, get

# torch.compile is left out: see docs/adversarial.md (it graph-breaks at torch.autograd.grad)
MODES = [("torch", "eager"), ("jax", "eager"), ("jax", "jit"), ("tensorflow", "eager"), ("tensorflow", "function")]
assert {name for name, _ in MODES} == set(AUTOGRAD_BACKENDS)


def _compiled(backend, f, mode):
    return backend.compile(f, mode)


@pytest.mark.parametrize("name, mode", MODES)
@pytest.mark.parametrize("create_graph", [False, True])
def test_value_and_gradient_inside_an_outer_differentiation(name, mode, create_graph):
    """f(x) = w·Σ x³ with w closed over. Inside an outer derivative with respect to w of
    ``value + Σ grad`` (grad = 3w x²): d value/dw = Σ x³ always; d Σ grad/dw = 3 Σ x² only with
    create_graph (else the gradient is a constant)."""
    backend = get(name)
    xp = backend.namespace
    x = backend.from_numpy(np.array([[1.0, -2.0], [0.5, 3.0]]), dtype="float64")
    w0 = backend.from_numpy(np.array(1.5), dtype="float64")

    def outer(w):
        value, grad = backend.value_and_grad_nested(lambda z: w * xp.sum(z * z * z), 0,
                                                    create_graph=create_graph)(x)
        return value + xp.sum(grad), grad

    def objective(w):
        return outer(w)[0]

    value, dw = _compiled(backend, backend.value_and_grad(objective), mode)(w0)
    xs = np.array([[1.0, -2.0], [0.5, 3.0]])
    assert_close(outer(w0)[1], 3 * 1.5 * xs**2)
    assert_close(value, 1.5 * np.sum(xs**3) + 3 * 1.5 * np.sum(xs**2))
    assert_close(dw, np.sum(xs**3) + (3 * np.sum(xs**2) if create_graph else 0.0))


@pytest.mark.parametrize("name, mode", MODES)
def test_non_scalar_values_and_several_arguments(name, mode):
    """The gradient is that of Σ f: per-example losses [B] give ∇ Σ_b ℓ_b; argnums picks arguments."""
    backend = get(name)
    xp = backend.namespace
    a = backend.from_numpy(np.array([[1.0, 2.0], [3.0, 4.0]]), dtype="float64")
    b = backend.from_numpy(np.array([0.5, -1.0]), dtype="float64")

    def per_row(u, v):
        return xp.sum(u * u, axis=1) * v

    vg = _compiled(backend, backend.value_and_grad_nested(per_row, (0, 1)), mode)
    value, (ga, gb) = vg(a, b)
    assert_close(value, np.array([2.5, -25.0]))
    assert_close(ga, 2 * np.array([[1.0, 2.0], [3.0, 4.0]]) * np.array([[0.5], [-1.0]]))
    assert_close(gb, np.array([5.0, 25.0]))


def test_torch_keeps_the_graph_leaves_grad_alone_and_detaches_under_no_grad():
    get("torch")
    import torch

    from polyloss import backends

    backend = backends.get_backend("torch")
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([1.0, 3.0], dtype=torch.float64, requires_grad=True)
    value, grad = backend.value_and_grad_nested(lambda z: w * (z * z).sum())(x)
    assert w.grad is None and x.grad is None
    (value + grad.sum()).backward()  # the value's graph was retained; the gradient is a constant
    assert_close(w.grad, torch.tensor(10.0, dtype=torch.float64))
    assert_close(x.grad, torch.tensor([4.0, 12.0], dtype=torch.float64))
    with torch.no_grad():
        value, grad = backend.value_and_grad_nested(lambda z: w * (z * z).sum(), create_graph=True)(x)
    assert not value.requires_grad and not grad.requires_grad
    assert_close(grad, torch.tensor([4.0, 12.0], dtype=torch.float64))
    # a function of nothing differentiable: zero gradient
    _, grad = backend.value_and_grad_nested(lambda z: torch.tensor(1.0, dtype=torch.float64))(x.detach())
    assert_close(grad, torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
def test_frameworks_without_autograd_say_which_have_it(name):
    backend = get(name)
    x = backend.from_numpy(np.ones(2))
    with pytest.raises(TypeError, match="use torch, jax or tensorflow arrays"):
        backend.value_and_grad_nested(lambda z: z)(x)
    with pytest.raises(TypeError, match="use torch, jax or tensorflow arrays"):
        backend.random_normal(0, x, dtype=x.dtype)


def _key(name, seed):
    if name == "jax":
        import jax

        return jax.random.key(seed)
    if name == "torch":
        import torch

        return torch.Generator().manual_seed(seed)
    return seed


@pytest.mark.parametrize("name, mode", MODES)
def test_random_normal_is_standard_normal_and_reproducible(name, mode):
    backend = get(name)
    like = backend.from_numpy(np.zeros((200, 100)), dtype="float32")

    def draw(key):
        return backend.random_normal(key, like, dtype=like.dtype)

    first = np.asarray(backend.to_numpy(_compiled(backend, draw, mode)(_key(name, 3))))
    second = np.asarray(backend.to_numpy(_compiled(backend, draw, mode)(_key(name, 3))))
    other = np.asarray(backend.to_numpy(_compiled(backend, draw, mode)(_key(name, 4))))
    assert first.shape == (200, 100)
    assert_close(draw(_key(name, 3)), first, dtype="float32", rtol=0.0)
    assert_close(second, first, rtol=0.0)
    assert not np.allclose(first, other)
    # 20000 draws: the mean within 5 standard errors of 0, the variance within 5% of 1
    assert abs(first.mean()) < 5 / np.sqrt(first.size) and abs(first.var() - 1.0) < 0.05


def test_tensorflow_seeds_generators_and_none():
    get("tensorflow")
    import tensorflow as tf

    from polyloss import backends

    backend = backends.get_backend("tensorflow")
    like = tf.zeros((3, 4))
    pair = backend.random_normal(tf.constant([7, 0]), like, dtype=tf.float32)
    assert_close(backend.random_normal(7, like, dtype=tf.float32), pair, rtol=0.0)  # s is [s, 0]
    generator = tf.random.Generator.from_seed(1)
    assert tuple(backend.random_normal(generator, like, dtype=tf.float64).shape) == (3, 4)
    assert tuple(backend.random_normal(None, like, dtype=tf.float32).shape) == (3, 4)

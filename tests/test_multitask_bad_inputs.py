"""Clear errors from ``polyloss.multitask`` on every backend: gradients of different structures or
shapes (the leaf named), K = 0, non-positive losses for the weightings that divide by or take the log
of them (eager mode only, the task named), out-of-range primary indices, unknown methods and
options, and the adapters' task_gradients misuses."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss
from polyloss import multitask as MT

from helpers import LOSS_BACKENDS, get


def arrays(name, *values, dtype="float64"):
    backend = get(name)
    return [backend.from_numpy(np.asarray(v, dtype=np.float64), dtype=dtype) for v in values]


@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_gradients_of_different_structures_name_the_leaf(name):
    w0, w1, b0, b_bad = arrays(name, np.ones((2, 3)), np.ones((2, 3)), np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match=r"gradient 1 .*structure of gradient 0 at leaf \['b'\]: shape \(5,\)"):
        MT.gram_matrix([{"w": w0, "b": b0}, {"w": w1, "b": b_bad}])
    with pytest.raises(ValueError, match=r"gradient 1 .*at the root: a dict with keys \['c', 'w'\] where gradient "
                                         r"0 has a dict with keys \['b', 'w'\]"):
        MT.combine_gradients([{"w": w0, "b": b0}, {"w": w1, "c": b0}], method="sum")
    with pytest.raises(ValueError, match=r"gradient 2 .*at leaf \[1\]: a list of length 1 where gradient 0 has "
                                         r"a leaf of shape"):
        MT.combine_gradients([[w0, b0], [w1, b0], [w1, [b0]]], method="mean")
    with pytest.raises(ValueError, match=r"at the root: a tuple of length 3 where gradient 0 has a tuple of length 2"):
        MT.gram_matrix([(w0, b0), (w0, b0, b0)])


@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_no_task(name):
    (gram,) = arrays(name, np.zeros((0, 0)))
    with pytest.raises(ValueError, match=r"grads is empty: .*K = 0"):
        MT.combine_gradients([], method="min_norm")
    with pytest.raises(ValueError, match=r"K = 0"):
        MT.gram_matrix(())
    with pytest.raises(ValueError, match=r"gram is empty: .*K = 0"):
        MT.min_norm_weights(gram)
    with pytest.raises(ValueError, match=r"gram is empty"):
        MT.primary_weights(gram)
    (empty,) = arrays(name, np.zeros(0))
    with pytest.raises(ValueError, match=r"losses is empty: .*K = 0"):
        MT.weigh_losses(empty, method="sum")
    with pytest.raises(ValueError, match=r"losses is empty"):
        MT.weigh_losses([], method="sum")


@pytest.mark.parametrize("name", LOSS_BACKENDS)
@pytest.mark.parametrize("method, options", [("initial", {"initial": [1.0, 1.0, 1.0]}), ("realtime", {}),
                                             ("geometric", {}), ("power", {"gamma": 0.5})])
def test_non_positive_losses_are_refused_in_eager_mode(name, method, options):
    (losses,) = arrays(name, [1.0, 2.0, -0.5])
    with pytest.raises(ValueError, match=rf"method='{method}'\) needs positive losses: task 2 has -0.5 .*FlatNCE"):
        MT.weigh_losses(losses, method=method, **options)
    (losses,) = arrays(name, [0.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"task 0 has 0.0"):
        MT.weigh_losses(losses, method=method, **options)
    with polyloss.value_checks(False), np.errstate(all="ignore"):  # unchecked: the formula's value (0/0, log 0)
        MT.weigh_losses(losses, method=method, **options)


@pytest.mark.parametrize("name", ["jax", "tensorflow"])
def test_non_positive_losses_are_not_checked_when_compiled(name):
    backend = get(name)
    mode = {"jax": "jit", "tensorflow": "function"}[name]
    (losses,) = arrays(name, [1.0, -2.0])
    out = backend.compile(lambda x: MT.weigh_losses(x, method="geometric"), mode)(losses)
    assert np.isnan(backend.to_numpy(out))


def test_initial_and_prior_must_be_positive():
    with pytest.raises(ValueError, match=r"needs positive initial losses: task 1 has 0.0"):
        MT.weigh_losses(np.array([1.0, 2.0]), method="initial", initial=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"needs positive prior: task 0 has -1.0"):
        MT.weigh_losses(np.array([1.0, 2.0]), method="prior", prior=[-1.0, 1.0])
    with pytest.raises(ValueError, match=r"initial must have shape \(2,\)"):
        MT.weigh_losses(np.array([1.0, 2.0]), method="initial", initial=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"log_vars must have shape \(2,\)"):
        MT.weigh_losses(np.array([1.0, 2.0]), method="uncertainty", log_vars=[0.0])


@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_primary_index_out_of_range(name):
    grads = arrays(name, [1.0, 0.0], [0.0, 1.0], [1.0, 1.0])
    for bad in (3, -4, 10):
        with pytest.raises(ValueError, match=rf"primary = {bad} is out of range for K = 3 tasks"):
            MT.combine_gradients(grads, method="primary", primary=bad)
    with pytest.raises(TypeError, match=r"primary must be an int"):
        MT.combine_gradients(grads, method="primary", primary=1.0)
    with pytest.raises(ValueError, match=r"primary= is only used by method='primary'"):
        MT.combine_gradients(grads, method="min_norm", primary=1)


@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_unknown_methods_and_options(name):
    grads = arrays(name, [1.0, 0.0], [0.0, 1.0])
    (gram,) = arrays(name, np.eye(2))
    with pytest.raises(ValueError, match=r"method must be one of \('sum', 'mean', 'normalized', 'min_norm', "
                                         r"'primary', 'pcgrad'\), got 'mgda'"):
        MT.combine_gradients(grads, method="mgda")
    with pytest.raises(ValueError, match=r"method must be one of \('sum', 'initial', .*got 'average'"):
        MT.weigh_losses(grads[0], method="average")
    with pytest.raises(ValueError, match=r"solver must be one of \('auto', 'enumerate', 'active_set'\)"):
        MT.min_norm_weights(gram, solver="frank_wolfe")
    with pytest.raises(ValueError, match=r"needs key= .* or order="):
        MT.combine_gradients(grads, method="pcgrad")
    with pytest.raises(ValueError, match=r"order must be 'fixed', a permutation"):
        MT.combine_gradients(grads, method="pcgrad", order="random")
    with pytest.raises(ValueError, match=r"permutations of range\(2\)"):
        MT.combine_gradients(grads, method="pcgrad", order=[0, 0])
    with pytest.raises(ValueError, match=r"key= or order=, not both"):
        MT.combine_gradients(grads, method="pcgrad", order="fixed", key=0)
    with pytest.raises(ValueError, match=r"only used by method='pcgrad'"):
        MT.combine_gradients(grads, method="sum", order="fixed")
    with pytest.raises(ValueError, match=r"weigh_losses\(method='power'\) needs gamma="):
        MT.weigh_losses(grads[0] + 1.0, method="power")
    with pytest.raises(ValueError, match=r"weigh_losses\(method='sum'\) does not use gamma="):
        MT.weigh_losses(grads[0] + 1.0, method="sum", gamma=1.0)
    with pytest.raises(ValueError, match=r"gamma must lie in"):
        MT.weigh_losses(grads[0] + 1.0, method="power", gamma=float("inf"))


def test_enumeration_refuses_too_many_tasks():
    with pytest.raises(ValueError, match=r"accepts K <= 16, got K = 17"):
        MT.min_norm_weights(np.eye(17), solver="enumerate")


@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_gram_arguments(name):
    (rect,) = arrays(name, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"gram must be a square \[K, K\] matrix.*\(2, 3\)"):
        MT.min_norm_weights(rect)
    (asym,) = arrays(name, [[1.0, 0.5], [-0.5, 1.0]])
    with pytest.raises(ValueError, match=r"gram is not symmetric"):
        MT.min_norm_weights(asym)
    ints = get(name).from_numpy(np.eye(2, dtype=np.int64))
    with pytest.raises(TypeError, match=r"gram must be a real floating-point array"):
        MT.primary_weights(ints)


@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_non_floating_gradients_and_losses(name):
    backend = get(name)
    ints = backend.from_numpy(np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match=r"gradient 0 at the root must be a real floating-point array"):
        MT.gram_matrix([ints, ints])
    with pytest.raises(TypeError, match=r"losses must be a real floating-point array"):
        MT.weigh_losses(ints, method="sum")
    (matrix,) = arrays(name, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"losses must be a sequence of K scalar losses or a \[K\] array"):
        MT.weigh_losses(matrix, method="sum")
    with pytest.raises(ValueError, match=r"losses\[1\] must be a scalar loss .*shape \(2,\)"):
        MT.weigh_losses([matrix[0, 0], matrix[0, ...]], method="sum")


def test_grads_of_the_wrong_kind():
    with pytest.raises(TypeError, match=r"grads must be a list or tuple of K gradients"):
        MT.combine_gradients({"a": np.ones(2)}, method="sum")
    with pytest.raises(ValueError, match=r"0-d array"):
        MT.gram_matrix(np.float64(1.0) * np.ones(()))


# --------------------------------------------------------------------------------------------
# task_gradients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
def test_task_gradients_needs_autograd(name):
    (x,) = arrays(name, [1.0, 2.0])
    with pytest.raises(TypeError, match=rf"task_gradients needs automatic differentiation, which the {name} backend"):
        MT.task_gradients([x[0], x[1]], [x])


def test_task_gradients_jax_needs_a_function():
    get("jax")
    import jax.numpy as jnp

    theta = jnp.ones(3)
    with pytest.raises(TypeError, match=r"for JAX, losses must be a function of params"):
        MT.task_gradients(jnp.stack([theta.sum(), theta.sum()]), theta)
    with pytest.raises(ValueError, match=r"tape= is for losses already computed under a TensorFlow tape"):
        MT.task_gradients(lambda p: p, theta, tape=object())


def test_task_gradients_tensorflow_needs_a_persistent_tape():
    get("tensorflow")
    import tensorflow as tf

    theta = tf.Variable([1.0, 2.0])
    with tf.GradientTape() as tape:
        losses = [tf.reduce_sum(theta), tf.reduce_sum(theta**2)]
    with pytest.raises(ValueError, match=r"tape must be persistent"):
        MT.task_gradients(losses, [theta], tape=tape)
    with pytest.raises(ValueError, match=r"for TensorFlow, pass tape="):
        MT.task_gradients(losses, [theta])


def test_task_gradients_torch_misuse():
    get("torch")
    import torch

    theta = torch.ones(3, requires_grad=True)
    frozen = torch.ones(3)
    losses = [theta.sum(), (theta**2).sum()]
    with pytest.raises(ValueError, match=r"params: leaf 1 does not require grad"):
        MT.task_gradients(losses, [theta, frozen])
    with pytest.raises(ValueError, match=r"tape= is for TensorFlow"):
        MT.task_gradients(losses, [theta], tape=object())
    with pytest.raises(ValueError, match=r"losses is empty"):
        MT.task_gradients([], [theta])
    with pytest.raises(ValueError, match=r"losses must be K scalar losses"):
        MT.task_gradients(torch.ones(2, 2), [theta])


def test_collectives_need_a_framework_with_them():
    with pytest.raises(TypeError, match=r"torch\.distributed .* JAX collective"):
        MT.combine_gradients([np.ones(2), np.ones(2)], method="min_norm", group=True)


def test_random_order_key_types():
    with pytest.raises(TypeError, match=r"key must be a numpy.random.Generator or an int seed for numpy arrays"):
        MT.combine_gradients([np.ones(2), -np.ones(2)], method="pcgrad", key="seed")

"""Bad input to the gradient-based regularisers (docs/adversarial.md): clear errors naming the argument,
its shape or value and what was expected, on every autograd backend; NumPy arrays where autograd is
needed; JAX without a key."""

from __future__ import annotations

import re

import numpy as np
import pytest

import polyloss
from polyloss.testing import assert_close

from helpers import AUTOGRAD_BACKENDS, get

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])


def arr(backend, a, dtype="float32"):
    a = np.asarray(a)
    return backend.from_numpy(a, dtype=dtype if np.issubdtype(a.dtype, np.floating) else None)


def loss_fn(backend):
    """A scalar loss: ½ Σ z²."""
    xp = backend.namespace
    return lambda z: 0.5 * xp.sum(z * z)


def per_example(backend):
    xp = backend.namespace
    return lambda z: 0.5 * xp.sum(z * z, axis=1)


def vat_kwargs(backend):
    """A key for JAX (required there); nothing elsewhere."""
    if backend.name == "jax":
        import jax

        return {"key": jax.random.key(0)}
    return {}


@pytest.fixture(params=AUTOGRAD_BACKENDS)
def autograd(request):
    return get(request.param)


# --------------------------------------------------------------------------------------------
# loss_fn's output
# --------------------------------------------------------------------------------------------
def test_non_scalar_loss_with_global_scope_names_the_shape(autograd):
    x = arr(autograd, X)
    with pytest.raises(ValueError, match=re.escape("loss_fn must return shape ()") + r".*got shape \(2,\)"):
        polyloss.adversarial_loss(per_example(autograd), x)
    with pytest.raises(ValueError, match=r"loss_fn with scope='global' must return shape \(\).*got shape \(2,\)"):
        polyloss.gradient_penalty(per_example(autograd), x)
    # scope="example" wants one loss per example
    with pytest.raises(ValueError, match=r"scope='example' must return shape \(2,\).*got shape \(\)"):
        polyloss.gradient_penalty(loss_fn(autograd), x, scope="example")
    # adversarial_loss needs a scalar whatever the scope of the perturbation
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):
        polyloss.adversarial_loss(per_example(autograd), x, scope="example")


def test_loss_fn_must_return_an_array_of_the_framework(autograd):
    x = arr(autograd, X)
    with pytest.raises(TypeError, match=f"must return an array of the same framework as x \\({autograd.name}\\)"):
        polyloss.adversarial_loss(lambda z: 1.0, x)
    with pytest.raises(TypeError, match="loss_fn must be a callable"):
        polyloss.gradient_penalty(3.0, x)
    with pytest.raises(TypeError, match="logits_fn must be a callable"):
        polyloss.vat_loss(None, x, **vat_kwargs(autograd))


def test_logits_must_keep_the_example_axis(autograd):
    xp = autograd.namespace
    x = arr(autograd, X)
    with pytest.raises(ValueError, match=r"leading \(example\) axis of x \(2\), got shape \(3, 2\)"):
        polyloss.vat_loss(lambda z: xp.permute_dims(z, (1, 0)), x, **vat_kwargs(autograd))
    with pytest.raises(ValueError, match=r"divergence='kl' needs logits of shape \[B, \.\.\., C\], got \(2,\)"):
        polyloss.vat_loss(lambda z: xp.sum(z, axis=1), x, **vat_kwargs(autograd))
    with pytest.raises(ValueError, match=r"the divergence must return shape \(2,\).*got shape \(2, 3\)"):
        polyloss.vat_loss(lambda z: z, x, divergence=lambda a, b: a - b, **vat_kwargs(autograd))


# --------------------------------------------------------------------------------------------
# sizes and counts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_epsilon_must_be_finite_and_non_negative(autograd, bad):
    x = arr(autograd, X)
    message = r"epsilon must lie in \[0, inf\); got"
    with pytest.raises(ValueError, match=message):
        polyloss.fgm_perturbation(x, epsilon=bad)
    with pytest.raises(ValueError, match=message):
        polyloss.adversarial_loss(loss_fn(autograd), x, epsilon=bad)
    with pytest.raises(ValueError, match=message):
        polyloss.vat_loss(lambda z: z, x, epsilon=bad, **vat_kwargs(autograd))


def test_epsilon_zero_is_allowed_everywhere(autograd):
    """Schedules start at 0: no perturbation, no error."""
    xp = autograd.namespace
    x = arr(autograd, X)
    assert not bool(xp.any(polyloss.fgm_perturbation(x, epsilon=0.0) != 0.0))
    loss, adversarial = polyloss.adversarial_loss(loss_fn(autograd), x, epsilon=0, steps=3)
    assert float(loss) == float(adversarial)
    assert not bool(xp.any(polyloss.vat_loss(lambda z: z, x, epsilon=0.0, **vat_kwargs(autograd)) != 0.0))


def test_array_epsilon_is_checked_eagerly(autograd):
    x = arr(autograd, X)
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0, got -1.0"):
        polyloss.adversarial_loss(loss_fn(autograd), x, epsilon=arr(autograd, np.array(-1.0)))
    with pytest.raises(ValueError, match=r"epsilon must be a number or a 0-d array, got shape \(2,\)"):
        polyloss.fgm_perturbation(x, epsilon=arr(autograd, np.array([1.0, 2.0])))


def test_steps_and_step_size(autograd):
    x = arr(autograd, X)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        polyloss.adversarial_loss(loss_fn(autograd), x, steps=0)
    with pytest.raises(TypeError, match="steps must be an int, got 2.0"):
        polyloss.adversarial_loss(loss_fn(autograd), x, steps=2.0)
    with pytest.raises(TypeError, match="steps must be an int, got True"):
        polyloss.adversarial_loss(loss_fn(autograd), x, steps=True)
    with pytest.raises(ValueError, match=r"step_size must lie in \[0, inf\)"):
        polyloss.adversarial_loss(loss_fn(autograd), x, steps=2, step_size=-1.0)


def test_vat_xi_and_iterations(autograd):
    x = arr(autograd, X)
    with pytest.raises(ValueError, match=r"xi must lie in \(0, inf\); got 0"):
        polyloss.vat_loss(lambda z: z, x, xi=0.0, **vat_kwargs(autograd))
    with pytest.raises(ValueError, match="iterations must be >= 0, got -1"):
        polyloss.vat_loss(lambda z: z, x, iterations=-1, **vat_kwargs(autograd))
    with pytest.raises(ValueError, match=r"noise has shape \(2, 2\) but x has shape \(2, 3\)"):
        polyloss.vat_loss(lambda z: z, x, noise=np.ones((2, 2)))


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------
def test_unknown_names(autograd):
    x = arr(autograd, X)
    with pytest.raises(ValueError, match=r"norm must be one of 'l2', 'sign'; got 'linf'"):
        polyloss.adversarial_loss(loss_fn(autograd), x, norm="linf")
    with pytest.raises(ValueError, match=r"norm must be one of 'l2', 'sign'; got 'L2'"):
        polyloss.fgm_perturbation(x, norm="L2")
    with pytest.raises(ValueError, match=r"scope must be one of 'global', 'example'; got 'batch'"):
        polyloss.gradient_penalty(loss_fn(autograd), x, scope="batch")
    with pytest.raises(ValueError, match=r"scope must be one of 'global', 'example'; got None"):
        polyloss.fgm_perturbation(x, scope=None)
    with pytest.raises(ValueError, match=r"divergence must be 'kl', 'multilabel' or a callable .*got 'js'"):
        polyloss.vat_loss(lambda z: z, x, divergence="js", **vat_kwargs(autograd))
    with pytest.raises(TypeError, match="normalized must be a bool"):
        polyloss.gradient_penalty(loss_fn(autograd), x, normalized="yes")


def test_where_must_be_boolean_and_broadcast(autograd):
    x = arr(autograd, X)
    with pytest.raises(TypeError, match="where must be a boolean array"):
        polyloss.adversarial_loss(loss_fn(autograd), x, where=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"where has shape \(2, 2\), which does not broadcast to x shape \(2, 3\)"):
        polyloss.gradient_penalty(loss_fn(autograd), x, where=np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match=r"does not broadcast to grad shape"):
        polyloss.fgm_perturbation(x, where=np.ones((3,), dtype=bool)[:2])


def test_example_scope_needs_a_leading_axis(autograd):
    x0 = arr(autograd, np.array(1.5))
    with pytest.raises(ValueError, match=r"grad must have a leading \(example\) axis with scope='example'"):
        polyloss.fgm_perturbation(x0, scope="example")
    with pytest.raises(ValueError, match=r"x must have a leading \(example\) axis"):
        polyloss.vat_loss(lambda z: z, x0, **vat_kwargs(autograd))


def test_integer_x_is_a_type_error(autograd):
    ids = arr(autograd, np.array([[1, 2]]))
    with pytest.raises(TypeError, match="x must be a real floating-point array"):
        polyloss.adversarial_loss(lambda z: z, ids)
    with pytest.raises(TypeError, match="grad must be a real floating-point array"):
        polyloss.fgm_perturbation(ids)


# --------------------------------------------------------------------------------------------
# frameworks: NumPy has no autograd; random keys
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("function", ["adversarial_loss", "gradient_penalty", "vat_loss"])
@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
def test_arrays_without_autograd_are_a_type_error_naming_the_frameworks(function, name):
    backend = get(name)
    x = arr(backend, X)
    message = rf"{function} differentiates .*\(torch, jax or tensorflow\), got a {name} array"
    with pytest.raises(TypeError, match=message):
        getattr(polyloss, function)(lambda z: z, x)


def test_fgm_perturbation_is_array_math_and_runs_on_numpy():
    out = polyloss.fgm_perturbation(np.array([[3.0, 4.0]]), epsilon=2.0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert_close(out, np.array([[1.2, 1.6]]))


def test_a_list_is_not_an_array():
    with pytest.raises(TypeError, match="x must be an array of a supported framework"):
        polyloss.adversarial_loss(lambda z: z, [1.0, 2.0])


def test_jax_needs_a_key_and_says_how_to_pass_one():
    get("jax")
    import jax.numpy as jnp

    x = jnp.asarray(X)
    with pytest.raises(TypeError, match=re.escape("pass key=jax.random.key(seed)") + ".*jax.random.split"):
        polyloss.vat_loss(lambda z: z, x)
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        polyloss.vat_loss(lambda z: z, x, key=0)
    # an explicit start needs no key
    polyloss.vat_loss(lambda z: z, x, noise=np.ones(X.shape))


def test_torch_key_is_a_generator():
    get("torch")
    import torch

    with pytest.raises(TypeError, match="key must be a torch.Generator"):
        polyloss.vat_loss(lambda z: z, torch.tensor(X), key=0)


def test_tensorflow_key_is_a_seed_or_a_generator():
    get("tensorflow")
    import tensorflow as tf

    with pytest.raises(TypeError, match="key must be None, an int seed, an integer tensor or a tf.random.Generator"):
        polyloss.vat_loss(lambda z: z, tf.constant(X), key=1.5)

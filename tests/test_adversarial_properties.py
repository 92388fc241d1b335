"""Properties of the gradient-based regularisers (docs/adversarial.md): closed forms, identities, the
conventions of the reference, second derivatives of every family under the penalty, VAT's power
iteration against the exact Hessian, random starts, half precision, and the contract with the user's own
differentiation (no ``.grad`` written, outer backward / ``jax.value_and_grad`` / outer tape, ``no_grad``).

The model and its analytic gradients are the reference's (``polyloss.reference._models``); the
cross-framework identity on that model is the conformance registry's job (``cases_adversarial.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import polyloss
from polyloss.reference import _models
from polyloss.reference import adversarial as reference
from polyloss.testing import assert_close

from helpers import AUTOGRAD_BACKENDS, LOSS_BACKENDS, get


@pytest.fixture(params=AUTOGRAD_BACKENDS)
def autograd(request):
    return get(request.param)


def arr(backend, a, dtype="float64"):
    a = np.asarray(a)
    return backend.from_numpy(a, dtype=dtype if np.issubdtype(a.dtype, np.floating) else None)


def host(backend, x):
    return np.asarray(backend.to_numpy(x), dtype=np.float64)


def key_for(backend, seed=0):
    """The random-start argument of each framework: a JAX key, a torch.Generator, an int seed (TF)."""
    if backend.name == "jax":
        import jax

        return jax.random.key(seed)
    if backend.name == "torch":
        import torch

        return torch.Generator().manual_seed(seed)
    return seed


def half_sq(backend):
    xp = backend.namespace
    return lambda z: 0.5 * xp.sum(z * z)


class Recorder:
    """A ``logits_fn`` that remembers its last input (eager only): VAT's last call is at ``x + ε·r``."""

    def __init__(self, fn):
        self.fn, self.last = fn, None

    def __call__(self, z):
        self.last = z
        return self.fn(z)


# --------------------------------------------------------------------------------------------
# fgm_perturbation: every backend
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_fgm_has_norm_epsilon_per_unit_and_the_direction_of_the_gradient(name):
    backend = get(name)
    g = np.random.default_rng(0).normal(size=(3, 4, 2))
    for scope, axes in (("global", None), ("example", (1, 2))):
        delta = host(backend, polyloss.fgm_perturbation(arr(backend, g), epsilon=0.3, scope=scope))
        norms = np.sqrt(np.sum(delta**2, axis=axes))
        assert_close(norms, np.full(np.shape(norms), 0.3), rtol=1e-12)
        assert_close(delta, reference.fgm_perturbation(g, epsilon=0.3, scope=scope))


@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_fgm_zero_nonfinite_and_excluded(name):
    backend = get(name)
    g = np.array([[3.0, 4.0, np.nan], [0.0, 0.0, 0.0], [1.0, np.inf, 2.0], [np.nan, np.nan, 5.0]])
    where = np.array([[True, True, False]] * 3 + [[False, False, True]])
    out = host(backend, polyloss.fgm_perturbation(arr(backend, g), scope="example", where=where))
    # row 0: the NaN is excluded; row 1: zero; row 2: infinite; row 3: the NaNs are excluded
    assert_close(out, np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), rtol=1e-15)
    sign = host(backend, polyloss.fgm_perturbation(arr(backend, g), epsilon=0.5, norm="sign", scope="example"))
    assert_close(sign, np.array([[0.0] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 3]))  # NaN / inf rows and a zero row
    # global scope: one NaN anywhere zeroes the whole array, never NaN
    assert not np.any(host(backend, polyloss.fgm_perturbation(arr(backend, g))))


@pytest.mark.parametrize("name", LOSS_BACKENDS)
def test_fgm_norm_neither_overflows_nor_underflows(name):
    """float32: 1e30² and 1e-30² are out of range, the scaled norm is not."""
    backend = get(name)
    for scale in (1e30, 1e-30, 3e38):
        g = np.array([[3.0, 4.0]]) * scale / 5.0
        out = host(backend, polyloss.fgm_perturbation(arr(backend, g, "float32"), epsilon=2.0))
        assert_close(out, np.array([[1.2, 1.6]]), rtol=1e-6)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "tensorflow"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_fgm_half_precision_keeps_the_dtype_and_computes_the_norm_in_float32(name, dtype):
    backend = get(name)
    if dtype not in backend.dtypes():
        pytest.skip(f"{name} has no {dtype}")
    g = np.full((2, 1000), 300.0)  # Σ g² = 9e7 overflows float16 (max 65504)
    out = polyloss.fgm_perturbation(arr(backend, g, dtype), epsilon=1.0, scope="example")
    assert_close(out, np.full((2, 1000), 1.0 / math.sqrt(1000.0)), dtype=dtype, rtol=1e-2)


def test_fgm_array_epsilon_under_jit_and_tf_function():
    get("jax")
    get("tensorflow")
    import jax
    import jax.numpy as jnp
    import tensorflow as tf

    g = np.array([[3.0, 4.0]])
    jitted = jax.jit(lambda g, e: polyloss.fgm_perturbation(g, epsilon=e))
    assert_close(jitted(jnp.asarray(g), jnp.asarray(0.5)), np.array([[0.3, 0.4]]))
    traced = tf.function(lambda g, e: polyloss.fgm_perturbation(g, epsilon=e))
    assert_close(traced(tf.constant(g), tf.constant(0.5, tf.float64)), np.array([[0.3, 0.4]]))


# --------------------------------------------------------------------------------------------
# adversarial_loss
# --------------------------------------------------------------------------------------------
def test_fgm_on_a_quadratic(autograd):
    """L = ½‖z‖², ∇L = z: x + δ = (1 + ε/‖x‖)·x; L(x + δ) = ½(‖x‖ + ε)²."""
    x = arr(autograd, np.array([[3.0, 0.0], [0.0, 4.0]]))  # ‖x‖ = 5
    loss, adversarial = polyloss.adversarial_loss(half_sq(autograd), x, epsilon=1.0)
    assert_close(loss, 12.5)
    assert_close(adversarial, 18.0)
    # per example: each row moves by ε along itself: ½[(3 + 1)² + (4 + 1)²]
    _, adversarial = polyloss.adversarial_loss(half_sq(autograd), x, epsilon=1.0, scope="example")
    assert_close(adversarial, 20.5)
    # sign: x + δ = (3.5, 0, 0, 4.5) (sign(0) = 0)
    _, adversarial = polyloss.adversarial_loss(half_sq(autograd), x, epsilon=0.5, norm="sign")
    assert_close(adversarial, 0.5 * (3.5**2 + 4.5**2))


def test_pgd_one_full_step_is_fgm_and_stays_in_the_ball(autograd):
    rng = np.random.default_rng(1)
    xp = autograd.namespace
    x = rng.normal(size=(3, 4))
    a = rng.normal(size=(4, 4))
    a = a @ a.T  # L = ½ zᵀAz + Σ tanh(z): a non-quadratic loss

    def loss_fn(z):
        return 0.5 * xp.sum(xp.matmul(z, arr(autograd, a)) * z) + xp.sum(xp.tanh(z))

    def ref_loss(z):
        return 0.5 * float(np.sum((z @ a) * z)) + float(np.sum(np.tanh(z)))

    def ref_grad(z):
        return z @ a + 1.0 - np.tanh(z) ** 2

    fgm = polyloss.adversarial_loss(loss_fn, arr(autograd, x), epsilon=0.4)[1]
    for step_size in (0.4, 1.0):
        pgd = polyloss.adversarial_loss(loss_fn, arr(autograd, x), epsilon=0.4, steps=1, step_size=step_size)[1]
        assert_close(pgd, host(autograd, fgm), rtol=1e-12)
    for norm, scope in (("l2", "global"), ("l2", "example"), ("sign", "global")):
        got = polyloss.adversarial_loss(loss_fn, arr(autograd, x), epsilon=0.4, norm=norm, scope=scope, steps=4)[1]
        want = reference.adversarial_loss(ref_loss, x, epsilon=0.4, norm=norm, scope=scope, steps=4, grad_fn=ref_grad)
        assert_close(got, want[1], rtol=1e-12)
        delta = reference.adversarial_perturbation(ref_loss, x, epsilon=0.4, norm=norm, scope=scope, steps=4,
                                                   grad_fn=ref_grad)
        # the reference's δ is on the boundary of the ball (the default step walks 2.5ε)
        size = np.max(np.abs(delta)) if norm == "sign" else np.linalg.norm(delta if scope == "global" else delta[0])
        assert size <= 0.4 * (1 + 1e-12) and size >= 0.4 * (1 - 1e-9)


def test_epsilon_zero_calls_the_loss_twice_and_takes_no_gradient(autograd):
    calls = []
    xp = autograd.namespace

    def loss_fn(z):
        calls.append(1)
        return xp.sum(z * z)

    x = arr(autograd, np.array([1.0, 2.0]))
    loss, adversarial = polyloss.adversarial_loss(loss_fn, x, epsilon=0.0, steps=3)
    assert len(calls) == 2 and float(host(autograd, loss)) == float(host(autograd, adversarial)) == 5.0


def test_pgd_takes_one_gradient_per_step(autograd):
    calls = []

    def loss_fn(z):
        calls.append(1)
        return half_sq(autograd)(z)

    polyloss.adversarial_loss(loss_fn, arr(autograd, np.array([1.0, 2.0])), steps=3)
    assert len(calls) == 4  # the clean loss (with the first gradient), two more gradients, the adversarial loss


# --------------------------------------------------------------------------------------------
# gradient penalty
# --------------------------------------------------------------------------------------------
def test_penalty_closed_form_and_scales(autograd):
    """L = w·Σ z²: ∇ = 2wz; P = 2w²‖z‖², ‖∇‖ = 2|w|‖z‖; per example: ½(2w)²‖z_b‖²."""
    xp = autograd.namespace
    z = np.array([[1.0, 2.0], [0.0, 3.0]])
    w = 1.5

    def loss_fn(v):
        return w * xp.sum(v * v)

    _, p = polyloss.gradient_penalty(loss_fn, arr(autograd, z))
    assert_close(p, 2 * w**2 * 14.0)
    _, n = polyloss.gradient_penalty(loss_fn, arr(autograd, z), normalized=True)
    assert_close(n, 2 * w * math.sqrt(14.0))
    _, pb = polyloss.gradient_penalty(lambda v: w * xp.sum(v * v, axis=1), arr(autograd, z), scope="example")
    assert_close(pb, np.array([2 * w**2 * 5.0, 2 * w**2 * 9.0]))
    # where: the second column is left out of the norms
    _, pw = polyloss.gradient_penalty(loss_fn, arr(autograd, z), where=np.array([True, False]))
    assert_close(pw, 2 * w**2 * 1.0)


def test_penalty_of_the_mean_loss_scales_as_one_over_b_squared(autograd):
    """Independent examples: the global penalty of the batch mean is Σ_b P_b / B²."""
    x, weights, bias, labels, mask = _model(autograd)
    xp = autograd.namespace

    def losses(z):
        return polyloss.softmax_crossentropy(_logits(autograd, z, weights, bias, mask), labels)

    _, total = polyloss.gradient_penalty(lambda z: xp.mean(losses(z)), x)
    _, each = polyloss.gradient_penalty(losses, x, scope="example")
    assert_close(total, float(np.sum(host(autograd, each))) / 9.0, rtol=1e-12)


def test_penalty_zero_gradient_and_nonfinite(autograd):
    xp = autograd.namespace
    x = arr(autograd, np.array([[1.0, 2.0]]))
    _, p = polyloss.gradient_penalty(lambda z: xp.sum(z * 0.0), x, normalized=True)
    assert float(host(autograd, p)) == 0.0
    _, p = polyloss.gradient_penalty(lambda z: xp.sum(z * math.inf), x)
    assert float(host(autograd, p)) == math.inf
    _, p = polyloss.gradient_penalty(lambda z: xp.sum(z * math.nan), x)
    assert math.isnan(float(host(autograd, p)))
    # a huge gradient whose squares overflow float32 while ½‖g‖² does not ... and one where it does
    big = arr(autograd, np.array([[1.0, 1.0]]), "float32")
    _, p = polyloss.gradient_penalty(lambda z: 1e19 * xp.sum(z), big, normalized=True)
    assert_close(p, 1e19 * math.sqrt(2.0), dtype="float32")


# --------------------------------------------------------------------------------------------
# second derivatives: every family a user may put under a penalty
# --------------------------------------------------------------------------------------------
def _heads(backend, rng):
    """``name -> head(logits [4, 6]) -> per-example losses``: the losses of the multi-label, softmax
    (classification) and contrastive families, with fixed labels.

    Not here: ``circle_loss``, whose self-paced weights α are stop-gradient by definition (the paper's and
    the official code's convention), so that its gradient is not the derivative of its value and neither
    derivative of the penalty is comparable with finite differences; tests/test_adversarial_native.py
    checks it against the hand-written double backprop with α detached."""
    xp = backend.namespace
    b, c = 4, 6
    hard = rng.random((b, c)) < 0.4
    soft = rng.uniform(0.1, 0.9, (b, c))
    ids = rng.integers(0, c, b)
    other = rng.normal(size=(b, c))
    indices = np.array([[0, 2], [1, -1], [5, 3], [-1, -1]])
    spans = np.array([[[0, 1], [1, 2]], [[0, 0], [-1, -1]], [[2, 2], [0, 2]], [[-1, -1], [-1, -1]]])
    gp_labels = rng.random((b, 3, 3)) < 0.3
    prior = rng.uniform(0.1, 1.0, c)
    prior /= prior.sum()
    embeddings = rng.normal(size=(b, c))
    pairs = rng.random(b * c) < 0.5
    distribution = soft / soft.sum(1)[:, None]

    def square(s):
        """[4, 6] -> [4, 3, 3] GlobalPointer logits: the 6 scores and half of the first 3 again."""
        return xp.reshape(xp.concat([s, s[:, :3] * 0.5], axis=1), (b, 3, 3))

    def a(v):
        return arr(backend, v)

    return {
        # multi-label family
        "multilabel_crossentropy/hard": lambda s: polyloss.multilabel_crossentropy(s, a(hard)),
        "multilabel_crossentropy/soft": lambda s: polyloss.multilabel_crossentropy(s, a(soft)),
        "sparse_multilabel_crossentropy": lambda s: polyloss.sparse_multilabel_crossentropy(s, a(indices),
                                                                                              pad_index=-1),
        "global_pointer_crossentropy": lambda s: polyloss.global_pointer_crossentropy(square(s), a(gp_labels)),
        "sparse_global_pointer_crossentropy": lambda s: polyloss.sparse_global_pointer_crossentropy(
            square(s), a(spans), pad_index=-1),
        "multilabel_divergence": lambda s: polyloss.multilabel_divergence(s, a(other)),
        # softmax / classification family
        "softmax_crossentropy": lambda s: polyloss.softmax_crossentropy(s, a(ids), label_smoothing=0.1),
        "softmax_crossentropy/probabilities": lambda s: polyloss.softmax_crossentropy(s, a(distribution)),
        "sigmoid_crossentropy": lambda s: xp.sum(polyloss.sigmoid_crossentropy(s, a(soft)), axis=1),
        "focal_loss/sigmoid": lambda s: polyloss.focal_loss(s, a(hard), gamma=2.0),
        "focal_loss/softmax": lambda s: polyloss.focal_loss(s, a(ids), activation="softmax", gamma=1.5),
        "poly1_crossentropy": lambda s: polyloss.poly1_crossentropy(s, a(ids)),
        "logit_adjusted_crossentropy": lambda s: polyloss.logit_adjusted_crossentropy(s, a(ids), a(prior)),
        "rdrop_loss": lambda s: polyloss.rdrop_loss(s, a(other), a(ids)),
        "rdrop_divergence": lambda s: polyloss.rdrop_divergence(s, a(other)),
        "hard_truncation_loss": lambda s: polyloss.hard_truncation_loss(s, a(hard)),
        "softened_truncation_loss": lambda s: xp.sum(polyloss.softened_truncation_loss(s, a(hard)), axis=1),
        "squareplus": lambda s: xp.sum(polyloss.squareplus(s), axis=1),
        # contrastive family
        "infonce": lambda s: polyloss.infonce(s, a(ids)),
        "flatnce": lambda s: polyloss.flatnce(s, a(ids)),
        "am_softmax": lambda s: polyloss.am_softmax(xp.tanh(0.3 * s), a(ids)),
        "arcface": lambda s: polyloss.arcface(xp.tanh(0.3 * s), a(ids)),
        "cosent_loss": lambda s: polyloss.cosent_loss(xp.reshape(xp.tanh(0.3 * s), (-1,)), a(pairs)),
        "unified_pairwise_loss": lambda s: polyloss.unified_pairwise_loss(s, a(hard)),
        "infonce_from_embeddings": lambda s: polyloss.infonce_from_embeddings(s, a(embeddings)),
    }


HEADS = list(_heads(get("numpy"), np.random.default_rng(0)))


@pytest.mark.parametrize("head", HEADS)
def test_every_family_is_twice_differentiable_under_the_penalty(autograd, head):
    """P(W) = ½‖∇_x mean L(x W)‖²: the derivative of P along a random direction V by autograd (double
    backprop through the loss's hand-written gradient) equals the central difference of P (float64)."""
    rng = np.random.default_rng(3)
    xp = autograd.namespace
    fn = _heads(autograd, np.random.default_rng(0))[head]
    x = arr(autograd, rng.normal(size=(4, 5)))
    w0, direction = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))

    def penalty(w):
        def loss_fn(z):
            out = fn(xp.matmul(z, w))
            return xp.mean(out) if out.ndim else out

        return polyloss.gradient_penalty(loss_fn, x)[1]

    _, grad = autograd.value_and_grad(penalty)(arr(autograd, w0))
    h = 1e-5
    plus, minus = (float(host(autograd, penalty(arr(autograd, w0 + sign * h * direction)))) for sign in (1.0, -1.0))
    numeric = (plus - minus) / (2 * h)
    slope = float(np.sum(host(autograd, grad) * direction))
    assert float(host(autograd, penalty(arr(autograd, w0)))) > 0.0
    assert abs(slope - numeric) <= 1e-6 * max(1.0, abs(numeric)), (slope, numeric)


# --------------------------------------------------------------------------------------------
# VAT
# --------------------------------------------------------------------------------------------
def _model(backend, seed=0, batch=3, length=4, dim=3, classes=4, dtype="float64"):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, length, dim))
    weights = rng.normal(size=(dim, classes))
    bias = rng.normal(0.0, 0.5, classes)
    labels = rng.integers(0, classes, batch)
    mask = np.arange(length)[None, :] < np.array([length, 2, 1][:batch])[:, None]
    return (arr(backend, x, dtype), arr(backend, weights, dtype), arr(backend, bias, dtype), arr(backend, labels),
            arr(backend, mask))


def _logits(backend, x, weights, bias, mask):
    """The reference model's logits (masked mean pooling, linear), against the array API."""
    xp = backend.namespace
    count = xp.sum(xp.astype(mask, x.dtype), axis=1)[:, None]
    h = xp.sum(xp.where(mask[..., None], x, 0.0), axis=1) / xp.where(count > 0.0, count, 1.0)
    return xp.matmul(h, weights) + bias


@pytest.mark.parametrize("divergence", ["kl", "multilabel"])
def test_vat_power_iteration_finds_the_dominant_eigenvector_of_the_hessian(autograd, divergence):
    x, weights, bias, _, mask = _model(autograd, seed=4)
    hessian = _models.vat_hessian(host(autograd, x), host(autograd, weights), host(autograd, bias),
                                  mask=host(autograd, mask).astype(bool), divergence=divergence)
    eigenvalues, eigenvectors = _models.dominant_eigenvector(hessian)
    recorder = Recorder(lambda z: _logits(autograd, z, weights, bias, mask))
    epsilon = 1e-3
    polyloss.vat_loss(recorder, x, divergence=divergence, epsilon=epsilon, xi=1e-4, iterations=30,
                      key=key_for(autograd))
    r = host(autograd, recorder.last - x).reshape(x.shape[0], -1) / epsilon
    for b in range(x.shape[0]):
        gap = np.sort(np.linalg.eigvalsh(hessian[b]))[-2:]
        assert gap[1] > 1.05 * gap[0]  # a dominant eigenvalue exists
        assert abs(float(r[b] @ eigenvectors[b])) > 0.99


def test_vat_iterations_zero_is_gaussian_noise_of_norm_epsilon(autograd):
    xp = autograd.namespace
    x = arr(autograd, np.zeros((4, 3, 2)))
    recorder = Recorder(lambda z: xp.reshape(z, (4, 6)))
    polyloss.vat_loss(recorder, x, epsilon=0.7, iterations=0, key=key_for(autograd, 5))
    r = host(autograd, recorder.last).reshape(4, -1)
    assert_close(np.linalg.norm(r, axis=1), np.full(4, 0.7), rtol=1e-12)
    # the same key gives the same start; the start is the framework's standard normal, normalised
    noise = host(autograd, autograd.random_normal(key_for(autograd, 5), x, dtype=x.dtype)).reshape(4, -1)
    assert_close(r, 0.7 * noise / np.linalg.norm(noise, axis=1, keepdims=True), rtol=1e-12)
    other = Recorder(recorder.fn)
    polyloss.vat_loss(other, x, epsilon=0.7, iterations=0, key=key_for(autograd, 6))
    assert not np.allclose(host(autograd, other.last), host(autograd, recorder.last))
    # global scope: one norm for the whole array
    polyloss.vat_loss(recorder, x, epsilon=0.7, iterations=0, key=key_for(autograd, 5), scope="global")
    assert_close(np.linalg.norm(host(autograd, recorder.last)), 0.7, rtol=1e-12)


def test_vat_epsilon_zero_is_zero_and_clean_logits_may_be_passed(autograd):
    x, weights, bias, _, mask = _model(autograd)

    def logits_fn(z):
        return _logits(autograd, z, weights, bias, mask)

    assert_close(polyloss.vat_loss(logits_fn, x, epsilon=0.0, key=key_for(autograd)), np.zeros(3))
    noise = np.random.default_rng(2).normal(size=(3, 4, 3))
    computed = polyloss.vat_loss(logits_fn, x, noise=noise)
    given = polyloss.vat_loss(logits_fn, x, noise=noise, clean_logits=logits_fn(x))
    assert_close(given, host(autograd, computed), rtol=1e-14)


def test_vat_kl_is_accurate_when_tiny_and_when_huge(autograd):
    """The divergence of the power iteration's ξ-small probes: relative accuracy down to 1e-12 (the
    naive Σ p (log p - log q) loses everything below 1e-16 · |log p|), and no overflow at huge logits."""
    xp = autograd.namespace
    clean = np.array([[0.3, -1.2, 2.0, 0.0], [50.0, -50.0, 0.0, 1.0]])
    for shift in (1e-6, 1e-3, 3.0, 300.0):
        d = np.array([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 0.0, -1.0]]) * shift
        got = polyloss.vat_loss(lambda z: arr(autograd, clean) + z, arr(autograd, np.zeros((2, 4))),
                                noise=d, iterations=0, epsilon=float(np.linalg.norm(d[0])), scope="global")
        # the global direction is d/‖d‖, times ε = ‖d_0‖: the perturbation is d·‖d_0‖/‖d‖
        r = d * np.linalg.norm(d[0]) / np.linalg.norm(d)
        want = reference.softmax_kl_divergence(clean, clean + r)
        assert_close(got, want, rtol=1e-10)
        assert float(xp.min(got)) >= 0.0


def test_vat_half_precision_is_finite(autograd):
    for dtype in ("float16", "bfloat16"):
        if dtype not in autograd.dtypes():
            continue
        x, weights, bias, _, mask = _model(autograd, dtype=dtype)
        out = polyloss.vat_loss(lambda z: _logits(autograd, z, weights, bias, mask), x, key=key_for(autograd))
        values = host(autograd, out)
        assert np.all(np.isfinite(values)) and np.all(values >= 0.0) and np.any(values > 0.0)
        assert_close(out, values, dtype="float32")


def test_adversarial_and_penalty_half_precision_are_finite(autograd):
    """float16 embeddings whose gradient's squared norm overflows float16: finite perturbations and losses."""
    xp = autograd.namespace
    for dtype in ("float16", "bfloat16"):
        x = arr(autograd, np.full((2, 500), 0.5), dtype)

        def loss_fn(z):
            return 300.0 * xp.sum(xp.astype(z, xp.float32))  # ∇ = 300 everywhere, Σ g² = 4.5e7

        loss, adversarial = polyloss.adversarial_loss(loss_fn, x, epsilon=1.0)
        clean = float(host(autograd, loss))
        assert_close(adversarial, clean + 300.0 * math.sqrt(1000.0), rtol=2e-2)
        _, penalty = polyloss.gradient_penalty(loss_fn, x)
        assert_close(penalty, 0.5 * 300.0**2 * 1000.0, rtol=1e-2, dtype="float32")


# --------------------------------------------------------------------------------------------
# the user's own differentiation
# --------------------------------------------------------------------------------------------
def test_torch_leaves_grad_buffers_alone_and_supports_an_outer_backward():
    get("torch")
    import torch

    torch.manual_seed(0)
    embedding = torch.nn.Embedding(7, 3).double()
    head = torch.nn.Linear(3, 4).double()
    ids, labels = torch.tensor([[1, 2, 3], [4, 5, 1]]), torch.tensor([0, 3])

    def loss_fn(z):
        return polyloss.softmax_crossentropy(head(z.mean(1)), labels).mean()

    x = embedding(ids)
    loss, adversarial = polyloss.adversarial_loss(loss_fn, x, epsilon=0.5)
    _, penalty = polyloss.gradient_penalty(loss_fn, x)
    vat = polyloss.vat_loss(lambda z: head(z.mean(1)), x, key=torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in [*embedding.parameters(), *head.parameters()])
    (loss + adversarial + penalty + vat.mean()).backward()  # the graphs were kept for this
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    assert embedding.weight.grad is not None
    # under no_grad the values come back detached
    with torch.no_grad():
        loss, penalty = polyloss.gradient_penalty(loss_fn, embedding(ids))
    assert not loss.requires_grad and not penalty.requires_grad and float(penalty) > 0.0


def _training_objective(backend, x, weights, bias, labels, mask, noise):
    xp = backend.namespace

    def loss_fn(z):
        return xp.mean(polyloss.softmax_crossentropy(_logits(backend, z, weights, bias, mask), labels))

    loss, adversarial = polyloss.adversarial_loss(loss_fn, x, epsilon=0.5, scope="example", steps=2)
    _, penalty = polyloss.gradient_penalty(loss_fn, x)
    vat = polyloss.vat_loss(lambda z: _logits(backend, z, weights, bias, mask), x, noise=noise, iterations=2)
    return loss + adversarial + 0.1 * penalty + xp.mean(vat)


@pytest.mark.parametrize("name", ["jax", "tensorflow"])
def test_compiled_outer_differentiation_equals_eager(name):
    """``jax.value_and_grad`` under ``jax.jit``, a ``GradientTape`` inside ``tf.function``: the same
    objective and weight gradients as eagerly."""
    backend = get(name)
    x, weights, bias, labels, mask = _model(backend)
    noise = arr(backend, np.random.default_rng(7).normal(size=(3, 4, 3)))

    def objective(w, c, z):
        return _training_objective(backend, z, w, c, labels, mask, noise)

    eager = backend.value_and_grad(objective, argnums=(0, 1, 2))
    compiled = backend.compile(eager, "jit" if name == "jax" else "function")
    (v0, g0), (v1, g1) = eager(weights, bias, x), compiled(weights, bias, x)
    assert_close(v1, host(backend, v0), rtol=1e-12)
    for a, b in zip(g0, g1):
        assert_close(b, host(backend, a), rtol=1e-10, atol=1e-14)


def test_the_same_objective_in_three_frameworks():
    """torch (outer backward), JAX (value_and_grad), TF (outer tape) agree on a training objective."""
    results = []
    for name in AUTOGRAD_BACKENDS:
        backend = get(name)
        x, weights, bias, labels, mask = _model(backend)
        noise = arr(backend, np.random.default_rng(7).normal(size=(3, 4, 3)))

        def objective(w, c, z, backend=backend, labels=labels, mask=mask, noise=noise):
            return _training_objective(backend, z, w, c, labels, mask, noise)

        value, grads = backend.value_and_grad(objective, argnums=(0, 1, 2))(weights, bias, x)
        results.append((host(backend, value), [host(backend, g) for g in grads]))
    for value, grads in results[1:]:
        assert_close(value, results[0][0], rtol=1e-12)
        for a, b in zip(grads, results[0][1]):
            assert_close(a, b, rtol=1e-10, atol=1e-14)

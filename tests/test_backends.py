"""The adapter protocol: laziness, namespaces, autograd hooks, custom VJPs to second order,
device placement, the scatter, and eager detection."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss
from polyloss import backends
from polyloss._namespace import get_namespace

from helpers import get, run_python


def test_importing_polyloss_imports_no_framework():
    code = (
        "import sys, polyloss, polyloss.reference, polyloss.conformance; import numpy as np;"
        "polyloss.multilabel_crossentropy(np.zeros((2, 3)), np.zeros((2, 3), bool));"
        "heavy = [m for m in ('torch', 'jax', 'tensorflow', 'array_api_strict') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    run_python(code=code)


def test_adapters_are_found_by_array_type(backend):
    x = backend.from_numpy(np.zeros(3), dtype="float32")
    xp, found = get_namespace(x)
    assert found is backend and xp is backend.namespace
    assert backends.backend_for(x) is backend


def test_numpy_has_no_autograd_and_says_which_frameworks_do():
    be = get("numpy")
    with pytest.raises(TypeError, match="numpy backend does not have; use torch, jax or tensorflow"):
        be.value_and_grad(lambda x: x)(np.ones(2))
    np.testing.assert_array_equal(be.stop_gradient(np.ones(2)), np.ones(2))


def test_stop_gradient(autograd_backend):
    be = autograd_backend
    xp = be.namespace
    grad = be.grad(lambda x: xp.sum(x * be.stop_gradient(x)))
    g = be.to_numpy(grad(be.from_numpy(np.array([1.0, 2.0, 3.0]), dtype="float64")))
    np.testing.assert_allclose(g, [1.0, 2.0, 3.0])  # d/dx (x · sg(x)) = sg(x)


def test_value_and_grad_several_arguments(autograd_backend):
    be = autograd_backend
    xp = be.namespace
    vg = be.value_and_grad(lambda a, b: xp.sum(a * a * b), argnums=(0, 1))
    value, (ga, gb) = vg(be.from_numpy(np.array([1.0, 2.0]), dtype="float64"),
                         be.from_numpy(np.array([3.0, 4.0]), dtype="float64"))
    assert float(be.to_numpy(value)) == 19.0
    np.testing.assert_allclose(be.to_numpy(ga), [6.0, 16.0])
    np.testing.assert_allclose(be.to_numpy(gb), [1.0, 4.0])


def _cube_vjp(be):
    """f(x, k) = Σ k x³ with a custom VJP whose residual (x²) is computed in the forward pass."""
    xp = be.namespace

    def fwd(x, k):
        sq = x * x
        return xp.sum(k * sq * x), (sq,)

    def bwd(args, res, g, needs):
        x, k = args
        (sq,) = res
        return 3.0 * g * k * sq, (g * sq * x if needs[1] else None)

    return be.custom_vjp(fwd, bwd)


def test_custom_vjp_first_and_second_order(autograd_backend):
    be = autograd_backend
    f = _cube_vjp(be)
    x = be.from_numpy(np.array([1.0, -2.0, 0.5]), dtype="float64")
    k = be.from_numpy(np.array([2.0, 1.0, 3.0]), dtype="float64")
    xp = be.namespace
    g = be.grad(lambda u: f(u, k))(x)
    np.testing.assert_allclose(be.to_numpy(g), 3 * np.array([2.0, 1.0, 3.0]) * np.array([1.0, 4.0, 0.25]))
    gk = be.grad(lambda v: f(x, v))(k)
    np.testing.assert_allclose(be.to_numpy(gk), np.array([1.0, -8.0, 0.125]))
    # second order: d/dx Σ (∂f/∂x)² = 2 (3 k x²)(6 k x) — needs the residual x² to depend on x
    hv = be.grad(lambda u: xp.sum(be.grad(lambda w: f(w, k))(u) ** 2))(x)
    kk, xx = np.array([2.0, 1.0, 3.0]), np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(be.to_numpy(hv), 2 * (3 * kk * xx**2) * (6 * kk * xx), rtol=1e-12)


def test_loss_second_derivative_matches_finite_differences(autograd_backend):
    """Gradient penalty needs ∇‖∇L‖²: through the multi-label custom VJP it must be exact."""
    be = autograd_backend
    xp = be.namespace
    rng = np.random.default_rng(1)
    s = rng.normal(0.0, 1.0, (2, 5))
    t = rng.uniform(0.1, 0.9, (2, 5))
    labels = be.from_numpy(t, dtype="float64")

    def grad_norm(x):
        return xp.sum(be.grad(lambda u: xp.sum(polyloss.multilabel_crossentropy(u, labels)))(x) ** 2)

    hv = be.to_numpy(be.grad(grad_norm)(be.from_numpy(s, dtype="float64")))

    def reference_grad_norm(x):
        neg, pos = (1 - t) * np.exp(x), t * np.exp(-x)
        g = neg / (1 + neg.sum(-1, keepdims=True)) - pos / (1 + pos.sum(-1, keepdims=True))
        return float(np.sum(g**2))

    fd = np.zeros_like(s)
    for idx in np.ndindex(s.shape):
        e = np.zeros_like(s)
        e[idx] = 1e-6
        fd[idx] = (reference_grad_norm(s + e) - reference_grad_norm(s - e)) / 2e-6
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-9)


def test_torch_value_and_grad_keeps_the_graph_of_connected_inputs():
    torch = pytest.importorskip("torch")
    be = get("torch")
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    x = w * 3.0  # an activation of a "model"
    _, g = be.value_and_grad(lambda u: (u**3).sum())(x)
    assert g.requires_grad  # usable in a gradient penalty
    (penalty,) = torch.autograd.grad((g**2).sum(), w)
    np.testing.assert_allclose(penalty.numpy(), 2 * (3 * 9 * np.array([1.0, 4.0])) * (6 * 3 * np.array([1.0, 2.0])) * 3)
    assert w.grad is None  # autograd.grad, never .backward()


@pytest.mark.parametrize("name", list(backends.BACKEND_NAMES))
def test_index_mask_matches_the_generic_fallback(name):
    be = get(name)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 7, (3, 2, 4))
    valid = rng.random(idx.shape) < 0.7
    mask = be.to_numpy(be.index_mask(be.from_numpy(idx), 7, be.from_numpy(valid)))
    expected = np.zeros((3, 2, 7), dtype=bool)
    for i, j, k in np.ndindex(idx.shape):
        if valid[i, j, k]:
            expected[i, j, idx[i, j, k]] = True
    np.testing.assert_array_equal(mask, expected)
    generic = backends.Backend.index_mask(be, be.from_numpy(idx), 7, be.from_numpy(valid))
    np.testing.assert_array_equal(be.to_numpy(generic), expected)


def test_is_eager_under_compilation():
    seen = {}
    for name, mode in (("jax", "jit"), ("tensorflow", "function")):
        be = get(name)
        x = be.from_numpy(np.ones(2), dtype="float32")
        seen[name] = be.is_eager(x)

        def probe(u, be=be, name=name):
            seen[name + "-compiled"] = be.is_eager(u)
            return u

        be.compile(probe, mode)(x)
    assert seen == {"jax": True, "jax-compiled": False, "tensorflow": True, "tensorflow-compiled": False}


def test_torch_compile_runs_the_loss():
    torch = pytest.importorskip("torch")
    get("torch")
    rng = np.random.default_rng(0)
    s = torch.tensor(rng.normal(size=(3, 6)), requires_grad=True)
    y = torch.tensor(rng.random((3, 6)) < 0.4)
    # fullgraph: the custom autograd.Function is captured whole, no graph break anywhere
    compiled = torch.compile(lambda a, b: polyloss.multilabel_crossentropy(a, b).sum(), fullgraph=True)
    value = compiled(s, y)
    (g,) = torch.autograd.grad(value, s)
    expected = polyloss.reference.multilabel_crossentropy(s.detach().numpy(), y.numpy()).sum()
    np.testing.assert_allclose(value.item(), expected, rtol=1e-12)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "tensorflow"])  # array-api-strict has no float16
def test_half_precision_computes_in_float32(name):
    backend = get(name)
    s = backend.from_numpy(np.array([[60000.0, -60000.0, 1.0]]), dtype="float16")
    y = backend.from_numpy(np.array([[False, True, True]]))
    out = polyloss.multilabel_crossentropy(s, y)
    assert out.dtype == backend.dtype("float32")
    np.testing.assert_allclose(backend.to_numpy(out), [120000.0], rtol=1e-6)  # beyond float16's range


def test_first_call_inside_tf_function_is_quiet(tmp_path):
    """The adapter may be imported inside a trace; AutoGraph must neither warn nor rewrite polyloss."""
    get("tensorflow")
    script = tmp_path / "first_call.py"
    script.write_text(
        "import tensorflow as tf, polyloss\n"
        "@tf.function\n"
        "def f(a, b):\n"
        "    return polyloss.multilabel_crossentropy(a, b)\n"
        "print(f(tf.zeros((2, 3)), tf.zeros((2, 3), tf.bool)).numpy())\n"
    )
    done = run_python(str(script))
    assert "AutoGraph" not in done.stderr and "1.386294" in done.stdout



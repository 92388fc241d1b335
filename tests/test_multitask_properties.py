"""Properties of ``polyloss.multitask``: the solvers' exactness (against the exact rational reference and
SciPy), MGDA's common descent and Pareto stationarity, the primary weights' optimality conditions,
the invariances, the loss weightings' gradients, PCGrad's random orders, and the two-quadratics
demonstration on torch, JAX and TensorFlow.

Accuracy criterion of the issue, for the min-norm and primary values ``f = w^T G w``:
``f - f_exact <= 1e-6 |f_exact| + 1e-12 max_i G_ii`` (the absolute part relative to the scale of G:
a float64 Gram matrix is itself only known to about eps · max_i G_ii).
"""

from __future__ import annotations

import numpy as np
import pytest

import polyloss
from polyloss import multitask as MT
from polyloss.reference import multitask as REF
from polyloss.testing import assert_close

from helpers import get

scipy_optimize = pytest.importorskip("scipy.optimize")

REL, ABS = 1e-6, 1e-12


def excess(gram, weights, exact):
    """``(f(weights) - f(exact)) / (REL |f(exact)| + ABS max_i G_ii)``: at most 1 meets the criterion."""
    gram = np.asarray(gram)
    f, f0 = weights @ gram @ weights, exact @ gram @ exact
    return (f - f0) / (REL * abs(f0) + ABS * np.max(np.diag(gram)))


def families(rng, k):
    """(name, gradients [K, dim]): random, near-singular and degenerate sets of K gradients."""
    yield "random", rng.normal(size=(k, 2 * k))
    yield "lengths", rng.normal(size=(k, 2 * k)) * np.exp(3.0 * rng.normal(size=(k, 1)))
    yield "rank-deficient", rng.normal(size=(k, max(1, k // 2)))  # K > dim: 0 may lie in the hull
    basis = rng.normal(size=(2, 3 * k))
    yield "nearly-dependent", rng.normal(size=(k, 2)) @ basis + 1e-8 * rng.normal(size=(k, 3 * k))
    yield "aligned", rng.normal(size=(k, 2 * k)) + 5.0 * rng.normal(size=(1, 2 * k))
    g = rng.normal(size=(k, 2 * k))
    g[1] = g[0]
    yield "identical", g
    g = rng.normal(size=(k, 2 * k))
    g[-1] = 0.0
    yield "zero", g
    g = rng.normal(size=(k, 2 * k))
    g[1] = -g[0]
    yield "opposed", g
    g = rng.normal(size=(k, 2 * k))
    g[0] *= 1e6
    yield "dominating", g
    g = rng.normal(size=(k, 2 * k))
    g[k - 1] = 0.5 * g[0] + 0.5 * g[1]
    yield "midpoint", g


def scipy_min_norm(grads):
    """MGDA by SciPy's NNLS (Lawson-Hanson): ``min_{x >= 0} ||A x||² + (1^T x - 1)²`` has the solution
    ``x = α / (1 + ||u||²)`` (for fixed ``s = 1^T x``, ``x / s`` minimises ``||A α||²`` on the simplex),
    so ``α = x / Σ x``. A = the gradients as columns: independent of the Gram matrix."""
    a = np.vstack([grads.T, np.ones((1, grads.shape[0]))])
    b = np.zeros(a.shape[0])
    b[-1] = 1.0
    x, _ = scipy_optimize.nnls(a, b, maxiter=50 * grads.shape[0])
    return x / x.sum()


def scipy_primary(grads):
    """``[1, λ]``: ``λ = argmin_{λ >= 0} ||g_0 + A λ||²`` by SciPy's NNLS, A = the auxiliaries as columns."""
    lam, _ = scipy_optimize.nnls(grads[1:].T, -grads[0], maxiter=50 * grads.shape[0])
    return np.concatenate([[1.0], lam])


# --------------------------------------------------------------------------------------------
# exactness
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["auto", "active_set"])
def test_solvers_reach_the_exact_minimum(solver):
    """K = 2..10, every family: within the criterion of the exact rational minimum of the reference
    (and of SciPy's NNLS, computed from the gradients themselves). K = 2 is the closed form under
    "auto" and the same closed form under "active_set"."""
    rng = np.random.default_rng(2024)
    worst = {}
    for k in range(2, 11):
        for name, grads in families(rng, k):
            gram = REF.gram_matrix(list(grads))
            for problem, ours, exact, scipy in (
                ("min_norm", MT.min_norm_weights, REF.min_norm_weights, scipy_min_norm),
                ("primary", MT.primary_weights, REF.primary_weights, scipy_primary),
            ):
                w = ours(gram, solver=solver)
                assert w.dtype == np.float64 and w.shape == (k,)
                assert np.all(w >= 0.0), (problem, name, k, w)
                if problem == "min_norm":
                    assert abs(w.sum() - 1.0) <= 1e-12
                else:
                    assert w[0] == 1.0
                err = excess(gram, w, exact(gram))
                err_scipy = excess(gram, w, scipy(grads))
                assert err <= 1.0, (problem, name, k, err)
                assert err_scipy <= 1.0, (problem, name, k, err_scipy)
                worst[problem, name] = max(worst.get((problem, name), -np.inf), err)
    # measured on this seed: at most 0.15 of the allowance (primary, rank-deficient); most families 1e-9
    assert max(worst.values()) <= 1.0


@pytest.mark.parametrize("k", [13, 20, 40])
def test_active_set_beyond_enumeration_against_scipy(k):
    """K > 12 ("auto" runs the active set): against SciPy's NNLS, on random and degenerate gradients."""
    rng = np.random.default_rng(k)
    for name, grads in families(rng, k):
        gram = grads @ grads.T
        for ours, scipy in ((MT.min_norm_weights, scipy_min_norm), (MT.primary_weights, scipy_primary)):
            w = ours(gram)
            assert np.all(w >= 0.0)
            assert excess(gram, w, scipy(grads)) <= 1.0, (name, ours.__name__)


def test_enumeration_accepts_up_to_sixteen_tasks():
    rng = np.random.default_rng(16)
    grads = rng.normal(size=(14, 30))
    gram = grads @ grads.T
    assert excess(gram, MT.min_norm_weights(gram, solver="enumerate"), scipy_min_norm(grads)) <= 1.0
    assert_close(MT.min_norm_weights(gram, solver="enumerate") @ gram @ MT.min_norm_weights(gram, solver="enumerate"),
                 float(MT.min_norm_weights(gram) @ gram @ MT.min_norm_weights(gram)), rtol=1e-9)


def test_closed_forms_for_two_tasks():
    # α_0 = (G11 - G01) / (G00 - 2 G01 + G11) = (2 + 1) / (4 + 2 + 2) = 3/8
    gram = np.array([[4.0, -1.0], [-1.0, 2.0]])
    assert_close(MT.min_norm_weights(gram), [3 / 8, 5 / 8], rtol=1e-15)
    # λ = relu(-G01) / G11 = 1/2
    assert_close(MT.primary_weights(gram), [1.0, 0.5], rtol=1e-15)
    # identical gradients: the hull is one point; the first task gets the weight, as the reference
    assert MT.min_norm_weights(np.ones((2, 2))).tolist() == REF.min_norm_weights(np.ones((2, 2))).tolist() == [1.0, 0.0]
    # a zero auxiliary: λ = 0
    assert MT.primary_weights(np.array([[1.0, 0.0], [0.0, 0.0]])).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("name", ["torch", "jax", "tensorflow"])
def test_solvers_compiled_on_degenerate_inputs(name):
    """The same answers under jax.jit / tf.function / eager torch, float64, on the degenerate families
    (no data-dependent Python branch: the enumeration and the fixed-step active set are traced once)."""
    backend = get(name)
    mode = {"torch": "eager", "jax": "jit", "tensorflow": "function"}[name]
    rng = np.random.default_rng(7)
    for k in (3, 6):
        grams = [(family, grads @ grads.T) for family, grads in families(rng, k)]
        for solver in ("auto", "active_set"):
            for ours, exact in ((MT.min_norm_weights, REF.min_norm_weights),
                                (MT.primary_weights, REF.primary_weights)):
                run = backend.compile(lambda g, ours=ours, solver=solver: ours(g, solver=solver), mode)  # traced once
                for family, gram in grams:
                    w = backend.to_numpy(run(backend.from_numpy(gram, dtype="float64")))
                    assert excess(gram, w, exact(gram)) <= 1.0, (family, k, solver, ours.__name__)


# --------------------------------------------------------------------------------------------
# MGDA: common descent, Pareto stationarity
# --------------------------------------------------------------------------------------------
def test_min_norm_direction_is_a_common_descent_direction():
    """``<g_i, u> >= ||u||²`` for every task (the KKT conditions of the min-norm problem), with equality
    on the support of α."""
    rng = np.random.default_rng(11)
    for k in range(2, 9):
        for name, grads in families(rng, k):
            u, alpha = MT.combine_gradients(list(grads), method="min_norm")
            inner = grads @ u
            norm2 = float(u @ u)
            scale = float(np.max(np.sum(grads**2, axis=1)))
            tol = 1e-9 * scale
            assert np.all(inner >= norm2 - tol), (name, k, inner, norm2)
            assert np.all(np.abs(inner[alpha > 1e-9] - norm2) <= tol), (name, k)
            assert_close(u, alpha @ grads, rtol=1e-12, atol=1e-12 * np.sqrt(scale))


def test_min_norm_is_zero_exactly_at_pareto_stationary_points():
    """0 in the hull (a Pareto-stationary point): u = 0. Otherwise -u decreases every loss."""
    rng = np.random.default_rng(12)
    g = rng.normal(size=(2, 4))
    stationary = np.vstack([g, -(0.3 * g[0] + 0.7 * g[1])])  # 0 = (0.3 g0 + 0.7 g1 + g2) / 2
    u, alpha = MT.combine_gradients(list(stationary), method="min_norm")
    assert np.max(np.abs(u)) <= 1e-14
    assert_close(alpha, [0.15, 0.35, 0.5], rtol=1e-12)
    opposed = np.vstack([g[0], -2.0 * g[0]])
    u, alpha = MT.combine_gradients(list(opposed), method="min_norm")
    assert_close(alpha, [2 / 3, 1 / 3], rtol=1e-14)
    assert np.max(np.abs(u)) <= 1e-15
    # not stationary (3 gradients in general position in 4 dimensions): u ≠ 0, a descent direction
    u, _ = MT.combine_gradients(list(rng.normal(size=(3, 4))), method="min_norm")
    assert np.linalg.norm(u) > 1e-3


# --------------------------------------------------------------------------------------------
# primary: optimality conditions
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("primary", [0, 2, -1])
def test_primary_optimality_conditions(primary):
    """``<g_p, u> = ||u||² >= 0`` and ``<g_i, u> >= 0`` for the auxiliaries, = 0 where ``λ_i > 0``."""
    rng = np.random.default_rng(13)
    active_seen = 0
    for k in range(3, 8):
        for name, grads in families(rng, k):
            u, weights = MT.combine_gradients(list(grads), method="primary", primary=primary)
            p = primary % k
            scale = float(np.max(np.sum(grads**2, axis=1)))
            tol = 1e-9 * scale
            assert weights[p] == 1.0 and np.all(weights >= 0.0)
            inner = grads @ u
            norm2 = float(u @ u)
            assert abs(inner[p] - norm2) <= tol, (name, k)
            aux = np.arange(k) != p
            assert np.all(inner[aux] >= -tol), (name, k, inner)
            on = aux & (weights > 1e-9)
            active_seen += int(on.sum())
            assert np.all(np.abs(inner[on]) <= tol), (name, k, inner[on])
    assert active_seen > 20


def test_coefficient_free_l2():
    """``<u, θ> = max(<g, θ>, 0)``; θ = 0 gives g; leaf by leaf on a pytree."""
    rng = np.random.default_rng(14)
    for _ in range(20):
        g = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=4)}
        theta = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=4)}
        u = MT.coefficient_free_l2(g, theta)
        inner = lambda x, y: float(np.sum(x["w"] * y["w"]) + np.sum(x["b"] * y["b"]))  # noqa: E731
        assert abs(inner(u, theta) - max(inner(g, theta), 0.0)) <= 1e-12
        expected = REF.coefficient_free_l2(g, theta)
        for key in g:
            assert_close(u[key], expected[key], rtol=1e-12, atol=1e-15)
    zero = {"w": np.zeros((3, 2)), "b": np.zeros(4)}
    assert_close(MT.coefficient_free_l2(g, zero)["w"], g["w"], rtol=0.0)


# --------------------------------------------------------------------------------------------
# normalized, sum, mean, pcgrad
# --------------------------------------------------------------------------------------------
def test_normalized_is_invariant_to_rescaling_one_task():
    """Σ g_i / ||g_i||: rescaling any single task's loss by c > 0 (its gradient by c) changes nothing;
    "sum" and "min_norm" do change."""
    rng = np.random.default_rng(15)
    grads = rng.normal(size=(4, 6))
    u, _ = MT.combine_gradients(list(grads), method="normalized")
    for i, c in ((0, 1e3), (2, 1e-4), (3, 7.0)):
        scaled = grads.copy()
        scaled[i] *= c
        assert_close(MT.combine_gradients(list(scaled), method="normalized")[0], u, rtol=1e-13, atol=1e-15)
        assert np.abs(MT.combine_gradients(list(scaled), method="sum")[0] - grads.sum(0)).max() > 1e-3
    zero = grads.copy()
    zero[1] = 0.0
    u, w = MT.combine_gradients(list(zero), method="normalized")
    assert w[1] == 0.0 and np.all(np.isfinite(u))


def test_primary_is_invariant_to_rescaling_an_auxiliary():
    """λ_i g_i is determined by the cone of the auxiliaries, which rescaling g_i by c > 0 does not
    change: the direction is the same (λ_i becomes λ_i / c); rescaling the primary by c scales it."""
    rng = np.random.default_rng(20)
    grads = rng.normal(size=(4, 5))
    grads[1] = -0.9 * grads[0] + 0.1 * grads[1]
    u, w = MT.combine_gradients(list(grads), method="primary")
    assert w[1] > 0.0
    for i, c in ((1, 1e3), (2, 1e-3), (3, 7.0)):
        scaled = grads.copy()
        scaled[i] *= c
        u_c, w_c = MT.combine_gradients(list(scaled), method="primary")
        assert_close(u_c, u, rtol=1e-10, atol=1e-12)
        assert_close(w_c[i], w[i] / c, rtol=1e-10, atol=1e-12)
    scaled = grads.copy()
    scaled[0] *= 5.0
    assert_close(MT.combine_gradients(list(scaled), method="primary")[0], 5.0 * u, rtol=1e-10, atol=1e-12)


def test_pcgrad_two_tasks_removes_the_conflict():
    """K = 2 with <g1, g2> < 0: each projected gradient is orthogonal to the other original one."""
    g1, g2 = np.array([1.0, 0.0, 2.0]), np.array([-1.0, 1.0, -0.5])
    u, w = MT.combine_gradients([g1, g2], method="pcgrad", order="fixed")
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    assert abs(p1 @ g2) <= 1e-15 and abs(p2 @ g1) <= 1e-15
    assert_close(u, p1 + p2, rtol=1e-14)
    assert_close(w, [1.0 - (g2 @ g1) / (g1 @ g1), 1.0 - (g1 @ g2) / (g2 @ g2)], rtol=1e-14)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "tensorflow"])
def test_pcgrad_random_order_is_the_reference_with_the_drawn_permutations(name):
    """``key=``: each framework's generator draws K permutations (``Backend.random_permutations``); the
    weights equal the reference's with those permutations, under jit / tf.function too."""
    backend = get(name)
    rng = np.random.default_rng(16)
    grads = rng.normal(size=(5, 4))
    grads[1] = -0.8 * grads[0] + 0.2 * grads[1]
    if name == "numpy":
        keys, mode = [lambda: np.random.default_rng(3), lambda: 3], "eager"
    elif name == "torch":
        import torch

        keys, mode = [lambda: torch.Generator().manual_seed(3), lambda: 3], "eager"
    elif name == "jax":
        import jax

        keys, mode = [lambda: jax.random.key(3), lambda: jax.random.PRNGKey(3)], "jit"
    else:
        import tensorflow as tf

        keys, mode = [lambda: tf.random.Generator.from_seed(3), lambda: tf.constant([3, 4], dtype=tf.int64)], "eager"
    x = backend.from_numpy(grads, dtype="float64")
    for make_key in keys:
        orders = backend.to_numpy(backend.random_permutations(make_key(), 5, 5, like=x)).astype(int)
        assert sorted(map(sorted, orders.tolist())) == [list(range(5))] * 5
        run = backend.compile(lambda g, key: MT.combine_gradients(g, method="pcgrad", key=key), mode) \
            if name == "jax" else (lambda g, key: MT.combine_gradients(g, method="pcgrad", key=key))
        u, w = run(x, make_key())
        expected_u, expected_w = REF.combine_gradients(list(grads), method="pcgrad", order=orders.tolist())
        assert_close(w, expected_w, rtol=1e-12, atol=1e-14)
        assert_close(u, expected_u, rtol=1e-12, atol=1e-14)
    if name == "tensorflow":  # a generator's state advances: three draws, three orders
        import tensorflow as tf

        generator = tf.random.Generator.from_seed(5)
        draws = {tuple(backend.to_numpy(backend.random_permutations(generator, 5, 5, like=x)).ravel())
                 for _ in range(3)}
        assert len(draws) == 3


def test_sum_and_mean_weights():
    grads = np.random.default_rng(17).normal(size=(3, 5))
    for method, w in (("sum", 1.0), ("mean", 1 / 3)):
        u, weights = MT.combine_gradients(grads, method=method)
        assert_close(weights, np.full(3, w), rtol=0.0)
        assert_close(u, w * grads.sum(0), rtol=1e-15)


# --------------------------------------------------------------------------------------------
# Gram matrix: leaf by leaf, float32 accumulation of half-precision gradients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["torch", "jax", "tensorflow"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gram_of_half_precision_gradients_accumulates_in_float32(name, dtype):
    """AMP-style half gradients: every product and sum in float32 (4096 entries of magnitude ~1 would
    lose everything in bfloat16 sums); float32 result against the float64 Gram of the rounded inputs."""
    backend = get(name)
    rng = np.random.default_rng(18)
    leaves = [rng.normal(size=(3, 64, 64)), rng.normal(size=(3, 10))]
    xs = [backend.from_numpy(v, dtype=dtype) for v in leaves]
    rounded = [backend.to_numpy(x) for x in xs]
    grads = [{"kernel": xs[0][i], "bias": xs[1][i]} for i in range(3)]
    gram = MT.gram_matrix(grads)
    expected = REF.gram_matrix([{"kernel": rounded[0][i], "bias": rounded[1][i]} for i in range(3)])
    assert_close(gram, expected, dtype="float32", rtol=1e-5, atol=1e-5 * np.max(np.abs(expected)))
    u, w = MT.combine_gradients(grads, method="min_norm")
    assert u["kernel"].dtype == backend.dtype("float32") and w.dtype == backend.dtype("float32")


# --------------------------------------------------------------------------------------------
# loss weighting: realtime and geometric gradients
# --------------------------------------------------------------------------------------------
def _loss_functions(name):
    """``(params, losses(params) -> [3] losses, gradient of a scalar function)`` for a framework."""
    rng = np.random.default_rng(19)
    theta0 = rng.normal(size=3)
    targets = rng.normal(size=(3, 3))
    if name == "torch":
        import torch

        t = torch.tensor(targets)

        def losses(theta):
            return torch.stack([((theta - t[i]) ** 2).sum() + 0.1 * (i + 1) for i in range(3)])

        def grad(f, theta):
            theta = theta.detach().requires_grad_(True)
            return torch.autograd.grad(f(theta), theta)[0].numpy()

        return torch.tensor(theta0), losses, grad
    if name == "jax":
        import jax
        import jax.numpy as jnp

        t = jnp.asarray(targets)

        def losses(theta):
            return jnp.stack([jnp.sum((theta - t[i]) ** 2) + 0.1 * (i + 1) for i in range(3)])

        return jnp.asarray(theta0), losses, lambda f, theta: np.asarray(jax.grad(f)(theta))
    import tensorflow as tf

    t = tf.constant(targets)

    def losses(theta):
        return tf.stack([tf.reduce_sum((theta - t[i]) ** 2) + 0.1 * (i + 1) for i in range(3)])

    def grad(f, theta):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            value = f(theta)
        return tape.gradient(value, theta).numpy()

    return tf.constant(theta0), losses, grad


@pytest.mark.parametrize("name", ["torch", "jax", "tensorflow"])
def test_realtime_value_is_k_and_gradient_is_that_of_the_log_sum(name):
    get(name)
    theta, losses, grad = _loss_functions(name)
    realtime = lambda th: MT.weigh_losses(losses(th), method="realtime")  # noqa: E731
    geometric = lambda th: MT.weigh_losses(losses(th), method="geometric")  # noqa: E731
    assert float(realtime(theta)) == 3.0
    values = np.asarray(losses(theta))
    per_task = [grad(lambda th, i=i: losses(th)[i], theta) for i in range(3)]
    expected = sum(g / v for g, v in zip(per_task, values))  # Σ ∇L_i / L_i
    assert_close(grad(realtime, theta), expected, rtol=1e-13)
    assert_close(grad(geometric, theta), expected, rtol=1e-13)
    assert_close(float(geometric(theta)), float(np.sum(np.log(values))), rtol=1e-14)


def test_power_mean_limits_and_large_gamma():
    losses = np.array([0.5, 2.0, 8.0])
    assert_close(MT.weigh_losses(losses, method="power", gamma=1.0), losses.mean(), rtol=1e-15)
    assert_close(MT.weigh_losses(losses, method="power", gamma=-1.0), 3 / np.sum(1 / losses), rtol=1e-15)
    assert_close(MT.weigh_losses(losses, method="power", gamma=0.0), 2.0, rtol=1e-15)  # (0.5·2·8)^{1/3}
    assert_close(MT.weigh_losses(losses, method="power", gamma=1e-9), 2.0, rtol=1e-8)  # γ → 0: geometric
    # γ = 400: L^γ overflows float64 (8^400); the log-space form gives ≈ max L
    big = float(MT.weigh_losses(losses, method="power", gamma=400.0))
    assert_close(big, 8.0 * (1 / 3) ** (1 / 400), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# the two-quadratics demonstration
# --------------------------------------------------------------------------------------------
A_MIN, B_MIN, START = np.array([1.0, 0.0, 2.0]), np.array([-1.0, 3.0, 0.0]), np.array([4.0, 4.0, -3.0])
STEPS, RATE = 60, 0.2


def _descend(name):
    """Gradient descent with the min-norm direction on L_1 = ||θ - a||², L_2 = 2 ||θ - b||²; returns the
    trajectory [STEPS + 1, 3] and the final ||u||. Per-task gradients from each framework's
    task_gradients; params a dict (a pytree)."""
    backend = get(name)
    path = [START.copy()]
    if name == "torch":
        import torch

        a, b = torch.tensor(A_MIN), torch.tensor(B_MIN)
        params = {"theta": torch.tensor(START, requires_grad=True)}
        for _ in range(STEPS):
            losses = [((params["theta"] - a) ** 2).sum(), 2.0 * ((params["theta"] - b) ** 2).sum()]
            grads = MT.task_gradients(losses, params)
            u, _ = MT.combine_gradients(grads, method="min_norm")
            with torch.no_grad():
                params["theta"] -= RATE * u["theta"]
            path.append(params["theta"].detach().numpy().copy())
        assert params["theta"].grad is None  # never .backward(): no .grad buffer
    elif name == "jax":
        import jax
        import jax.numpy as jnp

        a, b = jnp.asarray(A_MIN), jnp.asarray(B_MIN)

        def losses(p):
            return jnp.stack([jnp.sum((p["theta"] - a) ** 2), 2.0 * jnp.sum((p["theta"] - b) ** 2)])

        @jax.jit
        def step(p):
            u, _ = MT.combine_gradients(MT.task_gradients(losses, p), method="min_norm")
            return jax.tree_util.tree_map(lambda x, d: x - RATE * d, p, u), u

        params = {"theta": jnp.asarray(START)}
        for _ in range(STEPS):
            params, u = step(params)
            path.append(np.asarray(params["theta"]))
    else:
        import tensorflow as tf

        a, b = tf.constant(A_MIN), tf.constant(B_MIN)
        theta = tf.Variable(START)

        @tf.function
        def step():
            with tf.GradientTape(persistent=True) as tape:
                losses = [tf.reduce_sum((theta - a) ** 2), 2.0 * tf.reduce_sum((theta - b) ** 2)]
            grads = MT.task_gradients(losses, {"theta": theta}, tape=tape)
            u, _ = MT.combine_gradients(grads, method="min_norm")
            theta.assign_sub(RATE * u["theta"])
            return u

        for _ in range(STEPS):
            u = step()
            path.append(theta.numpy().copy())
    final_u = backend.to_numpy(u["theta"])
    return np.array(path), float(np.linalg.norm(final_u))


def test_two_quadratics_converge_to_a_pareto_stationary_point_on_every_framework():
    """The Pareto set of ||θ - a||² and 2||θ - b||² is the segment [a, b] (the gradients 2(θ - a),
    4(θ - b) are opposed exactly there). From the same start, torch, JAX and TensorFlow follow the same
    trajectory; it ends on the segment with u ≈ 0 (Pareto-stationary), not at either minimum."""
    paths = {}
    for name in ("torch", "jax", "tensorflow"):
        paths[name], final_norm = _descend(name)
        assert final_norm <= 1e-9, (name, final_norm)
    for name in ("jax", "tensorflow"):
        assert_close(paths[name], paths["torch"], rtol=1e-12, atol=1e-12)
    end = paths["torch"][-1]
    t = float((end - A_MIN) @ (B_MIN - A_MIN) / ((B_MIN - A_MIN) @ (B_MIN - A_MIN)))
    assert 0.01 < t < 0.99  # strictly between the two minima
    assert np.linalg.norm(end - (A_MIN + t * (B_MIN - A_MIN))) <= 1e-9
    # the first step is the min-norm direction at the start, by the reference
    g = [2.0 * (START - A_MIN), 4.0 * (START - B_MIN)]
    u, _ = REF.combine_gradients(g, method="min_norm")
    assert_close(paths["torch"][1], START - RATE * u, rtol=1e-13)


def test_public_module():
    assert polyloss.multitask is MT
    assert "multitask" in polyloss.__all__
    assert set(MT.__all__) >= {"gram_matrix", "min_norm_weights", "primary_weights", "combine_gradients",
                               "coefficient_free_l2", "weigh_losses", "task_gradients"}

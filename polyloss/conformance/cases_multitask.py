"""Conformance cases of the multi-task functions (``polyloss.multitask``, ``docs/multitask.md``).

The functions take sequences of gradients (pytrees) and return pytrees or ``(direction, weights)``;
the cases build those from arrays through ``Case.call`` / ``reference_call`` (a [K, ...] array split
into K gradients, or K dicts of two leaves) and return arrays: a tuple of arrays for the value rows,
one array for the rows that also check gradients (the runner differentiates ``Σ out · w``).
``task_gradients`` differentiates through a framework and has no reference row: it is tested in
``tests/test_multitask_native.py``.
"""

from __future__ import annotations

import numpy as np

import polyloss
from polyloss.conformance.registry import ALL_DTYPES, Case, register

_PREFIX = "multitask."


def _gradients(rng, k, dim, scale=1.0):
    """K gradients [K, dim] of different lengths (log-normal) in general position."""
    return rng.normal(0.0, 1.0, (k, dim)) * np.exp(scale * rng.normal(0.0, 0.5, (k, 1)))


def _gram(rng, k, dim):
    g = _gradients(rng, k, dim)
    return g @ g.T


# --- pytrees built from arrays: K dicts {"w": a[i], "b": b[i]} ---------------------------------------
def _trees(a, b):
    return [{"w": a[i, ...], "b": b[i, ...]} for i in range(a.shape[0])]


def _tree_grads(rng, k=3):
    return rng.normal(0.0, 1.0, (k, 3, 4)), rng.normal(0.0, 1.0, (k, 5))


def _gram_tree_call(function, a, b):
    return function(_trees(a, b))


def _combine_tree_call(method, **options):
    """(direction["b"], direction["w"], weights) of K dict gradients."""

    def call(function, a, b):
        direction, weights = function(_trees(a, b), method=method, **options)
        return direction["b"], direction["w"], weights

    return call


def _direction_call(method, **options):
    """The direction only (one array, so that the runner checks its gradient) of a [K, dim] array."""

    def call(function, grads):
        return function(grads, method=method, **options)[0]

    return call


def _weights_call(method, **options):
    def call(function, grads):
        return function(grads, method=method, **options)[1]

    return call


def _unique_part_call(function, gram):
    """What every minimiser of ``α^T G α`` on the simplex shares, as one vector compared normwise:
    ``[Gα / max|G|, α^T G α / max|G|, Σα, min(min α, 0)]`` (``Gα = J u`` with ``u`` the unique nearest
    point of the hull; the last two say that α is on the simplex). For rank-deficient Gram matrices, whose
    α is not unique: the solvers may pick different minimisers, all of them right."""
    xp, _ = polyloss.get_namespace(gram)
    alpha = function(gram)
    scale = xp.max(xp.abs(gram))
    g_alpha = xp.sum(gram * alpha[None, :], axis=1)
    summary = xp.stack([xp.sum(alpha * g_alpha) / scale, xp.sum(alpha), xp.minimum(xp.min(alpha), 0.0)])
    return (xp.concat([g_alpha / scale, summary]),)


def _case(name, function, inputs, **fields):
    return Case(f"{_PREFIX}{function}/{name}", _PREFIX + function, inputs, **fields)


# --------------------------------------------------------------------------------------------
# gram_matrix
# --------------------------------------------------------------------------------------------
register(
    _case("array", "gram_matrix", lambda rng, dtype: ((_gradients(rng, 4, 12),), {}), dtypes=ALL_DTYPES,
          value_tol={"float16": 1e-4, "bfloat16": 1e-4, "float32": 1e-4},
          note="a [K, dim] array, leading task axis; half precision accumulates in float32 (the reference "
               "sees the rounded inputs); off-diagonal entries are sums of products of both signs: 1e-4"),
    _case("pytree", "gram_matrix", lambda rng, dtype: (_tree_grads(rng), {}), grad_args=(0, 1),
          call=_gram_tree_call, reference_call=_gram_tree_call, value_tol={"float32": 1e-4},
          note="K dicts {'w': [3, 4], 'b': [5]}: summed leaf by leaf"),
)

# --------------------------------------------------------------------------------------------
# min_norm_weights, primary_weights
# --------------------------------------------------------------------------------------------
_SOLVER_TOL = {"float32": 5e-4}
_SOLVER_NOTE = ("weights solve a linear system of the Gram matrix: float32 loses cond(H)·eps; the "
                "gradient is that of the optimal face's solution")

register(
    _case("two-tasks", "min_norm_weights", lambda rng, dtype: ((_gram(rng, 2, 5),), {}),
          value_tol=_SOLVER_TOL, grad_tol={"float32": 5e-4}, note="closed form; " + _SOLVER_NOTE),
    _case("two-tasks-clipped", "min_norm_weights",
          lambda rng, dtype: ((np.array([[1.0, 2.0], [2.0, 9.0]]),), {}),
          note="<g0, g1> >= ||g0||²: α = [1, 0], zero gradient"),
    *[
        _case(f"K{k}", "min_norm_weights", lambda rng, dtype, k=k: ((_gram(rng, k, 2 * k),), {}),
              value_tol=_SOLVER_TOL, grad_tol={"float32": 5e-4}, seed=k, note=_SOLVER_NOTE)
        for k in (3, 4, 6)
    ],
    _case("K9-values", "min_norm_weights", lambda rng, dtype: ((_gram(rng, 9, 18),), {}), grad_args=(),
          value_tol=_SOLVER_TOL, note=_SOLVER_NOTE),
    _case("K5-rank-deficient", "min_norm_weights", lambda rng, dtype: ((_gram(rng, 5, 3),), {}), grad_args=(),
          call=_unique_part_call, reference_call=_unique_part_call, normwise=(0,),
          value_tol={"float64": 1e-9, "float32": 1e-3},
          note="5 gradients in 3 dimensions: 0 lies in the hull and α is not unique (a segment of "
               "minimisers), so what is unique is compared: Gα, α^T G α (both 0 here), Σα = 1, α >= 0"),
    _case("K6-active-set", "min_norm_weights", lambda rng, dtype: ((_gram(rng, 6, 12),), {}),
          options={"solver": "active_set"}, value_tol=_SOLVER_TOL, grad_tol={"float32": 5e-4}, seed=6,
          note="Wolfe's algorithm (the solver beyond 12 tasks), then the final face with gradients"),
    _case("K3", "primary_weights", lambda rng, dtype: ((_gram(rng, 3, 6),), {}), seed=3,
          value_tol=_SOLVER_TOL, grad_tol={"float32": 5e-4}, note=_SOLVER_NOTE),
    _case("K5", "primary_weights", lambda rng, dtype: ((_gram(rng, 5, 10),), {}), seed=11,
          value_tol=_SOLVER_TOL, grad_tol={"float32": 5e-4}, note=_SOLVER_NOTE),
    _case("K5-active-set", "primary_weights", lambda rng, dtype: ((_gram(rng, 5, 10),), {}), seed=11,
          options={"solver": "active_set"}, value_tol=_SOLVER_TOL, grad_tol={"float32": 5e-4},
          note="Lawson and Hanson's algorithm (the solver beyond 12 tasks)"),
    _case("two-tasks", "primary_weights", lambda rng, dtype: ((np.array([[1.0, -1.0], [-1.0, 2.0]]),), {}),
          note="λ = relu(-G01)/G11 = 1/2"),
)

# --------------------------------------------------------------------------------------------
# combine_gradients
# --------------------------------------------------------------------------------------------
_METHOD_OPTIONS = {
    "sum": {},
    "mean": {},
    "normalized": {},
    "min_norm": {},
    "primary": {"primary": 1},
    "pcgrad": {"order": "fixed"},
}


def _many(rng, dtype):
    return (_gradients(rng, 4, 10),), {}


def _conflicting(rng, dtype):
    """Four gradients with pairwise conflicts (negative inner products) for PCGrad and primary."""
    g = _gradients(rng, 4, 6)
    g[1] = -0.7 * g[0] + 0.3 * g[1]
    g[3] = -0.5 * g[2] + 0.4 * g[3]
    return (g,), {}


for _method, _options in _METHOD_OPTIONS.items():
    _tol = {"float32": 5e-4} if _method in ("min_norm", "primary") else {"float32": 1e-4}
    register(
        _case(f"{_method}-tree", "combine_gradients", lambda rng, dtype: (_tree_grads(rng, 3), {}), grad_args=(),
              call=_combine_tree_call(_method, **_options), reference_call=_combine_tree_call(_method, **_options),
              value_tol=_tol, note="K dict gradients: (direction['b'], direction['w'], weights)"),
        _case(f"{_method}-direction", "combine_gradients", _conflicting if _method == "pcgrad" else _many,
              call=_direction_call(_method, **_options), reference_call=_direction_call(_method, **_options),
              value_tol=_tol, grad_tol={"float32": 5e-4}, seed=7,
              note="a [K, dim] array of gradients; the direction's gradient with respect to every g_i"),
    )

register(
    _case("pcgrad-weights", "combine_gradients", _conflicting, grad_args=(),
          call=_weights_call("pcgrad", order="fixed"), reference_call=_weights_call("pcgrad", order="fixed"),
          value_tol={"float32": 1e-4}, note="the effective weights Σ_i c_ij, fixed order"),
    _case("pcgrad-permutations", "combine_gradients", _conflicting, grad_args=(),
          call=_weights_call("pcgrad", order=[[2, 0, 3, 1], [3, 2, 1, 0], [0, 1, 2, 3], [1, 3, 0, 2]]),
          reference_call=_weights_call("pcgrad", order=[[2, 0, 3, 1], [3, 2, 1, 0], [0, 1, 2, 3], [1, 3, 0, 2]]),
          value_tol={"float32": 1e-4}, note="one explicit order per task (row i for task i)"),
    _case("primary-last-weights", "combine_gradients", _conflicting, grad_args=(),
          call=_weights_call("primary", primary=-1), reference_call=_weights_call("primary", primary=-1),
          value_tol={"float32": 5e-4}, note="the primary task given by a negative index"),
    _case("min_norm-weights", "combine_gradients", _many, call=_weights_call("min_norm"),
          reference_call=_weights_call("min_norm"), value_tol={"float32": 5e-4}, grad_tol={"float32": 5e-4},
          note="α and its gradient with respect to the gradients (through the Gram matrix)"),
)

# --------------------------------------------------------------------------------------------
# coefficient_free_l2
# --------------------------------------------------------------------------------------------


def _cfl2_call(function, g_w, g_b, theta_w, theta_b):
    out = function({"w": g_w, "b": g_b}, {"w": theta_w, "b": theta_b})
    return out["w"]


def _cfl2_inputs(sign):
    def inputs(rng, dtype):
        theta_w, theta_b = rng.normal(0.0, 1.0, (3, 4)), rng.normal(0.0, 1.0, (5,))
        g_w = sign * theta_w + rng.normal(0.0, 0.5, (3, 4))
        g_b = sign * theta_b + rng.normal(0.0, 0.5, (5,))
        return (g_w, g_b, theta_w, theta_b), {}

    return inputs


register(
    _case("conflict", "coefficient_free_l2", _cfl2_inputs(-1.0), grad_args=(0, 1, 2, 3), call=_cfl2_call,
          reference_call=_cfl2_call, value_tol={"float32": 1e-4}, note="<g, θ> < 0: θ added"),
    _case("no-conflict", "coefficient_free_l2", _cfl2_inputs(1.0), grad_args=(0, 1, 2, 3), call=_cfl2_call,
          reference_call=_cfl2_call, note="<g, θ> > 0: g unchanged"),
)

# --------------------------------------------------------------------------------------------
# weigh_losses
# --------------------------------------------------------------------------------------------


def _losses(rng, dtype, k=4):
    return np.exp(rng.normal(0.0, 1.0, k))


def _weigh_call(method, **options):
    def call(function, losses, *extra):
        if method == "uncertainty":
            return function(losses, method=method, log_vars=extra[0])
        return function(losses, method=method, **options)

    return call


register(
    _case("sum", "weigh_losses", lambda rng, dtype: ((_losses(rng, dtype),), {"method": "sum"}), dtypes=ALL_DTYPES),
    _case("initial", "weigh_losses",
          lambda rng, dtype: ((_losses(rng, dtype),), {"method": "initial", "initial": _losses(rng, dtype)})),
    _case("prior", "weigh_losses",
          lambda rng, dtype: ((_losses(rng, dtype),), {"method": "prior", "prior": np.array([2.3, 0.7, 1.0, 4.0])})),
    _case("realtime", "weigh_losses", lambda rng, dtype: ((_losses(rng, dtype),), {"method": "realtime"}),
          grad_args=(), note="value K; its gradient Σ ∇L/L (a stop-gradient) has no finite-difference "
                             "reference: tests/test_multitask_properties.py checks it"),
    _case("geometric", "weigh_losses", lambda rng, dtype: ((_losses(rng, dtype),), {"method": "geometric"}),
          dtypes=ALL_DTYPES),
    *[
        _case(f"power-{gamma:g}", "weigh_losses",
              lambda rng, dtype, gamma=gamma: ((_losses(rng, dtype),), {"method": "power", "gamma": gamma}))
        for gamma in (0.0, 1.0, -1.0, 2.5, 40.0)
    ],
    _case("uncertainty", "weigh_losses",
          lambda rng, dtype: ((_losses(rng, dtype), rng.normal(0.0, 1.0, 4)), {}), grad_args=(0, 1),
          call=_weigh_call("uncertainty"), reference_call=_weigh_call("uncertainty"),
          note="log-variances s (trained by the user) differentiated too"),
    _case("sequence", "weigh_losses", lambda rng, dtype: (tuple(np.array(x) for x in _losses(rng, dtype, 3)), {}),
          call=lambda function, *losses: function([*losses], method="geometric"),
          reference_call=lambda function, *losses: function([*losses], method="geometric"), grad_args=(0, 1, 2),
          note="K 0-d losses as a list"),
)

"""Multi-task learning: loss weighting and gradient combination, written once against the array API.

Formulas, sources, the invariance table and recipes for torch, optax, Keras, DDP and AMP are in
``docs/multitask.md``. Sources: Su Jianlin, kexue.fm/archives/8870, 8896, 8907 (multi-task learning,
parts 1-3); Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization" (MGDA,
arXiv 1810.04650); Yu et al. 2020, "Gradient Surgery for Multi-Task Learning" (PCGrad, arXiv
2001.06782); Kendall, Gal & Cipolla 2018 (uncertainty weighting, arXiv 1705.07115); Wolfe 1976,
"Finding the nearest point in a polytope" (the active-set solver for many tasks).

With ``g_1..g_K`` the per-task gradients (pytrees of one structure, flattened over every leaf) and
``G_ij = <g_i, g_j>`` their Gram matrix, every combination returns ``(u, w)`` with ``u = Σ_i w_i g_i``:

* ``sum`` (w = 1), ``mean`` (w = 1/K), ``normalized`` (w_i = 1/||g_i||, 0 for a zero gradient);
* ``min_norm`` (MGDA): ``w = α = argmin_{α ∈ simplex} α^T G α``, the point of the convex hull of the
  gradients nearest to 0: ``<g_i, u> >= ||u||²`` for every task (a common descent direction) and
  ``u = 0`` exactly at Pareto-stationary points;
* ``primary``: ``w = [1, λ]`` with ``λ >= 0`` minimising ``||g_p + Σ λ_i g_i||²`` (kexue 8907);
* ``pcgrad``: Yu et al.'s projections on the normal planes of the ORIGINAL conflicting gradients,
  summed; ``w`` the effective coefficients of the original gradients.

The weights are computed on the ``[K, K]`` Gram matrix alone (built leaf by leaf, never by
concatenating the gradients, accumulated in float32 or wider); the direction is one weighted sum per
leaf. Everything runs eagerly and compiled (``jax.jit``, ``tf.function``): no host synchronisation,
no Python branch on a value, fixed loop bounds.

The min-norm and primary problems are solved exactly for up to ``ENUMERATION_MAX_TASKS`` tasks: the
minimiser lies in the relative interior of some face of the feasible set, where it solves a small
linear system; every face is solved at once (a batch of ``2^K - 1`` systems, no iteration) and the
best feasible candidate wins. Beyond that, Wolfe's active-set algorithm runs for a fixed number of
steps (``active_set_steps(K)``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np

from polyloss import _checks, _ops
from polyloss import backends as _backends
from polyloss._namespace import namespace_of

__all__ = [
    "gram_matrix",
    "min_norm_weights",
    "primary_weights",
    "combine_gradients",
    "coefficient_free_l2",
    "weigh_losses",
    "task_gradients",
    "active_set_steps",
]

METHODS = ("sum", "mean", "normalized", "min_norm", "primary", "pcgrad")
LOSS_METHODS = ("sum", "initial", "prior", "realtime", "geometric", "power", "uncertainty")
SOLVERS = ("auto", "enumerate", "active_set")

#: The exact solvers enumerate every face of the feasible set: ``2^K - 1`` linear systems of size K.
#: Up to this many tasks (4095 systems of 12 x 12) they do; beyond it Wolfe's active-set algorithm runs.
ENUMERATION_MAX_TASKS = 12

_GRAM_SYMMETRY_TOL = 1e-4  # |G - G^T| tolerated, relative to max_i G_ii (float32 Gram matrices pass)


def active_set_steps(k: int) -> int:
    """The fixed number of steps of the active-set solver for ``k`` tasks: ``4k + 20``.

    Each step solves one ``k x k`` system and either adds a task to the support or removes at least
    one; Wolfe's algorithm ends after a finite number of them (typically fewer than ``2k``). A step
    taken after convergence changes nothing, so the bound only caps the work.

    >>> active_set_steps(40)
    180
    """
    return 4 * k + 20


# ---------------------------------------------------------------------------------------------
# pytrees of gradients
# ---------------------------------------------------------------------------------------------


def _kind(tree) -> str:
    if tree is None:
        return "none"
    if isinstance(tree, dict):
        return "dict"
    if isinstance(tree, list):
        return "list"
    if isinstance(tree, tuple):
        return "tuple"
    return "leaf"


def _describe(tree) -> str:
    kind = _kind(tree)
    if kind == "dict":
        return f"a dict with keys {sorted(tree, key=repr)!r}"
    if kind in ("list", "tuple"):
        return f"a {kind} of length {len(tree)}"
    if kind == "none":
        return "None"
    return f"a leaf of shape {tuple(getattr(tree, 'shape', ()))}"


def _where(path: str) -> str:
    return f"leaf {path}" if path else "the root"


def _leaf_paths(tree, path: str = "") -> list[str]:
    """The paths of the leaves of a tree of dicts, lists and tuples, in the order of the adapters'
    ``tree_flatten`` (dict keys sorted, None holds no leaf)."""
    kind = _kind(tree)
    if kind == "none":
        return []
    if kind == "dict":
        return [p for key in sorted(tree) for p in _leaf_paths(tree[key], f"{path}[{key!r}]")]
    if kind in ("list", "tuple"):
        return [p for i, child in enumerate(tree) for p in _leaf_paths(child, f"{path}[{i}]")]
    return [path]


def _structure_mismatch(ref, other, path: str = "") -> str | None:
    """Where ``other``'s containers differ from ``ref``'s (dicts, lists, tuples), or None."""
    kind_r, kind_o = _kind(ref), _kind(other)
    if kind_r == "leaf" and kind_o == "leaf":
        return None
    if kind_r != kind_o or (kind_r in ("list", "tuple") and len(ref) != len(other)) or (
        kind_r == "dict" and set(ref) != set(other)
    ):
        return f"at {_where(path)}: {_describe(other)} where gradient 0 has {_describe(ref)}"
    if kind_r == "dict":
        children = [(ref[k], other[k], f"{path}[{k!r}]") for k in sorted(ref)]
    elif kind_r in ("list", "tuple"):
        children = [(a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(ref, other))]
    else:
        children = []
    for a, b, p in children:
        found = _structure_mismatch(a, b, p)
        if found:
            return found
    return None


def _first_leaf(tree):
    kind = _kind(tree)
    if kind == "dict":
        items = [tree[k] for k in sorted(tree)]
    elif kind in ("list", "tuple"):
        items = list(tree)
    elif kind == "none":
        return None
    else:
        return tree
    for item in items:
        leaf = _first_leaf(item)
        if leaf is not None:
            return leaf
    return None


class _Tasks:
    """K gradients of one structure: ``leaves[k][n]`` is leaf n of task k (native arrays, as given),
    ``rebuild`` makes a tree of gradient 0's structure from a list of leaves."""

    def __init__(self, xp, backend, leaves, rebuild, paths):
        self.xp, self.backend, self.leaves, self.rebuild, self.paths = xp, backend, leaves, rebuild, paths

    @property
    def k(self) -> int:
        return len(self.leaves)

    def compute(self, k: int, n: int):
        """Leaf n of task k in its compute dtype (half precision goes to float32)."""
        return _ops.upcast(self.xp, self.leaves[k][n])


def _as_task_list(grads, name: str) -> list:
    if isinstance(grads, (list, tuple)):
        return list(grads)
    if hasattr(grads, "shape") and hasattr(grads, "dtype") and not isinstance(grads, (str, bytes)):
        shape = tuple(grads.shape)
        if len(shape) == 0:
            raise ValueError(f"{name} must be a sequence of K gradients or an array with a leading task axis, "
                             "got a 0-d array")
        if shape[0] is None:
            raise ValueError(f"{name}: the number of tasks (the leading axis) must be known, got shape {shape}")
        return [grads[i, ...] for i in range(int(shape[0]))]
    raise TypeError(f"{name} must be a list or tuple of K gradients (each an array or a pytree of arrays), "
                    f"or an array with a leading task axis; got {type(grads).__name__}")


def _tasks(grads, name: str = "grads") -> _Tasks:
    """Check and flatten K task gradients (see :func:`gram_matrix`)."""
    trees = _as_task_list(grads, name)
    if not trees:
        raise ValueError(f"{name} is empty: need at least one task gradient (K = 0)")
    first = _first_leaf(trees[0])
    if first is None:
        raise ValueError(f"{name}: gradient 0 holds no array")
    xp, backend = namespace_of(**{f"{name} (gradient 0, first leaf)": first})
    paths = _leaf_paths(trees[0])
    for k in range(1, len(trees)):
        found = _structure_mismatch(trees[0], trees[k])
        if found:
            raise ValueError(f"{name}: gradient {k} does not have the structure of gradient 0 {found}")
    leaves, rebuild = [], None
    for k, tree in enumerate(trees):
        flat, rebuild_k = backend.tree_flatten(tree)
        if k == 0:
            rebuild = rebuild_k
            if len(paths) != len(flat):  # a JAX pytree with nodes of its own: leaves by number
                paths = [f"#{n}" for n in range(len(flat))]
        elif len(flat) != len(leaves[0]):
            raise ValueError(f"{name}: gradient {k} has {len(flat)} leaves where gradient 0 has {len(leaves[0])}")
        native = []
        for n, leaf in enumerate(flat):
            where = f"{name}: gradient {k} at {_where(paths[n])}"
            if not backend.is_array(leaf):
                leaf = backend.asarray(leaf, like=first, name=where)
            _checks.require_floating(xp, leaf, where)
            if k and not _checks.same_dims(leaf.shape, leaves[0][n].shape):
                raise ValueError(f"{name}: gradient {k} does not have the structure of gradient 0 at "
                                 f"{_where(paths[n])}: shape {tuple(leaf.shape)} where gradient 0 has shape "
                                 f"{tuple(leaves[0][n].shape)}")
            native.append(leaf)
        leaves.append(native)
    if not leaves[0]:
        raise ValueError(f"{name}: the gradients hold no array")
    return _Tasks(xp, backend, leaves, rebuild, paths)


def _inner(xp, a, b):
    """``<a, b>`` over every entry, as a 0-d array: products and the sum in the arrays' dtype
    (float32 or float64). An elementwise product and a sum, not a matrix product: on GPUs, XLA and
    TensorFlow run float32 matrix products in TF32 (10-bit mantissas) by default."""
    return xp.sum(xp.reshape(a * b, (-1,)))


def _averaged(tasks: _Tasks, group) -> _Tasks:
    """Every task's gradient averaged over the members of ``group`` (a torch.distributed group or
    True; the axis name of a JAX ``shard_map`` / ``pmap``)."""
    xp, backend = tasks.xp, tasks.backend
    one = xp.ones((), dtype=_ops.compute_dtype(xp, tasks.leaves[0][0].dtype))
    one = backend.asarray(one, like=tasks.leaves[0][0])
    members = backend.all_reduce(one, group)
    leaves = [[backend.all_reduce(tasks.compute(k, n), group) / members for n in range(len(tasks.leaves[k]))]
              for k in range(tasks.k)]
    return _Tasks(xp, backend, leaves, tasks.rebuild, tasks.paths)


def _gram(tasks: _Tasks):
    """``[K, K]`` Gram matrix: one inner product per leaf and pair of tasks, summed over the leaves in
    the widest compute dtype of the leaves (float32 or float64)."""
    xp = tasks.xp
    k, n_leaves = tasks.k, len(tasks.leaves[0])
    dtype = xp.result_type(*[_ops.compute_dtype(xp, leaf.dtype) for leaf in tasks.leaves[0]])
    entries = {}
    for n in range(n_leaves):
        parts = [tasks.compute(i, n) for i in range(k)]
        for i in range(k):
            for j in range(i, k):
                dot = _inner(xp, parts[i], parts[j])
                dot = dot if dot.dtype == dtype else xp.astype(dot, dtype)
                entries[i, j] = dot if n == 0 else entries[i, j] + dot
    rows = [xp.stack([entries[min(i, j), max(i, j)] for j in range(k)]) for i in range(k)]
    return xp.stack(rows)


def _weighted_sum(tasks: _Tasks, weights):
    """``Σ_k weights[k] · g_k`` leaf by leaf, as a tree of gradient 0's structure (compute dtypes)."""
    xp = tasks.xp
    out = []
    for n in range(len(tasks.leaves[0])):
        total = None
        for k in range(tasks.k):
            leaf = tasks.compute(k, n)
            w = weights[k] if weights.dtype == leaf.dtype else xp.astype(weights[k], leaf.dtype)
            total = leaf * w if total is None else total + leaf * w
        out.append(total)
    return tasks.rebuild(out)


def gram_matrix(grads):
    """Gram matrix of K task gradients: ``G_ij = <g_i, g_j>`` summed over every leaf (kexue 8896).

    Built leaf by leaf (no concatenation of the gradients: the extra memory is one leaf-sized
    product at a time), each inner product an elementwise product and a sum in the leaf's compute
    dtype (half precision in float32), the leaves' contributions summed in the widest of them.

    Parameters
    ----------
    grads : sequence of K gradients, or an array with a leading task axis
        Each gradient an array or a pytree of arrays (tuples, lists, dicts; any JAX pytree), all of
        one structure and leaf shapes, floating.

    Returns
    -------
    array [K, K], float64 for float64 gradients, float32 otherwise.

    Raises ValueError for K = 0 and for gradients of different structures or shapes (naming the
    first differing leaf), TypeError for non-floating leaves.

    Examples
    --------
    >>> import numpy as np
    >>> gram_matrix([np.array([1.0, 0.0]), np.array([1.0, 1.0])]).tolist()
    [[1.0, 1.0], [1.0, 2.0]]
    >>> gram_matrix([{"w": np.array([1.0, 2.0]), "b": np.array(3.0)},
    ...              {"w": np.array([0.0, 1.0]), "b": np.array(-1.0)}]).tolist()
    [[14.0, -1.0], [-1.0, 2.0]]
    """
    return _gram(_tasks(grads))


# ---------------------------------------------------------------------------------------------
# the solvers on the Gram matrix
# ---------------------------------------------------------------------------------------------


def _gram_argument(gram, name: str = "gram"):
    """``(xp, backend, G)``: a square floating [K, K] matrix, K >= 1, in its compute dtype, symmetrised
    (``(G + G^T) / 2``); in eager mode, a matrix that is not symmetric is a ValueError."""
    xp, backend = namespace_of(**{name: gram})
    _checks.require_floating(xp, gram, name)
    shape = tuple(gram.shape)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] is None:
        raise ValueError(f"{name} must be a square [K, K] matrix of known size, got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one task (K = 0)")
    g = _ops.upcast(xp, gram)
    transposed = xp.permute_dims(g, (1, 0))
    if _checks.values_checked(backend, g):
        scale = xp.max(xp.abs(g))
        _checks.fail_if_any(
            xp, xp.abs(g - transposed) > _GRAM_SYMMETRY_TOL * scale,
            lambda: f"{name} is not symmetric (|G - G^T| exceeds {_GRAM_SYMMETRY_TOL:g} of its largest entry): "
                    "not a Gram matrix",
        )
    return xp, backend, (g + transposed) / 2.0


def _constant(xp, backend, value: np.ndarray, like, dtype=None):
    """A NumPy constant (masks, one-hot matrices) on ``like``'s framework and device; with ``dtype`` (a
    floating dtype) its values as numbers of that dtype, booleans included."""
    value = np.asarray(value)
    return backend.asarray(value if dtype is None else value.astype(np.float64), like=like, dtype=dtype)


def _diagonal(xp, backend, g):
    eye = _constant(xp, backend, np.eye(g.shape[-1]), g, dtype=g.dtype)
    return xp.sum(g * eye, axis=-1)


def _unit_scale(xp, backend, g):
    """``G / max_i G_ii`` (unchanged when every gradient is zero): the weights do not depend on the scale."""
    top = xp.max(_diagonal(xp, backend, g))
    return g / xp.where(top > 0.0, top, 1.0)


def _solve_faces(xp, backend, a, rhs, active):
    """Solve the symmetric positive semi-definite systems ``a[s] x = rhs[s]`` restricted to the
    coordinates where ``active[s]`` holds (``x = 0`` elsewhere), for a batch of S systems at once.

    ``a`` [S, K, K], ``rhs`` [S, K], ``active`` [S, K] boolean. Returns ``(x, valid)``: ``valid[s]`` is
    False when system s is singular (a zero diagonal entry, or a pivot below ``eps`` after the
    diagonal is scaled to 1: a coordinate numerically in the span of the others).

    Symmetric Gaussian elimination without pivoting (LDL^T), which is stable on positive definite
    matrices, after the symmetric diagonal scaling ``D^{-1/2} A D^{-1/2}`` (unit diagonal, entries in
    [-1, 1]). K fixed steps of whole-batch array operations; every division is by a number >= eps and
    intermediate values are clipped at ``1/eps²``, so nothing overflows and the gradient is finite.
    """
    k = a.shape[-1]
    dtype = a.dtype
    eps = float(xp.finfo(dtype).eps)
    bound = 1.0 / (eps * eps)
    eye = _constant(xp, backend, np.eye(k, dtype=bool), a)
    diag = xp.sum(xp.where(eye, a, 0.0), axis=-1)
    usable = active & (diag > 0.0)
    valid = xp.all(usable | ~active, axis=-1)
    scale = xp.where(usable, 1.0 / xp.sqrt(xp.where(usable, diag, 1.0)), 0.0)
    both = usable[:, :, None] & usable[:, None, :]
    m = xp.where(both, a * scale[:, :, None] * scale[:, None, :], xp.astype(eye, a.dtype))
    b = rhs * scale
    pivots = []
    for step in range(k):
        below = _constant(xp, backend, np.arange(k) > step, a)
        d = m[:, step, step]
        ok = d > eps
        valid = valid & ok
        d = xp.where(ok, d, 1.0)
        pivots.append(d)
        multiplier = xp.where(below, m[:, :, step] / d[:, None], 0.0)
        m = xp.clip(m - multiplier[:, :, None] * m[:, step, None, :], min=-bound, max=bound)
        b = xp.clip(b - multiplier * b[:, step, None], min=-bound, max=bound)
    x = xp.zeros_like(b)
    for step in range(k - 1, -1, -1):
        unit = _constant(xp, backend, np.arange(k) == step, a, dtype=dtype)
        value = (b[:, step] - xp.sum(m[:, step, :] * x, axis=-1)) / pivots[step]
        x = x + xp.clip(value, min=-bound, max=bound)[:, None] * unit
    return x * scale, valid


def _face_minimizers(xp, backend, g, supports, references, constraint):
    """The minimiser of ``w^T G w`` on each face: ``w_i = 0`` off ``supports[s]`` and ``c^T w = 1``.

    ``supports`` [S, K] boolean, ``references`` [S, K] one-hot (an index r in the support with
    ``c_r = 1``), ``constraint`` the [K] vector c (all ones: the simplex of ``min_norm``; e_0: the
    primary weight fixed to 1). With ``w = e_r + Σ_{j≠r} β_j (e_j - c_j e_r)`` the problem is an
    unconstrained one in β with the positive semi-definite matrix ``H_jk = <g_j - c_j g_r, g_k - c_k g_r>``
    and ``H β = -b``, ``b_j = <g_j - c_j g_r, g_r>`` (Sener & Koltun's and Wolfe's affine minimiser).
    Returns ``(w [S, K], valid [S])``.
    """
    gr = references @ g  # [S, K]: row r of G
    grr = xp.sum(gr * references, axis=-1)  # [S]
    c = constraint
    h = (g[None, :, :] - c[None, :, None] * gr[:, None, :] - c[None, None, :] * gr[:, :, None]
         + (c[:, None] * c[None, :])[None, :, :] * grr[:, None, None])
    b = gr - c[None, :] * grr[:, None]
    active = supports & (references == 0.0)
    beta, valid = _solve_faces(xp, backend, h, -b, active)
    w = beta + references * (1.0 - xp.sum(c[None, :] * beta, axis=-1))[:, None]
    return w, valid


def _quadratic(xp, g, w):
    """``w^T G w`` for each row of w [S, K]."""
    return xp.sum((w @ g) * w, axis=-1)


def _masks_min_norm(k: int):
    """Every non-empty support of range(k), by size then lexicographically, and its first index."""
    supports = [s for size in range(1, k + 1) for s in itertools.combinations(range(k), size)]
    masks = np.zeros((len(supports), k), dtype=bool)
    refs = np.zeros((len(supports), k))
    for row, s in enumerate(supports):
        masks[row, list(s)] = True
        refs[row, s[0]] = 1.0
    return masks, refs


def _masks_primary(k: int):
    """Every support of the auxiliaries 1..k-1 (the empty one first), with the primary index 0 in it."""
    aux = range(1, k)
    supports = [s for size in range(0, k) for s in itertools.combinations(aux, size)]
    masks = np.zeros((len(supports), k), dtype=bool)
    masks[:, 0] = True
    for row, s in enumerate(supports):
        masks[row, list(s)] = True
    refs = np.zeros((len(supports), k))
    refs[:, 0] = 1.0
    return masks, refs


def _feasible(xp, backend, w, problem: str):
    """Candidates made feasible: negative weights set to 0 (the primary weight stays 1); on the simplex
    renormalised to sum 1 (the positive parts of a vector summing to 1 sum to at least 1)."""
    if problem == "min_norm":
        w = xp.clip(w, min=0.0)
        return w / xp.sum(w, axis=-1, keepdims=True)
    aux = _constant(xp, backend, np.arange(w.shape[-1]) > 0, w)
    return xp.where(aux, xp.clip(w, min=0.0), w)


def _best(xp, backend, g, w, valid):
    """The candidate row of w with the smallest ``w^T G w`` among the valid ones (the first on ties)."""
    values = xp.where(valid, _quadratic(xp, backend.stop_gradient(g), backend.stop_gradient(w)), math.inf)
    index = xp.argmax(-values)
    return xp.take(w, xp.reshape(index, (1,)), axis=0)[0, ...]


def _enumerate(xp, backend, g, problem: str):
    k = g.shape[-1]
    masks, refs = (_masks_min_norm if problem == "min_norm" else _masks_primary)(k)
    constraint = np.ones(k) if problem == "min_norm" else (np.arange(k) == 0).astype(np.float64)
    w, valid = _face_minimizers(
        xp, backend, g, _constant(xp, backend, masks, g), _constant(xp, backend, refs, g, dtype=g.dtype),
        _constant(xp, backend, constraint, g, dtype=g.dtype),
    )
    return _best(xp, backend, g, _feasible(xp, backend, w, problem), valid)


def _constraint(xp, backend, g, problem: str):
    k = g.shape[-1]
    c = np.ones(k) if problem == "min_norm" else (np.arange(k) == 0).astype(np.float64)
    free = np.ones(k, dtype=bool) if problem == "min_norm" else np.arange(k) > 0
    return _constant(xp, backend, c, g, dtype=g.dtype), _constant(xp, backend, free, g)


def _active_set(xp, backend, g, problem: str):
    """Wolfe's algorithm (min-norm) / Lawson and Hanson's (primary, non-negative least squares), as one
    loop of ``active_set_steps(K)`` fixed steps over a support S.

    Each step solves for the minimiser y of ``w^T G w`` on the face of S (``_face_minimizers``). If y
    is feasible it becomes w, and the task whose reduced gradient is most negative (``(Gw)_j - w^T G w``
    on the simplex, ``(Gw)_j`` for the auxiliaries) enters S; none below ``-tol``: converged. If y is
    not feasible, w moves towards y until a weight reaches 0, and that task leaves S. Converged (or a
    singular face: numerically no progress possible) freezes the state. The loop runs on the Gram
    matrix without gradient; the caller re-solves the final face with it.
    """
    k = g.shape[-1]
    dtype = g.dtype
    g = backend.stop_gradient(g)
    c, free = _constraint(xp, backend, g, problem)
    positions = _constant(xp, backend, np.arange(k), g, dtype=dtype)
    tol = 8.0 * k * float(xp.finfo(dtype).eps)
    if problem == "min_norm":
        start = xp.argmax(-_diagonal(xp, backend, g))  # the shortest gradient
    else:
        start = xp.argmax(c)
    w0 = xp.astype(positions == xp.astype(start, dtype), dtype)
    init = (w0, w0 > 0.0, xp.any(w0 < 0.0))  # not done

    def step(carry, _):
        w, support, done = carry
        if problem == "min_norm":  # the first index of S is the reference of the face
            first = xp.argmax(xp.where(support, -positions, -math.inf))
            reference = xp.astype(positions == xp.astype(first, dtype), dtype)
        else:
            reference = c
        y, ok = _face_minimizers(xp, backend, g, support[None, :], reference[None, :], c)
        y, ok = y[0, ...], ok[0]
        inside = xp.all(xp.where(support & free, y > 0.0, True))
        # y feasible: it becomes w, and the most promising task enters
        gy = xp.sum(g * y[None, :], axis=-1)
        reduced = gy - xp.sum(gy * y) if problem == "min_norm" else gy
        score = xp.where(free & ~support, reduced, math.inf)
        entering = xp.argmax(-score)
        enter = xp.min(score) < -tol
        grown = support | ((positions == xp.astype(entering, dtype)) & enter)
        # y not feasible: move from w towards y until the first weight reaches 0; it leaves
        falling = support & free & (y <= 0.0)
        gap = w - y  # > 0 unless w = 0 (a task that just entered): then the ratio is 0
        moving = falling & (gap > 0.0)
        ratio = xp.where(moving, w / xp.where(moving, gap, 1.0), xp.where(falling, xp.zeros_like(w), math.inf))
        theta = xp.clip(xp.min(ratio), min=0.0, max=1.0)
        moved = w + theta * (y - w)
        leaving = falling & (ratio <= theta)
        moved = xp.where(leaving | (free & (moved < 0.0)), 0.0, moved)
        new_w = xp.where(inside, y, moved)
        new_support = xp.where(inside, grown, support & ~leaving)
        frozen = done | ~ok
        return (xp.where(frozen, w, new_w), xp.where(frozen, support, new_support),
                frozen | (inside & ~enter)), None

    steps = _constant(xp, backend, np.zeros(active_set_steps(k)), g, dtype=dtype)
    (w, support, _), _ = backend.scan(step, init, steps)
    return w, support


def _solve(xp, backend, g, problem: str, solver: str):
    """The weights of ``problem`` ("min_norm" or "primary") on the unit-scaled Gram matrix g [K, K]."""
    k = g.shape[-1]
    if k == 1:
        return xp.ones_like(g[0, ...])
    if k == 2:
        return _two_tasks(xp, g, problem)
    if solver == "enumerate" or (solver == "auto" and k <= ENUMERATION_MAX_TASKS):
        return _enumerate(xp, backend, g, problem)
    w, support = _active_set(xp, backend, g, problem)
    # the final face again, on g itself: the weights are differentiable where the support is stable
    c, _ = _constraint(xp, backend, g, problem)
    if problem == "min_norm":
        positions = _constant(xp, backend, np.arange(k), g, dtype=g.dtype)
        first = xp.argmax(xp.where(support, -positions, -math.inf))
        reference = xp.astype(positions == xp.astype(first, g.dtype), g.dtype)
    else:
        reference = c
    y, ok = _face_minimizers(xp, backend, g, support[None, :], reference[None, :], c)
    y = _feasible(xp, backend, y, problem)[0, ...]
    # the re-solved face (differentiable) unless it is singular or worse than the loop's point by more
    # than rounding (a loop stopped before convergence)
    fixed = backend.stop_gradient(g)
    slack = 64.0 * k * float(xp.finfo(g.dtype).eps)  # g is scaled to max_i G_ii = 1
    better = ok[0] & (_quadratic(xp, fixed, backend.stop_gradient(y)[None, :])[0]
                      <= _quadratic(xp, fixed, w[None, :])[0] + slack)
    return xp.where(better, y, w)


def _two_tasks(xp, g, problem: str):
    """K = 2 in closed form. min-norm: ``α_0 = clip((G_11 - G_01) / (G_00 - 2 G_01 + G_11), 0, 1)``
    (identical gradients: ``[1, 0]``); primary: ``λ = relu(-G_01) / G_11`` (0 when ``G_11 = 0``)."""
    g00, g01, g11 = g[0, 0], g[0, 1], g[1, 1]
    if problem == "min_norm":
        den = g00 - 2.0 * g01 + g11
        positive = den > 0.0
        a0 = xp.where(positive, xp.clip((g11 - g01) / xp.where(positive, den, 1.0), min=0.0, max=1.0), 1.0)
        return xp.stack([a0, 1.0 - a0])
    positive = g11 > 0.0
    lam = xp.where(positive, xp.clip(-g01, min=0.0) / xp.where(positive, g11, 1.0), 0.0)
    return xp.stack([xp.ones_like(lam), lam])


def _solver_argument(solver, k: int) -> str:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "enumerate" and k > 16:
        raise ValueError(f"solver='enumerate' solves 2^K - 1 systems and accepts K <= 16, got K = {k}; "
                         "use solver='active_set' (or 'auto')")
    return solver


def min_norm_weights(gram, *, solver="auto"):
    """MGDA / min-norm weights: ``α = argmin_{α >= 0, Σ α = 1} α^T G α`` (Sener & Koltun 2018, kexue 8896).

    ``α^T G α = ||Σ α_i g_i||²``: ``u = Σ α_i g_i`` is the point of the convex hull of the task
    gradients nearest to the origin; ``<g_i, u> >= ||u||²`` for every task, and ``u = 0`` exactly when
    the point is Pareto-stationary. The value and u are unique; α need not be (identical
    gradients, more tasks than dimensions).

    Solvers (``solver="auto"`` picks by K; none iterates to a tolerance, so all run under ``jax.jit``
    and ``tf.function`` with fixed work):

    * K = 1: ``[1]``; K = 2: the closed form ``α_0 = clip((G_11 - G_01) / ||g_0 - g_1||², 0, 1)``.
    * ``"enumerate"`` (K <= ``ENUMERATION_MAX_TASKS`` = 12 under "auto"; at most 16): the minimiser lies
      in the relative interior of a face ``{α_i = 0, i ∉ S}`` of the simplex, where it solves the
      system ``H β = -b`` of the Gram matrix of the differences ``g_j - g_r`` (r the first index of S).
      All ``2^K - 1`` faces are solved at once (a symmetric elimination of K fixed steps, singular
      faces flagged); each solution is made feasible (negative weights to 0, renormalised) and the
      smallest ``α^T G α`` wins, the smallest support first on ties. Exact up to rounding: measured
      within 1e-6 relative (+1e-12 · max_i G_ii) of the exact rational minimum of
      ``polyloss.reference.multitask.min_norm_weights`` for K = 2..10 (``tests/test_multitask_properties.py``).
    * ``"active_set"`` (K > 12 under "auto"): Wolfe's algorithm (1976) for ``active_set_steps(K) = 4K + 20``
      fixed steps, each one K x K solve; the final face is solved again with gradients.

    G is scaled by ``1 / max_i G_ii`` first (α does not depend on the scale) and symmetrised; it is
    not checked to be positive semi-definite. The weights are differentiable with respect to G where
    the optimal face does not change (the gradient of the face's solution).

    Parameters
    ----------
    gram : array [K, K], symmetric positive semi-definite (``gram_matrix``), floating
    solver : "auto", "enumerate" or "active_set"

    Returns
    -------
    array [K] of the compute dtype (float64 for float64, float32 otherwise), non-negative, summing to 1.

    Examples
    --------
    >>> import numpy as np
    >>> min_norm_weights(np.array([[4.0, 0.0], [0.0, 1.0]])).tolist()   # α_0 = 1/(4+1)
    [0.2, 0.8]
    >>> min_norm_weights(np.eye(3)).round(12).tolist()
    [0.333333333333, 0.333333333333, 0.333333333333]
    >>> min_norm_weights(np.array([[1.0, 2.0], [2.0, 9.0]])).tolist()   # <g_0, g_1> >= ||g_0||²: g_0 itself
    [1.0, 0.0]
    """
    xp, backend, g = _gram_argument(gram)
    solver = _solver_argument(solver, g.shape[0])
    return _solve(xp, backend, _unit_scale(xp, backend, g), "min_norm", solver)


def primary_weights(gram, *, solver="auto"):
    """Primary / auxiliary weights (kexue 8907): task 0 is the primary task; returns ``[1, λ_1, ..., λ_{K-1}]``.

    ``u = g_0 + Σ_{i>=1} λ_i g_i`` with ``λ >= 0`` minimising ``||u||² = w^T G w`` (``w = [1, λ]``), a
    non-negative least-squares problem. One auxiliary: ``λ = relu(-G_01) / G_11`` (0 when
    ``G_11 = 0``). At the optimum ``<g_0, u> = ||u||² >= 0`` (the primary loss does not increase to
    first order) and ``<g_i, u> >= 0`` for every auxiliary, with equality where ``λ_i > 0``.

    Solved as :func:`min_norm_weights` is (the same face systems, with ``w_0 = 1`` in place of
    ``Σ w = 1``): every support of the auxiliaries for K <= 12 (``2^{K-1}`` systems, the empty support
    first), Lawson and Hanson's active-set algorithm beyond (``active_set_steps(K)`` fixed steps).

    Parameters
    ----------
    gram : array [K, K] (``gram_matrix``; the primary task first), floating
    solver : "auto", "enumerate" or "active_set"

    Returns
    -------
    array [K] of the compute dtype: ``[1, λ...]``, so that ``u = Σ_i w_i g_i`` (as every ``weights``).

    Examples
    --------
    >>> import numpy as np
    >>> primary_weights(np.array([[1.0, -1.0], [-1.0, 2.0]])).tolist()   # λ = relu(1)/2
    [1.0, 0.5]
    >>> primary_weights(np.array([[1.0, 1.0], [1.0, 2.0]])).tolist()   # no conflict: λ = 0
    [1.0, 0.0]
    """
    xp, backend, g = _gram_argument(gram)
    solver = _solver_argument(solver, g.shape[0])
    return _solve(xp, backend, _unit_scale(xp, backend, g), "primary", solver)


# ---------------------------------------------------------------------------------------------
# combining gradients
# ---------------------------------------------------------------------------------------------


def _task_index(value, k: int, name: str) -> int:
    index = _checks.integer(value, f"{name} must be an int (a task index), got {value!r}")
    if not -k <= index < k:
        raise ValueError(f"{name} = {index} is out of range for K = {k} tasks")
    return index % k


def _host_orders(order, k: int) -> np.ndarray:
    """PCGrad's visiting orders as a [K, K] array (row i: the order for task i)."""
    if isinstance(order, str):
        if order != "fixed":
            raise ValueError(f"order must be 'fixed', a permutation of range(K) or K permutations, got {order!r}")
        return np.tile(np.arange(k), (k, 1))
    try:
        rows = np.asarray(order)
    except (TypeError, ValueError):
        rows = None
    if rows is None or rows.dtype.kind not in "iu" or rows.ndim not in (1, 2):
        raise ValueError(f"order must be 'fixed', a permutation of range({k}) or {k} permutations, got {order!r}")
    rows = np.tile(rows, (k, 1)) if rows.ndim == 1 else rows
    if rows.shape != (k, k) or any(sorted(row.tolist()) != list(range(k)) for row in rows):
        raise ValueError(f"order must hold permutations of range({k}) (one, or one per task), got {order!r}")
    return rows


def _pcgrad_weights(xp, backend, g, orders):
    """Yu et al.'s projections on the Gram matrix: row i of C holds the coefficients of task i's
    projected gradient ``g_i' = Σ_j C_ij g_j``; for each j in task i's order (j ≠ i), if
    ``<g_i', g_j> = (C G)_ij < 0`` then ``C_ij -= <g_i', g_j> / G_jj`` (the ORIGINAL g_j). Returns the
    effective weights ``Σ_i C_ij``. ``orders`` [K, K] integer (row i: task i's order)."""
    k = g.shape[-1]
    positions = _constant(xp, backend, np.arange(k), orders)
    eye = _constant(xp, backend, np.eye(k), g, dtype=g.dtype)
    diag = _diagonal(xp, backend, g)
    coefficients = eye
    for t in range(k):
        visit = xp.astype(orders[:, t, None] == positions[None, :], g.dtype)  # [K(i), K(j)] one-hot
        other = xp.sum(visit * eye, axis=-1) == 0.0
        inner = xp.sum((coefficients @ g) * visit, axis=-1)
        length = xp.sum(visit * diag[None, :], axis=-1)
        conflict = other & (inner < 0.0) & (length > 0.0)
        step = xp.where(conflict, inner / xp.where(conflict, length, 1.0), 0.0)
        coefficients = coefficients - step[:, None] * visit
    return xp.sum(coefficients, axis=0)


def combine_gradients(grads, *, method, order=None, key=None, primary=0, group=None, solver="auto"):
    """Combine K task gradients into one update direction (kexue 8896, 8907; MGDA; PCGrad).

    Returns ``(direction, weights)``: ``direction = Σ_i weights[i] · g_i`` has the structure of one
    gradient (compute dtypes: float64 stays, everything else float32); ``weights`` is [K]:

    ============  =====================================================  ===========================
    method        direction                                              weights
    ============  =====================================================  ===========================
    "sum"         Σ g_i                                                  1
    "mean"        Σ g_i / K                                              1/K
    "normalized"  Σ g_i / ||g_i|| (kexue 8896)                           1/||g_i||, 0 for g_i = 0
    "min_norm"    Σ α_i g_i, α = ``min_norm_weights(G)`` (MGDA)          α (on the simplex)
    "primary"     g_p + Σ_{i≠p} λ_i g_i (kexue 8907), p = ``primary``     1 at p, λ_i elsewhere
    "pcgrad"      Σ_i g_i' (Yu et al. 2020)                              Σ_i c_ij (effective)
    ============  =====================================================  ===========================

    "pcgrad": for each task i, ``g_i' = g_i``, then for every j ≠ i in task i's order, if
    ``<g_i', g_j> < 0``: ``g_i' -= <g_i', g_j> / ||g_j||² · g_j`` (the ORIGINAL g_j, as Yu et al. and
    TorchJD; LibMTL also visits j = i); the direction is the sum of the g_i'. Each g_i' is
    ``Σ_j c_ij g_j``, and the weights are ``Σ_i c_ij``. The order: ``key=`` draws one random
    permutation per task (Yu et al.): a ``numpy.random.Generator`` or int seed (drawn on the host
    when the call runs), a ``torch.Generator``, a JAX PRNG key, a ``tf.random.Generator`` or a
    TensorFlow ``[2]`` seed tensor; ``order="fixed"`` visits 0..K-1; or explicit permutations (one for
    every task, or K of them: row i for task i). One of ``key`` and ``order`` is required.

    Everything but the direction is computed on the Gram matrix ``gram_matrix(grads)``; the direction
    is one weighted sum per leaf. ``group=`` first averages every task's gradient over the members of
    a ``torch.distributed`` group (``True`` for the default group) or a JAX ``shard_map`` / ``pmap``
    axis name: the direction is then that of the whole batch (the Gram matrix of the averages, not the
    average of the members' Gram matrices), the same on every member.

    Parameters
    ----------
    grads : sequence of K gradients (arrays or pytrees of one structure), or an array [K, ...]
    method : one of "sum", "mean", "normalized", "min_norm", "primary", "pcgrad"
    order, key : "pcgrad" only
    primary : int, "primary" only: the index of the primary task (negative counts from the end)
    group : None, or a process group / axis name to average the gradients over first
    solver : "min_norm" and "primary": see :func:`min_norm_weights`

    Examples
    --------
    >>> import numpy as np
    >>> g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    >>> u, w = combine_gradients([g1, g2], method="pcgrad", order="fixed")
    >>> u.tolist(), w.tolist()   # g1' = g1 + g2/2, g2' = g2 + g1
    ([0.5, 1.5], [2.0, 1.5])
    >>> u, w = combine_gradients([g1, g2], method="min_norm")   # α = (3/5, 2/5)
    >>> u.round(12).tolist(), w.round(12).tolist()
    ([0.2, 0.4], [0.6, 0.4])
    >>> u, w = combine_gradients([{"a": g1}, {"a": 2 * g1}], method="normalized")
    >>> u["a"].tolist(), w.tolist()
    ([2.0, 0.0], [1.0, 0.5])
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "pcgrad" and (order is not None or key is not None):
        raise ValueError(f"order= and key= are only used by method='pcgrad', got method={method!r}")
    if method != "primary" and not (isinstance(primary, int) and not isinstance(primary, bool) and primary == 0):
        raise ValueError(f"primary= is only used by method='primary', got primary={primary!r} with method={method!r}")
    tasks = _tasks(grads)
    k = tasks.k
    xp, backend = tasks.xp, tasks.backend
    if method in ("min_norm", "primary"):
        solver = _solver_argument(solver, k)
    if method == "pcgrad":
        if order is None and key is None:
            raise ValueError("method='pcgrad' needs key= (a random order per task, as Yu et al.) or "
                             "order= ('fixed' or explicit permutations)")
        if order is not None and key is not None:
            raise ValueError("method='pcgrad' takes key= or order=, not both")
        host_orders = _host_orders(order, k) if order is not None else None
    if method == "primary":
        p = _task_index(primary, k, "primary")
    if group is not None:
        tasks = _averaged(tasks, group)
    if method in ("sum", "mean"):
        like = tasks.compute(0, 0)
        dtype = xp.result_type(*[_ops.compute_dtype(xp, leaf.dtype) for leaf in tasks.leaves[0]])
        weights = xp.full((k,), 1.0 if method == "sum" else 1.0 / k, dtype=dtype, device=backend.device(like))
        return _weighted_sum(tasks, weights), weights
    g = _gram(tasks)
    if method == "normalized":
        diag = _diagonal(xp, backend, g)
        positive = diag > 0.0
        weights = xp.where(positive, 1.0 / xp.sqrt(xp.where(positive, diag, 1.0)), 0.0)
    elif method == "min_norm":
        weights = _solve(xp, backend, _unit_scale(xp, backend, g), "min_norm", solver)
    elif method == "primary":
        perm = [p] + [i for i in range(k) if i != p]
        index = _constant(xp, backend, np.array(perm), g, dtype=backend.index_dtype())
        inverse = _constant(xp, backend, np.argsort(perm), g, dtype=backend.index_dtype())
        permuted = xp.take(xp.take(g, index, axis=0), index, axis=1)
        weights = xp.take(_solve(xp, backend, _unit_scale(xp, backend, permuted), "primary", solver), inverse, axis=0)
    else:
        if host_orders is not None:
            orders = _constant(xp, backend, host_orders, g, dtype=backend.index_dtype())
        else:
            orders = backend.random_permutations(key, k, k, like=g)
        weights = _pcgrad_weights(xp, backend, g, orders)
    return _weighted_sum(tasks, weights), weights


def coefficient_free_l2(grad, params):
    """Coefficient-free L2 regularisation (kexue 8907): ``u = g + relu(-<g, θ>) / ||θ||² · θ``.

    The loss gradient g is the primary task and the weight-decay direction θ (the gradient of
    ``||θ||²/2``) the auxiliary one, with :func:`primary_weights`'s closed form for one auxiliary:
    θ is added only as far as it cancels the part of g that points against θ, so that
    ``<u, θ> = max(<g, θ>, 0)``. One coefficient for the whole pytree; θ = 0 gives g.

    Parameters
    ----------
    grad, params : arrays or pytrees of one structure, floating

    Returns
    -------
    a pytree of ``grad``'s structure (compute dtypes).

    Examples
    --------
    >>> import numpy as np
    >>> coefficient_free_l2(np.array([-1.0, 1.0]), np.array([1.0, 0.0])).tolist()   # <g, θ> = -1
    [0.0, 1.0]
    >>> coefficient_free_l2({"w": np.array([1.0, 1.0])}, {"w": np.array([1.0, 0.0])})["w"].tolist()
    [1.0, 1.0]
    """
    tasks = _tasks([grad, params], "grad and params")
    xp = tasks.xp
    g_theta = theta_theta = None
    for n in range(len(tasks.leaves[0])):
        g, theta = tasks.compute(0, n), tasks.compute(1, n)
        gt, tt = _inner(xp, g, theta), _inner(xp, theta, theta)
        g_theta = gt if g_theta is None else g_theta + gt
        theta_theta = tt if theta_theta is None else theta_theta + tt
    positive = theta_theta > 0.0
    c = xp.where(positive, xp.clip(-g_theta, min=0.0) / xp.where(positive, theta_theta, 1.0), 0.0)
    out = []
    for n in range(len(tasks.leaves[0])):
        g, theta = tasks.compute(0, n), tasks.compute(1, n)
        out.append(g + (c if c.dtype == g.dtype else xp.astype(c, g.dtype)) * theta)
    return tasks.rebuild(out)


# ---------------------------------------------------------------------------------------------
# loss weighting
# ---------------------------------------------------------------------------------------------


def _loss_vector(losses):
    """``(xp, backend, L [K])``: K scalar losses (a sequence of 0-d or one-element arrays, or a [K]
    array) as one array of the compute dtype."""
    if isinstance(losses, (list, tuple)):
        if not losses:
            raise ValueError("losses is empty: need at least one task (K = 0)")
        xp, backend = namespace_of(losses=losses[0])
        items = []
        for i, item in enumerate(losses):
            item = backend.asarray(item, like=losses[0], name=f"losses[{i}]")
            _checks.require_floating(xp, item, f"losses[{i}]")
            if _checks.size(item.shape) != 1:
                raise ValueError(f"losses[{i}] must be a scalar loss (one value), got shape {tuple(item.shape)}")
            items.append(xp.reshape(_ops.upcast(xp, item), ()))
        return xp, backend, xp.stack(items)
    xp, backend = namespace_of(losses=losses)
    _checks.require_floating(xp, losses, "losses")
    if len(losses.shape) != 1:
        raise ValueError("losses must be a sequence of K scalar losses or a [K] array, "
                         f"got shape {tuple(losses.shape)}")
    if losses.shape[0] == 0:
        raise ValueError("losses is empty: need at least one task (K = 0)")
    return xp, backend, _ops.upcast(xp, losses)


def _task_vector(xp, backend, values, like, name: str):
    out = backend.asarray(values, like=like, dtype=like.dtype, name=name)
    _checks.require_floating(xp, out, name)
    if tuple(out.shape) != tuple(like.shape):
        raise ValueError(f"{name} must have shape {tuple(like.shape)} (one value per task), got {tuple(out.shape)}")
    return out


def _require_positive(xp, backend, values, name: str, method: str) -> None:
    """ValueError naming the first task whose value is not positive (eager mode; NaN passes)."""
    if not _checks.values_checked(backend, values):
        return
    bad = values <= 0.0
    if bool(xp.any(bad)):
        index = int(xp.argmax(xp.astype(bad, xp.int32)))
        raise ValueError(
            f"weigh_losses(method={method!r}) needs positive {name}: task {index} has {float(values[index])!r} "
            "(losses that can be <= 0, such as FlatNCE's log form, break 1/L and log L weighting)"
        )


def weigh_losses(losses, *, method, initial=None, prior=None, gamma=None, log_vars=None):
    """The weighted total of K task losses, a scalar to differentiate (kexue 8870; Kendall et al. 2018).

    ``sg`` is the stop-gradient:

    ==============  ======================================  ===============================================
    method          value                                   needs
    ==============  ======================================  ===============================================
    "sum"           Σ L_i
    "initial"       Σ L_i / L_i^init                        ``initial``: the losses at the start, > 0
    "prior"         Σ L_i / prior_i                         ``prior`` > 0 (K-class CE: the entropy of the
                                                            class frequencies; L2 regression: Var y)
    "realtime"      Σ L_i / sg(L_i)  (= K)                  gradient Σ ∇L_i / L_i = ∇ Σ log L_i
    "geometric"     Σ log L_i                               the same gradient as "realtime"
    "power"         ((1/K) Σ L_i^γ)^{1/γ}                   ``gamma``; γ = 0: exp((1/K) Σ log L_i)
    "uncertainty"   Σ ½ exp(-s_i) L_i + ½ s_i               ``log_vars`` s_i = log σ_i², trained by the user
    ==============  ======================================  ===============================================

    "initial" and "prior" are constants (a stop-gradient is applied to them). "power" is computed in
    log space, ``exp((m + log1p(mean(expm1(γ log L - m)))) / γ)`` with ``m = max γ log L``: no
    overflow for large γ or L, no cancellation for γ near 0. "uncertainty"
    is Kendall et al.'s Gaussian form, as LibMTL's ``UW`` and TorchJD's ``scalarization.UW`` (the form
    ``Σ e^{-s} L + s`` is twice it). "realtime" returns K: log the raw losses separately.

    Losses must be positive for "initial", "realtime", "geometric" and "power": a ValueError names the
    task in eager mode (FlatNCE's log form can be negative); compiled, they give NaN or inf.

    Parameters
    ----------
    losses : sequence of K scalar losses (0-d arrays), or a [K] array
    method : one of "sum", "initial", "prior", "realtime", "geometric", "power", "uncertainty"

    Returns
    -------
    0-d array of the compute dtype.

    Examples
    --------
    >>> import numpy as np
    >>> float(weigh_losses(np.array([1.0, 4.0]), method="realtime"))
    2.0
    >>> float(weigh_losses(np.array([1.0, 4.0]), method="power", gamma=0.0))   # sqrt(1·4)
    2.0
    >>> float(weigh_losses(np.array([2.0, 6.0]), method="initial", initial=[4.0, 3.0]))   # 1/2 + 2
    2.5
    >>> float(weigh_losses([np.array(3.0), np.array(1.0)], method="uncertainty", log_vars=[0.0, 0.0]))
    2.0
    """
    if method not in LOSS_METHODS:
        raise ValueError(f"method must be one of {LOSS_METHODS}, got {method!r}")
    needed = {"initial": "initial", "prior": "prior", "power": "gamma", "uncertainty": "log_vars"}.get(method)
    given = {"initial": initial, "prior": prior, "gamma": gamma, "log_vars": log_vars}
    for name, value in given.items():
        if name == needed and value is None:
            raise ValueError(f"weigh_losses(method={method!r}) needs {name}=")
        if name != needed and value is not None:
            raise ValueError(f"weigh_losses(method={method!r}) does not use {name}=")
    xp, backend, values = _loss_vector(losses)
    if method == "sum":
        return xp.sum(values)
    if method == "uncertainty":
        s = _task_vector(xp, backend, log_vars, values, "log_vars")
        return xp.sum(0.5 * xp.exp(-s) * values + 0.5 * s)
    if method == "prior":
        scale = backend.stop_gradient(_task_vector(xp, backend, prior, values, "prior"))
        _require_positive(xp, backend, scale, "prior", method)
        return xp.sum(values / scale)
    _require_positive(xp, backend, values, "losses", method)
    if method == "initial":
        scale = backend.stop_gradient(_task_vector(xp, backend, initial, values, "initial"))
        _require_positive(xp, backend, scale, "initial losses", method)
        return xp.sum(values / scale)
    if method == "realtime":
        return xp.sum(values / backend.stop_gradient(values))
    logs = xp.log(values)
    if method == "geometric":
        return xp.sum(logs)
    gamma = _checks.hyperparameter(gamma, "gamma")
    if gamma == 0.0:
        return xp.exp(xp.mean(logs))
    # log((1/K) Σ e^{y}) with y = γ log L, as m + log1p(mean(expm1(y - m))), m = max y: no overflow for
    # large γ L, and no cancellation for small γ (where log Σ e^{y} - log K loses eps / γ)
    y = gamma * logs
    m = backend.stop_gradient(xp.max(y))
    return xp.exp((m + xp.log1p(xp.mean(xp.expm1(y - m)))) / gamma)


# ---------------------------------------------------------------------------------------------
# per-task gradients (the adapters differentiate)
# ---------------------------------------------------------------------------------------------


def _is_wrapped_variable(x) -> bool:
    """A Keras 3 variable (``keras.Variable``): not an array of any framework itself, it holds one in
    ``.value`` (a ``tf.Variable`` on the TensorFlow backend)."""
    return _backends.backend_for(x) is None and _backends.backend_for(getattr(x, "value", None)) is not None


def task_gradients(losses, params, *, tape=None, create_graph=False):
    """The K gradients of K scalar losses with respect to ``params``: a list of K pytrees of
    ``params``'s structure. The adapters differentiate (``Backend.task_gradients``):

    * torch: ``losses`` are K scalar tensors (a sequence or a [K] tensor) attached to the graph;
      ``torch.autograd.grad`` with the graph retained, once per task (never ``.backward()``: no
      ``.grad`` buffer is touched). ``create_graph=True`` keeps the gradients differentiable.
    * JAX: ``losses`` is a function ``params -> K losses`` (a [K] array or a sequence of scalars):
      ``jax.jacrev`` (one vector-Jacobian product per task, vmapped); composes with ``jit`` / ``grad``.
    * TensorFlow: ``losses`` K scalar tensors recorded by ``tape``, a persistent
      ``tf.GradientTape``; or a function ``params -> K losses``, run under a persistent tape of its own.
      Variables are watched by the tape; tensors in ``params`` are watched when the function form is used.
    * Any framework: ``losses`` may be a function of ``params`` (torch calls it with grad enabled).

    ``params`` may be the model's parameters (a list, a dict such as ``dict(model.named_parameters())``,
    any JAX pytree, Keras ``trainable_variables``) or a shared representation (an activation that the
    task heads share: LibMTL's ``rep_grad``, MGDA-UB), whose gradients are much smaller. A parameter
    that a loss does not reach gets a zero gradient.

    Examples
    --------
    >>> import numpy as np
    >>> try:
    ...     task_gradients([np.float64(1.0)], [np.zeros(2)])
    ... except TypeError as error:   # NumPy has no autograd
    ...     print(str(error).split(";")[0])
    task_gradients needs automatic differentiation, which the numpy backend does not have
    """
    if not isinstance(params, (list, tuple, dict)) and not hasattr(params, "shape") and isinstance(params, Iterable):
        params = list(params)  # model.parameters(): a generator
    first = _first_leaf(params)
    if first is None:
        raise ValueError("params holds no array")
    if _is_wrapped_variable(first):
        first = first.value  # a Keras 3 variable: its framework's variable (the tape differentiates both)
    _, backend = namespace_of(params=first)
    if not callable(losses):
        if isinstance(losses, (list, tuple)) and not losses:
            raise ValueError("losses is empty: need at least one task (K = 0)")
        if not isinstance(losses, (list, tuple)) and len(getattr(losses, "shape", ())) != 1:
            raise ValueError("losses must be K scalar losses (a sequence or a [K] array) or a function of params, "
                             f"got {type(losses).__name__} of shape {tuple(getattr(losses, 'shape', ()))}")
    elif tape is not None:
        raise ValueError("tape= is for losses already computed under a TensorFlow tape, not for a function")
    return backend.task_gradients(losses, params, tape=tape, create_graph=create_graph)


"""Reference (oracle) versions of SPEC sections D4-D5: multi-task loss weighting and gradient combination.

Plain NumPy float64 and Python ``math`` / ``fractions`` / ``decimal``, straight from the formulas; no
code is shared with the array-API core. Being obviously right (and accurate) is the goal, not speed:
the functions are meant for test-sized gradients (thousands of entries, K up to about 12 tasks).

Gradients are *pytrees*: a NumPy array (or anything ``np.asarray`` turns into a real array), or a
list, tuple or dict of pytrees, nested. Lists, tuples and dicts are containers, everything else is
a leaf (``[1.0, 2.0]`` is a list of two scalar leaves, as in JAX). The K gradients must have one
structure: the same container types, lengths and dict keys, and leaves of the same shapes; a
mismatch is a ValueError naming the first differing leaf by its path, e.g. ``['w'][1]``. Results
have the structure of the first gradient (dict keys in its order), float64 leaves.

Formulas, with ``g_1..g_K`` the per-task gradients flattened over all leaves, ``G_ij = <g_i, g_j>``:

* Gram matrix: ``G_ij = Σ_leaves Σ_e g_i[e]·g_j[e]``, every product and the sum exact, rounded once.
* min-norm / MGDA (Sener & Koltun 2018, kexue 8896): ``α = argmin_{α ∈ simplex} α^T G α`` and
  ``u = Σ α_i g_i``. Solved *exactly* by enumerating every support (see ``min_norm_weights``).
  The minimum value ``α^T G α = ||u||²`` and the direction ``u`` are unique (u is the point of the
  convex hull of the g_i nearest to 0); ``α`` need not be: compare values or directions in tests,
  not weights, unless the Gram matrix is non-singular. Solved in exact rational arithmetic: the
  result is the exact minimiser for the given float64 G, rounded once.
* primary / auxiliary (kexue 8907): ``u = g_0 + Σ_{i≥1} λ_i g_i`` with ``λ ≥ 0`` minimising
  ``||u||² = G_00 + 2 Σ λ_i G_0i + Σ λ_i λ_j G_ij`` (non-negative least squares, exact by support
  enumeration); one auxiliary: ``λ = relu(-G_01) / G_11`` (0 when ``G_11 = 0``).
* normalised sum (kexue 8896): ``u = Σ g_i / ||g_i||``; a zero gradient contributes 0.
* PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning", arXiv 2001.06782, Algorithm 1):
  for each task i, ``g_i' = g_i``, then for every j ≠ i in the given order, if ``<g_i', g_j> < 0``:
  ``g_i' -= <g_i', g_j> / ||g_j||² · g_j`` (projection on the normal plane of the ORIGINAL g_j);
  ``u = Σ_i g_i'`` (the sum, as in the paper).
* coefficient-free L2 (kexue 8907): ``u = g + relu(-<g, θ>) / ||θ||² · θ`` over the whole pytree.
* loss weighting (kexue 8870), on the loss values ``L_i``: sum ``Σ L_i``; initial ``Σ L_i / L_i^init``;
  prior ``Σ L_i / prior_i``; real-time ``Σ L_i / sg(L_i)`` (value K); geometric ``Σ log L_i``;
  power (generalised mean) ``((1/K) Σ L_i^γ)^{1/γ}``, ``γ = 0`` the geometric mean
  ``exp((1/K) Σ log L_i)``; uncertainty (Kendall, Gal & Cipolla 2018, arXiv 1705.07115)
  ``Σ ½ exp(-s_i) L_i + ½ s_i`` with learned log-variances ``s_i = log σ_i²``.

Every function returns float64; ``combine_gradients`` returns ``(direction, weights)`` with
``direction = Σ_i weights[i]·g_i`` for every method (PCGrad included: its weights are the effective
coefficients of the original gradients, see ``combine_gradients``).

Sources: Su Jianlin, kexue.fm/archives/8870, 8896, 8907 (multi-task learning, parts 1-3);
Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization" (arXiv 1810.04650);
Yu et al. 2020 (PCGrad); Kendall et al. 2018 (uncertainty weighting).
"""

import itertools
import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

from polyloss.reference import _common

__all__ = [
    "gram_matrix",
    "min_norm_weights",
    "primary_weights",
    "combine_gradients",
    "coefficient_free_l2",
    "weigh_losses",
]

METHODS = ("sum", "mean", "normalized", "min_norm", "primary", "pcgrad")
LOSS_METHODS = ("sum", "initial", "prior", "realtime", "geometric", "power", "uncertainty")
MAX_TASKS = 12  # the exact solvers enumerate 2^K supports
_GRAM_TOL = 1e-4  # asymmetry / negative eigenvalues tolerated, relative to max_i G_ii (float32 Gram matrices pass)


# ---------------------------------------------------------------------------------------------
# exact arithmetic
# ---------------------------------------------------------------------------------------------


def _exact_sum(terms):
    """Σ_t Π_{x ∈ t} x for tuples of finite floats, exact, rounded once (round-half-even).

    Every finite float is n / 2^k with integers n, k (``as_integer_ratio``), so each product is an
    integer over a power of two; the sum is accumulated as one integer over the largest power and
    divided once (Python's int / int is correctly rounded). Overflow gives ±inf.
    """
    items = []
    top = 0
    for term in terms:
        num, shift = 1, 0
        for x in term:
            n, d = float(x).as_integer_ratio()
            num *= n
            shift += d.bit_length() - 1
        items.append((num, shift))
        top = max(top, shift)
    total = sum(num << (top - shift) for num, shift in items)
    try:
        return total / (1 << top)
    except OverflowError:
        return math.inf if total > 0 else -math.inf


def _dot(xs, ys):
    """<xs, ys> for two equal-length lists of floats, exactly rounded; IEEE rules for NaN / ±inf."""
    if all(math.isfinite(x) for x in xs) and all(math.isfinite(y) for y in ys):
        return _exact_sum(zip(xs, ys))
    return _common.fsum([x * y for x, y in zip(xs, ys)])


# ---------------------------------------------------------------------------------------------
# pytrees
# ---------------------------------------------------------------------------------------------


def _kind(tree):
    if isinstance(tree, dict):
        return "dict"
    if isinstance(tree, list):
        return "list"
    if isinstance(tree, tuple):
        return "tuple"
    return "leaf"


def _describe(tree):
    kind = _kind(tree)
    if kind == "dict":
        return f"a dict with keys {list(tree)!r}"
    if kind in ("list", "tuple"):
        return f"a {kind} of length {len(tree)}"
    return "a leaf (array)"


def _where(path):
    return f"leaf {path}" if path else "the root"


def _flatten(tree, name, template, path=""):
    """[(path, float64 array)] in the canonical order: dict keys in the order of ``template`` (a
    pytree of the same structure, already checked)."""
    kind = _kind(tree)
    if kind == "dict":
        out = []
        for key in template:
            out.extend(_flatten(tree[key], name, template[key], f"{path}[{key!r}]"))
        return out
    if kind in ("list", "tuple"):
        out = []
        for i, (child, sub) in enumerate(zip(tree, template)):
            out.extend(_flatten(child, name, sub, f"{path}[{i}]"))
        return out
    return [(path, _common.real_array(tree, f"{name} at {_where(path)}"))]


def _check_same_structure(ref, other, ref_name, other_name, path=""):
    """ValueError naming the first place where ``other`` differs from ``ref`` (structure or leaf shape)."""
    kind_r, kind_o = _kind(ref), _kind(other)
    if kind_r != kind_o or (kind_r in ("list", "tuple") and len(ref) != len(other)) or (
        kind_r == "dict" and set(ref) != set(other)
    ):
        raise ValueError(
            f"{other_name} does not have the structure of {ref_name} at {_where(path)}: "
            f"{_describe(other)} where {ref_name} has {_describe(ref)}"
        )
    if kind_r == "dict":
        for key in ref:
            _check_same_structure(ref[key], other[key], ref_name, other_name, f"{path}[{key!r}]")
    elif kind_r in ("list", "tuple"):
        for i, (a, b) in enumerate(zip(ref, other)):
            _check_same_structure(a, b, ref_name, other_name, f"{path}[{i}]")
    else:
        shape_r, shape_o = np.shape(ref), np.shape(other)
        if shape_r != shape_o:
            raise ValueError(
                f"{other_name} does not have the structure of {ref_name} at {_where(path)}: "
                f"shape {shape_o} where {ref_name} has shape {shape_r}"
            )


def _unflatten(tree, leaves):
    """A pytree with the structure of ``tree`` whose leaves are taken in order from the iterator ``leaves``."""
    kind = _kind(tree)
    if kind == "dict":
        return {key: _unflatten(child, leaves) for key, child in tree.items()}
    if kind == "list":
        return [_unflatten(child, leaves) for child in tree]
    if kind == "tuple":
        items = [_unflatten(child, leaves) for child in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    return next(leaves)


def _gradients(grads):
    """The K gradients: (list of flat float lists, [(path, shape)] of gradient 0, gradient 0 itself)."""
    if isinstance(grads, np.ndarray):
        if grads.ndim == 0:
            raise ValueError("grads must be a sequence of K gradients (or an array with a leading task axis), "
                             "got a 0-d array")
        grads = list(grads)
    elif not isinstance(grads, (list, tuple)):
        raise TypeError(f"grads must be a list or tuple of K gradients (pytrees), got {type(grads).__name__}")
    if len(grads) == 0:
        raise ValueError("grads is empty: need at least one task gradient (K = 0)")
    for k in range(1, len(grads)):
        _check_same_structure(grads[0], grads[k], "gradient 0", f"gradient {k}")
    flats = []
    layout = None
    for k, tree in enumerate(grads):
        leaves = _flatten(tree, f"gradient {k}", grads[0])
        if layout is None:
            layout = [(path, leaf.shape) for path, leaf in leaves]
        flats.append([float(v) for _, leaf in leaves for v in leaf.reshape(-1)])
    return flats, layout, grads[0]


def _build(template, layout, flat):
    """The pytree of ``template``'s structure holding the flat list of floats ``flat``."""
    arrays, start = [], 0
    for _, shape in layout:
        size = math.prod(shape)
        arrays.append(np.array(flat[start:start + size], dtype=np.float64).reshape(shape))
        start += size
    return _unflatten(template, iter(arrays))


def _require_finite(flats, layout, names=None):
    for k, flat in enumerate(flats):
        start = 0
        for path, shape in layout:
            size = math.prod(shape)
            if not all(math.isfinite(v) for v in flat[start:start + size]):
                name = f"gradient {k}" if names is None else names[k]
                raise ValueError(f"{name} has NaN or inf at {_where(path)}; the combination needs finite values")
            start += size


def _gram_of(flats):
    k = len(flats)
    gram = [[0.0] * k for _ in range(k)]
    for i in range(k):
        for j in range(i, k):
            gram[i][j] = gram[j][i] = _dot(flats[i], flats[j])
    return gram


def gram_matrix(grads):
    """Gram matrix of K task gradients: ``G_ij = <g_i, g_j>`` over all leaves (reference).

    ``G_ij = Σ_leaves Σ_e g_i[e]·g_j[e]``: every product and the whole sum exact, rounded once to
    float64 (NaN / ±inf follow the IEEE rules of the plain sum). Symmetric by construction.

    Parameters
    ----------
    grads : list or tuple of K pytrees (or an array whose leading axis is the task axis)
        Each gradient a NumPy array, or a list / tuple / dict of them, nested, all of one structure.

    Returns
    -------
    numpy.ndarray of float64, shape [K, K].

    Raises ValueError for K = 0 and for gradients of different structures or leaf shapes (naming the
    leaf), TypeError for non-real leaves.

    Examples
    --------
    >>> import numpy as np
    >>> gram_matrix([np.array([1.0, 0.0]), np.array([1.0, 1.0])]).tolist()
    [[1.0, 1.0], [1.0, 2.0]]
    >>> gram_matrix([{"w": [1.0, 2.0], "b": 3.0}, {"b": -1.0, "w": [0.0, 1.0]}]).tolist()
    [[14.0, -1.0], [-1.0, 2.0]]
    """
    flats, _, _ = _gradients(grads)
    return np.array(_gram_of(flats), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# exact solvers on the Gram matrix
# ---------------------------------------------------------------------------------------------


def _gram_argument(gram):
    """A checked Gram matrix as (list of lists of floats, K, max(max_i G_ii, 0)): square, finite,
    K in [1, MAX_TASKS], symmetric and positive semi-definite up to ``_GRAM_TOL · max_i G_ii``;
    symmetrised."""
    g = _common.real_array(gram, "gram")
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"gram must be a square [K, K] matrix, got shape {g.shape}")
    k = g.shape[0]
    if k == 0:
        raise ValueError("gram is empty: need at least one task (K = 0)")
    if k > MAX_TASKS:
        raise ValueError(f"the reference enumerates 2^K supports and accepts K <= {MAX_TASKS}, got K = {k}")
    if not np.all(np.isfinite(g)):
        raise ValueError("gram contains NaN or inf")
    scale = max(float(np.max(np.diag(g))), 0.0)
    tol = _GRAM_TOL * scale
    if float(np.max(np.abs(g - g.T))) > tol:
        raise ValueError("gram is not symmetric: not a Gram matrix")
    sym = (g + g.T) / 2.0
    if float(np.min(np.diag(sym))) < -tol or (k > 1 and float(np.linalg.eigvalsh(sym)[0]) < -tol):
        raise ValueError("gram is not positive semi-definite: not a Gram matrix")
    return sym.tolist(), k, scale


def _integer_matrix(gram):
    """The float matrix as exact integers: ``gram[i][j] = ints[i][j] / 2^shift`` (every finite float is
    an integer over a power of two). Scaling G by 2^shift changes neither α nor λ."""
    ratios = [[x.as_integer_ratio() for x in row] for row in gram]
    shift = max(d.bit_length() - 1 for row in ratios for _, d in row)
    return [[n << (shift - (d.bit_length() - 1)) for n, d in row] for row in ratios]


def _solve_exact(matrix, rhs):
    """The exact solution (Fractions) of matrix·x = rhs for an integer matrix and integer right-hand
    side, or None when the matrix is singular. Fraction-free Gaussian elimination (Bareiss: every
    division is exact) with row pivoting on the first non-zero entry, then back substitution."""
    n = len(matrix)
    a = [list(row) + [b] for row, b in zip(matrix, rhs)]
    previous = 1
    for k in range(n):
        pivot = next((r for r in range(k, n) if a[r][k] != 0), None)
        if pivot is None:
            return None
        a[k], a[pivot] = a[pivot], a[k]
        for i in range(k + 1, n):
            for j in range(k + 1, n + 1):
                a[i][j] = (a[i][j] * a[k][k] - a[i][k] * a[k][j]) // previous
            a[i][k] = 0
        previous = a[k][k]
    x = [Fraction(0)] * n
    for i in range(n - 1, -1, -1):
        x[i] = (a[i][n] - sum(a[i][j] * x[j] for j in range(i + 1, n))) / Fraction(a[i][i])
    return x


def _supports(indices, *, include_empty):
    """Every subset of ``indices``: by size, then lexicographically (itertools.combinations order)."""
    for size in range(0 if include_empty else 1, len(indices) + 1):
        yield from itertools.combinations(indices, size)


def min_norm_weights(gram):
    """MGDA / min-norm weights: ``α = argmin_{α ≥ 0, Σ α = 1} α^T G α`` (reference, exact).

    ``α^T G α = ||Σ α_i g_i||²``: ``u = Σ α_i g_i`` is the point of the convex hull of the task
    gradients nearest to the origin (Sener & Koltun 2018; kexue 8896). For K = 2 the closed form is
    ``α_1 = clip((G_22 - G_12) / (G_11 - 2 G_12 + G_22), 0, 1)``.

    Method (exact rational arithmetic, no iteration, no tolerance): a minimiser lies in the relative
    interior of some face ``{α: α_i = 0 for i ∉ S}`` of the simplex, where it is stationary under
    ``Σ_S α_i = 1``, i.e. solves the KKT system ``[[G_SS, 1], [1^T, 0]] [α_S; ν] = [0; 1]`` (then
    ``α^T G α = -ν``). Every non-empty support S is tried, the system solved exactly in integers
    (G is an integer matrix over a power of two); solutions with every ``α_i >= 0`` are candidates
    and the smallest ``-ν`` wins, compared exactly. Faces whose KKT matrix is singular are skipped:
    a minimum is always also attained on a face whose KKT matrix is non-singular (from a minimiser
    on a singular face, move along a null direction ``(d, μ)``, ``1^T d = 0``: the point stays
    stationary with the same value until a coordinate reaches 0, which is a smaller face; singletons
    are non-singular). The result is the exact minimiser for the given float64 G, each α_i rounded
    once. Cost: 2^K - 1 small exact solves (K <= 12).

    Rounding: the Gram matrix of rank-deficient gradients (K > dimension), rounded to float64, is
    positive semi-definite only up to eigenvalues of order ±eps·max_i G_ii; the exact minimum over
    that G can then be slightly negative (about -1e-17·max_i G_ii): compare values with an absolute
    tolerance relative to max_i G_ii, as for any float64 Gram matrix.

    Ties and uniqueness: the minimum VALUE and the direction ``u`` are unique; ``α`` is not when G is
    singular (identical gradients, K > dimension, the origin inside the hull). Exactly equal values
    go to the smallest support, then the lexicographically first (so identical gradients give
    ``[1, 0]`` and a zero gradient gets all the weight). Tests of other solvers should compare
    ``α^T G α`` (or ``u``), not ``α``.

    Parameters
    ----------
    gram : array_like [K, K]
        Symmetric positive semi-definite (up to 1e-4·max_i G_ii: float32 Gram matrices pass; it is
        symmetrised); finite.

    Returns
    -------
    numpy.ndarray of float64 [K], non-negative, summing to 1 (up to the rounding of each entry).

    Examples
    --------
    >>> min_norm_weights([[1.0, 0.0], [0.0, 1.0]]).tolist()
    [0.5, 0.5]
    >>> min_norm_weights([[4.0, 0.0], [0.0, 1.0]]).tolist()  # α_1 = 1/(4+1)
    [0.2, 0.8]
    >>> min_norm_weights([[1.0, 2.0], [2.0, 9.0]]).tolist()  # <g_1, g_2> >= ||g_1||²: g_1 itself
    [1.0, 0.0]
    """
    g, k, _ = _gram_argument(gram)
    ints = _integer_matrix(g)
    best_value, best = None, None
    for support in _supports(range(k), include_empty=False):
        n = len(support)
        kkt = [[ints[i][j] for j in support] + [1] for i in support] + [[1] * n + [0]]
        solution = _solve_exact(kkt, [0] * n + [1])
        if solution is None or any(a < 0 for a in solution[:n]):
            continue
        value = -solution[n]
        if best_value is None or value < best_value:
            best_value, best = value, dict(zip(support, solution[:n]))
    return np.array([float(best.get(i, 0)) for i in range(k)], dtype=np.float64)


def primary_weights(gram):
    """Primary / auxiliary weights: task 0 is the primary task (kexue 8907) (reference, exact).

    ``u = g_0 + Σ_{i≥1} λ_i g_i`` with ``λ ≥ 0`` minimising

        f(λ) = ||u||² = G_00 + 2 Σ_i λ_i G_0i + Σ_ij λ_i λ_j G_ij,

    a non-negative least-squares problem. With one auxiliary: ``λ_1 = relu(-G_01) / G_11`` (0 when
    ``G_11 = 0``). At the optimum ``<g_0, u> = ||u||² >= 0`` (the primary loss does not increase to
    first order) and ``<g_i, u> >= 0`` for every auxiliary, with equality where ``λ_i > 0``.

    Method (exact, as in ``min_norm_weights``): every support S of the auxiliaries, the empty one
    included; ``λ_S`` solves ``G_SS λ_S = -G_S0`` exactly (then ``f = G_00 + λ_S^T G_S0``); solutions
    with ``λ_S >= 0`` are candidates, the smallest f wins, exactly; singular G_SS are skipped (the
    same null-direction argument: from a minimiser, move along ``±d``, ``G_SS d = 0``, until a
    coordinate reaches 0). Exactly equal values: smallest support, then lexicographic (with
    ``G_01 = 0``, ``λ_1 = 0``). ``u`` and ``f`` are unique, ``λ`` need not be (identical
    auxiliaries): compare ``f`` or ``u``. For a G that is positive semi-definite only up to rounding
    (rank-deficient gradients), the exact minimiser over the float64 G may use its tiny negative
    curvature: f slightly below 0 (order -1e-13·max_i G_ii) with large λ on nearly dependent
    auxiliaries; u is then ≈ 0 all the same.

    Returns
    -------
    numpy.ndarray of float64 [K]: ``[1, λ_1, ..., λ_{K-1}]``, the coefficients of ``u`` in the
    g_i, so that ``u = Σ_i w_i g_i`` exactly as for ``min_norm_weights`` and the ``weights`` of
    ``combine_gradients`` (same shape for every method; K = 1 gives ``[1]``).

    Examples
    --------
    >>> primary_weights([[1.0, -1.0], [-1.0, 2.0]]).tolist()  # λ = relu(1)/2
    [1.0, 0.5]
    >>> primary_weights([[1.0, 1.0], [1.0, 2.0]]).tolist()  # no conflict: λ = 0
    [1.0, 0.0]
    """
    g, k, _ = _gram_argument(gram)
    ints = _integer_matrix(g)
    best_value, best = None, None
    for support in _supports(range(1, k), include_empty=True):
        if support:
            lam = _solve_exact([[ints[i][j] for j in support] for i in support], [-ints[i][0] for i in support])
            if lam is None or any(x < 0 for x in lam):
                continue
        else:
            lam = []
        value = ints[0][0] + sum(x * ints[i][0] for x, i in zip(lam, support))
        if best_value is None or value < best_value:
            best_value, best = value, dict(zip(support, lam))
    return np.array([1.0] + [float(best.get(i, 0)) for i in range(1, k)], dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# combining gradients
# ---------------------------------------------------------------------------------------------


def _combination(flats, weights):
    """Σ_i w_i g_i, element by element, exactly rounded."""
    dim = len(flats[0])
    return [_exact_sum((w, flat[e]) for w, flat in zip(weights, flats) if w) for e in range(dim)]


def _task_index(value, k, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not -k <= value < k:
        raise ValueError(f"{name} = {value} is out of range for K = {k} tasks")
    return int(value) % k


def _orders(order, k):
    """Per-task visiting orders for PCGrad: K lists, row i a permutation of range(K)."""
    if isinstance(order, str):
        if order != "fixed":
            raise ValueError(
                f"order must be 'fixed', a permutation of range(K) or K permutations, got {order!r} "
                "(the reference has no random order: pass the permutation drawn)"
            )
        return [list(range(k)) for _ in range(k)]
    rows = [list(row) if isinstance(row, (list, tuple, np.ndarray)) else row for row in order]
    if len(rows) == k and all(isinstance(r, list) for r in rows):
        perms = rows
    else:
        perms = [rows] * k
    for perm in perms:
        if sorted(int(p) for p in perm) != list(range(k)) or any(
            isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)) for p in perm
        ):
            raise ValueError(f"order must hold permutations of range({k}), got {order!r}")
    return [[int(p) for p in perm] for perm in perms]


def _pcgrad(flats, gram, orders):
    """Yu et al. Algorithm 1 on flat vectors; returns (Σ_i g_i', effective weights Σ_i c_ij)."""
    k = len(flats)
    projected, coefficients = [], []
    for i in range(k):
        g = list(flats[i])
        c = [0.0] * k
        c[i] = 1.0
        for j in orders[i]:
            if j == i:
                continue
            d = _dot(g, flats[j])
            if d < 0:  # conflict: remove the component along the original g_j (||g_j|| > 0 here)
                step = d / gram[j][j]
                g = [_exact_sum(((x,), (-step, y))) for x, y in zip(g, flats[j])]
                c[j] -= step
        projected.append(g)
        coefficients.append(c)
    direction = [_exact_sum((p[e],) for p in projected) for e in range(len(flats[0]))]
    weights = [math.fsum(coefficients[i][j] for i in range(k)) for j in range(k)]
    return direction, weights


def combine_gradients(grads, *, method, order="fixed", primary=0):
    """Combine K task gradients into one update direction (reference).

    Returns ``(direction, weights)``: ``direction`` has the pytree structure of one gradient (float64
    leaves), ``weights`` is a float64 [K] array with ``direction = Σ_i weights[i]·g_i`` for every
    method (in exact arithmetic; the direction itself is computed as described, exactly rounded
    element by element):

    ============  =====================================================  ===========================
    method        direction                                              weights
    ============  =====================================================  ===========================
    "sum"         Σ g_i                                                  1
    "mean"        Σ g_i / K                                              1/K
    "normalized"  Σ g_i / ||g_i|| (kexue 8896)                           1/||g_i||, 0 for g_i = 0
    "min_norm"    Σ α_i g_i, α = ``min_norm_weights(G)`` (MGDA)          α (on the simplex)
    "primary"     g_p + Σ_{i≠p} λ_i g_i (kexue 8907), p = ``primary``     1 at p, λ_i elsewhere
    "pcgrad"      Σ_i g_i' (Yu et al. 2020, see below)                   Σ_i c_ij (see below)
    ============  =====================================================  ===========================

    "normalized": a zero gradient has no direction; it contributes 0 (weight 0) instead of NaN, so the
    result stays the normalised sum of the other tasks. Invariant to rescaling any g_i by c > 0.

    "pcgrad": for each task i, ``g_i' = g_i``; for j in ``order`` (j ≠ i): if ``<g_i', g_j> < 0``,
    ``g_i' -= <g_i', g_j>/||g_j||² · g_j`` -- the projection uses the ORIGINAL g_j (as in Yu et al.,
    Algorithm 1, and their code), never the already projected g_j'; the direction is the SUM of the
    g_i' (Yu et al.; some ports take the mean: K times smaller). A zero g_j never conflicts. Every g_i'
    is a combination ``Σ_j c_ij g_j`` of the original gradients (each projection subtracts a multiple
    of some g_j), so the direction is ``Σ_j w_j g_j`` with the effective weights ``w_j = Σ_i c_ij``:
    those are reported (they depend on the gradients and on the order, unlike the weights of "sum").
    ``order``: "fixed" (j = 0, 1, ..., K-1 for every i), one permutation of range(K) used for every
    task, or K permutations (row i is the order for task i). The reference has no random order: to
    check a randomly ordered implementation, pass the permutations it drew.

    Parameters
    ----------
    grads : list or tuple of K pytrees of one structure (or an array with a leading task axis)
    method : str, one of "sum", "mean", "normalized", "min_norm", "primary", "pcgrad"
    order : "fixed" or permutations, only for "pcgrad"
    primary : int, only for "primary": the index of the primary task (negative counts from the end)

    Gradients must be finite (ValueError naming the task and leaf otherwise); K = 0, different
    structures or shapes, unknown methods and out-of-range ``primary`` are ValueErrors.

    Examples
    --------
    >>> import numpy as np
    >>> g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    >>> u, w = combine_gradients([g1, g2], method="pcgrad")
    >>> u.tolist(), w.tolist()   # g1' = g1 + g2/2 = [0.5, 0.5], g2' = g2 + g1 = [0, 1]
    ([0.5, 1.5], [2.0, 1.5])
    >>> u, w = combine_gradients([g1, g2], method="min_norm")   # α = (3/5, 2/5)
    >>> [round(x, 12) for x in u.tolist()], [round(x, 12) for x in w.tolist()]
    ([0.2, 0.4], [0.6, 0.4])
    >>> u, w = combine_gradients([{"a": g1}, {"a": 2 * g1}], method="normalized")
    >>> u["a"].tolist(), w.tolist()
    ([2.0, 0.0], [1.0, 0.5])
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    flats, layout, template = _gradients(grads)
    _require_finite(flats, layout)
    k = len(flats)
    if method != "pcgrad" and not (isinstance(order, str) and order == "fixed"):
        raise ValueError(f"order is only used by method='pcgrad', got order={order!r} with method={method!r}")
    if method != "primary" and not (isinstance(primary, (int, np.integer)) and not isinstance(primary, bool)
                                    and primary == 0):
        raise ValueError(f"primary is only used by method='primary', got primary={primary!r} with method={method!r}")
    if method == "sum":
        weights = [1.0] * k
        direction = [_exact_sum((g[e],) for g in flats) for e in range(len(flats[0]))]
    elif method == "mean":
        weights = [1.0 / k] * k
        direction = [_exact_sum((g[e],) for g in flats) / k for e in range(len(flats[0]))]
    elif method == "pcgrad":
        orders = _orders(order, k)
        direction, weights = _pcgrad(flats, _gram_of(flats), orders)
    else:
        gram = _gram_of(flats)
        if method == "normalized":
            weights = [1.0 / math.sqrt(gram[i][i]) if gram[i][i] > 0 else 0.0 for i in range(k)]
        elif method == "min_norm":
            weights = min_norm_weights(gram).tolist()
        else:
            p = _task_index(primary, k, "primary")
            perm = [p] + [i for i in range(k) if i != p]  # the primary task first
            permuted = [[gram[a][b] for b in perm] for a in perm]
            lam = primary_weights(permuted).tolist()
            weights = [0.0] * k
            for position, task in enumerate(perm):
                weights[task] = lam[position]
        direction = _combination(flats, weights)
    return _build(template, layout, direction), np.array(weights, dtype=np.float64)


def coefficient_free_l2(grad, params):
    """Coefficient-free L2 regularisation (kexue 8907) (reference).

    The loss gradient g is the primary task and the weight-decay direction θ (the gradient of
    ``||θ||²/2``) the auxiliary one: ``u = g + relu(-<g, θ>) / ||θ||² · θ``, one coefficient for the
    whole pytree. Then ``<u, θ> = max(<g, θ>, 0)``: θ is added only as far as it cancels the part of g
    that points against θ. θ = 0 gives g.

    Parameters
    ----------
    grad, params : pytrees of one structure (arrays, lists, tuples, dicts), finite

    Returns
    -------
    A pytree of ``grad``'s structure with float64 leaves.

    Examples
    --------
    >>> import numpy as np
    >>> coefficient_free_l2(np.array([-1.0, 1.0]), np.array([1.0, 0.0])).tolist()  # <g,θ> = -1
    [0.0, 1.0]
    >>> coefficient_free_l2({"w": np.array([1.0, 1.0])}, {"w": np.array([1.0, 0.0])})["w"].tolist()
    [1.0, 1.0]
    """
    _check_same_structure(grad, params, "grad", "params")
    flats, layout, template = _gradients([grad, params])
    _require_finite(flats, layout, names=("grad", "params"))
    g, theta = flats
    g_theta = _dot(g, theta)
    theta_theta = _dot(theta, theta)
    if theta_theta == 0 or g_theta >= 0:
        return _build(template, layout, list(g))
    c = -g_theta / theta_theta
    return _build(template, layout, [_exact_sum(((x,), (c, t))) for x, t in zip(g, theta)])


# ---------------------------------------------------------------------------------------------
# loss weighting
# ---------------------------------------------------------------------------------------------


def _vector(values, name, k=None):
    v = _common.real_array(values, name)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a sequence or a 1-D [K] array, got shape {v.shape}")
    if k is None and v.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one task (K = 0)")
    if k is not None and v.shape[0] != k:
        raise ValueError(f"{name} must have K = {k} entries (one per task), got {v.shape[0]}")
    return [float(x) for x in v]


def _positive(values, name, method):
    for i, x in enumerate(values):
        if x <= 0:
            raise ValueError(
                f"weigh_losses(method={method!r}) needs positive {name}: task {i} has {x!r} "
                "(losses that can be <= 0, such as FlatNCE's log form, break 1/L and log L weighting)"
            )


def _finite_all(values, name):
    for i, x in enumerate(values):
        if not math.isfinite(x):
            raise ValueError(f"{name} must be finite: task {i} has {x!r}")


def _decimal_float(value):
    """A Decimal rounded once to float64 (±inf beyond the range, 0 / subnormals below)."""
    return float(value)


def _power_mean(losses, gamma):
    """((1/K) Σ L^γ)^{1/γ} (γ = 0: exp((1/K) Σ ln L)) in 60-digit Decimal arithmetic (ln and exp are
    correctly rounded there, the exponent range is unlimited), rounded once to float64."""
    if any(math.isnan(x) for x in losses):
        return math.nan
    k = len(losses)
    if any(x == math.inf for x in losses):
        return _power_mean_inf(losses, gamma)
    with localcontext() as ctx:
        ctx.prec = 60
        logs = [Decimal(x).ln() for x in losses]
        if gamma == 0:
            return _decimal_float((sum(logs) / k).exp())
        g = Decimal(gamma)
        mean = sum((g * lg).exp() for lg in logs) / k
        return _decimal_float((mean.ln() / g).exp())


def _power_mean_inf(losses, gamma):
    """The generalised mean with some L_i = +inf: +inf for γ >= 0; for γ < 0 the infinite terms add
    inf^γ = 0, so ((1/K) Σ_{finite} L^γ)^{1/γ}."""
    if gamma >= 0:
        return math.inf
    finite = [x for x in losses if x != math.inf]
    if not finite:
        return math.inf
    k = len(losses)
    with localcontext() as ctx:
        ctx.prec = 60
        g = Decimal(gamma)
        mean = sum((g * Decimal(x).ln()).exp() for x in finite) / k
        return _decimal_float((mean.ln() / g).exp())


def weigh_losses(losses, *, method, initial=None, prior=None, gamma=None, log_vars=None):
    """The weighted total of K task losses, as a value (reference; kexue 8870, Kendall et al. 2018).

    ``losses``: K loss values (a sequence or a [K] array). The schemes (``sg`` = stop-gradient; the
    reference computes values only, so ``sg(L) = L``):

    ==============  ======================================  ===============================================
    method          value                                   needs
    ==============  ======================================  ===============================================
    "sum"           Σ L_i
    "initial"       Σ L_i / L_i^init                        ``initial``: the losses at the start, > 0
    "prior"         Σ L_i / prior_i                         ``prior``: > 0 (K-class CE: entropy of the class
                                                            frequencies; L2 regression: variance of y)
    "realtime"      Σ L_i / sg(L_i)  (= K)                  gradient Σ ∇L_i / L_i = ∇ Σ log L_i
    "geometric"     Σ log L_i                               = K · log(geometric mean of the L_i)
    "power"         ((1/K) Σ L_i^γ)^{1/γ}                   ``gamma``, any real; γ = 0: exp((1/K) Σ log L_i)
    "uncertainty"   Σ ½ exp(-s_i) L_i + ½ s_i               ``log_vars``: s_i = log σ_i², trained by the user
    ==============  ======================================  ===============================================

    Definitions chosen: "geometric" is Su's ``Σ log L_i`` (its gradient is the real-time one) and NOT
    the geometric mean; "power" is the generalised mean itself, whose γ → 0 limit (used at γ = 0) is
    the geometric mean ``exp(geometric / K)``; γ = 1 is the arithmetic mean, γ = -1 the harmonic one.
    "uncertainty" is Kendall et al.'s Gaussian (regression) form ``Σ ½ exp(-s_i) L_i + ½ s_i``
    (``L_i / (2σ_i²) + log σ_i``), as in LibMTL's ``UW`` and TorchJD's ``scalarization.UW``. The other
    common form ``Σ exp(-s_i) L_i + s_i`` is exactly twice it (same minimiser in s and in the
    parameters, twice the gradients); Kendall et al.'s classification form is ``exp(-s_i) L_i + ½ s_i``.

    Losses must be positive for "initial", "realtime", "geometric" and "power" (and ``initial`` /
    ``prior`` positive): ValueError naming the task index (FlatNCE's log form can be negative). NaN
    losses give NaN. K = 0, unknown methods, a missing argument or one the method does not use,
    and arguments of the wrong length are errors.

    Returns
    -------
    float

    Examples
    --------
    >>> weigh_losses([1.0, 4.0], method="realtime")
    2.0
    >>> weigh_losses([1.0, 4.0], method="power", gamma=0.0)   # sqrt(1·4)
    2.0
    >>> weigh_losses([2.0, 6.0], method="initial", initial=[4.0, 3.0])   # 1/2 + 2
    2.5
    >>> weigh_losses([3.0, 1.0], method="uncertainty", log_vars=[0.0, 0.0])   # ½·3 + ½·1
    2.0
    """
    if method not in LOSS_METHODS:
        raise ValueError(f"method must be one of {LOSS_METHODS}, got {method!r}")
    values = _vector(losses, "losses")
    k = len(values)
    needed = {"initial": "initial", "prior": "prior", "power": "gamma", "uncertainty": "log_vars"}.get(method)
    given = {"initial": initial, "prior": prior, "gamma": gamma, "log_vars": log_vars}
    for name, value in given.items():
        if name == needed and value is None:
            raise ValueError(f"weigh_losses(method={method!r}) needs {name}=")
        if name != needed and value is not None:
            raise ValueError(f"weigh_losses(method={method!r}) does not use {name}=")
    if method == "sum":
        return _common.fsum(values)
    if method == "prior":
        priors = _vector(prior, "prior", k)
        _positive(priors, "prior", method)
        _finite_all(priors, "prior")
        return _common.fsum([x / p for x, p in zip(values, priors)])
    if method == "uncertainty":
        s = _vector(log_vars, "log_vars", k)
        _finite_all(s, "log_vars")
        if any(math.isnan(x) for x in values):
            return math.nan
        if math.inf in values and -math.inf in values:
            return math.nan
        if math.inf in values or -math.inf in values:
            return math.inf if math.inf in values else -math.inf
        with localcontext() as ctx:
            ctx.prec = 60
            half = Decimal("0.5")
            return _decimal_float(sum(half * Decimal(x) * (-Decimal(si)).exp() + half * Decimal(si)
                                      for x, si in zip(values, s)))
    _positive(values, "losses", method)
    if method == "initial":
        init = _vector(initial, "initial", k)
        _positive(init, "initial losses", method)
        _finite_all(init, "initial")
        return _common.fsum([x / i for x, i in zip(values, init)])
    if method == "realtime":
        return _common.fsum([x / x for x in values])
    if method == "geometric":
        if any(math.isnan(x) for x in values):
            return math.nan
        if any(x == math.inf for x in values):
            return math.inf
        with localcontext() as ctx:
            ctx.prec = 60
            return _decimal_float(sum(Decimal(x).ln() for x in values))
    gamma = _common.number(gamma, "gamma")
    if not math.isfinite(gamma):
        raise ValueError(f"gamma must be finite, got {gamma!r}")
    return _power_mean(values, gamma)

"""Reference (oracle) versions of SPEC section D1-D3: adversarial training (FGM, PGD), the gradient
penalty and virtual adversarial training (VAT).

Plain NumPy float64 and Python ``math``, straight from the formulas; no code is shared with the array-API
core and nothing here differentiates automatically. A gradient is either given by the caller
(``grad_fn``, e.g. the analytic gradients of the reference model in ``polyloss.reference._models``) or
taken by ``numerical_gradient`` (fourth-order central differences, see there for the accuracy).

Formulas (g = ∇_x L(x); a "unit" is the whole array for ``scope="global"`` and one leading-axis row,
i.e. every axis but the first, for ``scope="example"``; norms and signs see only the positions where
``where`` is True, and the perturbation is 0 elsewhere):

* FGM (Goodfellow et al. 2015 for the sign form, FGSM; Miyato et al. 2017 and kexue 7234 for the L2
  form)::

      δ = ε·g/‖g‖₂  (norm="l2")        δ = ε·sign(g)  (norm="sign")

* PGD (Madry et al. 2018, arXiv 1706.06083), ``steps = K`` ascent steps of size α from δ₀ = 0::

      δ_{t+1} = Π_ε(δ_t + α·dir(∇L(x + δ_t))),     adversarial loss = L(x + δ_K)

  with dir the normalised gradient (l2) or its sign, and Π_ε the projection onto the ε-ball of the same
  norm and scope: l2 rescales every unit whose norm exceeds ε to norm ε; sign clips every entry to
  [-ε, ε] (the L∞ ball). One step with α ≥ ε is FGM.

* Gradient penalty (kexue 7234, 7466): ``½‖∇_x L‖²`` (``normalized=True``: ``‖∇_x L‖``). For a batch-mean
  loss L = (1/B) Σ_b ℓ_b the gradient carries a factor 1/B, so the penalty scales as 1/B²; with
  ``scope="example"`` the loss function returns the B per-example losses ℓ_b and the penalty of example
  b is ``½‖∇_{x_b} Σ_j ℓ_j‖²`` (= ``½‖∇_{x_b} ℓ_b‖²`` when examples do not interact), without that
  factor.

* VAT (Miyato et al. 2018, arXiv 1704.03976; kexue 7466). With p = f(x) held constant and
  D_b(r) = D(f(x)_b, f(x + r)_b)::

      d ← normalise(noise);  repeat `iterations` times: d ← normalise(∇_r Σ_b D_b(r) at r = ξ·d)
      loss_b = D_b(ε·d)

  normalise is per example (``scope="example"``, Miyato) or over the whole array (``scope="global"``,
  bert4keras on the embedding matrix). ``divergence="kl"`` is KL(softmax(clean) ‖ softmax(perturbed)) over
  the last axis, the direction of Miyato's code, ``"multilabel"`` is kexue 9039's
  Σ_i (σ(s_i) - σ(t_i))(s_i - t_i); for logits with more than two axes the per-position divergences are
  summed over every axis but the first (the KL of a product of independent distributions).

Conventions decided here (the library follows them):

* Non-finite and zero gradients. A unit whose included gradient entries are not all finite (a NaN or
  an infinity), or whose L2 norm is 0, gets a zero perturbation: never NaN. For l2 this is exactly "a zero
  or non-finite norm"; the sign form uses the same units and the same rule. This departs from the house
  rule "NaN in, NaN out" on purpose: the perturbation is a constant direction, not a value, and a NaN in
  it would spread to every example of the unit (the whole batch with ``scope="global"``); the NaN still
  propagates where it belongs, through the losses themselves (L(x) is NaN, and so is L(x + 0)) and
  through the gradient penalty (a NaN gradient gives a NaN penalty, an infinite one +inf). The widely
  copied PyTorch FGM class does the same for a NaN norm (``if norm != 0 and not torch.isnan(norm)``).
  A NaN at a position excluded by ``where`` is ignored.
* The norm is the true norm (``math.hypot``: no overflow or underflow, within 1 ulp): only non-finite
  entries make it non-finite. Squared norms are exactly rounded (exact rational sum of the squares).
* ε = 0 is allowed everywhere and gives a zero perturbation (schedules start there); ε < 0 and
  non-finite ε are a ValueError.
* PGD starts from δ₀ = 0 (deterministic, as the widely copied PGD class; Madry et al. start at a random
  point of the ball, FreeLB at a random point of a smaller one). The default step is
  α = 2.5·ε/steps, the rule of thumb of many PGD implementations: the total path 2.5ε exceeds the ball's
  diameter, so the projection is active and the boundary is reachable after a turn (Madry et al.'s own
  settings walk 1.33ε on MNIST and 1.75ε on CIFAR-10; α = ε/steps would never reach the projection).
  With steps = 1 and α ≥ ε, PGD is FGM up to the rounding of the rescaling (so the default steps = 1
  is FGM).
* VAT: the start direction ``noise`` is passed explicitly (the library draws it from a key). A unit whose
  direction is zero (zero noise, every position excluded) stays zero: D has its minimum at r = 0, so
  its gradient there is 0 and the power iteration has nowhere to go. ``iterations = 0`` gives ε times the
  normalised noise. ξ must be > 0.
"""

import math
from fractions import Fraction

import numpy as np

from polyloss.reference import _common
from polyloss.reference import multilabel as _multilabel

__all__ = [
    "fgm_perturbation",
    "adversarial_perturbation",
    "adversarial_loss",
    "gradient_penalty",
    "vat_perturbation",
    "vat_loss",
    "softmax_kl_divergence",
    "numerical_gradient",
]

_INF = math.inf
_NAN = math.nan
_NORMS = ("l2", "sign")
_SCOPES = ("global", "example")
_DIVERGENCES = ("kl", "multilabel")


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------


def _choice(value, name, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def _nonnegative(value, name):
    value = _common.number(value, name)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _positive(value, name):
    value = _common.number(value, name)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _count(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _input(x, scope):
    x = _common.real_array(x, "x")
    if scope == "example" and x.ndim == 0:
        raise ValueError("x must have a leading (example) axis with scope='example', got a 0-d array")
    return x


# ---------------------------------------------------------------------------------------------
# units, norms, directions
# ---------------------------------------------------------------------------------------------


def _unit_rows(a, scope):
    """The units of ``a`` as rows of a 2-d array: one row (global) or one per leading index (example).
    The rows are views in C order, so ``rows.reshape(a.shape)`` undoes it."""
    if scope == "global":
        return a.reshape(1, -1)
    return a.reshape(a.shape[0], -1)


def _included(where, shape, against="x"):
    return np.ascontiguousarray(_common.where_array(where, shape, against=against))


def _squared_norm(values):
    """Σ v², exactly rounded (exact rational arithmetic); NaN if a value is NaN, +inf if one is
    infinite or the sum overflows."""
    if any(math.isnan(v) for v in values):
        return _NAN
    if any(math.isinf(v) for v in values):
        return _INF
    try:
        return float(sum(Fraction(v) ** 2 for v in values))
    except OverflowError:
        return _INF


def _direction_row(values, included, norm):
    """The unit direction of one unit: g/‖g‖₂ (l2) or sign(g) (sign) at the included positions, 0
    elsewhere; all zeros when an included entry is not finite or (l2) the norm is 0."""
    kept = [float(v) for v, k in zip(values, included) if k]
    zeros = [0.0] * len(values)
    if not all(math.isfinite(v) for v in kept):
        return zeros
    if norm == "sign":
        return [(1.0 if v > 0 else -1.0 if v < 0 else 0.0) if k else 0.0 for v, k in zip(values, included)]
    n = math.hypot(*kept)  # within 1 ulp, no overflow
    if n == 0.0:
        return zeros
    return [float(v) / n if k else 0.0 for v, k in zip(values, included)]


def _directions(g, included, norm, scope):
    rows = _unit_rows(g, scope)
    keep = _unit_rows(included, scope)
    out = np.array([_direction_row(list(r), list(k), norm) for r, k in zip(rows, keep)], dtype=np.float64)
    return out.reshape(g.shape)


def _project_row(values, included, epsilon, norm):
    """Π_ε of one unit: l2 rescales to norm ε when the norm exceeds ε; sign clips to [-ε, ε]."""
    if norm == "sign":
        return [min(max(float(v), -epsilon), epsilon) if k else 0.0 for v, k in zip(values, included)]
    kept = [float(v) for v, k in zip(values, included) if k]
    n = math.hypot(*kept)
    if not n > epsilon:
        return [float(v) if k else 0.0 for v, k in zip(values, included)]
    return [epsilon * (float(v) / n) if k else 0.0 for v, k in zip(values, included)]


def _project(delta, included, epsilon, norm, scope):
    rows = _unit_rows(delta, scope)
    keep = _unit_rows(included, scope)
    out = np.array([_project_row(list(r), list(k), epsilon, norm) for r, k in zip(rows, keep)],
                   dtype=np.float64)
    return out.reshape(delta.shape)


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------


def _fd_step(v):
    """A power of two near u^{1/5}·max(1, |v|) (u = 2^-53): between 2^-11 and 2^-10 times max(1, |v|)."""
    _, e = math.frexp(max(1.0, abs(v)))
    return math.ldexp(1.0, e - 11)


def numerical_gradient(fn, x):
    """∇f(x) by fourth-order central differences, entry by entry (reference helper)::

        ∂f/∂x_i ≈ [f(x - 2h e_i) - 8 f(x - h e_i) + 8 f(x + h e_i) - f(x + 2h e_i)] / (12 h)

    with h a power of two between 2^-11 and 2^-10 times ``max(1, |x_i|)`` (≈ u^{1/5}, u = 2^-53, which
    balances the O(h⁴) truncation against the O(u/h) rounding). ``fn`` maps a float64 array shaped like
    ``x`` to a number (a 0-d array or float); several outputs are summed (exactly rounded).

    Accuracy: the truncation error is ``h⁴/30·|∂⁵f|`` and the rounding error about ``1.5·u·|f|/h``, so for a
    function whose values and derivatives are O(1) on the scale of x the result is good to about 1e-12
    (relative to the size of f and of its derivatives; the tests use 1e-9). The step grows with ``|x_i|``,
    so a function that varies on a scale much finer than ``max(1, |x_i|)`` (sin(x) at x = 250) is
    resolved only to h⁴ ≈ 1e-5 there. It is exact (up to rounding) for polynomials of degree ≤ 4. A
    non-finite x_i gives a NaN derivative.

    Examples
    --------
    >>> import numpy as np
    >>> g = numerical_gradient(lambda z: float(z[0] ** 3 + 2.0 * z[1]), np.array([1.5, -1.0]))
    >>> np.round(g, 12)   # [3·1.5², 2]
    array([6.75, 2.  ])
    """
    x = _common.real_array(x, "x")
    grad = np.empty(x.shape, dtype=np.float64)

    def value(z):
        out = np.asarray(fn(z), dtype=np.float64)
        return _common.fsum([float(v) for v in out.ravel()])

    for idx in np.ndindex(*x.shape):
        xi = float(x[idx])
        if not math.isfinite(xi):
            grad[idx] = _NAN
            continue
        h = _fd_step(xi)
        f = {}
        for k in (-2, -1, 1, 2):
            z = x.copy()
            z[idx] = xi + k * h
            f[k] = value(z)
        # 8·f and 12·h are exact (h is a power of two), the sum exactly rounded
        grad[idx] = _common.fsum([f[-2], -8.0 * f[-1], 8.0 * f[1], -f[2]]) / (12.0 * h)
    return grad


def _gradient(fn, grad_fn, z, what):
    """grad_fn(z) (checked), or numerical_gradient(fn, z)."""
    if grad_fn is None:
        return numerical_gradient(fn, z)
    g = _common.real_array(grad_fn(z.copy()), f"grad_fn({what})")
    if g.shape != z.shape:
        raise ValueError(f"grad_fn returned shape {g.shape} for an input of shape {z.shape}")
    return g


def _scalar(value, scope="global"):
    out = np.asarray(value)
    if out.dtype.kind not in "fiu":
        raise TypeError(f"loss_fn must return a real number, got dtype {out.dtype}")
    if out.shape != ():
        raise ValueError(f"loss_fn must return a scalar with scope={scope!r}, got shape {out.shape}")
    return float(out)


def _per_example_output(value, batch):
    out = np.asarray(value)
    if out.dtype.kind not in "fiu":
        raise TypeError(f"loss_fn must return real numbers, got dtype {out.dtype}")
    if out.shape != (batch,):
        raise ValueError(
            f"loss_fn must return the {batch} per-example losses (shape ({batch},)) with scope='example', "
            f"got shape {out.shape}"
        )
    return out.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# D1. FGM / PGD
# ---------------------------------------------------------------------------------------------


def fgm_perturbation(grad, *, epsilon=1.0, norm="l2", scope="global", where=None):
    """The FGM perturbation of a gradient (reference).

    norm="l2":   δ = ε·g/‖g‖₂        norm="sign":   δ = ε·sign(g)

    with one norm over the whole array (``scope="global"``: Su / bert4keras on an embedding matrix, the
    PyTorch FGM class) or one per leading-axis row, i.e. over every axis but the first
    (``scope="example"``: FreeLB, VAT). Sources: Goodfellow et al. 2015 (FGSM, the sign form); Miyato et
    al. 2017 and kexue.fm/archives/7234 (the L2 form, FGM).

    Parameters
    ----------
    grad : array_like, real
    epsilon : float >= 0
        0 gives a zero perturbation.
    norm : "l2" or "sign"
    scope : "global" or "example"
    where : array_like of bool, optional, broadcastable to ``grad``
        Positions where it is False are left out of the norm and get δ = 0 (padding).

    Returns
    -------
    numpy.ndarray of float64, the shape of ``grad``. A unit (the array, or a row) whose included
    entries are not all finite, or whose L2 norm is 0, gets δ = 0: never NaN.

    Examples
    --------
    >>> fgm_perturbation([3.0, 4.0], epsilon=0.5)
    array([0.3, 0.4])
    >>> fgm_perturbation([3.0, -4.0, 0.0], epsilon=0.5, norm="sign")
    array([ 0.5, -0.5,  0. ])
    >>> fgm_perturbation([[3.0, 4.0], [0.0, 2.0]], scope="example")
    array([[0.6, 0.8],
           [0. , 1. ]])
    >>> fgm_perturbation([[np.nan, 1.0], [0.0, 2.0]], scope="example")   # a NaN row gets 0
    array([[0., 0.],
           [0., 1.]])
    """
    epsilon = _nonnegative(epsilon, "epsilon")
    norm = _choice(norm, "norm", _NORMS)
    scope = _choice(scope, "scope", _SCOPES)
    g = _common.real_array(grad, "grad")
    if scope == "example" and g.ndim == 0:
        raise ValueError("grad must have a leading (example) axis with scope='example', got a 0-d array")
    included = _included(where, g.shape, against="grad")
    if epsilon == 0.0:
        return np.zeros(g.shape, dtype=np.float64)
    return epsilon * _directions(g, included, norm, scope)


def adversarial_perturbation(loss_fn, x, *, epsilon=1.0, norm="l2", scope="global", steps=1, step_size=None,
                             where=None, grad_fn=None):
    """The perturbation δ of ``adversarial_loss``: FGM (steps=1) or PGD (steps > 1) (reference).

    δ₀ = 0;  δ_{t+1} = Π_ε(δ_t + α·dir(∇L(x + δ_t))),  t = 0 … steps-1

    dir is g/‖g‖₂ (l2) or sign(g), per unit, with the rules of ``fgm_perturbation`` (where-excluded
    positions 0; a non-finite or zero gradient unit contributes no step). Π_ε: l2 rescales a unit whose
    norm exceeds ε to norm ε, sign clips each entry to [-ε, ε]. Default α = 2.5·ε/steps. With steps=1
    and α ≥ ε the result is ``fgm_perturbation(∇L(x), ...)`` (up to the rounding of the rescaling).
    Source: Madry et al. 2018 (arXiv 1706.06083), here started from 0.

    ``loss_fn(x)`` returns a scalar; the gradient is ``grad_fn(x)`` when given, else
    ``numerical_gradient(loss_fn, x)``.

    Examples
    --------
    >>> import numpy as np
    >>> half_sq = lambda z: 0.5 * float(z @ z)       # ∇ = z
    >>> adversarial_perturbation(half_sq, np.array([3.0, 4.0]), grad_fn=lambda z: z)
    array([0.6, 0.8])
    """
    epsilon = _nonnegative(epsilon, "epsilon")
    norm = _choice(norm, "norm", _NORMS)
    scope = _choice(scope, "scope", _SCOPES)
    steps = _count(steps, "steps", 1)
    alpha = 2.5 * epsilon / steps if step_size is None else _nonnegative(step_size, "step_size")
    x = _input(x, scope)
    included = _included(where, x.shape)

    def loss(z):
        return _scalar(loss_fn(z), scope="global")

    delta = np.zeros(x.shape, dtype=np.float64)
    if epsilon == 0.0:
        return delta
    for _ in range(steps):
        g = _gradient(loss, grad_fn, x + delta, "x")
        step = _directions(g, included, norm, scope)
        delta = _project(delta + alpha * step, included, epsilon, norm, scope)
    return delta


def adversarial_loss(loss_fn, x, *, epsilon=1.0, norm="l2", scope="global", steps=1, step_size=None, where=None,
                     grad_fn=None):
    """(loss, adversarial loss) = (L(x), L(x + δ)) with δ from FGM or PGD (reference).

    δ is ``adversarial_perturbation(loss_fn, x, ...)`` (held constant): steps=1 is FGM,
    δ = ε·g/‖g‖ (or ε·sign(g)) with g = ∇L(x); steps > 1 is PGD from 0 with step α (default
    2.5·ε/steps), projected onto the ε-ball of the same norm and scope after every step.
    Sources: kexue.fm/archives/7234 (FGM on embeddings); Madry et al. 2018 (PGD).

    Parameters
    ----------
    loss_fn : callable, float64 array shaped like x -> scalar (a batch-mean loss, say)
    x : array_like, real (embedding outputs [B, L, D], an embedding matrix [V, D], ...)
    epsilon, norm, scope, where : as in ``fgm_perturbation``
    steps : int >= 1
    step_size : float >= 0, optional
    grad_fn : callable, optional
        x -> ∇L(x), shaped like x (e.g. an analytic gradient); default: ``numerical_gradient``.

    Returns
    -------
    (loss, adversarial_loss): two 0-d float64 arrays. A non-scalar ``loss_fn`` output is a ValueError
    naming its shape.

    Examples
    --------
    >>> import numpy as np
    >>> half_sq = lambda z: 0.5 * float(z @ z)       # ∇ = z, so x + δ = 1.2·x for ε = 1, ‖x‖ = 5
    >>> [float(v) for v in adversarial_loss(half_sq, np.array([3.0, 4.0]), grad_fn=lambda z: z)]
    [12.5, 18.0]
    """
    delta = adversarial_perturbation(loss_fn, x, epsilon=epsilon, norm=norm, scope=scope, steps=steps,
                                     step_size=step_size, where=where, grad_fn=grad_fn)  # checks the arguments
    x = _common.real_array(x, "x")
    loss = _scalar(loss_fn(x.copy()), scope="global")
    adversarial = _scalar(loss_fn(x + delta), scope="global")
    return np.asarray(loss, dtype=np.float64), np.asarray(adversarial, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# D2. gradient penalty
# ---------------------------------------------------------------------------------------------


def gradient_penalty(loss_fn, x, *, scope="global", normalized=False, where=None, grad_fn=None):
    """(loss, penalty) with penalty = ½‖∇_x L(x)‖² or ‖∇_x L(x)‖ (reference).

    scope="global": ``loss_fn(x)`` is a scalar L and the penalty ½‖∇_x L‖² is a scalar.
    scope="example": ``loss_fn(x)`` returns the B per-example losses ℓ_b; with g = ∇_x Σ_b ℓ_b the penalty
    of example b is ½‖g_b‖² over the leading-axis row b (equal to ½‖∇_{x_b} ℓ_b‖² when examples do not
    interact). ``normalized=True`` gives ‖·‖ instead of ½‖·‖². Positions where ``where`` is False are left
    out of the norms. Scale: for a batch-mean loss L = (1/B) Σ ℓ_b the global penalty carries 1/B²
    (it is (1/B²)·Σ_b ½‖∇ℓ_b‖² for independent examples); scope="example" has no such factor.
    Sources: kexue.fm/archives/7234 and 7466 (L + (ε/2)‖∇_x L‖², bert4keras on the embeddings).

    The squared norm is exactly rounded; a NaN in the (included) gradient gives a NaN penalty, an
    infinity +inf (a penalty is a value: NaN in, NaN out). The gradient is ``grad_fn(x)`` when given (of
    Σ_b ℓ_b for scope="example"), else ``numerical_gradient``.

    Returns
    -------
    (loss, penalty): 0-d float64 arrays (global) or two [B] arrays (example).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([2.0, 3.0])                       # L = ½ xᵀAx, ∇L = Ax = [2, 3] at x = [1, 1]
    >>> loss, penalty = gradient_penalty(lambda z: 0.5 * float(z @ A @ z), np.ones(2), grad_fn=lambda z: A @ z)
    >>> float(loss), float(penalty)                   # ½(4 + 9)
    (2.5, 6.5)
    """
    scope = _choice(scope, "scope", _SCOPES)
    if not isinstance(normalized, (bool, np.bool_)):
        raise TypeError(f"normalized must be a bool, got {normalized!r}")
    x = _input(x, scope)
    included = _included(where, x.shape)
    if scope == "global":
        loss = _scalar(loss_fn(x.copy()), scope)
        total = lambda z: _scalar(loss_fn(z), scope)  # noqa: E731
    else:
        batch = x.shape[0]
        loss = _per_example_output(loss_fn(x.copy()), batch)
        total = lambda z: _common.fsum([float(v) for v in _per_example_output(loss_fn(z), batch)])  # noqa: E731
    g = _gradient(total, grad_fn, x, "x")
    rows = _unit_rows(g, scope)
    keep = _unit_rows(included, scope)
    penalties = []
    for r, k in zip(rows, keep):
        kept = [float(v) for v, w in zip(r, k) if w]
        if normalized:
            penalties.append(_NAN if any(math.isnan(v) for v in kept) else math.hypot(*kept))
        else:
            penalties.append(0.5 * _squared_norm(kept))  # ½·(exactly rounded Σ g²): exact unless subnormal
    if scope == "global":
        return np.asarray(loss, dtype=np.float64), np.asarray(penalties[0], dtype=np.float64)
    return loss, np.array(penalties, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# D3. virtual adversarial training
# ---------------------------------------------------------------------------------------------


def _phi(a):
    """φ(a) = e^{-a} - 1 + a ≥ 0 for |a| < 1/2, from its Taylor series Σ_{n≥2} (-a)^n/n! (no cancellation
    worse than the ratio a/3 of the first two terms)."""
    terms = []
    term = 1.0
    for n in range(1, 30):
        term *= -a / n
        if n >= 2:
            terms.append(term)
    return math.fsum(terms)


def _kl_row(s, t):
    """KL(softmax(s) ‖ softmax(t)) for one row of logits (lists of float).

    With w_k = e^{s_k - max s}, P = Σ w, e_k = s_k - t_k, m = Σ w e / P and a_k = e_k - m:

        KL = Σ p_k e_k + lse(t) - lse(s) = log1p(C/P),   C = Σ_k w_k φ(a_k),   φ(a) = e^{-a} - 1 + a ≥ 0

    (using Σ_k w_k e^{-e_k} = e^{lse(t) - max s}; the centring error of m only enters at second order). Every
    term of C is ≥ 0, so KL ≥ 0 by construction and is relatively accurate also when it is tiny; a class
    with s_k = -inf (p_k = 0) contributes e^{t_k - max s + m} to C. When that could overflow the direct
    form m + lse(t) - lse(s) is used (KL is then huge and has no cancellation).
    NaN or +inf logits give NaN; a row with all s, or all t, at -inf gives NaN; p_k > 0 = q_k gives +inf.
    """
    if any(math.isnan(v) or v == _INF for v in s + t):
        return _NAN
    live = [k for k in range(len(s)) if s[k] > -_INF]
    if not live or all(v == -_INF for v in t):
        return _NAN
    if any(t[k] == -_INF for k in live):
        return _INF
    dead = [k for k in range(len(s)) if s[k] == -_INF and t[k] > -_INF]
    s_max = max(s[k] for k in live)
    w = {k: math.exp(math.fsum([s[k], -s_max])) for k in live}
    total = math.fsum(w.values())
    e = {k: s[k] - t[k] for k in live}
    if any(math.isinf(v) for v in e.values()):
        return _INF
    m = math.fsum(w[k] * e[k] for k in live) / total
    exponents = []  # log of w_k·e^{-a_k} for the terms not handled by the series, and of the dead terms
    terms = []
    for k in live:
        a = e[k] - m
        if abs(a) < 0.5:
            terms.append(w[k] * _phi(a))
        else:
            y = math.fsum([s[k], -s_max, -a])
            exponents.append(y)
            if y < 700.0:
                terms.append(math.fsum([math.exp(y), -w[k], w[k] * a]))  # w_k φ(a_k), |a_k| ≥ ½: no cancellation
    for k in dead:
        y = math.fsum([t[k], -s_max, m])
        exponents.append(y)
        if y < 700.0:
            terms.append(math.exp(y))
    if exponents and max(exponents) >= 700.0:  # KL ≳ 700 - log P: the direct form, without overflow
        shifted = [math.fsum([v, -s_max]) for v in t if v > -_INF]
        top = max(shifted)
        lse_t = top + math.log(math.fsum(math.exp(v - top) for v in shifted))
        return m + lse_t - math.log(total)
    return math.log1p(math.fsum(terms) / total)


def softmax_kl_divergence(logits_p, logits_q):
    """KL(softmax(s) ‖ softmax(t)) over the last axis, summed over every other axis but the first (reference).

    KL_b = Σ_{positions of example b} Σ_k p_k (log p_k - log q_k),   p = softmax(s), q = softmax(t)

    ``logits_p`` [B, ..., C] are the clean logits s (the reference distribution, held constant in VAT),
    ``logits_q`` the perturbed ones t: the direction of Miyato et al.'s ``kl_divergence_with_logit`` and of
    ``F.kl_div(log_softmax(perturbed), softmax(clean))``. Evaluated as log1p(Σ_k w_k φ(a_k) / Σ_k w_k)
    (see ``_kl_row``): ≥ 0 and relatively accurate down to tiny values. Classes at -inf in both inputs
    are dropped; p_k > 0 where q_k = 0 gives +inf; NaN or +inf logits give NaN.

    Returns
    -------
    numpy.ndarray of float64 [B].

    Examples
    --------
    >>> import numpy as np
    >>> # p = (½, ½), q = softmax(0, δ): KL = log cosh(δ/2); δ = 2 log 2 gives log(5/4)
    >>> np.round(softmax_kl_divergence([[0.0, 0.0]], [[0.0, 2.0 * np.log(2.0)]]), 12) == np.round(np.log(1.25), 12)
    array([ True])
    """
    s = _common.real_array(logits_p, "logits_p")
    t = _common.real_array(logits_q, "logits_q")
    _common.same_shape(s, t, "logits_p", "logits_q")
    if s.ndim < 2:
        raise ValueError(f"logits must have shape [B, ..., C] (at least 2 dimensions), got {s.shape}")
    out = []
    for b in range(s.shape[0]):
        rows_s = s[b].reshape(-1, s.shape[-1])
        rows_t = t[b].reshape(-1, s.shape[-1])
        out.append(_common.fsum([_kl_row([float(v) for v in rs], [float(v) for v in rt])
                                 for rs, rt in zip(rows_s, rows_t)]))
    return np.array(out, dtype=np.float64)


def _per_example_sum(values):
    """[B, ...] -> [B]: exactly rounded sum over every axis but the first."""
    values = np.asarray(values, dtype=np.float64)
    return np.array([_common.fsum([float(v) for v in values[b].ravel()]) for b in range(values.shape[0])],
                    dtype=np.float64)


def _divergence_fn(divergence, batch):
    if callable(divergence):
        def fn(clean, perturbed):
            out = np.asarray(divergence(clean.copy(), perturbed.copy()))
            if out.dtype.kind not in "fiu":
                raise TypeError(f"the divergence must return real numbers, got dtype {out.dtype}")
            if out.shape != (batch,):
                raise ValueError(f"the divergence must return shape ({batch},) (one value per example), "
                                 f"got shape {out.shape}")
            return out.astype(np.float64)
        return fn
    if not (isinstance(divergence, str) and divergence in _DIVERGENCES):
        raise ValueError("divergence must be 'kl', 'multilabel' or a callable (clean_logits, perturbed_logits) "
                         f"-> [B]; got {divergence!r}")

    def check(clean):
        if clean.ndim < 2:
            raise ValueError(f"divergence={divergence!r} needs logits of shape [B, ..., C], got {clean.shape}")

    if divergence == "kl":
        def fn(clean, perturbed):
            check(clean)
            return softmax_kl_divergence(clean, perturbed)
    else:
        def fn(clean, perturbed):
            check(clean)
            return _per_example_sum(_multilabel.multilabel_divergence(clean, perturbed, axis=-1))
    return fn


def _logits(logits_fn, z, batch):
    out = _common.real_array(logits_fn(z), "logits_fn(x)")
    if out.ndim == 0 or out.shape[0] != batch:
        raise ValueError(f"logits_fn must return logits with the leading (example) axis of x ({batch}), "
                         f"got shape {out.shape}")
    return out


def _vat_setup(logits_fn, x, divergence, epsilon, xi, iterations, noise, scope, where):
    epsilon = _nonnegative(epsilon, "epsilon")
    xi = _positive(xi, "xi")
    iterations = _count(iterations, "iterations", 0)
    scope = _choice(scope, "scope", _SCOPES)
    x = _common.real_array(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have a leading (example) axis, got a 0-d array")
    if noise is None:
        raise TypeError("the reference takes the start direction explicitly: pass noise= (an array shaped "
                        "like x; the library draws it from a key)")
    noise = _common.real_array(noise, "noise")
    if noise.shape != x.shape:
        raise ValueError(f"noise has shape {noise.shape} but x has shape {x.shape}")
    included = _included(where, x.shape)
    batch = x.shape[0]
    div = _divergence_fn(divergence, batch)
    clean = _logits(logits_fn, x.copy(), batch)
    return x, noise, included, div, clean, epsilon, xi, iterations, scope


def _vat_direction(logits_fn, x, noise, included, div, clean, xi, iterations, scope, grad_fn):
    batch = x.shape[0]

    def objective(z):
        return _common.fsum([float(v) for v in div(clean, _logits(logits_fn, z, batch))])

    d = _directions(noise, included, "l2", scope)
    for _ in range(iterations):
        alive = np.array([bool(np.any(row != 0.0)) for row in _unit_rows(d, scope)])
        g = _gradient(objective, grad_fn, x + xi * d, "x + xi*d")
        rows = _unit_rows(_directions(g, included, "l2", scope), scope).copy()
        rows[~alive] = 0.0  # a zero unit stays zero (∇D = 0 at r = 0)
        d = rows.reshape(x.shape)
    return d


def vat_perturbation(logits_fn, x, *, divergence="kl", epsilon=1.0, xi=10.0, iterations=1, noise=None,
                     scope="example", where=None, grad_fn=None):
    """The VAT perturbation ε·r (reference); see ``vat_loss``.

    r = normalise(noise) for iterations = 0; else ``iterations`` power-iteration steps
    d ← normalise(∇_z Σ_b D(f(x)_b, f(z)_b) at z = x + ξ·d), r = d. normalise: unit L2 norm per example
    (every axis but the first) or over the whole array, over the where-included positions (0 elsewhere);
    a zero or non-finite unit gives 0, and a zero unit stays 0.

    ``grad_fn(z)``, when given, returns ∇_z Σ_b D(f(x)_b, f(z)_b) with the clean logits f(x) held constant
    (shaped like x); else ``numerical_gradient`` of that sum.

    Examples
    --------
    >>> import numpy as np
    >>> vat_perturbation(lambda z: z, np.zeros((1, 2)), iterations=0, noise=np.array([[3.0, 4.0]]))
    array([[0.6, 0.8]])
    """
    x, noise, included, div, clean, epsilon, xi, iterations, scope = _vat_setup(
        logits_fn, x, divergence, epsilon, xi, iterations, noise, scope, where)
    if epsilon == 0.0:
        return np.zeros(x.shape, dtype=np.float64)
    d = _vat_direction(logits_fn, x, noise, included, div, clean, xi, iterations, scope, grad_fn)
    return epsilon * d


def vat_loss(logits_fn, x, *, divergence="kl", epsilon=1.0, xi=10.0, iterations=1, noise=None, scope="example",
             where=None, grad_fn=None):
    """Virtual adversarial loss, per example: D(f(x)_b, f(x + ε·r)_b) (reference).

    r: ``iterations`` power-iteration steps from ``noise`` (see ``vat_perturbation``); the clean logits
    f(x) are held constant. Defaults ε = 1, ξ = 10, one iteration as in kexue.fm/archives/7466 and
    bert4keras; Miyato et al. 2018 (arXiv 1704.03976) use ξ = 1e-6 and a dataset-specific ε.

    Parameters
    ----------
    logits_fn : callable, float64 array shaped like x -> logits [B, ..., C]
    x : array_like [B, ...]
    divergence : "kl", "multilabel" or a callable (clean_logits, perturbed_logits) -> [B]
        "kl": KL(softmax(clean) ‖ softmax(perturbed)) over the last axis (``softmax_kl_divergence``);
        "multilabel": ``polyloss.reference.multilabel_divergence`` over the last axis (kexue 9039). Both
        are summed over every axis but the first for logits of more than two axes.
    epsilon : float >= 0 (0 gives 0 exactly);  xi : float > 0;  iterations : int >= 0
    noise : array_like shaped like x (required here; the library draws a Gaussian from a key)
    scope : "example" (default, Miyato) or "global" (bert4keras)
    where : array_like of bool, broadcastable to x: positions that are not perturbed
    grad_fn : callable, optional; see ``vat_perturbation``

    Returns
    -------
    numpy.ndarray of float64 [B].

    Examples
    --------
    >>> import numpy as np
    >>> # logits = x, clean (0, 0), r = (0.6, 0.8): KL = log cosh(0.1)
    >>> out = vat_loss(lambda z: z, np.zeros((1, 2)), iterations=0, noise=np.array([[3.0, 4.0]]))
    >>> bool(abs(out[0] - np.log(np.cosh(0.1))) < 1e-16)
    True
    """
    x, noise, included, div, clean, epsilon, xi, iterations, scope = _vat_setup(
        logits_fn, x, divergence, epsilon, xi, iterations, noise, scope, where)
    batch = x.shape[0]
    if epsilon == 0.0:
        r = np.zeros(x.shape, dtype=np.float64)
    else:
        r = epsilon * _vat_direction(logits_fn, x, noise, included, div, clean, xi, iterations, scope, grad_fn)
    return div(clean, _logits(logits_fn, x + r, batch))

"""Regularisers that need gradients: adversarial training (FGM, PGD), the gradient penalty and virtual
adversarial training (VAT). Formulas, sources and conventions in ``docs/adversarial.md``.

Sources: kexue.fm/archives/7234 (FGM on embeddings, the gradient penalty), kexue.fm/archives/7466
(VAT, the penalty as a regulariser); Goodfellow et al. 2015 (FGSM, arXiv:1412.6572); Miyato et al. 2017
(adversarial training for text, arXiv:1605.07725); Madry et al. 2018 (PGD, arXiv:1706.06083); Miyato et
al. 2018 (VAT, arXiv:1704.03976).

``x`` is whatever the user wants perturbed: the output of an embedding layer (nothing to edit or
restore) or an embedding matrix itself (Su's and bert4keras's form). The functions take the gradient of
the user's ``loss_fn`` / ``logits_fn`` at ``x`` with the adapter's hook
``Backend.value_and_grad_nested`` (``torch.autograd.grad``, never ``.backward()``; ``jax.vjp``; a
``tf.GradientTape``), inside whatever differentiation the caller runs around them, eagerly and under
``jax.jit`` / ``tf.function``. The framework comes from ``x``.

Units. A *unit* is the whole array (``scope="global"``) or one leading-axis row, i.e. every axis but the
first (``scope="example"``). Norms and signs see only the positions where ``where`` is True; the
perturbation is 0 elsewhere. A unit whose included gradient entries are not all finite, or whose norm
is 0, gets a zero perturbation (never NaN; the NaN still shows in the losses). Norms are computed
scaled by the unit's largest magnitude (as ``hypot``), so they neither overflow nor underflow, in
float32 for float16 / bfloat16 inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polyloss
from polyloss import _checks, _ops
from polyloss._namespace import namespace_of

__all__ = ["fgm_perturbation", "adversarial_loss", "gradient_penalty", "vat_loss"]

_NORMS = ("l2", "sign")
_SCOPES = ("global", "example")
_DIVERGENCES = ("kl", "multilabel")
_NEG_INF = -math.inf
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------------------------


def _choice(value, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def _count(value, name: str, minimum: int) -> int:
    n = _checks.integer(value, f"{name} must be an int, got {value!r}")
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return n


def _magnitude(xp, backend, value, name: str, like, *, positive: bool = False):
    """A size (epsilon, step_size, xi): a Python number, checked (>= 0, or > 0 with ``positive``), or a
    0-d array of ``like``'s framework (a schedule under ``jax.jit`` / ``tf.function``), checked only in
    eager mode, returned in ``like``'s compute dtype."""
    if backend.is_array(value):
        if tuple(value.shape) != ():
            raise ValueError(f"{name} must be a number or a 0-d array, got shape {tuple(value.shape)}")
        value = backend.asarray(value, like=like, dtype=_ops.compute_dtype(xp, like.dtype), name=name)
        _checks.require_floating(xp, value, name)
        if _checks.values_checked(backend, value):
            bad = ~(xp.isfinite(value) & ((value > 0.0) if positive else (value >= 0.0)))
            _checks.fail_if_any(xp, bad, lambda: f"{name} must be a finite number {'>' if positive else '>='} 0, "
                                                 f"got {float(value)}")
        return value
    return _checks.hyperparameter(value, name, low=0.0, low_open=positive)


def _is_zero(value) -> bool:
    """True for the Python number 0 (an array epsilon is never taken as a shortcut)."""
    return isinstance(value, float) and value == 0.0


def _differentiable(x, function: str):
    """``(xp, backend)`` of ``x``, which must be an array of a framework with autograd."""
    xp, backend = namespace_of(x=x)
    if not backend.has_autograd:
        raise TypeError(
            f"{function} differentiates its loss function, so x must be an array of a framework with automatic "
            f"differentiation (torch, jax or tensorflow), got a {backend.name} array; for the perturbation of a "
            f"gradient you already have, use fgm_perturbation"
        )
    _checks.require_floating(xp, x, "x")
    return xp, backend


def _callable(fn, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be a callable (a function of x), got {type(fn).__name__}")


def _output(xp, backend, out, what: str, *, shape: tuple | None, hint: str = ""):
    """``out`` of the user's function, checked: an array of the framework, real floating, of ``shape``
    (None: any shape with the leading axis of x, given as ``shape=None``)."""
    if not backend.is_array(out):
        raise TypeError(f"{what} must return an array of the same framework as x ({backend.name}), "
                        f"got {type(out).__module__}.{type(out).__qualname__}")
    _checks.require_floating(xp, out, what)
    if shape is not None and not _checks.same_dims(tuple(out.shape), shape):
        raise ValueError(f"{what} must return shape {shape}{hint}, got shape {tuple(out.shape)}")
    return out


@dataclass(frozen=True)
class _Perturbed:
    """One call's ``x`` and options, checked: ``where`` as a boolean array broadcast to ``x`` (or None)
    and the unit axes."""

    xp: Any
    backend: Any
    x: Any
    where: Any
    axes: tuple[int, ...] | None  # the axes of one unit (None: the whole array)


def _prepare(xp, backend, x, *, scope: str, where, name: str = "x") -> _Perturbed:
    scope = _choice(scope, "scope", _SCOPES)
    if scope == "example" and x.ndim == 0:
        raise ValueError(f"{name} must have a leading (example) axis with scope='example', got a 0-d array")
    mask = _checks.prepare_where(xp, backend, where, x, name)
    axes = None if scope == "global" else tuple(range(1, x.ndim))
    return _Perturbed(xp, backend, x, mask, axes)


# --------------------------------------------------------------------------------------------
# units: scaled norms, directions, projections
# --------------------------------------------------------------------------------------------


def _unit_reduce(xp, op, v, axes):
    """``op`` over each unit, kept as axes of size 1 (a 1-d array with scope="example": every entry is
    its own unit)."""
    if axes == ():
        return v
    return op(v, axis=axes, keepdims=True)


def _scaled(xp, backend, v, axes):
    """``(u, c, squares, ok)`` of each unit of ``v`` (compute dtype, excluded entries 0): ``u = c·v`` with
    ``c ≈ 1/max|v|`` per unit and ``squares = Σ u²``, so that ``‖v‖ = √squares / c`` neither overflows nor
    underflows; ``ok``: the unit is finite and not zero.

    ``c`` is a constant to autograd (any positive ``c`` gives the exact norm, and the textbook gradient
    ``v/‖v‖``), kept within ``2^±(max exponent - 8)``: a normal number whose reciprocal is normal too,
    since compilers divide by multiplying with the reciprocal (XLA on the CPU flushes a subnormal one to
    0). The gradient is multiplied by ``c``, never divided by ``max|v|``."""
    # max |v| as max(max v, -min v): two reads of v, no |v| written out
    top = backend.stop_gradient(xp.maximum(_unit_reduce(xp, xp.max, v, axes), -_unit_reduce(xp, xp.min, v, axes)))
    usable = (top > 0.0) & (top < math.inf)  # NaN: False
    bound = math.log(float(xp.finfo(v.dtype).max)) - 8.0 * _LN2
    exponent = xp.clip(xp.log(xp.where(usable, top, 1.0)), min=-bound, max=bound)
    c = backend.stop_gradient(xp.exp(-exponent))
    u = v * c
    squares = _unit_reduce(xp, xp.sum, u * u, axes)
    return u, c, squares, usable & xp.isfinite(squares)


def _masked(xp, v, where):
    return v if where is None else xp.where(where, v, 0.0)


def _direction(p: _Perturbed, g, norm: str, size=1.0):
    """``size`` times the unit direction of each unit of ``g``: ``g/‖g‖₂`` (l2) or ``sign(g)`` (sign), in
    the compute dtype, 0 at excluded positions and in units that are not finite or are zero."""
    xp = p.xp
    g = _masked(xp, _ops.upcast(xp, g), p.where)
    if norm == "sign":
        finite = _unit_reduce(xp, xp.all, xp.isfinite(g), p.axes)
        return xp.where(finite, size * xp.sign(g), 0.0)
    u, _, squares, ok = _scaled(xp, p.backend, g, p.axes)
    return xp.where(ok, u * (size / xp.sqrt(xp.where(ok, squares, 1.0))), 0.0)


def _project(p: _Perturbed, delta, epsilon, norm: str):
    """Π_ε: the l2 form rescales every unit whose norm exceeds ε to norm ε; the sign form clips every
    entry to [-ε, ε] (the L∞ ball)."""
    xp = p.xp
    if norm == "sign":
        return xp.minimum(xp.maximum(delta, -epsilon), epsilon)
    _, c, squares, ok = _scaled(xp, p.backend, delta, p.axes)
    length = xp.sqrt(xp.where(ok, squares, 1.0)) / c
    outside = ok & (length > epsilon)
    return delta * xp.where(outside, epsilon / xp.where(outside, length, 1.0), 1.0)


def _alive(p: _Perturbed, d):
    """Per unit: whether ``d`` has a nonzero entry."""
    return _unit_reduce(p.xp, p.xp.any, d != 0.0, p.axes)


def _shifted(p: _Perturbed, delta):
    """``x + δ`` with δ a constant in ``x``'s dtype (the model sees its own dtype)."""
    xp = p.xp
    delta = delta if delta.dtype == p.x.dtype else xp.astype(delta, p.x.dtype)
    return p.x + p.backend.stop_gradient(delta)


# --------------------------------------------------------------------------------------------
# D1. FGM / PGD
# --------------------------------------------------------------------------------------------


def fgm_perturbation(grad, *, epsilon=1.0, norm="l2", scope="global", where=None):
    r"""The FGM perturbation of a gradient: ``δ = ε·g/‖g‖₂`` (``norm="l2"``) or ``δ = ε·sign(g)``
    (``norm="sign"``, FGSM).

    .. math::

        \delta = \varepsilon\,\frac{g}{\lVert g\rVert_2}
        \qquad\text{or}\qquad
        \delta = \varepsilon\,\operatorname{sign}(g)

    with one norm over the whole array (``scope="global"``: Su / bert4keras on an embedding matrix, the
    widely copied PyTorch FGM class) or one per leading-axis row, every axis but the first
    (``scope="example"``: FreeLB, VAT). Pure array math: works on every backend, NumPy included.

    Sources: Goodfellow et al. 2015 (arXiv:1412.6572, the sign form); Miyato et al. 2017
    (arXiv:1605.07725) and kexue.fm/archives/7234 (the L2 form).

    Args:
      grad: real floating array, the gradient of a loss with respect to what is perturbed.
      epsilon: the size of the perturbation, ``>= 0`` (0 gives zeros): a Python number or a 0-d array.
      norm: ``"l2"`` or ``"sign"``.
      scope: ``"global"`` or ``"example"``.
      where: optional boolean mask broadcastable to ``grad``: positions where it is False (padding) are
        left out of the norm and get ``δ = 0``.

    Returns:
      δ, shaped like ``grad`` and in its dtype (it is added to the perturbed array), computed in float32
      for float16 / bfloat16. A unit whose included entries are not all finite, or whose norm is 0, gets
      ``δ = 0``: never NaN.

    >>> import numpy as np, polyloss
    >>> polyloss.fgm_perturbation(np.array([3.0, 4.0]), epsilon=0.5)
    array([0.3, 0.4])
    >>> polyloss.fgm_perturbation(np.array([[3.0, 4.0], [0.0, 2.0]]), scope="example")
    array([[0.6, 0.8],
           [0. , 1. ]])
    >>> polyloss.fgm_perturbation(np.array([3.0, -4.0, 0.0]), epsilon=0.5, norm="sign")
    array([ 0.5, -0.5,  0. ])
    """
    xp, backend = namespace_of(grad=grad, where=where)
    grad, _ = _checks.prepare_floating(xp, backend, grad, "grad")
    epsilon = _magnitude(xp, backend, epsilon, "epsilon", grad)
    norm = _choice(norm, "norm", _NORMS)
    p = _prepare(xp, backend, grad, scope=scope, where=where, name="grad")
    delta = _direction(p, grad, norm, epsilon)
    return delta if delta.dtype == grad.dtype else xp.astype(delta, grad.dtype)


def _scalar_loss(xp, backend, loss_fn, what: str):
    """``loss_fn`` with its output checked to be a scalar."""
    def objective(z):
        return _output(xp, backend, loss_fn(z), what, shape=(),
                       hint=" (a scalar: reduce the per-example losses, e.g. with polyloss.reduce)")

    return objective


def _adversarial_delta(p: _Perturbed, value_and_grad, g, epsilon, norm, steps, step_size):
    """δ of FGM (one step of at least ε: the normalised gradient, exactly) or PGD from δ₀ = 0:
    ``δ ← Π_ε(δ + α·dir(∇L(x + δ)))``, ``steps`` times; ``g`` is the gradient at ``x``."""
    if steps == 1 and (step_size is None or (isinstance(step_size, float) and isinstance(epsilon, float)
                                             and step_size >= epsilon)):
        return _direction(p, g, norm, epsilon)
    if step_size is None:
        step_size = 2.5 * epsilon / steps
    delta = None
    for step in range(steps):
        if step > 0:
            _, g = value_and_grad(_shifted(p, delta))
        move = _direction(p, g, norm, step_size)
        delta = _project(p, move if delta is None else delta + move, epsilon, norm)
    return delta


def adversarial_loss(loss_fn, x, *, epsilon=1.0, norm="l2", scope="global", steps=1, step_size=None, where=None):
    r"""``(loss, adversarial_loss) = (L(x), L(x + δ))``, δ found from the gradient of ``L`` at ``x`` and
    held constant: FGM (``steps=1``) or PGD (``steps > 1``).

    .. math::

        \delta = \varepsilon\,\frac{\nabla_x L}{\lVert\nabla_x L\rVert}\ \ \text{(FGM)}, \qquad
        \delta_{t+1} = \Pi_\varepsilon\bigl(\delta_t + \alpha\,\mathrm{dir}(\nabla L(x + \delta_t))\bigr),\
        \delta_0 = 0\ \ \text{(PGD)}

    dir is the normalised gradient (``"l2"``) or its sign (``"sign"``) per unit, and Π_ε the projection
    onto the ε-ball of the same norm and scope (l2: a unit whose norm exceeds ε is rescaled to ε; sign:
    entries clipped to [-ε, ε]). Train on ``loss + adversarial_loss`` (or a weighted sum): both are
    differentiable with respect to everything ``loss_fn`` closes over, and to ``x``'s own history.

    Sources: kexue.fm/archives/7234 (FGM on the embeddings); Goodfellow et al. 2015; Miyato et al. 2017
    (arXiv:1605.07725); Madry et al. 2018 (PGD, arXiv:1706.06083), here started from δ₀ = 0 as the widely
    copied PGD class.

    Args:
      loss_fn: ``loss_fn(x) -> scalar``, the training loss as a function of what is perturbed (a
        batch-mean loss, say). It is called twice (and once more per extra PGD step).
      x: real floating array of torch, JAX or TensorFlow: the output of an embedding layer ``[B, L, D]``
        (recommended: no weight is edited, nothing needs restoring) or an embedding matrix ``[V, D]``.
      epsilon: the radius, ``>= 0`` (0: no perturbation; the gradient is then not computed): a Python
        number or a 0-d array.
      norm, scope, where: as in :func:`fgm_perturbation` (default ``"global"``, the PyTorch FGM class
        and bert4keras; FreeLB normalises per example).
      steps: ``>= 1``; 1 is FGM, more is PGD.
      step_size: α, ``>= 0``; default ``2.5·ε/steps``. One step with ``α >= ε`` is FGM.

    Returns:
      ``(loss, adversarial_loss)``, two scalars as ``loss_fn`` returns them.

    >>> import torch, polyloss
    >>> x = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    >>> loss, adv = polyloss.adversarial_loss(lambda z: 0.5 * (z * z).sum(), x)  # δ = x/‖x‖
    >>> round(loss.item(), 12), round(adv.item(), 12)                             # ½·25, ½·36
    (12.5, 18.0)
    """
    xp, backend = _differentiable(x, "adversarial_loss")
    _callable(loss_fn, "loss_fn")
    epsilon = _magnitude(xp, backend, epsilon, "epsilon", x)
    norm = _choice(norm, "norm", _NORMS)
    steps = _count(steps, "steps", 1)
    step_size = None if step_size is None else _magnitude(xp, backend, step_size, "step_size", x)
    p = _prepare(xp, backend, x, scope=scope, where=where)
    objective = _scalar_loss(xp, backend, loss_fn, "loss_fn")
    if _is_zero(epsilon):
        return objective(x), objective(x)
    value_and_grad = backend.value_and_grad_nested(objective, 0, create_graph=False)
    loss, g = value_and_grad(x)
    delta = _adversarial_delta(p, value_and_grad, g, epsilon, norm, steps, step_size)
    return loss, objective(_shifted(p, delta))


# --------------------------------------------------------------------------------------------
# D2. gradient penalty
# --------------------------------------------------------------------------------------------


def gradient_penalty(loss_fn, x, *, scope="global", normalized=False, where=None):
    r"""``(loss, penalty)`` with ``penalty = ½‖∇_x L‖²`` (``normalized=True``: ``‖∇_x L‖``), differentiable
    with respect to everything ``loss_fn`` closes over (double backprop).

    .. math::

        P = \tfrac12 \lVert \nabla_x L(x) \rVert^2 \qquad\text{or}\qquad P = \lVert \nabla_x L(x) \rVert

    ``scope="global"``: ``loss_fn`` returns a scalar and the penalty is one number. The gradient of a
    batch-mean loss ``(1/B) Σ_b ℓ_b`` carries ``1/B``, so its penalty scales as ``1/B²`` (bert4keras's
    ``0.5·Σ g²`` of the mean loss). ``scope="example"``: ``loss_fn`` returns the ``B`` per-example losses
    and the penalty of example ``b`` is ``½‖∇_{x_b} Σ_j ℓ_j‖²`` over its row, which is
    ``½‖∇_{x_b} ℓ_b‖²`` when examples do not interact (no batch norm), without the ``1/B²``.
    Train on ``loss + λ·penalty`` (kexue 7234 uses ``L + ε/2·‖∇L‖²``).

    Sources: kexue.fm/archives/7234 and 7466; Drucker & LeCun 1992 (double backpropagation).

    Args:
      loss_fn: ``loss_fn(x)``: a scalar (``scope="global"``) or the per-example losses ``[B]``
        (``scope="example"``).
      x: real floating array of torch, JAX or TensorFlow (embedding outputs, inputs, ...).
      scope: ``"global"`` or ``"example"``.
      normalized: ``‖g‖`` instead of ``½‖g‖²`` (its gradient is 0 where ``g = 0``).
      where: optional boolean mask broadcastable to ``x``: positions left out of the norm.

    Returns:
      ``(loss, penalty)``: ``loss`` as ``loss_fn`` returns it; the penalty in the compute dtype (float32
      for half precision), a scalar or ``[B]``. A NaN in the gradient gives a NaN penalty, an infinity
      ``+inf`` (the squared norm is computed scaled, so it overflows only when the penalty does).

    >>> import torch, polyloss
    >>> w = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    >>> z = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> loss, penalty = polyloss.gradient_penalty(lambda v: w * (v * v).sum(), z)
    >>> round(penalty.item(), 12)                            # ∇ = 2w·z = (6, 12): ½(36 + 144)
    90.0
    >>> round(torch.autograd.grad(penalty, w)[0].item(), 12)  # P = 2w²‖z‖², dP/dw = 4w‖z‖² = 60
    60.0
    """
    xp, backend = _differentiable(x, "gradient_penalty")
    _callable(loss_fn, "loss_fn")
    if not isinstance(normalized, bool):
        raise TypeError(f"normalized must be a bool, got {normalized!r}")
    p = _prepare(xp, backend, x, scope=scope, where=where)
    if p.axes is None:
        objective = _scalar_loss(xp, backend, loss_fn, "loss_fn with scope='global'")
    else:
        batch = x.shape[0]

        def objective(z):
            return _output(xp, backend, loss_fn(z), "loss_fn with scope='example'", shape=(batch,),
                           hint=" (one loss per example)")

    loss, g = backend.value_and_grad_nested(objective, 0, create_graph=True)(x)
    g = _masked(xp, _ops.upcast(xp, g), p.where)
    _, c, squares, _ = _scaled(xp, backend, g, p.axes)
    if normalized:
        zero = squares == 0.0  # NaN stays NaN, +inf stays +inf; the gradient at g = 0 is 0
        penalty = xp.where(zero, 0.0, xp.sqrt(xp.where(zero, 1.0, squares)) / c)
    else:
        penalty = ((0.5 * squares) / c) / c  # overflows only when ½Σg² does
    return loss, xp.reshape(penalty, () if p.axes is None else (-1,))


# --------------------------------------------------------------------------------------------
# D3. virtual adversarial training
# --------------------------------------------------------------------------------------------

# φ(a) = e^{-a} - 1 + a = a² Σ_{n≥0} (-a)^n / (n+2)!, for |a| < ½: the terms to n = 15 leave a relative
# error below 1e-19 (½^16 · 2/18!)
_PHI_COEFFICIENTS = tuple((-1.0) ** n / math.factorial(n + 2) for n in range(16))
_PHI_SERIES_BOUND = 0.5


def _phi_series(xp, a):
    """φ(a) = e^{-a} - 1 + a for |a| < ½, by its Taylor series (Horner): no cancellation."""
    total = _PHI_COEFFICIENTS[-1]
    for c in reversed(_PHI_COEFFICIENTS[:-1]):
        total = c + a * total
    return a * a * total


def _softmax_kl(xp, backend, s, t):
    r"""KL(softmax(s) ‖ softmax(t)) over the last axis (s held constant by the caller), accurate also
    when it is tiny (VAT's power iteration evaluates it at ξ-small perturbations).

    With w_k = e^{s_k - max s}, P = Σ w, e_k = s_k - t_k, m = Σ w e / P and a_k = e_k - m:

        KL = log1p(C / P),   C = Σ_k w_k φ(a_k),   φ(a) = e^{-a} - 1 + a ≥ 0

    (Σ_k w_k e^{-e_k} = P·e^{lse(t) - lse(s)}; the rounding of m enters at second order). φ comes from its
    series for |a| < ½ and from e^{log w - a} - w + w·a otherwise; a class with p = 0 < q adds
    e^{t_k - max s + m}. Where a term would overflow, KL is large and the direct form
    m + lse(t) - lse(s) has no cancellation. Classes at -inf in both inputs drop out; p > 0 = q gives
    +inf; NaN or +inf logits, or a row without classes, give NaN.
    """
    live = s > _NEG_INF  # p_k > 0
    t_live = t > _NEG_INF
    top = _ops.masked_max(xp, backend, s)
    log_w = xp.where(live, s - top, _NEG_INF)
    w = xp.exp(log_w)
    total = xp.sum(w, axis=-1, keepdims=True)
    safe_total = xp.where(total > 0.0, total, 1.0)
    e = xp.where(live & t_live, s - t, 0.0)
    m = xp.sum(w * e, axis=-1, keepdims=True) / safe_total
    a = e - m
    small = xp.abs(a) < _PHI_SERIES_BOUND
    limit = math.log(float(xp.finfo(s.dtype).max)) - 2.0  # e^{limit}·C-many terms stay finite
    y_live = xp.where(live, log_w - a, 0.0)
    y_dead = xp.where(live | ~t_live, 0.0, t - top + m)
    term_live = xp.where(small, w * _phi_series(xp, xp.where(small, a, 0.0)),
                         xp.exp(xp.minimum(y_live, limit)) - w + w * a)
    terms = xp.where(live, term_live, xp.where(t_live, xp.exp(xp.minimum(y_dead, limit)), 0.0))
    series_form = xp.log1p(xp.sum(terms, axis=-1) / xp.squeeze(safe_total, axis=-1))
    huge = xp.any((live & ~small & (y_live >= limit)) | (~live & t_live & (y_dead >= limit)), axis=-1)
    direct = (xp.squeeze(m, axis=-1) + _ops.logsumexp(xp, backend, t)
              - xp.squeeze(top, axis=-1) - xp.log(xp.squeeze(safe_total, axis=-1)))
    kl = xp.where(huge, direct, series_form)
    infinite = xp.any(live & ~t_live, axis=-1)
    undefined = (xp.any(xp.isnan(s) | xp.isnan(t) | (s == math.inf) | (t == math.inf), axis=-1)
                 | ~xp.any(live, axis=-1) | ~xp.any(t_live, axis=-1))
    return xp.where(undefined, math.nan, xp.where(infinite, math.inf, kl))


def _per_example(xp, values):
    """``[B, ...] -> [B]``: the sum over every axis but the first."""
    if values.ndim == 1:
        return values
    return xp.sum(values, axis=tuple(range(1, values.ndim)))


def _divergence(xp, backend, divergence, batch: int):
    """``(clean, perturbed) -> [B]`` for a divergence name or callable."""
    if callable(divergence):
        def custom(clean, perturbed):
            return _output(xp, backend, divergence(clean, perturbed), "the divergence", shape=(batch,),
                           hint=" (one value per example)")

        return custom
    if not (isinstance(divergence, str) and divergence in _DIVERGENCES):
        raise ValueError("divergence must be 'kl', 'multilabel' or a callable (clean_logits, perturbed_logits) "
                         f"-> [B]; got {divergence!r}")

    def named(clean, perturbed):
        if clean.ndim < 2:
            raise ValueError(f"divergence={divergence!r} needs logits of shape [B, ..., C], got "
                             f"{tuple(clean.shape)}")
        if divergence == "kl":
            values = _softmax_kl(xp, backend, _ops.upcast(xp, clean), _ops.upcast(xp, perturbed))
        else:
            values = polyloss.multilabel_divergence(clean, perturbed, axis=-1)
        return _per_example(xp, values)

    return named


def _logits(xp, backend, logits_fn, z, batch: int, what: str = "logits_fn"):
    out = logits_fn(z)
    _output(xp, backend, out, what, shape=None)
    if out.ndim == 0 or not _checks.same_dims((out.shape[0],), (batch,)):
        raise ValueError(f"{what} must return logits with the leading (example) axis of x ({batch}), "
                         f"got shape {tuple(out.shape)}")
    return out


def vat_loss(logits_fn, x, *, divergence="kl", epsilon=1.0, xi=10.0, iterations=1, key=None, scope="example",
             where=None, noise=None, clean_logits=None):
    r"""Virtual adversarial loss per example: ``D(sg f(x), f(x + ε·r))``, with ``r`` the direction that
    ``iterations`` power-iteration steps from a Gaussian start make most sensitive.

    .. math::

        d \leftarrow \frac{u}{\lVert u\rVert},\ u \sim \mathcal N(0, I);\quad
        d \leftarrow \frac{\nabla_r D(f(x), f(x + r))|_{r = \xi d}}{\lVert\cdot\rVert}\ \ (\text{iterations times});
        \quad L_b = D\bigl(f(x)_b, f(x + \varepsilon d)_b\bigr)

    with ``f(x)`` (the clean logits) held constant and ``d`` normalised per example (Miyato) or over the
    whole array (``scope="global"``). The loss is differentiable with respect to the weights through the
    perturbed branch only, as in Miyato et al.'s code. ``iterations=0`` is Gaussian noise of norm ε per
    unit; ``epsilon=0`` gives ``D(f(x), f(x)) = 0``.

    Sources: Miyato et al. 2018 (arXiv:1704.03976, their code takerum/vat_tf: ξ = 1e-6, ε = 8 on
    CIFAR-10); kexue.fm/archives/7466 (ε = 1, ξ = 10, one iteration, the defaults here).

    Args:
      logits_fn: ``logits_fn(x) -> [B, ..., C]``, the model's logits as a function of what is perturbed.
      x: real floating array ``[B, ...]`` of torch, JAX or TensorFlow.
      divergence: ``"kl"``: KL(softmax(clean) ‖ softmax(perturbed)) over the last axis (Miyato);
        ``"multilabel"``: :func:`polyloss.multilabel_divergence` (for ZLPR / GlobalPointer heads);
        both summed over every axis but the first; or a callable ``(clean, perturbed) -> [B]``.
      epsilon: the radius, ``>= 0`` (a Python number or a 0-d array).
      xi: the finite-difference radius of the power iteration, ``> 0``.
      iterations: power-iteration steps, ``>= 0``.
      key: the random start: a JAX PRNG key (required with JAX: ``jax.random.key(seed)``, split a new one
        every step), a ``torch.Generator`` or None, an int seed, integer tensor, ``tf.random.Generator`` or
        None for TensorFlow.
      scope: ``"example"`` (default) or ``"global"``.
      where: optional boolean mask broadcastable to ``x``: positions that are not perturbed (padding).
      noise: optional explicit start (an array shaped like ``x``) instead of a random one; ``key`` is then
        not used.
      clean_logits: optional ``f(x)`` if you already computed it (saves a forward pass); held constant.

    Returns:
      ``[B]``, the divergence per example, in the compute dtype of the logits.

    >>> import torch, polyloss
    >>> x = torch.zeros(1, 2)
    >>> out = polyloss.vat_loss(lambda z: z, x, iterations=0, noise=torch.tensor([[3.0, 4.0]]))
    >>> round(float(out[0]), 7)               # r = (0.6, 0.8): KL(½,½ ‖ softmax(0.6, 0.8)) = log cosh 0.1
    0.0049917
    """
    xp, backend = _differentiable(x, "vat_loss")
    _callable(logits_fn, "logits_fn")
    epsilon = _magnitude(xp, backend, epsilon, "epsilon", x)
    xi = _magnitude(xp, backend, xi, "xi", x, positive=True)
    iterations = _count(iterations, "iterations", 0)
    if x.ndim == 0:
        raise ValueError("x must have a leading (example) axis, got a 0-d array")
    p = _prepare(xp, backend, x, scope=scope, where=where)
    batch = x.shape[0]
    divergence_of = _divergence(xp, backend, divergence, batch)
    compute = _ops.compute_dtype(xp, x.dtype)
    if noise is None:
        start = backend.random_normal(key, x, dtype=compute)
    else:
        start = backend.asarray(noise, like=x, dtype=compute, name="noise")
        _checks.require_same_shape(x, start, "x", "noise")
    if clean_logits is None:
        clean = _logits(xp, backend, logits_fn, x, batch)
    else:
        clean = _logits(xp, backend, lambda _: backend.asarray(clean_logits, like=x, name="clean_logits"), x, batch,
                        "clean_logits")
    clean = backend.stop_gradient(clean)
    if _is_zero(epsilon):
        return divergence_of(clean, _logits(xp, backend, logits_fn, x, batch))

    fixed = _Perturbed(xp, backend, backend.stop_gradient(x), p.where, p.axes)

    def sensitivity(r):
        return xp.sum(divergence_of(clean, _logits(xp, backend, logits_fn, fixed.x + r, batch)))

    value_and_grad = backend.value_and_grad_nested(sensitivity, 0, create_graph=False)
    d = _direction(p, start, "l2")
    for _ in range(iterations):
        probe = xi * d
        _, g = value_and_grad(probe if probe.dtype == x.dtype else xp.astype(probe, x.dtype))
        d = xp.where(_alive(p, d), _direction(p, g, "l2"), 0.0)  # a zero unit stays zero
    return divergence_of(clean, _logits(xp, backend, logits_fn, _shifted(p, epsilon * d), batch))

"""Reference (oracle) versions of the classification family (``docs/classification.md``): classification,
class imbalance, regularisers.

Plain NumPy float64 and Python ``math``, row by row, straight from the formulas of the contract; no
code is shared with the array-API core. Being obviously right (and accurate) is the goal, not speed.

Numerical conventions, so that the values are accurate to a few ulps for logits up to ±1e4 and far
beyond, and for losses close to 0:

* softplus ``sp(x) = log(1 + e^x)`` is ``max(x, 0) + log1p(e^{-|x|})``; ``-log σ(s) = sp(-s)``.
* ``σ(x)^γ`` is ``σ(x)**γ`` from an accurately computed ``σ`` (``exp(-γ·sp(-x))`` once ``σ`` is
  subnormal); ``γ = 0`` gives exactly 1, also at ``σ = 0``.
* ``log p`` is a max-shifted log-sum-exp, ``(s_k - m) - log1p(Σ_{j≠top} e^{s_j - m})`` (fsum);
  ``1 - p_k`` is ``Σ_{j≠k} p_j`` (fsum: no cancellation).
* the R-Drop divergence is ``½ Σ_k (p_a,k - p_b,k)·d_k`` with ``d_k = lp_a,k - lp_b,k`` computed from
  the differences of the logits, and ``p_a,k - p_b,k = p_b,k·expm1(d_k)``: every term is ≥ 0.
* a term whose weight is exactly 0 (a label 0 or 1, a removed class with no mass, λ = 0) is
  left out, so ``0·inf`` never turns into NaN; NaN inputs that take part give NaN.
* a ``+inf`` logit taking part in a softmax gives NaN (the softmax is undefined there).

Sources: Su Jianlin's posts on kexue.fm (https://kexue.fm/archives/N): 4733 (focal loss, softened
truncation), 4293 (hard truncation), 7615 (logit adjustment), 7708 (smoothed-F1 weighting),
7643 (flooding), 8496 (R-Drop), 8833 (squareplus); and the papers: Lin et al. 2017, "Focal Loss for
Dense Object Detection" (arXiv 1708.02002); Menon et al. 2020, "Long-tail learning via logit
adjustment" (arXiv 2007.07314); Leng et al. 2022, "PolyLoss" (arXiv 2204.12511); Ishida et al. 2020,
"Do We Need Zero Training Loss After Achieving Zero Training Error?" (flooding, arXiv 2002.08709);
Liang et al. 2021, "R-Drop" (arXiv 2106.14448); So et al. 2021, "Primer" (squareplus, arXiv 2109.08668).
Label smoothing follows the Keras / optax / torch convention ``(1 - ε)·t + ε/K``.
"""

import math

import numpy as np

from polyloss.reference import _common

__all__ = [
    "softmax_crossentropy",
    "sigmoid_crossentropy",
    "focal_loss",
    "hard_truncation_loss",
    "softened_truncation_loss",
    "logit_adjusted_crossentropy",
    "adjust_logits",
    "smoothed_f1_weighted_crossentropy",
    "poly1_crossentropy",
    "poly1_focal_loss",
    "flooding",
    "rdrop_divergence",
    "rdrop_loss",
    "squareplus",
]

_INF = math.inf
_NAN = math.nan
_TINY = 2.2250738585072014e-308  # the smallest normal float64


# ---------------------------------------------------------------------------------------------
# scalar helpers
# ---------------------------------------------------------------------------------------------


def _exp_sum(*terms):
    """e^{t_1 + t_2 + ...} for finite floats t_i, evaluated on the exact sum: hi = fsum (the exactly
    rounded sum), lo = the exactly rounded residual, e^{hi + lo} = e^{hi}·(1 + lo). This removes
    the error of rounding e.g. s_j - m before the exponential (|s_j - m| ulps, 100s at |s| ~ 100).
    """
    hi = math.fsum(terms)
    if not math.isfinite(hi):
        return math.exp(hi)
    lo = math.fsum(list(terms) + [-hi])
    e = math.exp(hi)
    return e + e * lo


def _softplus(x):
    """sp(x) = log(1 + e^x) = max(x, 0) + log1p(e^{-|x|}); sp(-inf) = 0, sp(inf) = inf."""
    if math.isnan(x):
        return _NAN
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid(x):
    """σ(x) to a few ulps (no overflow, no cancellation)."""
    if math.isnan(x):
        return _NAN
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _sigmoid_pow(x, gamma):
    """σ(x)^γ; exactly 1 for γ = 0 (also where σ(x) = 0)."""
    if gamma == 0.0:
        return 1.0
    sig = _sigmoid(x)
    if math.isnan(sig):
        return _NAN
    if sig >= _TINY:
        return sig**gamma
    return math.exp(-gamma * _softplus(-x))  # keeps e.g. σ(-1e4)^0.01 = e^{-100}


def _pow(q, gamma):
    """q^γ for q ≥ 0 with 0^0 = 1."""
    if gamma == 0.0:
        return 1.0
    return q**gamma


def _binary_term(weight, value):
    """weight·value, with weight 0 removing the term (so 0·inf = 0); NaN weight gives NaN."""
    if math.isnan(weight):
        return _NAN
    if weight == 0.0:
        return 0.0
    return weight * value


# ---------------------------------------------------------------------------------------------
# argument checks and conversions
# ---------------------------------------------------------------------------------------------


def _check_range(value, name, low, high, *, low_open=False):
    ok = (low < value if low_open else low <= value) and value <= high  # False for NaN
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must lie in {bracket}{low}, {high}], got {value!r}")


def _check_binary_label(t):
    if not (math.isnan(t) or 0.0 <= t <= 1.0):
        raise ValueError(f"labels must lie in [0, 1] (bool, 0/1 or soft), found {t!r}")


def _elementwise_inputs(logits, labels):
    """(logits, labels) as float64 arrays of one shape; binary labels checked to lie in [0, 1]."""
    logits = _common.real_array(logits, "logits")
    labels = _common.label_array(labels)
    if labels.shape != logits.shape:
        raise ValueError(f"labels has shape {labels.shape} but logits has shape {logits.shape}")
    for t in labels.ravel():
        _check_binary_label(float(t))
    return logits, labels


def _elementwise(fn, logits, labels):
    out = np.empty(logits.shape, dtype=np.float64)
    for index in np.ndindex(*logits.shape):
        out[index] = fn(float(logits[index]), float(labels[index]))
    return out


def _activation(activation):
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")
    return activation


def _no_where(where, activation="sigmoid"):
    if where is not None:
        raise ValueError(f"where is only accepted with activation='softmax', not {activation!r}")


class _Row:
    """One example of the softmax family: scores, validity, and its target."""

    __slots__ = ("scores", "valid", "label_id", "targets")

    def __init__(self, scores, valid, label_id, targets):
        self.scores = scores  # list of float, length C
        self.valid = valid  # list of bool: where is True and the logit is not -inf
        self.label_id = label_id  # int, or None for probability labels
        self.targets = targets  # list of float (probability labels), or None


def _class_rows(logits, labels, axis, where, *, ids_only=False, ignore_index=None):
    """Split a softmax-family input into rows; returns (rows, output shape, C).

    labels.ndim == logits.ndim - 1 -> integer class ids (shape = logits' shape without ``axis``);
    labels.ndim == logits.ndim     -> probability labels of the logits' exact shape, in [0, 1].
    """
    logits = _common.real_array(logits, "logits")
    ax = _common.single_axis(axis, logits.ndim)
    n_classes = logits.shape[ax]
    included = _common.where_array(where, logits.shape)
    s_rows, out_shape = _common.as_rows(logits, (ax,))
    w_rows, _ = _common.as_rows(included, (ax,))
    labels = np.asarray(labels)
    if ignore_index is not None and (
        isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer))
    ):
        raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
    if labels.ndim == logits.ndim - 1:
        ids = _common.class_ids(
            labels, shape=logits.shape, out_shape=out_shape, axis=axis, n_classes=n_classes, ignore_index=ignore_index
        )
        t_rows = [None] * len(ids)
    elif labels.ndim == logits.ndim and not ids_only:
        if labels.dtype.kind not in "biuf":
            raise TypeError(f"labels must be bool, integer or floating, got dtype {labels.dtype}")
        if labels.shape != logits.shape:
            raise ValueError(f"probability labels have shape {labels.shape} but logits have shape {logits.shape}")
        t_arr, _ = _common.as_rows(labels.astype(np.float64), (ax,))
        t_rows = [[float(t) for t in row] for row in t_arr]
        for t_row, w_row in zip(t_rows, w_rows):
            for t, keep in zip(t_row, w_row):
                if keep:
                    _check_binary_label(t)
        ids = [None] * len(t_rows)
    else:
        expected = "logits.ndim - 1 (integer class ids)" + ("" if ids_only else " or logits.ndim")
        raise ValueError(
            f"labels have shape {labels.shape}, logits have shape {logits.shape}: labels.ndim must be {expected}"
        )
    rows = []
    for s_row, w_row, y, t in zip(s_rows, w_rows, ids, t_rows):
        scores = [float(v) for v in s_row]
        valid = [bool(w) and v != -_INF for v, w in zip(scores, w_row)]
        rows.append(_Row(scores, valid, y, t))
    return rows, out_shape, n_classes


def _log_softmax(scores, valid):
    """lp_k = log softmax over the valid classes (-inf at removed ones), or None if a valid score
    is NaN or +inf (the row's loss is then NaN). Requires at least one valid class.

    lp_k = (s_k - m) - log1p(Σ_{j valid, j ≠ top} e^{s_j - m}),  m = s_top = max over valid s.
    """
    values = [s for s, v in zip(scores, valid) if v]
    if any(math.isnan(s) or s == _INF for s in values):
        return None
    m = max(values)
    top = next(k for k, (s, v) in enumerate(zip(scores, valid)) if v and s == m)
    rest = math.fsum(_exp_sum(s, -m) for k, (s, v) in enumerate(zip(scores, valid)) if v and k != top)
    log_z = math.log1p(rest)
    return [math.fsum([s, -m, -log_z]) if v else -_INF for s, v in zip(scores, valid)]


def _softmax_probs(scores, valid):
    """p_k = e^{s_k - m - log Z} on the exact exponent (0 at removed classes); same conditions as
    ``_log_softmax``."""
    values = [s for s, v in zip(scores, valid) if v]
    m = max(values)
    top = next(k for k, (s, v) in enumerate(zip(scores, valid)) if v and s == m)
    rest = math.fsum(_exp_sum(s, -m) for k, (s, v) in enumerate(zip(scores, valid)) if v and k != top)
    log_z = math.log1p(rest)
    return [_exp_sum(s, -m, -log_z) if v else 0.0 for s, v in zip(scores, valid)]


def _one_minus(probs, k):
    """1 - p_k as Σ_{j ≠ k} p_j (exactly rounded sum of positive terms: no cancellation)."""
    return math.fsum(p for j, p in enumerate(probs) if j != k)


def _smoothed_targets(row, label_smoothing):
    """Targets after label smoothing: (1-ε)·t_k + ε/K on valid classes, (1-ε)·t_k on removed ones,
    and the complements 1 - t'_k = (1-ε)(1-t_k) + ε(1 - 1/K) (valid classes, for PolyLoss)."""
    eps = label_smoothing
    n_valid = sum(row.valid)
    if row.label_id is not None:
        raw = [1.0 if k == row.label_id else 0.0 for k in range(len(row.scores))]
    else:
        raw = row.targets
    targets, complements = [], []
    for t, v in zip(raw, row.valid):
        if eps == 0.0:
            targets.append(t)
            complements.append(1.0 - t)
        elif v:
            targets.append((1.0 - eps) * t + eps / n_valid)
            complements.append((1.0 - eps) * (1.0 - t) + eps * (1.0 - 1.0 / n_valid))
        else:
            targets.append((1.0 - eps) * t)
            complements.append(_NAN)  # unused: p_k = 0 at a removed class
    return targets, complements


def _weighted_nll(targets, lp, valid):
    """Σ_k t_k·(-lp_k); t_k = 0 terms are dropped, t_k > 0 on a removed class gives +inf."""
    terms = []
    for t, log_p, v in zip(targets, lp, valid):
        if math.isnan(t):
            return _NAN
        if t == 0.0:
            continue
        terms.append(t * -log_p if v else _INF)
    return _common.fsum(terms)


def _check_smoothing(label_smoothing):
    eps = _common.number(label_smoothing, "label_smoothing")
    _check_range(eps, "label_smoothing", 0.0, 1.0)
    return eps


def _ignored(row, ignore_index):
    return ignore_index is not None and row.label_id is not None and row.label_id == ignore_index


def _per_example(values, out_shape):
    return np.array(values, dtype=np.float64).reshape(out_shape)


# ---------------------------------------------------------------------------------------------
# B1. softmax cross-entropy
# ---------------------------------------------------------------------------------------------


def _ce_row(row, eps):
    """Cross-entropy of one (non-ignored) row with label smoothing ε."""
    if not any(row.valid):
        return 0.0
    lp = _log_softmax(row.scores, row.valid)
    if lp is None:
        return _NAN
    targets, _ = _smoothed_targets(row, eps)
    return _weighted_nll(targets, lp, row.valid)


def softmax_crossentropy(logits, labels, *, axis=-1, label_smoothing=0.0, where=None, ignore_index=None):
    """Softmax cross-entropy, per example (reference).

    L = -Σ_k t'_k·log p_k,   p = softmax(s) over the valid classes,
    t'_k = (1 - ε)·t_k + ε/K on the K valid classes of the row, (1 - ε)·t_k on removed ones

    (class id y: t = one_hot(y)). Equivalently (1 - ε)·CE(t) + ε·mean_{valid k}(-log p_k), the
    Keras / optax / torch convention.

    Parameters
    ----------
    logits : array_like, real; classes on ``axis`` (an int).
    labels : array_like
        Integer class ids with the logits' shape without ``axis``, or probability labels (bool, 0/1
        or floats in [0, 1], need not sum to 1) with the logits' exact shape.
    label_smoothing : float in [0, 1]
    where : array_like of bool, broadcastable to ``logits``
        False classes are removed from the softmax, like -inf logits. A row with no valid class
        has loss 0; target mass > 0 on a removed class gives +inf (mass 0 contributes 0).
    ignore_index : int, optional
        Rows whose class id equals it have loss 0 (class-id labels only; no effect on probability
        labels).

    Returns
    -------
    numpy.ndarray of float64, the logits' shape without ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(softmax_crossentropy([[0.0, 0.0, 0.0]], [1]), 6)   # log 3
    array([1.098612])
    >>> softmax_crossentropy([[1e4, -1e4]], [1])   # 2e4 + log1p(e^{-2e4})
    array([20000.])
    """
    eps = _check_smoothing(label_smoothing)
    rows, out_shape, _ = _class_rows(logits, labels, axis, where, ignore_index=ignore_index)
    out = [0.0 if _ignored(row, ignore_index) else _ce_row(row, eps) for row in rows]
    return _per_example(out, out_shape)


# ---------------------------------------------------------------------------------------------
# B2. sigmoid cross-entropy
# ---------------------------------------------------------------------------------------------


def _sigmoid_ce(s, t):
    return _common.fsum([_binary_term(t, _softplus(-s)), _binary_term(1.0 - t, _softplus(s))])


def sigmoid_crossentropy(logits, labels):
    """Binary (sigmoid) cross-entropy, elementwise (reference).

    L = t·sp(-s) + (1 - t)·sp(s) = -t·log σ(s) - (1 - t)·log σ(-s),   sp(x) = log(1 + e^x)

    Labels: bool, 0/1 or soft in [0, 1], the logits' shape. A term with weight 0 is left out
    (so s = +inf with t = 1 gives 0, not NaN).

    Examples
    --------
    >>> float(sigmoid_crossentropy([0.0], [1])[0]) == float(np.log(2.0))
    True
    >>> sigmoid_crossentropy([1e4, -40.0], [0, 0])   # sp(1e4) = 1e4, sp(-40) = log1p(e^-40)
    array([1.00000000e+04, 4.24835426e-18])
    """
    logits, labels = _elementwise_inputs(logits, labels)
    return _elementwise(_sigmoid_ce, logits, labels)


# ---------------------------------------------------------------------------------------------
# B3. focal loss
# ---------------------------------------------------------------------------------------------


def _check_gamma(gamma, name="gamma"):
    gamma = _common.number(gamma, name)
    if not (gamma >= 0.0 and math.isfinite(gamma)):
        raise ValueError(f"{name} must be a finite number >= 0, got {gamma!r}")
    return gamma


def _sigmoid_alpha(alpha):
    """(a1, a0) for the positive and the negative term."""
    if alpha is None:
        return 1.0, 1.0
    a = _common.number(alpha, "alpha")
    _check_range(a, "alpha", 0.0, 1.0)
    return a, 1.0 - a


def _softmax_alpha(alpha, n_classes):
    """α_k for every class, as a list."""
    if alpha is None:
        return [1.0] * n_classes
    arr = np.asarray(alpha)
    if arr.ndim == 0:
        a = _common.number(alpha, "alpha")
        values = [a] * n_classes
    else:
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"alpha must be real, got dtype {arr.dtype}")
        if arr.shape != (n_classes,):
            raise ValueError(f"alpha has shape {arr.shape}; it must be a scalar or have shape ({n_classes},)")
        values = [float(a) for a in arr]
    for a in values:
        if not (a >= 0.0 and math.isfinite(a)):
            raise ValueError(f"alpha must be finite and >= 0, got {a!r}")
    return values


def _focal_sigmoid(s, t, gamma, a1, a0):
    return _common.fsum(
        [
            _binary_term(t * a1, _sigmoid_pow(-s, gamma) * _softplus(-s)),
            _binary_term((1.0 - t) * a0, _sigmoid_pow(s, gamma) * _softplus(s)),
        ]
    )


def _focal_softmax_row(row, gamma, alphas, poly_epsilon=None):
    """Σ_k t_k α_k (1 - p_k)^γ (-lp_k)  [+ ε Σ_k t_k (1 - p_k)^{γ+1} when poly_epsilon is given]."""
    if not any(row.valid):
        return 0.0
    lp = _log_softmax(row.scores, row.valid)
    if lp is None:
        return _NAN
    targets, _ = _smoothed_targets(row, 0.0)
    probs = _softmax_probs(row.scores, row.valid)
    focal, poly = [], []
    for k, (t, log_p, v) in enumerate(zip(targets, lp, row.valid)):
        if math.isnan(t):
            return _NAN
        if t == 0.0:
            continue
        q = _one_minus(probs, k) if v else 1.0  # 1 - p_k; p_k = 0 at a removed class
        weight = t * alphas[k]
        if weight != 0.0:
            focal.append(weight * _pow(q, gamma) * -log_p if v else _INF)
        if poly_epsilon is not None:
            poly.append(t * _pow(q, gamma + 1.0))
    value = _common.fsum(focal)
    if poly_epsilon is not None and poly_epsilon != 0.0:
        value += poly_epsilon * _common.fsum(poly)
    return value


def focal_loss(logits, labels, *, gamma=2.0, alpha=None, activation="sigmoid", axis=-1, where=None):
    """Focal loss, sigmoid (elementwise) or softmax (per example) (reference). Lin et al. 2017; kexue 4733.

    sigmoid:  L = t·a1·σ(-s)^γ·sp(-s) + (1 - t)·a0·σ(s)^γ·sp(s)
              (a1, a0) = (α, 1 - α) with ``alpha``, (1, 1) without; for a hard label this is
              -α_t (1 - p_t)^γ log p_t with p = σ(s). ``where`` is not accepted.
    softmax:  L = Σ_k t_k·α_k·(1 - p_k)^γ·(-log p_k),  p = softmax(s) over the valid classes
              (class ids or probability labels and ``where`` as in ``softmax_crossentropy``; no label
              smoothing). ``alpha``: None (α_k = 1), a scalar, or one value per class.

    γ >= 0; γ = 0 means (1 - p)^0 = 1 everywhere, so focal_loss(γ=0, alpha=None) is the
    cross-entropy. 1 - p_k is computed as Σ_{j≠k} p_j.

    Examples
    --------
    >>> np.round(focal_loss([2.0], [1], gamma=2.0), 6)    # σ(-2)^2·sp(-2)
    array([0.001804])
    """
    gamma = _check_gamma(gamma)
    if _activation(activation) == "sigmoid":
        _no_where(where)
        a1, a0 = _sigmoid_alpha(alpha)
        logits, labels = _elementwise_inputs(logits, labels)
        return _elementwise(lambda s, t: _focal_sigmoid(s, t, gamma, a1, a0), logits, labels)
    rows, out_shape, n_classes = _class_rows(logits, labels, axis, where)
    alphas = _softmax_alpha(alpha, n_classes)
    return _per_example([_focal_softmax_row(row, gamma, alphas) for row in rows], out_shape)


# ---------------------------------------------------------------------------------------------
# B4. hard and softened truncation
# ---------------------------------------------------------------------------------------------


def _check_m(m):
    m = _common.number(m, "m")
    _check_range(m, "m", 0.5, 1.0)
    return m


def _theta_sign(sign):
    """θ from a comparison result: +1 -> 1, 0 -> 1/2, -1 -> 0."""
    return {1: 1.0, 0: 0.5, -1: 0.0}[sign]


def _cmp(a, b):
    return (a > b) - (a < b)


def _hard_truncation_sigmoid(s, t, m, threshold):
    """λ·BCE with λ = 1 - θ(t - m)θ(p - m) - θ(1 - m - t)θ(1 - m - p), p = σ(s).

    p > m  <=>  s > log(m / (1 - m)) = threshold, and 1 - m - p > 0  <=>  s < -threshold; the
    comparisons are exact (equality only for m = 1/2, s = 0, or m = 1, s = ±inf). 1 - m is exact
    for m in [1/2, 1] (Sterbenz).
    """
    if math.isnan(s) or math.isnan(t):
        return _NAN
    one_minus_m = 1.0 - m
    lam = (
        1.0
        - _theta_sign(_cmp(t, m)) * _theta_sign(_cmp(s, threshold))
        - _theta_sign(_cmp(one_minus_m, t)) * _theta_sign(_cmp(-threshold, s))
    )
    if lam == 0.0:
        return 0.0
    return lam * _sigmoid_ce(s, t)


def _hard_truncation_softmax_row(row, m, log_ratio):
    """(1 - θ(p_y - m))·(-lp_y); p_y > m  <=>  log Σ_{j≠y} e^{s_j - s_y} < log((1 - m)/m)."""
    if not any(row.valid):
        return 0.0
    lp = _log_softmax(row.scores, row.valid)
    if lp is None:
        return _NAN
    y = row.label_id
    if not row.valid[y]:
        return _INF  # p_y = 0 < m
    s_y = row.scores[y]
    others = [s for k, (s, v) in enumerate(zip(row.scores, row.valid)) if v and k != y]
    if others:
        top = max(others)
        rest = list(others)
        rest.remove(top)
        log_r = (top - s_y) + math.log1p(math.fsum(_exp_sum(s, -top) for s in rest))
    else:
        log_r = -_INF  # p_y = 1
    factor = 1.0 - _theta_sign(_cmp(log_ratio, log_r))
    if factor == 0.0:
        return 0.0
    return factor * -lp[y]


def hard_truncation_loss(logits, labels, *, m=0.6, activation="sigmoid", axis=-1, where=None):
    """Cross-entropy with hard truncation, kexue 4293 / 4733 (reference).

    θ(x) = 1 for x > 0, 1/2 for x = 0, 0 for x < 0.

    sigmoid (elementwise, binary labels):
        λ = 1 - θ(t - m)·θ(p - m) - θ(1 - m - t)·θ(1 - m - p),  p = σ(s)
        L = λ·[t·sp(-s) + (1 - t)·sp(s)]
    softmax (per example, integer class ids only, ``where`` as in ``softmax_crossentropy``):
        L = (1 - θ(p_y - m))·(-log p_y)

    0.5 <= m <= 1 (m = 1: nothing is ever truncated for finite logits). p is compared with m
    exactly (through the logits, not through a rounded p): with m = 0.5 and s = 0, θ(0) = 1/2.

    Examples
    --------
    >>> hard_truncation_loss([0.0, 3.0, 3.0], [1, 1, 0], m=0.5)   # λ = 1/2, 0, 1
    array([0.34657359, 0.        , 3.04858735])
    """
    m = _check_m(m)
    if _activation(activation) == "sigmoid":
        _no_where(where)
        logits, labels = _elementwise_inputs(logits, labels)
        threshold = _INF if m == 1.0 else math.log(m / (1.0 - m))
        return _elementwise(lambda s, t: _hard_truncation_sigmoid(s, t, m, threshold), logits, labels)
    rows, out_shape, _ = _class_rows(logits, labels, axis, where, ids_only=True)
    log_ratio = -_INF if m == 1.0 else math.log((1.0 - m) / m)
    return _per_example([_hard_truncation_softmax_row(row, m, log_ratio) for row in rows], out_shape)


def softened_truncation_loss(logits, labels, *, k=1.0):
    """Softened truncation (θ(x) -> σ(k·x)), elementwise, kexue 4733 (reference).

    L = t·σ(-k·s)·sp(-s) + (1 - t)·σ(k·s)·sp(s),  k >= 0

    k = 1 is focal_loss(γ = 1, alpha=None); k = 0 is half the sigmoid cross-entropy.

    Examples
    --------
    >>> np.round(softened_truncation_loss([1.0], [1], k=1.0), 6)   # σ(-1)·sp(-1)
    array([0.084249])
    """
    k = _common.number(k, "k")
    if not (k >= 0.0 and math.isfinite(k)):
        raise ValueError(f"k must be a finite number >= 0, got {k!r}")
    logits, labels = _elementwise_inputs(logits, labels)

    def term(s, t):
        ks = 0.0 if k == 0.0 and not math.isnan(s) else k * s  # k = 0: σ(0) = 1/2 also at s = ±inf
        return _common.fsum(
            [
                _binary_term(t, _sigmoid(-ks) * _softplus(-s)),
                _binary_term(1.0 - t, _sigmoid(ks) * _softplus(s)),
            ]
        )

    return _elementwise(term, logits, labels)


# ---------------------------------------------------------------------------------------------
# B5. logit adjustment
# ---------------------------------------------------------------------------------------------


def _log_prior_shift(logits, prior, tau, axis, sign):
    """logits + sign·τ·log π, π broadcast along the class axis."""
    logits = _common.real_array(logits, "logits")
    ax = _common.single_axis(axis, logits.ndim)
    tau = _common.number(tau, "tau")
    if not math.isfinite(tau):
        raise ValueError(f"tau must be finite, got {tau!r}")
    prior = _common.real_array(prior, "prior")
    n_classes = logits.shape[ax]
    if prior.shape != (n_classes,):
        raise ValueError(f"prior has shape {prior.shape}, expected ({n_classes},) (the number of classes)")
    for p in prior:
        if not (p > 0.0 and math.isfinite(p)):
            raise ValueError(f"every prior entry must be finite and > 0, found {float(p)!r}")
    shift = [sign * tau * math.log(float(p)) for p in prior]
    out = np.empty(logits.shape, dtype=np.float64)
    for index in np.ndindex(*logits.shape):
        out[index] = float(logits[index]) + shift[index[ax]]
    return out


def logit_adjusted_crossentropy(
    logits, labels, prior, *, tau=1.0, axis=-1, label_smoothing=0.0, where=None, ignore_index=None
):
    """Logit-adjusted softmax cross-entropy, kexue 7615, Menon et al. arXiv 2007.07314 (reference).

    L = softmax_crossentropy(s + τ·log π, labels, ...)

    ``prior``: 1-D, length C, entries > 0 (need not sum to 1). A model trained with this loss gives
    balanced decisions from its raw logits (do not also apply ``adjust_logits``).

    Examples
    --------
    >>> np.round(logit_adjusted_crossentropy([[0.0, 0.0]], [0], [0.75, 0.25]), 6)   # -log 0.75
    array([0.287682])
    """
    adjusted = _log_prior_shift(logits, prior, tau, axis, +1.0)
    return softmax_crossentropy(
        adjusted, labels, axis=axis, label_smoothing=label_smoothing, where=where, ignore_index=ignore_index
    )


def adjust_logits(logits, prior, *, tau=1.0, axis=-1):
    """Post-hoc logit adjustment: s - τ·log π (same shape as the logits), kexue 7615 (reference).

    Examples
    --------
    >>> np.round(adjust_logits([[0.0, 0.0]], [0.5, 0.25]), 6)   # [log 2, log 4]
    array([[0.693147, 1.386294]])
    """
    return _log_prior_shift(logits, prior, tau, axis, -1.0)


# ---------------------------------------------------------------------------------------------
# B6. smoothed-F1 weighted cross-entropy
# ---------------------------------------------------------------------------------------------


def smoothed_f1_weighted_crossentropy(logits, labels, *, f1=None):
    """Cross-entropy re-weighted by the smoothed F1, elementwise, kexue 7708 (reference).

    F = 2·Σ t·p / Σ (t + p) over ALL elements (p = σ(s)), F = 0 when Σ (t + p) = 0; or F = ``f1``.
    L = t·(1 - F/2)·sp(-s) + (1 - t)·(F/2)·sp(s)

    The library holds F constant for the gradient; this reference only gives values (pass ``f1``
    to differentiate with F fixed).

    Examples
    --------
    >>> np.round(smoothed_f1_weighted_crossentropy([0.0, 0.0], [1, 0]), 6)   # F = 1/2: ¾·log 2, ¼·log 2
    array([0.51986 , 0.173287])
    """
    logits, labels = _elementwise_inputs(logits, labels)
    if f1 is None:
        s_list = [float(v) for v in logits.ravel()]
        t_list = [float(v) for v in labels.ravel()]
        probs = [_sigmoid(s) for s in s_list]
        numerator = _common.fsum([t * p for t, p in zip(t_list, probs)])
        denominator = _common.fsum(t_list + probs)
        if math.isnan(numerator) or math.isnan(denominator):
            f = _NAN
        elif denominator == 0.0:
            f = 0.0
        else:
            f = 2.0 * numerator / denominator
    else:
        f = _common.number(f1, "f1")
        _check_range(f, "f1", 0.0, 1.0)

    def term(s, t):
        if math.isnan(f):
            return _NAN
        return _common.fsum(
            [
                _binary_term(t * (1.0 - f / 2.0), _softplus(-s)),
                _binary_term((1.0 - t) * (f / 2.0), _softplus(s)),
            ]
        )

    return _elementwise(term, logits, labels)


# ---------------------------------------------------------------------------------------------
# B7. PolyLoss
# ---------------------------------------------------------------------------------------------


def _poly1_row(row, eps_ls, epsilon):
    """CE(t') + ε·Σ_{valid k} (1 - t'_k)·p_k   (= CE(t') + ε·(1 - Σ_k t'_k p_k), Σ p = 1)."""
    if not any(row.valid):
        return 0.0
    lp = _log_softmax(row.scores, row.valid)
    if lp is None:
        return _NAN
    targets, complements = _smoothed_targets(row, eps_ls)
    ce = _weighted_nll(targets, lp, row.valid)
    if epsilon == 0.0:
        return ce
    probs = _softmax_probs(row.scores, row.valid)
    poly = _common.fsum([c * p for c, p, v in zip(complements, probs, row.valid) if v])
    return ce + epsilon * poly


def poly1_crossentropy(logits, labels, *, epsilon=1.0, axis=-1, label_smoothing=0.0, where=None, ignore_index=None):
    """Poly-1 cross-entropy, Leng et al. arXiv 2204.12511 (reference).

    L = CE(t') + ε·(1 - Σ_k t'_k p_k)   (t' after label smoothing; one-hot: CE + ε·(1 - p_y))

    with 1 - Σ_k t'_k p_k evaluated as Σ_{valid k} (1 - t'_k)·p_k (no cancellation). Ignored rows
    and rows with no valid class give 0.

    Examples
    --------
    >>> np.round(poly1_crossentropy([[0.0, 0.0]], [0], epsilon=1.0), 6)   # log 2 + 1/2
    array([1.193147])
    """
    epsilon = _common.number(epsilon, "epsilon")
    eps_ls = _check_smoothing(label_smoothing)
    rows, out_shape, _ = _class_rows(logits, labels, axis, where, ignore_index=ignore_index)
    out = [0.0 if _ignored(row, ignore_index) else _poly1_row(row, eps_ls, epsilon) for row in rows]
    return _per_example(out, out_shape)


def poly1_focal_loss(logits, labels, *, epsilon=1.0, gamma=2.0, alpha=0.25, activation="sigmoid", axis=-1, where=None):
    """Poly-1 focal loss, Leng et al. arXiv 2204.12511 (reference).

    sigmoid:  focal_loss(sigmoid, γ, α) + ε·[t·σ(-s)^{γ+1} + (1 - t)·σ(s)^{γ+1}]
    softmax:  focal_loss(softmax, γ, α) + ε·Σ_k t_k·(1 - p_k)^{γ+1}

    (the ε term is not α-weighted).

    Examples
    --------
    >>> np.round(poly1_focal_loss([0.0], [1], epsilon=1.0, gamma=2.0, alpha=0.25), 6)  # ¼·¼·log 2 + ⅛
    array([0.168322])
    """
    epsilon = _common.number(epsilon, "epsilon")
    gamma = _check_gamma(gamma)
    if _activation(activation) == "sigmoid":
        _no_where(where)
        a1, a0 = _sigmoid_alpha(alpha)
        logits, labels = _elementwise_inputs(logits, labels)

        def term(s, t):
            focal = _focal_sigmoid(s, t, gamma, a1, a0)
            if epsilon == 0.0:
                return focal
            poly = _common.fsum(
                [
                    _binary_term(t, _sigmoid_pow(-s, gamma + 1.0)),
                    _binary_term(1.0 - t, _sigmoid_pow(s, gamma + 1.0)),
                ]
            )
            return focal + epsilon * poly

        return _elementwise(term, logits, labels)
    rows, out_shape, n_classes = _class_rows(logits, labels, axis, where)
    alphas = _softmax_alpha(alpha, n_classes)
    return _per_example([_focal_softmax_row(row, gamma, alphas, epsilon) for row in rows], out_shape)


# ---------------------------------------------------------------------------------------------
# B8. flooding
# ---------------------------------------------------------------------------------------------


def flooding(loss, level, *, where=None):
    """Flooding, Ishida et al. 2020; kexue 7643 (reference).

    L̄ = mean of ``loss`` over its entries (those where ``where`` is True; 0 if none);
    returns ``|L̄ - b| + b`` (b = ``level`` >= 0), i.e. L̄ when L̄ >= b and 2b - L̄ below the level.
    It acts on the batch mean, not per example.

    Returns
    -------
    numpy.ndarray, float64, 0-d.

    Examples
    --------
    >>> float(flooding([0.1, 0.3], 0.5)), float(flooding([0.5, 0.9], 0.5))
    (0.8, 0.7)
    """
    loss = _common.real_array(loss, "loss")
    b = _common.number(level, "level")
    if not (b >= 0.0 and math.isfinite(b)):
        raise ValueError(f"level must be a finite number >= 0, got {b!r}")
    keep = _common.where_array(where, loss.shape, against="loss")
    values = [float(v) for v, k in zip(loss.ravel(), keep.ravel()) if k]
    mean = _common.fsum(values) / len(values) if values else 0.0
    if math.isnan(mean):
        return np.asarray(_NAN, dtype=np.float64)
    return np.asarray(mean if mean >= b else 2.0 * b - mean, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# B9. R-Drop
# ---------------------------------------------------------------------------------------------


def _rdrop_row(a, b, keep):
    """½ Σ_k (p_a,k - p_b,k)(lp_a,k - lp_b,k) over the classes valid in both rows."""
    valid_a = [w and s != -_INF for s, w in zip(a, keep)]
    valid_b = [w and s != -_INF for s, w in zip(b, keep)]
    if any(va != vb for va, vb in zip(valid_a, valid_b)):
        if any(math.isnan(s) for s, w in zip(a + b, keep + keep) if w):
            return _NAN
        return _INF  # a class with p > 0 on one side and p = 0 on the other
    valid = valid_a
    if not any(valid):
        return 0.0
    if any(math.isnan(s) or s == _INF for s, v in zip(a + b, valid + valid) if v):
        return _NAN
    idx = [k for k, v in enumerate(valid) if v]
    ma = max(a[k] for k in idx)
    mb = max(b[k] for k in idx)
    lza = math.log(math.fsum(_exp_sum(a[k], -ma) for k in idx))  # log Σ e^{a_k - ma}, in [0, log C]
    lzb = math.log(math.fsum(_exp_sum(b[k], -mb) for k in idx))
    pa = [_exp_sum(a[k], -ma, -lza) for k in idx]
    pb = [_exp_sum(b[k], -mb, -lzb) for k in idx]
    # δ_k = (a_k - ma) - (b_k - mb), exactly rounded (fsum); then
    # Δ = lza - lzb = log Σ_j p_b,j e^{δ_j} = log1p(Σ_j (p_b,j e^{δ_j} - p_b,j)), each term without
    # cancellation: p_b,j·expm1(δ_j) for small δ_j, e^{a_j - ma - lzb} - p_b,j otherwise
    delta = [math.fsum([a[k], -b[k], -ma, mb]) for k in idx]
    terms = []
    for k, p, d in zip(idx, pb, delta):
        terms.append(p * math.expm1(d) if abs(d) <= 1.0 else _exp_sum(a[k], -ma, -lzb) - p)
    shift = math.log1p(math.fsum(terms))
    out = []
    for k, p_a, p_b in zip(idx, pa, pb):
        d = math.fsum([a[k], -b[k], -ma, mb, -shift])  # lp_a,k - lp_b,k
        if d >= 0.0:
            gap = p_a * -math.expm1(-d)  # p_a (1 - e^{-d}) = p_a - p_b
        else:
            gap = p_b * math.expm1(d)  # p_b (e^{d} - 1) = p_a - p_b
        out.append(gap * d)  # >= 0
    return 0.5 * math.fsum(out)


def rdrop_divergence(logits_a, logits_b, *, axis=-1, where=None):
    """R-Drop divergence, per example: kexue 8496, arXiv 2106.14448 (reference).

    D = ½·[KL(p_a‖p_b) + KL(p_b‖p_a)] = ½·Σ_k (p_a,k - p_b,k)(log p_a,k - log p_b,k)

    over the valid classes (p = softmax over them). A class that is -inf (or where-False) in both
    inputs is dropped; -inf in one input only gives +inf. A row with no valid class gives 0.
    Each term is evaluated as p_b,k·d_k·expm1(d_k) ≥ 0 with d_k = log p_a,k - log p_b,k, d_k
    computed from the logit differences (accurate for nearly equal inputs).

    Examples
    --------
    >>> np.round(rdrop_divergence([[0.0, 0.0]], [[np.log(3.0), 0.0]]), 6)   # ½·¼·(log 1.5 + log 2)
    array([0.137327])
    """
    a = _common.real_array(logits_a, "logits_a")
    b = _common.real_array(logits_b, "logits_b")
    if a.shape != b.shape:
        raise ValueError(f"logits_a has shape {a.shape} but logits_b has shape {b.shape}")
    ax = _common.single_axis(axis, a.ndim)
    keep = _common.where_array(where, a.shape, against="logits_a")
    a_rows, out_shape = _common.as_rows(a, (ax,))
    b_rows, _ = _common.as_rows(b, (ax,))
    w_rows, _ = _common.as_rows(keep, (ax,))
    out = [
        _rdrop_row([float(v) for v in ra], [float(v) for v in rb], [bool(w) for w in rw])
        for ra, rb, rw in zip(a_rows, b_rows, w_rows)
    ]
    return _per_example(out, out_shape)


def rdrop_loss(logits_a, logits_b, labels, *, alpha=4.0, axis=-1, label_smoothing=0.0, where=None, ignore_index=None):
    """R-Drop training loss, per example: kexue 8496, arXiv 2106.14448 (reference).

    L = CE(s_a, t) + CE(s_b, t) + α·rdrop_divergence(s_a, s_b)

    (cross-entropies as in ``softmax_crossentropy``, with the same smoothing / where); rows whose
    class id equals ``ignore_index`` give 0. Su's Keras code returns half of this; the official
    code applies the CE to one pass only.

    Examples
    --------
    >>> np.round(rdrop_loss([[0.0, 0.0]], [[0.0, 0.0]], [1], alpha=4.0), 6)   # 2·log 2
    array([1.386294])
    """
    alpha = _common.number(alpha, "alpha")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha!r}")
    ce_a = softmax_crossentropy(
        logits_a, labels, axis=axis, label_smoothing=label_smoothing, where=where, ignore_index=ignore_index
    )
    ce_b = softmax_crossentropy(
        logits_b, labels, axis=axis, label_smoothing=label_smoothing, where=where, ignore_index=ignore_index
    )
    div = rdrop_divergence(logits_a, logits_b, axis=axis, where=where)
    ignored = np.zeros(ce_a.shape, dtype=bool)
    labels = np.asarray(labels)
    if ignore_index is not None and labels.ndim == np.ndim(logits_a) - 1:
        ignored = labels == ignore_index
    out = np.empty(ce_a.shape, dtype=np.float64)
    for index in np.ndindex(*ce_a.shape):
        if ignored[index]:
            out[index] = 0.0
            continue
        terms = [float(ce_a[index]), float(ce_b[index])]
        if alpha != 0.0:
            terms.append(alpha * float(div[index]))
        out[index] = _common.fsum(terms)
    return out


# ---------------------------------------------------------------------------------------------
# B10. squareplus
# ---------------------------------------------------------------------------------------------


def _squareplus(x, b, root_b):
    if math.isnan(x):
        return _NAN
    if x == _INF:
        return _INF
    if x == -_INF:
        return 0.0
    h = math.hypot(x, root_b)  # sqrt(x² + b) without overflowing x²
    if x >= 0.0:
        return x / 2.0 + h / 2.0
    return (b / 4.0) / (h / 2.0 - x / 2.0)  # = b / (2 (sqrt(x² + b) - x)), no cancellation


def squareplus(x, *, b=4.0):
    """Squareplus, elementwise, kexue 8833 (So et al., Primer, arXiv 2109.08668) (reference).

    squareplus(x) = (x + sqrt(x² + b)) / 2 = b / (2·(sqrt(x² + b) - x)),  b > 0

    (the second form for x < 0). b = 4 is the Keras / JAX default; b >= 4·ln²2 makes it >= softplus.

    Examples
    --------
    >>> squareplus([0.0, 1e30, -1e30], b=4.0)
    array([1.e+00, 1.e+30, 1.e-30])
    """
    x = _common.real_array(x, "x")
    b = _common.number(b, "b")
    if not (b > 0.0 and math.isfinite(b)):
        raise ValueError(f"b must be a finite number > 0, got {b!r}")
    root_b = math.sqrt(b)
    out = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        out[index] = _squareplus(float(x[index]), b, root_b)
    return out

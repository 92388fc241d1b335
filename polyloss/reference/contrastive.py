"""Reference (oracle) versions of the contrastive family (``docs/contrastive.md``): contrastive, similarity
and margin losses.

Plain NumPy float64 and Python ``math``, row by row and pair by pair, straight from the formulas;
no code is shared with the array-API core. Being obviously right (and accurate) is the goal, not
speed: use these on test-sized arrays.

Every loss here has the form ``log(1 + Σ_k e^{q_k})`` (or ``log Σ_k e^{q_k}``) with exponents
``q_k`` that are differences of scores. Numerical conventions, so that the values are accurate to a
few ulps for scores up to ±1e4 and far beyond, and for losses close to 0:

* every exponent that is a polynomial in the inputs (``s_i - s_t``, ``scale·(c_i - c_t + m)``,
  ``γ·(s_i - s_j + m)``, the Circle-loss exponent, ...) is evaluated exactly in rational arithmetic
  (``fractions.Fraction``) and rounded once; ``e^q`` is then ``e^{hi}·(1 + lo)`` with
  ``q = hi + lo``;
* ``log(1 + Σ e^q)`` factors out the largest exponent ``M > 0``: ``M + log1p(e^{-M} + Σ' e^{q-M})``
  (``math.fsum``), and is ``log1p(Σ e^q)`` when every ``q <= 0``;
* the ArcFace target ``cos(θ + m)`` is ``c·cos m - sqrt((1 - c)(1 + c))·sin m``.

Conventions shared by all functions:

* scores have the classes / candidates on ``axis`` (an int); the result drops that axis;
* ``where`` (bool, broadcastable to the scores): False removes the entry from every sum; a
  ``-inf`` score removes it too. Removed entries never produce NaN, whatever their score;
* NaN in a participating entry gives NaN; a row with no valid entry gives 0;
* softmax-type losses (``infonce``, ``flatnce``, ``am_softmax``, ``arcface``): a ``+inf``
  participating score gives NaN (the softmax is undefined there, as in the section-B reference);
  the target on a removed entry gives ``+inf`` (``-log 0``);
* pairwise losses (``cosent_loss``, ``unified_pairwise_loss``, ``circle_loss``): the exponent of
  each pair is evaluated in IEEE arithmetic when a score is ``+inf`` (``+inf`` exponent: loss
  ``+inf``; ``-inf``: the pair adds 0; ``inf - inf``: NaN); a zero weight (Circle loss
  ``α_p = 0``) leaves its term out, so ``0·inf`` never appears.

Sources: Su Jianlin's posts on kexue.fm (https://kexue.fm/archives/N): 8348 (SimCSE), 8586
(FlatNCE), 5743 (AM-Softmax), 8847 (CoSENT), 7359 (the unified pairwise form); and the papers:
van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding" (InfoNCE,
arXiv 1807.03748); Gao et al. 2021, "SimCSE" (arXiv 2104.08821); Chen et al. 2021, "Simpler,
Faster, Stronger: Breaking The log-K Curse On Contrastive Learners With FlatNCE" (arXiv
2107.01152); Wang et al. 2018, "Additive Margin Softmax for Face Verification" (arXiv 1801.05599);
Deng et al. 2019, "ArcFace" (arXiv 1801.07698); Sun et al. 2020, "Circle Loss" (arXiv 2002.10857).
"""

import math
from fractions import Fraction

import numpy as np

from polyloss.reference import _common

__all__ = [
    "infonce",
    "infonce_from_embeddings",
    "flatnce",
    "am_softmax",
    "arcface",
    "cosent_loss",
    "unified_pairwise_loss",
    "circle_loss",
]

_INF = math.inf
_NAN = math.nan


# ---------------------------------------------------------------------------------------------
# exact exponents and log-sum-exp
# ---------------------------------------------------------------------------------------------


def _q(x):
    """A finite float (or Fraction) as an exact Fraction."""
    return x if isinstance(x, Fraction) else Fraction(x)


def _split(q):
    """A Fraction q as (hi, lo): hi = q rounded to float (±inf on overflow), lo = q - hi rounded."""
    try:
        hi = float(q)
    except OverflowError:
        return (_INF if q > 0 else -_INF), 0.0
    if math.isinf(hi):
        return hi, 0.0
    return hi, float(q - Fraction(hi))


def _exp(q):
    """e^q for an exact exponent q <= 0 (a Fraction): e^{hi}·(1 + lo), q = hi + lo."""
    hi, lo = _split(q)
    e = math.exp(hi)
    return e + e * lo


def _nonfinite(exponents):
    """Handle the non-Fraction exponents (IEEE floats ±inf / NaN) of a log-sum-exp.

    Returns (result or None, the finite exponents): NaN if any is NaN, +inf if any is +inf, and
    ``-inf`` exponents are dropped (their term is 0).
    """
    finite = []
    for q in exponents:
        if isinstance(q, Fraction):
            finite.append(q)
        elif math.isnan(q):
            return _NAN, None
        elif q == _INF:
            return _INF, None
        elif q == -_INF:
            continue
        else:
            finite.append(Fraction(q))
    return None, finite


def _log1p_sum_exp(exponents):
    """log(1 + Σ_k e^{q_k}) for exact exponents q_k (Fractions; IEEE ±inf / NaN allowed).

    M = max q_k.  M <= 0:  log1p(Σ e^{q_k}).
                  M > 0:   M + log1p(e^{-M} + Σ_{k ≠ top} e^{q_k - M})   (M added exactly).
    No exponents give 0.
    """
    special, qs = _nonfinite(exponents)
    if special is not None:
        return special
    if not qs:
        return 0.0
    top = max(range(len(qs)), key=lambda k: qs[k])
    m = qs[top]
    if m <= 0:
        return math.log1p(math.fsum(_exp(q) for q in qs))
    rest = [_exp(-m)] + [_exp(q - m) for k, q in enumerate(qs) if k != top]
    hi, lo = _split(m)
    if math.isinf(hi):
        return _INF
    return math.fsum([hi, lo, math.log1p(math.fsum(rest))])


def _log_sum_exp(exponents):
    """log Σ_k e^{q_k} for exact exponents (Fractions): M + log1p(Σ_{k ≠ top} e^{q_k - M}).

    Requires at least one exponent, all finite.
    """
    qs = [_q(q) for q in exponents]
    top = max(range(len(qs)), key=lambda k: qs[k])
    m = qs[top]
    rest = [_exp(q - m) for k, q in enumerate(qs) if k != top]
    hi, lo = _split(m)
    if math.isinf(hi):
        return hi
    return math.fsum([hi, lo, math.log1p(math.fsum(rest))])


# ---------------------------------------------------------------------------------------------
# argument checks and conversions
# ---------------------------------------------------------------------------------------------


def _finite(value, name):
    value = _common.number(value, name)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _positive(value, name):
    value = _common.number(value, name)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


class _Row:
    """One row: its scores (floats), validity (where True and not -inf) and labels."""

    __slots__ = ("scores", "valid", "target", "positive")

    def __init__(self, scores, valid, target, positive):
        self.scores = scores  # list of float, length C
        self.valid = valid  # list of bool
        self.target = target  # int class id (or None for multi-hot labels)
        self.positive = positive  # list of bool: the label is 1


def _rows(scores, labels, axis, where, *, name, labels_name, label_kinds):
    """Split scores (+ labels, where) into rows; returns (rows, output shape).

    label_kinds: "ids" (class ids only), "onehot" (class ids or one-hot rows), "multihot" (class ids
    or 0/1 rows with any number of ones). Labels are checked on the whole row (also where False).
    """
    scores = _common.real_array(scores, name)
    ax = _common.single_axis(axis, scores.ndim, name)
    n = scores.shape[ax]
    keep = _common.where_array(where, scores.shape, against=name)
    s_rows, out_shape = _common.as_rows(scores, (ax,))
    w_rows, _ = _common.as_rows(keep, (ax,))
    labels = np.asarray(labels)
    if labels.ndim == scores.ndim - 1:
        targets = _common.class_ids(
            labels, shape=scores.shape, out_shape=out_shape, axis=axis, n_classes=n, name=name, labels_name=labels_name
        )
        positives = [[k == y for k in range(n)] for y in targets]
    elif labels.ndim == scores.ndim and label_kinds != "ids":
        if labels.dtype.kind not in "biuf":
            raise TypeError(f"{labels_name} must be bool, integer or floating, got dtype {labels.dtype}")
        if labels.shape != scores.shape:
            raise ValueError(f"{labels_name} have shape {labels.shape} but {name} have shape {scores.shape}")
        l_rows, _ = _common.as_rows(labels.astype(np.float64), (ax,))
        positives, targets = [], []
        for l_row in l_rows:
            row = [float(t) for t in l_row]
            for t in row:
                if t not in (0.0, 1.0):
                    raise ValueError(f"{labels_name} must be 0/1 (bool, int or float), found {t!r}")
            ones = [k for k, t in enumerate(row) if t == 1.0]
            if label_kinds == "onehot":
                if len(ones) != 1:
                    raise ValueError(
                        f"one-hot {labels_name} must have exactly one 1 per row, found a row with {len(ones)}"
                    )
                targets.append(ones[0])
            else:
                targets.append(None)
            positives.append([t == 1.0 for t in row])
    else:
        expected = f"{name}.ndim - 1 (integer class ids)"
        if label_kinds != "ids":
            expected += f" or {name}.ndim (0/1 rows)"
        raise ValueError(
            f"{labels_name} have shape {labels.shape}, {name} have shape {scores.shape}: "
            f"{labels_name}.ndim must be {expected}"
        )
    rows = []
    for s_row, w_row, y, pos in zip(s_rows, w_rows, targets, positives):
        values = [float(v) for v in s_row]
        valid = [bool(w) and v != -_INF for v, w in zip(values, w_row)]
        rows.append(_Row(values, valid, y, pos))
    return rows, out_shape


def _per_example(values, out_shape):
    return np.array(values, dtype=np.float64).reshape(out_shape)


def _softmax_status(row):
    """The value of a softmax-type row that needs no computation, or None.

    no valid entry -> 0; NaN or +inf in a valid entry -> NaN; the target removed -> +inf.
    """
    if not any(row.valid):
        return 0.0
    if any(math.isnan(s) or s == _INF for s, v in zip(row.scores, row.valid) if v):
        return _NAN
    if not row.valid[row.target]:
        return _INF
    return None


def _softmax_ce(row, exponent):
    """lse_{valid}(z) - z_t = log(1 + Σ_{i ≠ t, valid} e^{z_i - z_t}); exponent(i) = z_i - z_t exactly."""
    status = _softmax_status(row)
    if status is not None:
        return status
    t = row.target
    return _log1p_sum_exp([exponent(i) for i, v in enumerate(row.valid) if v and i != t])


# ---------------------------------------------------------------------------------------------
# C1. InfoNCE
# ---------------------------------------------------------------------------------------------


def _infonce_row(row):
    s_t = row.scores[row.target]
    return _softmax_ce(row, lambda i: _q(row.scores[i]) - _q(s_t))


def infonce(scores, positive_index, *, axis=-1, where=None):
    """InfoNCE: softmax cross-entropy of the positive among the candidates (reference).

    L = -log softmax(s)_t = lse_{valid i}(s_i) - s_t = log(1 + Σ_{i ≠ t, valid} e^{s_i - s_t})

    (van den Oord et al. 2018, arXiv 1807.03748; ``docs/contrastive.md``). ``positive_index``: integer class ids,
    the scores' shape without ``axis``. ``where`` False (or a ``-inf`` score) removes a candidate.
    A row with no valid candidate gives 0; the positive on a removed entry gives ``+inf``; NaN or
    ``+inf`` in a valid entry gives NaN.

    Returns
    -------
    numpy.ndarray of float64, the scores' shape without ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(infonce([[0.0, 0.0, 0.0]], [1]), 6)   # log 3
    array([1.098612])
    >>> infonce([[1e4, -1e4]], [1])   # 2e4 + log1p(e^{-2e4})
    array([20000.])
    """
    rows, out_shape = _rows(
        scores, positive_index, axis, where, name="scores", labels_name="positive_index", label_kinds="ids"
    )
    return _per_example([_infonce_row(row) for row in rows], out_shape)


def _matrix(x, name):
    """A 2-D real array as (list of rows of floats, shape)."""
    x = _common.real_array(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, dim], got shape {x.shape}")
    return [[float(v) for v in row] for row in x], x.shape


def _to_float(q):
    """A Fraction rounded to float, ±inf when it overflows."""
    try:
        return float(q)
    except OverflowError:
        return _INF if q > 0 else -_INF


def _similarity(u, nu, v, nv, tau):
    """<u/|u|, v/|v|> / τ (or <u, v> / τ when the norms are None); a zero row is the zero vector.

    Finite inputs: the exact dot product (Fraction) divided by the two norms and τ, rounded once
    (0 when a norm is 0). Otherwise the IEEE sum of the products of the normalised entries, over τ
    (NaN / inf propagate; the zero vector times NaN is NaN).
    """
    if all(math.isfinite(x) for x in u) and all(math.isfinite(y) for y in v):
        dot = sum((Fraction(x) * Fraction(y) for x, y in zip(u, v)), Fraction(0))
        if nu is None:
            return _to_float(dot / Fraction(tau))
        if nu == 0.0 or nv == 0.0:
            return 0.0
        return _to_float(dot / (Fraction(nu) * Fraction(nv) * Fraction(tau)))
    if nu is not None:
        u = u if nu == 0.0 else [x / nu for x in u]
        v = v if nv == 0.0 else [y / nv for y in v]
    return _common.fsum([x * y for x, y in zip(u, v)]) / tau


def _norms(rows, normalize):
    """The L2 norm of every row (math.hypot: no overflow), or None without normalize."""
    if not normalize:
        return [None] * len(rows)
    return [math.hypot(*row) for row in rows]


def infonce_from_embeddings(a, b=None, *, temperature=0.05, pairing="diagonal", normalize=True):
    """In-batch InfoNCE from embeddings, per row of ``a`` (reference, ``docs/contrastive.md``); SimCSE: kexue 8348.

    ``normalize=True``: every row is divided by its L2 norm (a zero row stays the zero vector,
    so its cosine with everything is 0); ``normalize=False``: raw dot products.

    ``pairing="diagonal"``: ``a [B, D]``, ``b [N, D]``, N >= B;
        S_ij = <â_i, b̂_j> / τ (j = 0..N-1),   L_i = lse_j S_ij - S_ii.   Output [B].
    ``pairing="simcse"`` (``b`` None): ``a [2M, D]``, rows (2k, 2k+1) encode one sentence twice;
        S_ij = <â_i, â_j> / τ for j ≠ i (the self-similarity is removed, not masked),
        L_i = lse_{j ≠ i} S_ij - S_{i, i^1}.   Output [2M].

    τ = ``temperature`` > 0 (0.05: scale 20, as in SimCSE). Each S_ij is computed as an exact dot
    product divided by the two norms and τ (rounded once); the loss of a row is ``infonce`` of that row of S.

    Examples
    --------
    >>> e = np.eye(3)
    >>> np.round(infonce_from_embeddings(e[:2], e, temperature=1.0), 6)   # log(e + 2) - 1
    array([0.551445, 0.551445])
    >>> np.round(infonce_from_embeddings(np.repeat(e[:2], 2, axis=0), pairing="simcse", temperature=1.0), 6)
    array([0.551445, 0.551445, 0.551445, 0.551445])
    """
    tau = _positive(temperature, "temperature")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    a_rows, a_shape = _matrix(a, "a")
    n_a = a_shape[0]
    if pairing == "diagonal":
        if b is None:
            raise ValueError("pairing='diagonal' needs b (the candidates, shape [N, D] with N >= B)")
        b_rows, b_shape = _matrix(b, "b")
        if a_shape[1] != b_shape[1]:
            raise ValueError(f"a has shape {a_shape} and b has shape {b_shape}: the dims differ")
        if b_shape[0] < n_a:
            raise ValueError(f"a has shape {a_shape} and b has shape {b_shape}: pairing='diagonal' needs N >= B")
    elif pairing == "simcse":
        if b is not None:
            raise ValueError("pairing='simcse' takes a single batch a (b must be None)")
        if n_a % 2:
            raise ValueError(f"pairing='simcse' needs an even number of rows in a, got shape {a_shape}")
        b_rows = a_rows
    else:
        raise ValueError(f"pairing must be 'diagonal' or 'simcse', got {pairing!r}")
    n_b = len(b_rows)
    a_norms = _norms(a_rows, bool(normalize))
    b_norms = _norms(b_rows, bool(normalize))
    out = []
    for i in range(n_a):
        sims = [_similarity(a_rows[i], a_norms[i], b_rows[j], b_norms[j], tau) for j in range(n_b)]
        if pairing == "diagonal":
            row = _Row(sims, [s != -_INF for s in sims], i, None)
        else:
            row = _Row(sims, [j != i and s != -_INF for j, s in enumerate(sims)], i ^ 1, None)
        out.append(_infonce_row(row))
    return np.array(out, dtype=np.float64).reshape(n_a)


# ---------------------------------------------------------------------------------------------
# C2. FlatNCE
# ---------------------------------------------------------------------------------------------


def _flatnce_row(row, form):
    status = _softmax_status(row)
    if status is not None:
        return status
    t = row.target
    negatives = [i for i, v in enumerate(row.valid) if v and i != t]
    if not negatives:
        return 0.0
    if form == "paper":
        return 1.0  # ξ / sg(ξ) with 0 < ξ < inf
    s_t = _q(row.scores[t])
    return _log_sum_exp([_q(row.scores[i]) - s_t for i in negatives])


def flatnce(scores, positive_index, *, form="log", axis=-1, where=None):
    """FlatNCE, per row: kexue 8586, Chen et al. arXiv 2107.01152 (reference).

    ξ = Σ_{i ≠ t, valid} e^{s_i - s_t}
    form="log" (Su):      L = log ξ = lse_{i ≠ t, valid}(s_i) - s_t   (can be negative)
    form="paper":         L = ξ / sg(ξ), whose value is exactly 1 (the gradient is ∇ log ξ)

    A row whose only valid entry is the positive (no negatives) or with no valid entry gives 0
    (both forms); the positive on a removed entry gives ``+inf`` (both forms); NaN or ``+inf`` in a
    valid entry gives NaN. ``infonce = log(1 + e^{flatnce_log})``.

    Examples
    --------
    >>> np.round(flatnce([[0.0, 0.0, 0.0]], [0]), 6)   # log 2
    array([0.693147])
    >>> flatnce([[0.0, 0.0, 0.0]], [0], form="paper")
    array([1.])
    """
    if form not in ("log", "paper"):
        raise ValueError(f"form must be 'log' or 'paper', got {form!r}")
    rows, out_shape = _rows(
        scores, positive_index, axis, where, name="scores", labels_name="positive_index", label_kinds="ids"
    )
    return _per_example([_flatnce_row(row, form) for row in rows], out_shape)


# ---------------------------------------------------------------------------------------------
# C3. AM-Softmax and ArcFace
# ---------------------------------------------------------------------------------------------


def am_softmax(cosines, labels, *, scale=30.0, margin=0.35, axis=-1, where=None):
    """Additive-margin softmax, per example: kexue 5743, Wang et al. arXiv 1801.05599 (reference).

    z_t = scale·(c_t - margin),  z_i = scale·c_i (i ≠ t),
    L = lse_{valid}(z) - z_t = log(1 + Σ_{i ≠ t, valid} e^{scale·(c_i - c_t + margin)})

    ``labels``: integer class ids (the cosines' shape without ``axis``) or one-hot rows (the
    cosines' shape, bool / int / float 0/1, exactly one 1 per row). The cosines are used as given
    (no clipping). ``scale`` > 0 and ``margin`` finite. ``where`` as in ``infonce``.

    Examples
    --------
    >>> np.round(am_softmax([[0.5, 0.2]], [0], scale=30.0, margin=0.35), 6)   # log(1 + e^{1.5})
    array([1.701413])
    """
    scale = _positive(scale, "scale")
    margin = _finite(margin, "margin")
    rows, out_shape = _rows(cosines, labels, axis, where, name="cosines", labels_name="labels", label_kinds="onehot")
    k_scale, k_margin = Fraction(scale), Fraction(margin)

    def loss(row):
        c_t = row.scores[row.target]
        return _softmax_ce(row, lambda i: k_scale * (_q(row.scores[i]) - _q(c_t) + k_margin))

    return _per_example([loss(row) for row in rows], out_shape)


def _arcface_target(c, margin):
    """cos(acos(clip(c, -1, 1)) + m) = c·cos m - sqrt((1 - c)(1 + c))·sin m, c clipped."""
    if math.isnan(c):
        return _NAN
    c = -1.0 if c < -1.0 else 1.0 if c > 1.0 else c
    sin_theta = math.sqrt((1.0 - c) * (1.0 + c))
    return math.fsum([c * math.cos(margin), -sin_theta * math.sin(margin)])


def arcface(cosines, labels, *, scale=64.0, margin=0.5, axis=-1, where=None):
    """ArcFace (additive angular margin), per example: Deng et al. arXiv 1801.07698 (reference).

    c = clip(c_t, -1, 1),  θ = acos(c),
    z_t = scale·cos(θ + m) = scale·(c·cos m - sqrt((1 - c)(1 + c))·sin m),
    z_i = scale·c_i (i ≠ t, raw, not clipped),
    L = lse_{valid}(z) - z_t

    Plain cos(θ + m): no "easy margin", no fix-up for θ + m > π. Labels and ``where`` as in
    ``am_softmax``; ``scale`` > 0, ``margin`` finite. With margin 0 it equals ``am_softmax`` with
    margin 0 (for ``|c_t| <= 1``).

    Examples
    --------
    >>> np.round(arcface([[1.0, 0.0]], [0], scale=1.0, margin=0.5), 6)   # log(1 + e^{-cos 0.5})
    array([0.347685])
    """
    scale = _positive(scale, "scale")
    margin = _finite(margin, "margin")
    rows, out_shape = _rows(cosines, labels, axis, where, name="cosines", labels_name="labels", label_kinds="onehot")
    k_scale = Fraction(scale)

    def loss(row):
        status = _softmax_status(row)
        if status is not None:
            return status
        g_t = _q(_arcface_target(row.scores[row.target], margin))
        return _softmax_ce(row, lambda i: k_scale * (_q(row.scores[i]) - g_t))

    return _per_example([loss(row) for row in rows], out_shape)


# ---------------------------------------------------------------------------------------------
# C4. CoSENT
# ---------------------------------------------------------------------------------------------


def _pair_exponent(coefficient, x, y, shift=0.0):
    """coefficient·(x - y + shift): exact (Fraction) for finite inputs, IEEE float otherwise."""
    if math.isfinite(x) and math.isfinite(y):
        return Fraction(coefficient) * (Fraction(x) - Fraction(y) + Fraction(shift))
    return coefficient * (x - y + shift)


def cosent_loss(similarities, labels, *, scale=20.0, where=None):
    """CoSENT, one scalar per batch: kexue 8847 (reference).

    L = log(1 + Σ_{a, b valid, y_a > y_b} e^{scale·(s_b - s_a)})

    over all ordered pairs (brute force). ``similarities`` [B] (one cosine per sentence pair),
    ``labels`` [B] (bool / int / float, finite; binary or graded), ``where`` [B]. Pairs with equal
    labels do not contribute; no pairs gives 0. ``scale`` > 0 (λ = 20).

    Returns
    -------
    numpy.ndarray, float64, 0-d.

    Examples
    --------
    >>> float(np.round(cosent_loss([0.9, 0.1], [1, 0], scale=1.0), 6))   # log(1 + e^{-0.8})
    0.371101
    """
    scale = _positive(scale, "scale")
    sims = _common.real_array(similarities, "similarities")
    if sims.ndim != 1:
        raise ValueError(f"similarities must be 1-D [B], got shape {sims.shape}")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biuf":
        raise TypeError(f"labels must be bool, integer or floating, got dtype {labels.dtype}")
    if labels.shape != sims.shape:
        raise ValueError(f"labels have shape {labels.shape} but similarities have shape {sims.shape}")
    ys = [float(y) for y in labels.astype(np.float64)]
    for y in ys:
        if not math.isfinite(y):
            raise ValueError(f"labels must be finite, found {y!r}")
    keep = _common.where_array(where, sims.shape, against="similarities")
    items = [(float(s), y) for s, y, k in zip(sims, ys, keep) if k and float(s) != -_INF]
    if any(math.isnan(s) for s, _ in items):
        return np.asarray(_NAN, dtype=np.float64)
    exponents = [_pair_exponent(scale, s_b, s_a) for s_a, y_a in items for s_b, y_b in items if y_a > y_b]
    return np.asarray(_log1p_sum_exp(exponents), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# C5. the unified pairwise form and Circle loss
# ---------------------------------------------------------------------------------------------


def _pairwise_row(row, exponent):
    """log(1 + Σ_{i ∈ neg} Σ_{j ∈ pos} e^{exponent(s_i, s_j)}) over the valid entries."""
    valid = [(s, p) for s, p, v in zip(row.scores, row.positive, row.valid) if v]
    if any(math.isnan(s) for s, _ in valid):
        return _NAN
    pos = [s for s, p in valid if p]
    neg = [s for s, p in valid if not p]
    if not pos or not neg:
        return 0.0
    return _log1p_sum_exp([exponent(s_i, s_j) for s_i in neg for s_j in pos])


def unified_pairwise_loss(scores, labels, *, gamma=1.0, margin=0.0, axis=-1, where=None):
    """The unified pairwise loss, per row: Sun et al. arXiv 2002.10857 eq. (1), kexue 7359 (reference).

    L = log(1 + Σ_{i ∈ neg} Σ_{j ∈ pos} e^{γ·(s_i - s_j + m)})

    over the valid entries. ``labels``: integer class ids (one positive) or 0/1 rows with the
    scores' shape (bool / int / float; any number of positives). No positive or no negative among
    the valid entries gives 0. γ = ``gamma`` > 0, m = ``margin`` finite.

    Examples
    --------
    >>> np.round(unified_pairwise_loss([[0.0, 0.0, 0.0]], [[1, 0, 0]]), 6)   # log 3
    array([1.098612])
    >>> np.round(unified_pairwise_loss([[0.0, 0.0, 0.0, 0.0]], [[1, 1, 0, 0]]), 6)   # log 5
    array([1.609438])
    """
    gamma = _positive(gamma, "gamma")
    margin = _finite(margin, "margin")
    rows, out_shape = _rows(scores, labels, axis, where, name="scores", labels_name="labels", label_kinds="multihot")

    def exponent(s_i, s_j):
        return _pair_exponent(gamma, s_i, s_j, margin)

    return _per_example([_pairwise_row(row, exponent) for row in rows], out_shape)


def circle_loss(scores, labels, *, gamma=80.0, margin=0.4, axis=-1, where=None):
    """Circle loss, per row: Sun et al. 2020, arXiv 2002.10857, eq. (4) (reference).

    Δ_p = 1 - m,  Δ_n = m,  α_p,j = max(0, 1 + m - s_j),  α_n,i = max(0, s_i + m),
    L = log(1 + Σ_{i ∈ neg} Σ_{j ∈ pos} e^{γ·(α_n,i·(s_i - Δ_n) - α_p,j·(s_j - Δ_p))})

    (the paper detaches α from the gradient; this reference gives values only). Labels, ``where``
    and the empty cases as in ``unified_pairwise_loss``; γ = ``gamma`` > 0 (80), m = ``margin``
    finite (0.4). A zero α leaves its term out (a ``+inf`` positive score has α_p = 0).

    Examples
    --------
    >>> np.round(circle_loss([[1.0, 0.0]], [0], gamma=1.0, margin=0.0), 6)   # log(1 + e^0)
    array([0.693147])
    >>> np.round(circle_loss([[0.5, 0.5]], [0], gamma=1.0, margin=0.25), 6)   # log(1 + e^{0.1875 + 0.1875})
    array([0.898123])
    """
    gamma = _positive(gamma, "gamma")
    margin = _finite(margin, "margin")
    rows, out_shape = _rows(scores, labels, axis, where, name="scores", labels_name="labels", label_kinds="multihot")
    k_gamma, k_m = Fraction(gamma), Fraction(margin)
    one = Fraction(1)

    def negative_part(s_i):  # α_n·(s_i - Δ_n)
        if s_i == _INF:
            return _INF
        x = Fraction(s_i)
        alpha = max(Fraction(0), x + k_m)
        return alpha * (x - k_m)

    def positive_part(s_j):  # α_p·(s_j - Δ_p); α_p = 0 at s_j = +inf (term left out)
        if s_j == _INF:
            return Fraction(0)
        x = Fraction(s_j)
        alpha = max(Fraction(0), one + k_m - x)
        return alpha * (x - (one - k_m))

    def exponent(s_i, s_j):
        n_part = negative_part(s_i)
        if n_part == _INF:
            return _INF
        return k_gamma * (n_part - positive_part(s_j))

    return _per_example([_pairwise_row(row, exponent) for row in rows], out_shape)

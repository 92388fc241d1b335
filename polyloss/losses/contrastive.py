r"""Contrastive, similarity and margin losses, written once against the array API (formulas, sources
and conventions in ``docs/contrastive.md``).

Three shapes of input run through this module:

- **scores per candidate** (``infonce``, ``flatnce``, ``am_softmax``, ``arcface``,
  ``unified_pairwise_loss``, ``circle_loss``): ``[..., C]`` with the candidates (classes, keys) on
  ``axis``; the loss is per example (``axis`` removed). ``where`` (broadcastable to the scores) and
  ``-inf`` scores remove candidates from every sum, through ``where``, never through a large
  constant: float16/bfloat16 inputs (computed in float32) stay exact.
- **embeddings** (``infonce_from_embeddings``): ``[B, D]`` rows, L2-normalised, compared in-batch,
  optionally with the keys of every process/device (``gather``).
- **one similarity per pair** (``cosent_loss``): ``[B]`` similarities and labels, one value per batch.

The softmax losses share the statistics of :mod:`polyloss._softmax` (``-log p_t`` from a
stop-gradient-shifted log-sum-exp); the pairwise losses are ``log(1 + Σ_{i,j} e^{x_i + y_j})``, which
factorises into ``softplus(lse_i x_i + lse_j y_j)``.
"""

from __future__ import annotations

import math

import numpy as np

from polyloss import _checks, _ops, _softmax
from polyloss._namespace import namespace_of

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

_FORMS = ("log", "paper")
_PAIRINGS = ("diagonal", "simcse")
_METHODS = ("auto", "pairwise", "sorted")
# cosent_loss(method="auto"): the sort-based form from this batch size on (benchmarks/bench_contrastive.py)
_SORTED_FROM = 256


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------
def _positive_scores(scores, positive_index, axis, where):
    """``(xp, backend, s, targets)`` for a loss with one positive per row: ``s`` classes last in the
    compute dtype, removed candidates ``-inf``; ``targets.ids`` the positive's index."""
    prepared = _softmax.prepare(scores, positive_index, axis=axis, where=where, probabilities=False, name="scores")
    return prepared.xp, prepared.backend, prepared.values, prepared.targets


def _margin_inputs(cosines, labels, axis, where):
    """``(xp, backend, s, targets)`` of a margin softmax: class ids, or one-hot rows turned into ids."""
    prepared = _softmax.prepare(cosines, labels, axis=axis, where=where, name="cosines")
    xp, backend, s, targets = prepared.xp, prepared.backend, prepared.values, prepared.targets
    if targets.probs is None:
        return xp, backend, s, targets
    t = targets.probs
    if _checks.values_checked(backend, s, t):
        what = "one-hot labels need exactly one 1 per row and 0 elsewhere"
        bad = (t != 0.0) & (t != 1.0)
        _checks.fail_if_any(xp, bad, lambda: f"{what}; found {_checks.describe_values(xp, t, bad)}")
        ones = xp.sum(t, axis=-1)
        _checks.fail_if_any(xp, ones != 1.0, lambda: f"{what}; found "
                                                      f"{_checks.describe_values(xp, ones, ones != 1.0, 'row sums')}")
    return xp, backend, s, _softmax.Targets(ids=xp.astype(xp.argmax(t, axis=-1), backend.index_dtype()))


def _positive_scale(value, name):
    return _checks.hyperparameter(value, name, low=0.0, low_open=True)


def _log1p_pairs(xp, backend, x, x_mask, y, y_mask):
    """``log(1 + Σ_{i∈x_mask} Σ_{j∈y_mask} e^{x_i + y_j})`` per row, as ``softplus(lse x + lse y)``; 0
    when either set is empty (no pair), and then a zero gradient."""
    lse_x = _ops.logsumexp(xp, backend, x, where=x_mask)
    lse_y = _ops.logsumexp(xp, backend, y, where=y_mask)
    has_pairs = xp.any(x_mask, axis=-1) & xp.any(y_mask, axis=-1)
    total = xp.where(has_pairs, lse_x + lse_y, -math.inf)  # +inf + -inf never reaches the sum
    return _ops.softplus(xp, backend, total)


# --------------------------------------------------------------------------------------------
# C1: InfoNCE
# --------------------------------------------------------------------------------------------
def infonce(scores, positive_index, *, axis=-1, where=None):
    r"""InfoNCE: the softmax cross-entropy of the positive among its candidates.

    .. math::

        L = -\log \frac{e^{s_t}}{\sum_i e^{s_i}} = \log\Bigl(1 + \sum_{i \ne t} e^{s_i - s_t}\Bigr)

    ``scores`` are already scaled (a similarity divided by the temperature). For in-batch negatives
    from embeddings see :func:`infonce_from_embeddings`.

    Source: van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding"
    (arXiv:1807.03748); kexue.fm/archives/8348 (SimCSE).

    Args:
      scores: real floating ``[..., C, ...]``, candidates on ``axis``; ``-inf`` removes a candidate.
      positive_index: integer, the scores' shape without ``axis``: the positive's position.
      axis: the candidate axis.
      where: optional boolean mask broadcastable to ``scores``; False removes a candidate (an
        invalid negative, padding). A row with no valid candidate has loss 0; a positive that is
        removed gives ``+inf``.

    Returns:
      The loss per example (``axis`` removed), in the compute dtype (float32 for half precision).

    >>> import numpy as np, polyloss
    >>> np.round(polyloss.infonce(np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), np.array([0, 2])), 4)
    array([0.1698, 1.0986])
    """
    xp, backend, s, targets = _positive_scores(scores, positive_index, axis, where)
    return _softmax.negative_log_likelihood(xp, backend, s, targets)


def _normalized(xp, backend, x):
    """Rows of ``x [B, D]`` divided by their L2 norm; a zero row stays 0 (and gets gradient 0); NaN
    stays NaN. The norm is taken after a stop-gradient scaling by ``1/peak`` (the row's largest
    ``|x|``, :func:`polyloss._ops.divide_by_peak`; the direction does not change, so neither does the
    gradient), so no square overflows or underflows."""
    y, nonzero = _ops.divide_by_peak(xp, backend, x, axis=-1)
    squares = xp.sum(y * y, axis=-1, keepdims=True)  # >= 1 on a nonzero row
    return xp.where(nonzero, y / xp.sqrt(xp.where(nonzero, squares, 1.0)), 0.0)


def _temperature(xp, backend, temperature, like):
    """``τ`` as a Python float, or a 0-d array of the embeddings' framework (a learnable temperature,
    differentiated through)."""
    if backend.name == "numpy" or not backend.is_array(temperature):  # a number: checked, used as a float
        if isinstance(temperature, np.ndarray) and temperature.ndim:
            raise ValueError(f"temperature must be a scalar (0-d), got shape {temperature.shape}")
        return _positive_scale(temperature, "temperature")
    t = backend.asarray(temperature, like=like, dtype=like.dtype, name="temperature")  # tf.Variable: a read
    if t.ndim != 0:
        raise ValueError(f"temperature must be a scalar (0-d), got shape {tuple(t.shape)}")
    if _checks.values_checked(backend, like, t):
        _checks.fail_if_any(xp, ~((t > 0.0) & xp.isfinite(t)),
                            lambda: f"temperature must lie in (0, inf); got {float(t)}")
    return t


def _embeddings(xp, backend, x, name):
    x, v = _checks.prepare_floating(xp, backend, x, name)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must be 2-D embeddings [batch, width] with a positive width, got shape "
                         f"{tuple(x.shape)}")
    return v


def infonce_from_embeddings(a, b=None, *, temperature=0.05, pairing="diagonal", normalize=True, gather=None):
    r"""InfoNCE with in-batch negatives, from embeddings: cosine similarities over a temperature.

    .. math::

        S_{ij} = \frac{\langle \hat a_i, \hat b_j \rangle}{\tau},\qquad
        L_i = \log \sum_j e^{S_{ij}} - S_{i,\mathrm{pos}(i)}

    with ``x̂ = x / ‖x‖`` (``normalize=True``; raw dot products otherwise).

    - ``pairing="diagonal"`` (CLIP/DPR style): ``a [B, D]`` queries, ``b [N, D]`` keys with ``N >= B``;
      the positive of query ``i`` is key ``i``, every other key is a negative (extra rows ``B..N-1``
      are hard negatives, as in supervised SimCSE). For the symmetric CLIP loss average
      ``infonce_from_embeddings(a, b)`` and ``infonce_from_embeddings(b, a)``.
    - ``pairing="simcse"`` (kexue.fm/archives/8348): ``b`` is None and ``a [2M, D]`` holds two
      encodings of each sentence in rows ``(2k, 2k+1)``; the positive of row ``i`` is row ``i ^ 1``,
      and the row itself is removed from its candidates (through ``where``, no large negative constant).
      The default ``τ = 0.05`` is Su's scale 20.

    A zero embedding is normalised to the zero vector: its cosine with everything is 0, its loss is
    finite (``log`` of the number of candidates when it is a query) and its gradient is 0.

    **Negatives from every process or device** (``gather``): the keys (``b``, or ``a`` for SimCSE)
    of all members are gathered and concatenated in member order, every member computes the loss of
    its own queries against all of them, and the gradient flows back to each member's own keys
    (summed over the members that used them). The members' losses together equal this function on
    the concatenated batch, value and gradient; with hard negatives (``N > B`` keys per member) the
    positive of member ``r``'s query ``i`` is the gathered key ``r·N + i``, its own member's key.
    Every member must pass the same number of keys (SimCSE: rows, and pairs stay on one member);
    the numbers of queries may differ.

    - torch: ``gather=True`` (the default process group) or a ``torch.distributed`` ProcessGroup;
      every rank must also run the backward (it all-reduces the keys' cotangent).
    - JAX: ``gather="name"``, the axis name of the enclosing ``shard_map`` / ``pmap``
      (``jax.lax.all_gather``; its transpose sums the cotangents back).

    Args:
      a: real floating ``[B, D]``.
      b: real floating ``[N, D]`` (``N >= B``) for ``pairing="diagonal"``; None for ``"simcse"``.
      temperature: ``τ > 0``, a number or a 0-d array (a learnable temperature).
      pairing: ``"diagonal"`` or ``"simcse"``.
      normalize: L2-normalise the rows first (cosine similarity).
      gather: None (local negatives), or the group to gather keys from (see above).

    Returns:
      The loss per query ``[B]`` (``[2M]`` for SimCSE), in the compute dtype.

    >>> import numpy as np, polyloss
    >>> a = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> np.round(polyloss.infonce_from_embeddings(a, a, temperature=1.0), 4)  # log(1 + e^{-1})
    array([0.3133, 0.3133])
    """
    xp, backend, q, k, tau = _embedding_inputs(a, b, temperature, pairing, normalize)
    if q.shape[0] == 0 and gather is None:  # with gather, this member's keys still serve the others
        return xp.sum(q, axis=-1)  # no query: an empty loss, still connected to the input
    return _in_batch_nll(xp, backend, q, k, tau, pairing=pairing, normalize=normalize, gather=gather)


def _embedding_inputs(a, b, temperature, pairing, normalize):
    """``(xp, backend, q, k, tau)``: the queries and keys of :func:`infonce_from_embeddings`, checked, in
    one compute dtype (``k`` is ``q`` for SimCSE), and the temperature (a float or a 0-d array)."""
    if pairing not in _PAIRINGS:
        raise ValueError(f"pairing must be one of {_PAIRINGS}, got {pairing!r}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    # a temperature array must belong to the embeddings' framework (numbers are checked below)
    xp, backend = namespace_of(a=a, b=b, **({"temperature": temperature} if hasattr(temperature, "shape") else {}))
    q = _embeddings(xp, backend, a, "a")
    tau = _temperature(xp, backend, temperature, q)
    if pairing == "simcse":
        if b is not None:
            raise ValueError("pairing='simcse' takes one batch a [2M, D] whose rows (2k, 2k+1) are the two "
                             "encodings of a sentence; b must be None")
        if isinstance(q.shape[0], int) and q.shape[0] % 2:
            raise ValueError(f"pairing='simcse' needs an even number of rows (pairs (2k, 2k+1)); a has shape "
                             f"{tuple(q.shape)}")
        k = q
    else:
        if b is None:
            raise ValueError("pairing='diagonal' needs the keys b [N, D] (N >= B); for one batch encoded twice "
                             "use pairing='simcse'")
        k = _embeddings(xp, backend, b, "b")
        if k.dtype != q.dtype:
            k = xp.astype(k, xp.result_type(q.dtype, k.dtype))
            q = xp.astype(q, k.dtype)
    if not _checks.same_dims(q.shape[1:], k.shape[1:]):
        raise ValueError(f"a has shape {tuple(q.shape)} but b has shape {tuple(k.shape)}: the embeddings "
                         "must have the same width")
    if pairing == "diagonal" and None not in (q.shape[0], k.shape[0]) and k.shape[0] < q.shape[0]:
        raise ValueError(f"a has shape {tuple(q.shape)} but b has shape {tuple(k.shape)}: every query needs its "
                         "positive key, so b needs at least as many rows as a")
    return xp, backend, q, k, tau


def _in_batch_nll(xp, backend, q, k, tau, *, pairing, normalize, gather):
    """The losses of the queries ``q`` against every key ``k`` (gathered across members when ``gather``):
    cosine similarities over ``tau``, the positive on the diagonal (or the SimCSE partner)."""
    if normalize:
        q = _normalized(xp, backend, q)
        k = q if pairing == "simcse" else _normalized(xp, backend, k)
    offset = 0
    if gather is not None:
        rows = backend.shape(k)[0]
        k, member = backend.all_gather(k, gather)
        offset = member * rows
    scores = xp.matmul(q, xp.permute_dims(k, (1, 0))) / tau
    index = backend.index_dtype()
    local = xp.arange(backend.shape(q)[0], dtype=index, device=backend.device(q))
    rows = local + offset
    if pairing == "simcse":
        candidates = xp.arange(backend.shape(k)[0], dtype=index, device=backend.device(k))
        scores = xp.where(candidates == rows[:, None], -math.inf, scores)
        positives = rows + 1 - 2 * (local % 2)
    else:
        positives = rows
    return _softmax.negative_log_likelihood(xp, backend, scores, _softmax.Targets(ids=positives))


# --------------------------------------------------------------------------------------------
# C2: FlatNCE
# --------------------------------------------------------------------------------------------
def flatnce(scores, positive_index, *, form="log", axis=-1, where=None):
    r"""FlatNCE: InfoNCE without the positive in the denominator (Chen et al. 2021; kexue 8586).

    .. math::

        \xi = \sum_{i \ne t} e^{s_i - s_t},\qquad
        \text{paper: } L = \frac{\xi}{\mathrm{sg}(\xi)},\qquad
        \text{log (Su): } L = \log \xi = \operatorname{lse}_{i \ne t}(s_i) - s_t

    Both forms have the gradient ``∇ log ξ``: the paper form's value is always 1 (the stop-gradient
    runs through the backend's adapter), the log form's is the cross-entropy with the positive
    removed from the log-sum-exp and can be negative. The gradient is InfoNCE's divided by
    ``ξ/(1+ξ) = 1 - p_t``: the same direction, not flattened to 0 when InfoNCE saturates.

    Sources: Chen et al., "Simpler, Faster, Stronger: Breaking The log-K Curse On Contrastive
    Learners With FlatNCE" (arXiv:2107.01152); kexue.fm/archives/8586.

    Args:
      scores: real floating ``[..., C, ...]``, candidates on ``axis``.
      positive_index: integer, the scores' shape without ``axis``.
      form: ``"log"`` or ``"paper"``.
      axis, where: as :func:`infonce`. A row without any valid negative (only the positive, or
        nothing) has loss 0 and gradient 0; a removed positive gives ``+inf``.

    Returns:
      The loss per example, in the compute dtype.

    >>> import numpy as np, polyloss
    >>> s, t = np.array([[2.0, 0.0, 0.0]]), np.array([0])
    >>> np.round(polyloss.flatnce(s, t), 4), polyloss.flatnce(s, t, form="paper")  # log(2 e^{-2})
    (array([-1.3069]), array([1.]))
    """
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    xp, backend, s, targets = _positive_scores(scores, positive_index, axis, where)
    positive = _softmax.one_hot(xp, backend, s, targets.ids)
    negatives = ~positive & (s != -math.inf)
    has_negatives = xp.any(negatives, axis=-1)
    # a row without negatives gets 0 - 0, never -inf - (-inf)
    log_xi = (xp.where(has_negatives, _ops.logsumexp(xp, backend, s, where=negatives), 0.0)
              - xp.where(has_negatives, _softmax.pick(xp, s, targets.ids), 0.0))
    if form == "paper":  # ξ / sg(ξ) = exp(log ξ - sg(log ξ)), which cannot overflow; ±inf passes through
        finite = ~xp.isinf(log_xi)
        safe = xp.where(finite, log_xi, 0.0)
        log_xi = xp.where(finite, xp.exp(safe - backend.stop_gradient(safe)), log_xi)
    return xp.where(has_negatives, log_xi, 0.0)


# --------------------------------------------------------------------------------------------
# C3: AM-Softmax and ArcFace
# --------------------------------------------------------------------------------------------
def _with_target(xp, backend, z, targets, target_logit):
    """``z [..., C]`` with each row's target entry replaced by ``target_logit [...]``."""
    return xp.where(_softmax.one_hot(xp, backend, z, targets.ids), target_logit[..., None], z)


def am_softmax(cosines, labels, *, scale=30.0, margin=0.35, axis=-1, where=None):
    r"""AM-Softmax / CosFace: softmax cross-entropy with an additive margin on the target cosine.

    .. math::

        L = -\log \frac{e^{s(\cos\theta_t - m)}}{e^{s(\cos\theta_t - m)} + \sum_{i \ne t} e^{s \cos\theta_i}}

    Sources: Wang et al. 2018, "Additive Margin Softmax for Face Verification" (arXiv:1801.05599);
    kexue.fm/archives/5743.

    Args:
      cosines: real floating ``[..., C, ...]``: cosines between normalised embeddings and normalised
        class centres, classes on ``axis`` (used as given, not clipped).
      labels: class ids (the cosines' shape without ``axis``) or one-hot rows (the cosines' shape).
      scale: ``s > 0``.
      margin: ``m`` (any real; 0 gives the normalised softmax).
      axis, where: the class axis; a boolean mask of classes kept (as :func:`infonce`).

    Returns:
      The loss per example, in the compute dtype.

    >>> import numpy as np, polyloss
    >>> c = np.array([[0.8, 0.3, -0.2]])
    >>> np.round(polyloss.am_softmax(c, np.array([0]), scale=10.0, margin=0.2), 4)
    array([0.0489])
    """
    s_ = _positive_scale(scale, "scale")
    m = _checks.hyperparameter(margin, "margin")
    xp, backend, c, targets = _margin_inputs(cosines, labels, axis, where)
    z = s_ * c
    target_logit = _softmax.pick(xp, z, targets.ids) - s_ * m
    return _softmax.negative_log_likelihood(xp, backend, _with_target(xp, backend, z, targets, target_logit), targets)


def _cos_plus(xp, c, margin: float):
    """``cos(θ + m)`` for ``c = cos θ`` in [-1, 1], as ``c·cos m - sin θ·sin m`` with
    ``sin θ = sqrt((1 - c)(1 + c))``. At ``|c| = 1`` the square root's derivative is infinite; the
    double ``where`` keeps that branch out of the gradient there (the derivative is then ``cos m``,
    the one-sided limit's finite part), so no NaN reaches the weights. ``acos`` is never called."""
    u = (1.0 - c) * (1.0 + c)
    inside = u > 0.0
    sin_theta = xp.where(inside, xp.sqrt(xp.where(inside, u, 1.0)), 0.0)
    return c * math.cos(margin) - sin_theta * math.sin(margin)


def arcface(cosines, labels, *, scale=64.0, margin=0.5, axis=-1, where=None):
    r"""ArcFace: softmax cross-entropy with an additive angular margin on the target.

    .. math::

        L = -\log \frac{e^{s\cos(\theta_t + m)}}{e^{s\cos(\theta_t + m)} + \sum_{i \ne t} e^{s \cos\theta_i}},
        \qquad \cos(\theta + m) = \cos\theta\cos m - \sqrt{1 - \cos^2\theta}\,\sin m

    The target cosine is clipped to [-1, 1] (rounding puts normalised dot products slightly
    outside); the others are used as given. ``acos`` is never called and the square root is guarded,
    so values and gradients are finite at ``cos θ_t = ±1`` exactly and in half precision. This is
    the plain ``cos(θ + m)`` of the paper's equation: no "easy margin" and no
    ``θ + m > π`` fallback (insightface's ``cos θ - m·sin m`` beyond ``π - m``).

    Source: Deng et al. 2019, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition"
    (arXiv:1801.07698); kexue.fm/archives/5743.

    Args:
      cosines, labels, axis, where: as :func:`am_softmax`.
      scale: ``s > 0``.
      margin: ``m`` in radians.

    Returns:
      The loss per example, in the compute dtype.

    >>> import numpy as np, polyloss
    >>> c = np.array([[1.0, 0.0]])  # θ_t = 0: the target logit is s·cos m
    >>> np.round(polyloss.arcface(c, np.array([0]), scale=2.0, margin=np.pi / 3), 4)  # log(1 + e^{-1})
    array([0.3133])
    """
    s_ = _positive_scale(scale, "scale")
    m = _checks.hyperparameter(margin, "margin")
    xp, backend, c, targets = _margin_inputs(cosines, labels, axis, where)
    c_t = _softmax.pick(xp, c, targets.ids)
    removed = c_t == -math.inf
    # clipped through where, not clip: JAX's clip splits the derivative in half at a bound it touches
    c_t = xp.where(c_t > 1.0, 1.0, xp.where(c_t < -1.0, -1.0, c_t))
    phi = _cos_plus(xp, c_t, m)
    phi = xp.where(removed, -math.inf, phi)  # a removed target stays removed
    return _softmax.negative_log_likelihood(xp, backend, _with_target(xp, backend, s_ * c, targets, s_ * phi), targets)


# --------------------------------------------------------------------------------------------
# C4: CoSENT
# --------------------------------------------------------------------------------------------
def _cosent_pairwise(xp, backend, s, y, valid, scale):
    """``log(1 + Σ_{y_a > y_b} e^{λ(s_b - s_a)})`` over the ``B × B`` matrix: O(B²) time and memory."""
    d = scale * (s[None, :] - s[:, None])  # d[a, b] = λ(s_b - s_a)
    pairs = (y[:, None] > y[None, :]) & valid[:, None] & valid[None, :]
    return _ops.logsumexp(xp, backend, xp.reshape(d, (-1,)), where=xp.reshape(pairs, (-1,)), append_zero=True)


def _cosent_sorted(xp, backend, s, y, valid, scale):
    """The same sum in O(B log B) time and O(B) memory: ``Σ_b e^{λ s_b} · Σ_{a: y_a > y_b} e^{-λ s_a}``.

    Sort by label; ``R_i = lse_{k >= i} (-λ s_k)`` is a reverse log-space scan (the backend's
    ``logcumsumexp``), and the partners of ``b`` start at the first sorted position whose label
    exceeds ``y_b`` (``searchsorted(..., side="right")``), so ties never pair. Removed items take the
    smallest valid label and a score of 0: they sort into the first group, which is never anybody's
    partner, and their own terms are masked; nothing infinite enters the scan."""
    n = backend.shape(s)[0]
    floor = xp.min(xp.where(valid, y, xp.max(y)))
    key = xp.where(valid, y, floor)
    order = xp.argsort(key, stable=True)
    key = xp.take(key, order)
    v = xp.take(xp.where(valid, scale * s, 0.0), order)
    suffix = _ops.logcumsumexp(xp, backend, -v, reverse=True)
    suffix = xp.concat([suffix, xp.full((1,), -math.inf, dtype=suffix.dtype, device=backend.device(s))])
    start = xp.searchsorted(key, key, side="right")
    terms = v + xp.take(suffix, start)
    keep = xp.take(valid, order) & (start < n)
    return _ops.logsumexp(xp, backend, terms, where=keep, append_zero=True)


def _cosent_inputs(similarities, labels, where):
    """``(xp, backend, s, y, valid)`` of :func:`cosent_loss`: the similarities in the compute dtype with
    removed pairs (``where`` False, ``-inf``) set to 0 and marked False in ``valid``, and the labels
    (booleans as integers), checked."""
    xp, backend = namespace_of(similarities=similarities, labels=labels, where=where)
    similarities, s = _checks.prepare_floating(xp, backend, similarities, "similarities")
    if s.ndim != 1:
        raise ValueError(f"similarities must be 1-D (one per sentence pair), got shape {tuple(s.shape)}")
    y = backend.asarray(labels, like=similarities, name="labels")
    _checks.require_same_shape(similarities, y, "similarities", "labels")
    if xp.isdtype(y.dtype, "bool"):
        y = xp.astype(y, backend.index_dtype())
    elif not xp.isdtype(y.dtype, ("integral", "real floating")):
        raise TypeError(f"labels must be boolean, integer or real floating, got dtype {y.dtype}")
    valid = _checks.prepare_where(xp, backend, where, similarities, "similarities")
    if valid is None:
        valid = xp.ones(backend.shape(s), dtype=xp.bool, device=backend.device(s))
    if _checks.values_checked(backend, s, y) and xp.isdtype(y.dtype, "real floating"):
        _checks.fail_if_any(xp, ~xp.isfinite(y) & valid, lambda: "labels must be finite (NaN or inf found)")
    valid = valid & (s != -math.inf)  # a -inf similarity removes its pair, as where=False does
    s = xp.where(valid, s, 0.0)  # removed pairs never reach the arithmetic (no inf - inf)
    return xp, backend, s, y, valid


def cosent_loss(similarities, labels, *, scale=20.0, where=None, method="auto"):
    r"""CoSENT: a ranking loss on the similarities of sentence pairs (Su 2022, kexue 8847).

    .. math::

        L = \log\Bigl(1 + \sum_{(a, b):\ y_a > y_b} e^{\lambda (s_b - s_a)}\Bigr)

    over every ordered pair of pairs in the batch whose labels differ: a pair labelled more similar
    should have the larger cosine. Labels are binary or graded (STS scores); equal labels do not
    pair. One value per batch.

    Two evaluations of the same sum, equal in value and gradient:

    - ``method="pairwise"``: the ``B × B`` matrix of differences, masked with ``where`` (no
      huge constant); O(B²) time and memory.
    - ``method="sorted"``: sort by label once, then ``Σ_b e^{λ s_b} Σ_{a: y_a > y_b} e^{-λ s_a}`` with a
      reverse log-space cumulative sum; O(B log B) time, O(B) memory. Its exponents are
      ``λ s_b`` and ``-λ s_a`` rather than ``λ(s_b - s_a)``: the result differs by rounding
      (``eps·λ·|s|``), and on array_api_strict (no log-space scan) it needs ``λ·(max s - min s)``
      below ~80 in float32.
    - ``method="auto"``: pairwise below 256 pairs, sorted from there (faster from about 256 pairs in
      NumPy and torch, from ~1000 under ``jax.jit``; 20-200x at 4096, see ``benchmarks/``).

    Args:
      similarities: real floating ``[B]``, one similarity (e.g. a cosine) per sentence pair.
      labels: ``[B]``, bool, integer or floating (finite).
      scale: ``λ > 0`` (20 in the source).
      where: optional boolean ``[B]``; False leaves the pair out (so does a ``-inf`` similarity).
      method: ``"auto"``, ``"pairwise"`` or ``"sorted"``.

    Returns:
      A 0-d array in the compute dtype.

    >>> import numpy as np, polyloss
    >>> s, y = np.array([0.9, 0.1, 0.5]), np.array([1, 0, 1])
    >>> float(np.round(polyloss.cosent_loss(s, y, scale=1.0), 4))  # log(1 + e^{-0.8} + e^{-0.4})
    0.7513
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    lam = _positive_scale(scale, "scale")
    xp, backend, s, y, valid = _cosent_inputs(similarities, labels, where)
    n = s.shape[0]
    if n == 0:
        return xp.sum(s)  # no pair: 0, still connected to the input
    if method == "pairwise" or (method == "auto" and n is not None and n < _SORTED_FROM):
        return _cosent_pairwise(xp, backend, s, y, valid, lam)
    return _cosent_sorted(xp, backend, s, y, valid, lam)


# --------------------------------------------------------------------------------------------
# C5: the unified pairwise form and Circle loss
# --------------------------------------------------------------------------------------------
def _positive_sets(scores, labels, axis, where):
    """``(xp, backend, s, positive, negative)``: boolean ``[..., C]`` sets of valid positive and negative
    candidates, from class ids or from multi-hot 0/1 labels."""
    prepared = _softmax.prepare(scores, labels, axis=axis, where=where, name="scores")
    xp, backend, s, targets = prepared.xp, prepared.backend, prepared.values, prepared.targets
    if targets.ids is not None:
        positive = _softmax.one_hot(xp, backend, s, targets.ids)
    else:
        t = targets.probs
        if _checks.values_checked(backend, s, t):
            bad = (t != 0.0) & (t != 1.0)
            _checks.fail_if_any(
                xp,
                bad,
                lambda: (
                    "multi-hot labels must be 0 or 1 (a set of positives, not soft "
                    f"targets); found {_checks.describe_values(xp, t, bad)}"
                ),
            )
        positive = t == 1.0
    valid = s != -math.inf
    return xp, backend, s, positive & valid, ~positive & valid


def unified_pairwise_loss(scores, labels, *, gamma=1.0, margin=0.0, axis=-1, where=None):
    r"""The unified pairwise loss of Circle loss (Sun et al. 2020, eq. 1; kexue 7359).

    .. math::

        L = \log\Bigl(1 + \sum_{i \in \Omega_-} \sum_{j \in \Omega_+} e^{\gamma (s_i - s_j + m)}\Bigr)
          = \operatorname{softplus}\bigl(\operatorname{lse}_{i \in \Omega_-} \gamma (s_i - r)
            + \operatorname{lse}_{j \in \Omega_+} \gamma (r - s_j) + \gamma m\bigr)

    every negative against every positive, computed as the two log-sum-exps (O(C), not O(C²)); ``r``
    (the largest positive score, stop-gradient) is subtracted inside both, so large scores do not
    lose their differences to rounding. With one positive it is AM-Softmax's pairwise form; Su's
    multi-label loss (``multilabel_crossentropy``) is its variant with thresholds at 0.

    Args:
      scores: real floating ``[..., C, ...]``, candidates on ``axis``.
      labels: class ids (one positive per row) or multi-hot 0/1 labels with the scores' shape.
      gamma: ``γ > 0``, the scale.
      margin: ``m``.
      axis, where: as :func:`infonce`. A row without a positive or without a negative has loss 0.

    Returns:
      The loss per example, in the compute dtype.

    >>> import numpy as np, polyloss
    >>> s, y = np.array([[2.0, 0.0, 1.0]]), np.array([[1, 0, 1]])
    >>> np.round(polyloss.unified_pairwise_loss(s, y), 4)  # log(1 + e^{-2} + e^{-1})
    array([0.4076])
    """
    g = _positive_scale(gamma, "gamma")
    m = _checks.hyperparameter(margin, "margin")
    xp, backend, s, positive, negative = _positive_sets(scores, labels, axis, where)
    r = _ops.masked_max(xp, backend, s, positive)
    return _log1p_pairs(xp, backend, g * (s - r) + g * m, negative, g * (r - s), positive)


def circle_loss(scores, labels, *, gamma=80.0, margin=0.4, axis=-1, where=None):
    r"""Circle loss (Sun et al. 2020, eq. 4): the unified pairwise loss with self-paced weights.

    .. math::

        L = \log\Bigl(1 + \sum_{i \in \Omega_-} \sum_{j \in \Omega_+}
            e^{\gamma\,[\alpha_i (s_i - \Delta_-) - \alpha_j (s_j - \Delta_+)]}\Bigr),\qquad
        \alpha_j = [1 + m - s_j]_+,\ \alpha_i = [s_i + m]_+,\ \Delta_+ = 1 - m,\ \Delta_- = m

    The weights ``α`` are held constant in the gradient (stop-gradient), as in the paper; scores are
    similarities in [-1, 1] (cosines). Defaults ``γ = 80, m = 0.4`` are those of the paper's
    fine-grained retrieval experiments (and of pytorch-metric-learning); face recognition used
    ``γ = 256, m = 0.25``.

    Source: Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization"
    (arXiv:2002.10857); kexue.fm/archives/7359.

    Args:
      scores, labels, axis, where: as :func:`unified_pairwise_loss`.
      gamma: ``γ > 0``.
      margin: ``m``, the relaxation.

    Returns:
      The loss per example, in the compute dtype.

    >>> import numpy as np, polyloss
    >>> s, y = np.array([[0.8, 0.1]]), np.array([0])
    >>> # α₊ = 0.6, α₋ = 0.5: log(1 + e^{γ[0.5·(0.1 - 0.4) - 0.6·(0.8 - 0.6)]}) at γ = 10
    >>> np.round(polyloss.circle_loss(s, y, gamma=10.0), 4)
    array([0.065])
    """
    g = _positive_scale(gamma, "gamma")
    m = _checks.hyperparameter(margin, "margin")
    xp, backend, s, positive, negative = _positive_sets(scores, labels, axis, where)
    s = xp.where(positive | negative, s, 0.0)  # removed entries: no inf·0 in the weights' products
    alpha_pos = backend.stop_gradient(xp.clip(1.0 + m - s, min=0.0))
    alpha_neg = backend.stop_gradient(xp.clip(s + m, min=0.0))
    return _log1p_pairs(xp, backend, g * alpha_neg * (s - m), negative, -g * alpha_pos * (s - (1.0 - m)), positive)

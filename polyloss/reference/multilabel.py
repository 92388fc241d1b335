"""Reference (oracle) versions of the multi-label family: ZLPR, GlobalPointer, their divergence.

Plain NumPy float64 and Python ``math``: every loss is evaluated row by row, straight from its
formula in ``docs/multilabel.md``, with Python lists and loops. Speed is not a goal; being obviously right is.
Sums use ``math.fsum`` (exactly rounded), ``log(1 + Σ e^v)`` uses ``log1p`` after factoring out the
largest exponent, so the values are accurate to a few ulps even for ±1e4 logits and for losses near 0.

Sources: kexue.fm/archives/7359 (ZLPR, hard labels), 9064 (soft labels), 8373 (GlobalPointer),
9039 (the divergence for multi-label scores).
"""

import math

import numpy as np

from polyloss.reference import _common

__all__ = [
    "multilabel_crossentropy",
    "sparse_multilabel_crossentropy",
    "global_pointer_crossentropy",
    "sparse_global_pointer_crossentropy",
    "global_pointer_mask",
    "multilabel_divergence",
    "reduce",
]


# ---------------------------------------------------------------------------------------------
# small private helpers
# ---------------------------------------------------------------------------------------------
















def _check_label(t):
    """A label at an included position must be NaN (propagated) or lie in [0, 1]."""
    if not (math.isnan(t) or 0.0 <= t <= 1.0):
        raise ValueError(f"labels must lie in [0, 1] (bool, 0/1 or soft), found {t!r}")




def _log1p_sum_exp(values):
    """log(1 + Σ_v e^v), evaluated as m + log(e^{-m} + Σ_v e^{v-m}) with m = max(0, max v).

    Exactly one of the terms e^{-m}, e^{v-m} equals 1 (the implicit "1 +" when m = 0, else the
    largest exponent); it is moved into ``log1p`` so that values near 0 keep their precision.
    NaN in ``values`` gives NaN, +inf gives +inf, -inf terms contribute 0, no values give 0.
    """
    if any(math.isnan(v) for v in values):
        return math.nan
    if any(v == math.inf for v in values):
        return math.inf
    if not values:
        return 0.0
    m = max(0.0, max(values))
    if m == 0.0:
        others = [math.exp(v) for v in values]
    else:
        top = values.index(m)
        others = [math.exp(-m)] + [math.exp(v - m) for k, v in enumerate(values) if k != top]
    return m + math.log1p(math.fsum(others))


def _zlpr_row(scores, targets, included):
    """ZLPR of one row from its three equal-length lists (kexue 7359 / 9064).

    neg exponents: s_i + log(1 - t_i) for included i with t_i < 1
    pos exponents: -s_i + log(t_i)    for included i with t_i > 0
    """
    neg, pos = [], []
    has_nan = False
    for s, t, keep in zip(scores, targets, included):
        if not keep or s == -math.inf:
            continue
        _check_label(t)
        if math.isnan(s) or math.isnan(t):
            has_nan = True
            continue
        if t < 1.0:
            neg.append(s + math.log1p(-t))
        if t > 0.0:
            pos.append(-s + math.log(t))
    if has_nan:
        return math.nan
    return _log1p_sum_exp(neg) + _log1p_sum_exp(pos)


def _sigmoid_gap(s, t):
    """|σ(s) - σ(t)| for finite s, t, without cancellation or overflow.

    σ(s) - σ(t) = (e^s - e^t) / ((1 + e^s)(1 + e^t)); multiplying above and below by e^{-(|s|+|t|)}
    gives |σ(s) - σ(t)| = e^{(|s-t| - |s| - |t|)/2} (1 - e^{-|s-t|}) / ((1 + e^{-|s|})(1 + e^{-|t|})),
    and (|s-t| - |s| - |t|)/2 is -min(|s|, |t|) when s and t have the same sign, else 0.
    Every exponent is ≤ 0 and every step keeps relative precision (the naive difference of two
    sigmoids loses all digits when both are near 1, or when s ≈ t).
    """
    d = abs(s - t)
    shared = -min(abs(s), abs(t)) if s * t > 0 else 0.0
    return (
        math.exp(shared)
        * -math.expm1(-d)
        / ((1.0 + math.exp(-abs(s))) * (1.0 + math.exp(-abs(t))))
    )


def _divergence_term(s, t):
    """(σ(s) - σ(t)) (s - t) for s != t (kexue 9039); always ≥ 0."""
    if math.isnan(s) or math.isnan(t):
        return math.nan
    if math.isinf(s) or math.isinf(t):
        # the other side differs, so σ(s) - σ(t) has the sign of s - t and is not 0: the product is +inf
        return math.inf
    return abs(s - t) * _sigmoid_gap(s, t)


# ---------------------------------------------------------------------------------------------
# A1. ZLPR
# ---------------------------------------------------------------------------------------------


def multilabel_crossentropy(logits, labels, *, axis=-1, where=None):
    """ZLPR multi-label cross-entropy, hard or soft labels, per example (reference).

    L = log(1 + Σ_i (1 - t_i) e^{s_i}) + log(1 + Σ_i t_i e^{-s_i})

    over the class axis (or axes). Hard labels are the case t ∈ {0, 1}:
    L = log(1 + Σ_{y_i=0} e^{s_i}) + log(1 + Σ_{y_j=1} e^{-s_j}).
    Sources: kexue.fm/archives/7359 (hard labels), kexue.fm/archives/9064 (soft labels),
    arXiv 2208.02955.

    Parameters
    ----------
    logits : array_like, real
        Raw scores s (no sigmoid), classes on ``axis``.
    labels : array_like, same shape as ``logits``
        bool, integer 0/1, or float in [0, 1].
    axis : int or tuple of ints
        The class axis; several axes together form one class axis. The output drops them and keeps
        the other axes in order.
    where : array_like of bool, optional
        Broadcastable to ``logits``. Positions where it is False, or where the logit is -inf,
        are excluded from both sums. A term whose weight (1 - t_i) or t_i is 0 is removed exactly.
        A row with nothing left gives 0.

    Returns
    -------
    numpy.ndarray of float64, the shape of ``logits`` without the class axes.
    NaN in an included logit or label gives NaN for that row; labels outside [0, 1] at included
    positions raise ValueError.

    Examples
    --------
    >>> import numpy as np
    >>> logits = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, -2.0]])
    >>> labels = np.array([[1, 0, 1], [0, 1, 0]])
    >>> [round(float(v), 4) for v in multilabel_crossentropy(logits, labels)]
    [0.8682, 0.188]
    >>> multilabel_crossentropy([[1e4, -1e4]], [[0, 1]])  # log(1 + e^{1e4}) + log(1 + e^{1e4})
    array([20000.])
    """
    logits = _common.real_array(logits, "logits")
    labels = _common.label_array(labels)
    _common.same_shape(logits, labels, "logits", "labels")
    axes = _common.class_axes(axis, logits.ndim)
    included = _common.where_array(where, logits.shape)
    s_rows, out_shape = _common.as_rows(logits, axes)
    t_rows, _ = _common.as_rows(labels, axes)
    w_rows, _ = _common.as_rows(included, axes)
    losses = []
    for s_row, t_row, w_row in zip(s_rows, t_rows, w_rows):
        losses.append(_zlpr_row([float(v) for v in s_row], [float(v) for v in t_row], list(w_row)))
    return np.array(losses, dtype=np.float64).reshape(out_shape)


# ---------------------------------------------------------------------------------------------
# A2. ZLPR with the positives given as class ids
# ---------------------------------------------------------------------------------------------


def sparse_multilabel_crossentropy(logits, indices, *, axis=-1, pad_index=None, where=None):
    """ZLPR with positive classes listed by id, per example (reference).

    With P the set of ids listed in a row (entries equal to ``pad_index`` ignored):

        pos = log(1 + Σ_{j ∈ P, included} e^{-s_j})
        neg = log(1 + Σ_{k ∉ P, included} e^{s_k})
        L   = neg + pos

    computed directly from this definition (no log1mexp subtraction). It equals
    ``multilabel_crossentropy`` on the equivalent dense 0/1 labels.
    Sources: kexue.fm/archives/7359, and the sparse form in kexue.fm/archives/8373 / bert4keras.

    Parameters
    ----------
    logits : array_like, real, classes (C of them) on ``axis`` (a single int)
    indices : array_like of int
        The shape of ``logits`` except on ``axis``, where it has K entries: positive class ids in
        [0, C), padded with ``pad_index``. A class listed twice in a row is a ValueError, and so is
        an id outside [0, C) that is not ``pad_index``.
    pad_index : int, optional
        Padding value; its entries are ignored (the class with that id, if any, stays a negative).
    where : array_like of bool, optional
        Broadcastable to ``logits``; positions where it is False or the logit is -inf are excluded
        from both sums (a listed positive there is excluded too).

    Returns
    -------
    numpy.ndarray of float64, the shape of ``logits`` without ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> logits = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, -2.0]])
    >>> indices = np.array([[0, 2], [1, -1]])
    >>> [round(float(v), 4) for v in sparse_multilabel_crossentropy(logits, indices, pad_index=-1)]
    [0.8682, 0.188]
    """
    logits = _common.real_array(logits, "logits")
    indices = _common.int_array(indices, "indices")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    (ax,) = _common.class_axes(axis, logits.ndim)
    expected = logits.shape[:ax] + logits.shape[ax + 1 :]
    if indices.ndim != logits.ndim or indices.shape[:ax] + indices.shape[ax + 1 :] != expected:
        raise ValueError(
            f"indices has shape {indices.shape} but must match logits of shape {logits.shape} "
            f"on every axis except axis {axis}"
        )
    included = _common.where_array(where, logits.shape)
    s_rows, out_shape = _common.as_rows(logits, (ax,))
    w_rows, _ = _common.as_rows(included, (ax,))
    id_rows, _ = _common.as_rows(indices, (ax,))
    n_classes = logits.shape[ax]
    losses = []
    for s_row, w_row, id_row in zip(s_rows, w_rows, id_rows):
        positives = set()
        for k in id_row:
            k = int(k)
            if pad_index is not None and k == pad_index:
                continue
            if not 0 <= k < n_classes:
                raise ValueError(f"class id {k} is outside [0, {n_classes}) and is not pad_index")
            if k in positives:
                raise ValueError(f"class id {k} is listed twice in one row")
            positives.add(k)
        neg, pos = [], []
        for k in range(n_classes):
            s = float(s_row[k])
            if not w_row[k] or s == -math.inf:
                continue
            if k in positives:
                pos.append(-s)
            else:
                neg.append(s)
        losses.append(_log1p_sum_exp(neg) + _log1p_sum_exp(pos))
    return np.array(losses, dtype=np.float64).reshape(out_shape)


# ---------------------------------------------------------------------------------------------
# A3. GlobalPointer
# ---------------------------------------------------------------------------------------------


def _span_grid(logits):
    if logits.ndim < 2 or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"logits must have shape [..., L, L], got {logits.shape}")
    return logits.shape[-1]


def global_pointer_crossentropy(logits, labels, *, where=None):
    """GlobalPointer loss: ZLPR over all spans of each (example, entity type), per example (reference).

    logits[..., i, j] scores the span starting at token i and ending at token j. For each leading
    index b:

        L_b = log(1 + Σ_{(i,j)} (1 - t_ij) e^{s_ij}) + log(1 + Σ_{(i,j)} t_ij e^{-s_ij})

    over the included spans: spans whose logit is -inf (padding, lower triangle) or where ``where``
    is False are left out of both sums. Labels are bool, 0/1 or soft in [0, 1].
    Sources: kexue.fm/archives/8373 (GlobalPointer), kexue.fm/archives/7359 (ZLPR).

    Parameters
    ----------
    logits : array_like [..., L, L]
    labels : array_like, same shape
    where : array_like of bool, optional, broadcastable to ``logits``
        e.g. ``global_pointer_mask(sequence_mask)`` of shape [B, 1, L, L].

    Returns
    -------
    numpy.ndarray of float64 with shape ``logits.shape[:-2]`` (e.g. [B, H]); no reduction.
    """
    logits = _common.real_array(logits, "logits")
    labels = _common.label_array(labels)
    _common.same_shape(logits, labels, "logits", "labels")
    length = _span_grid(logits)
    included = _common.where_array(where, logits.shape)
    out_shape = logits.shape[:-2]
    out = np.zeros(out_shape, dtype=np.float64)
    for b in np.ndindex(*out_shape):
        cells = [(i, j) for i in range(length) for j in range(length)]  # every span (start i, end j)
        out[b] = _zlpr_row(
            [float(logits[b + c]) for c in cells],
            [float(labels[b + c]) for c in cells],
            [bool(included[b + c]) for c in cells],
        )
    return out


def sparse_global_pointer_crossentropy(logits, spans, *, pad_index=None, where=None):
    """GlobalPointer loss with the gold spans listed as (start, end) pairs, per example (reference).

    With P_b the set of spans listed for leading index b (pairs equal to (pad_index, pad_index)
    ignored):

        L_b = log(1 + Σ_{(i,j) ∉ P_b, included} e^{s_ij}) + log(1 + Σ_{(i,j) ∈ P_b, included} e^{-s_ij})

    the same value as ``global_pointer_crossentropy`` with labels[..., start, end] = 1.
    Sources: kexue.fm/archives/8373, and the sparse form of kexue.fm/archives/7359.

    Parameters
    ----------
    logits : array_like [..., L, L]
    spans : array_like of int [..., K, 2]
        Leading shape ``logits.shape[:-2]``. A span outside [0, L), with start > end, or listed
        twice for the same leading index is a ValueError.
    pad_index : int, optional
        A pair (pad_index, pad_index) is padding.
    where : array_like of bool, optional, broadcastable to ``logits``

    Returns
    -------
    numpy.ndarray of float64 with shape ``logits.shape[:-2]``.

    Examples
    --------
    >>> import numpy as np
    >>> logits = np.array([[[1.0, -2.0], [-np.inf, 0.5]]])   # one example, L = 2
    >>> spans = np.array([[[0, 1], [-1, -1]]])               # gold span (0, 1), one padding pair
    >>> np.round(sparse_global_pointer_crossentropy(logits, spans, pad_index=-1), 4)
    array([3.8072])
    """
    logits = _common.real_array(logits, "logits")
    spans = _common.int_array(spans, "spans")
    length = _span_grid(logits)
    lead = logits.shape[:-2]
    if spans.ndim != logits.ndim or spans.shape[:-2] != lead or spans.shape[-1] != 2:
        raise ValueError(
            f"spans has shape {spans.shape} but must be {lead} + (K, 2) for logits of shape "
            f"{logits.shape}"
        )
    included = _common.where_array(where, logits.shape)
    out = np.zeros(lead, dtype=np.float64)
    for b in np.ndindex(*lead):
        gold = set()
        for start, end in spans[b]:
            start, end = int(start), int(end)
            if pad_index is not None and start == pad_index and end == pad_index:
                continue
            if not (0 <= start < length and 0 <= end < length):
                raise ValueError(f"span ({start}, {end}) is outside [0, {length})")
            if start > end:
                raise ValueError(f"span ({start}, {end}) has start > end")
            if (start, end) in gold:
                raise ValueError(f"span ({start}, {end}) is listed twice")
            gold.add((start, end))
        neg, pos = [], []
        for i in range(length):
            for j in range(length):
                s = float(logits[b + (i, j)])
                if not included[b + (i, j)] or s == -math.inf:
                    continue
                if (i, j) in gold:
                    pos.append(-s)
                else:
                    neg.append(s)
        out[b] = _log1p_sum_exp(neg) + _log1p_sum_exp(pos)
    return out


def global_pointer_mask(sequence_mask, *, lower_triangle=False):
    """The GlobalPointer span mask from a token mask (reference).

    mask[b, 0, i, j] = valid[b, i] and valid[b, j] and (i <= j)

    (with ``lower_triangle=True`` the condition i <= j is dropped and spans with end < start are
    kept). Source: kexue.fm/archives/8373.

    Parameters
    ----------
    sequence_mask : array_like [B, L], bool or 0/1

    Returns
    -------
    numpy.ndarray of bool [B, 1, L, L], broadcastable against logits [B, H, L, L].

    Examples
    --------
    >>> import numpy as np
    >>> global_pointer_mask(np.array([[1, 1, 0]]))[0, 0].astype(int)
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 0, 0]])
    """
    mask = np.asarray(sequence_mask)
    if mask.dtype.kind not in "biuf":
        raise TypeError(f"sequence_mask must be bool or 0/1, got dtype {mask.dtype}")
    if mask.ndim != 2:
        raise ValueError(f"sequence_mask must have shape [B, L], got {mask.shape}")
    batch, length = mask.shape
    valid = [[False] * length for _ in range(batch)]
    for b in range(batch):
        for i in range(length):
            v = mask[b, i]
            if v not in (0, 1):  # also rejects NaN
                raise ValueError(f"sequence_mask must hold booleans or 0/1, found {v!r}")
            valid[b][i] = bool(v)
    out = np.zeros((batch, 1, length, length), dtype=bool)
    for b in range(batch):
        for i in range(length):
            for j in range(length):
                out[b, 0, i, j] = valid[b][i] and valid[b][j] and (lower_triangle or i <= j)
    return out


# ---------------------------------------------------------------------------------------------
# A4. Divergence between two multi-label score vectors
# ---------------------------------------------------------------------------------------------


def multilabel_divergence(logits_a, logits_b, *, axis=-1, where=None):
    """Symmetric divergence between two multi-label score vectors, per example (reference).

    D(s, t) = Σ_i (σ(s_i) - σ(t_i)) (s_i - t_i)

    over the class axis (or axes): the sum over classes of the symmetric binary KL between
    [σ(s_i), 1 - σ(s_i)] and [σ(t_i), 1 - σ(t_i)], without the ½. Symmetric, ≥ 0, 0 iff s = t.
    Entries where ``where`` is False and entries with s_i == t_i (term exactly 0; this removes the
    -inf/-inf GlobalPointer padding, which would otherwise be NaN) are left out. An entry with
    exactly one infinite side contributes +inf; NaN gives NaN.
    Source: kexue.fm/archives/9039 (for R-Drop / virtual adversarial training on ZLPR and
    GlobalPointer heads).

    Each term is evaluated as ``|s - t|·|σ(s) - σ(t)|`` with a cancellation-free closed form of the
    sigmoid difference (see ``_sigmoid_gap``), exact to a few ulps for ``|logits|`` up to 1e4 and beyond.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[2.0, -1.0, -np.inf]])
    >>> b = np.array([[1.0, -1.0, -np.inf]])
    >>> np.round(multilabel_divergence(a, b), 6)   # (σ(2) - σ(1))·1
    array([0.149738])
    """
    a = _common.real_array(logits_a, "logits_a")
    b = _common.real_array(logits_b, "logits_b")
    _common.same_shape(a, b, "logits_a", "logits_b")
    if a.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    axes = _common.class_axes(axis, a.ndim)
    included = _common.where_array(where, a.shape, against="logits_a")
    a_rows, out_shape = _common.as_rows(a, axes)
    b_rows, _ = _common.as_rows(b, axes)
    w_rows, _ = _common.as_rows(included, axes)
    out = []
    for a_row, b_row, w_row in zip(a_rows, b_rows, w_rows):
        terms = []
        for s, t, keep in zip(a_row, b_row, w_row):
            s, t = float(s), float(t)
            if not keep or s == t:
                continue
            terms.append(_divergence_term(s, t))
        out.append(_common.fsum(terms))
    return np.array(out, dtype=np.float64).reshape(out_shape)


# ---------------------------------------------------------------------------------------------
# Reduction
# ---------------------------------------------------------------------------------------------


def reduce(values, reduction="mean", *, weights=None, where=None):
    """Reduce per-example values to one number (reference).

    sum  = Σ_{k: where_k} w_k v_k
    mean = Σ_{k: where_k} w_k v_k / Σ_{k: where_k} w_k

    (w_k = 1 without weights, so the mean divides by the number of valid entries). A mean over no
    valid entries, or with Σ w = 0, is 0.0. Entries where ``where`` is False are skipped entirely
    (a NaN there does not propagate). ``weights`` and ``where`` broadcast to ``values``.
    This is the reduction that the per-example losses of kexue.fm/archives/7359, 8373 and 9039 are
    left to; the sources differ (GlobalPointer: mean over B·H in one repo, sum over H then mean over
    B in another), hence one explicit statement of the semantics.

    Returns
    -------
    numpy.ndarray, float64, 0-d.

    Examples
    --------
    >>> import numpy as np
    >>> float(reduce(np.array([1.0, 2.0, np.nan]), "mean", where=np.array([True, True, False])))
    1.5
    >>> float(reduce([1.0, 3.0], "mean", weights=[3.0, 1.0]))
    1.5
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    values = _common.real_array(values, "values")
    if weights is None:
        weights = np.ones(values.shape, dtype=np.float64)
    else:
        w = _common.real_array(weights, "weights")
        try:
            weights = np.broadcast_to(w, values.shape)
        except ValueError:
            raise ValueError(
                f"weights of shape {w.shape} does not broadcast to values of shape {values.shape}"
            ) from None
    valid = _common.where_array(where, values.shape, against="values")
    products, total_weight = [], []
    for v, w, keep in zip(values.ravel(), weights.ravel(), valid.ravel()):
        if keep:
            products.append(float(w) * float(v))
            total_weight.append(float(w))
    total = _common.fsum(products)
    if reduction == "sum":
        return np.asarray(total, dtype=np.float64)
    denominator = _common.fsum(total_weight)
    if denominator == 0.0:  # no valid entries, or weights summing to 0
        return np.asarray(0.0, dtype=np.float64)
    return np.asarray(total / denominator, dtype=np.float64)

"""Conformance cases of the multi-label family (``docs/multilabel.md``) and of ``reduce``."""

from __future__ import annotations

import numpy as np

from polyloss.conformance.registry import ALL_DTYPES, HALF_DTYPES, Case, finite_max, register


def _hard(rng, shape, p=0.3):
    return rng.random(shape) < p


def _unique_positives(rng, rows, classes, k, pad):
    """``[rows, k]`` distinct class ids per row, a random number of them replaced by ``pad``."""
    out = np.full((rows, k), pad, dtype=np.int64)
    for r in range(rows):
        n = rng.integers(0, k + 1)
        out[r, :n] = rng.choice(classes, size=n, replace=False)
        rng.shuffle(out[r])
    return out


def _gp_inputs(rng, batch=2, heads=3, length=6, k=3):
    """GlobalPointer logits ``[B, H, L, L]`` with -inf padding and lower triangle, and gold spans."""
    lengths = rng.integers(2, length + 1, size=batch)
    lengths[0] = length
    seq = np.arange(length)[None, :] < lengths[:, None]
    mask = seq[:, None, :, None] & seq[:, None, None, :] & (np.arange(length)[:, None] <= np.arange(length))
    logits = np.where(mask, rng.normal(0.0, 3.0, (batch, heads, length, length)), -np.inf)
    spans = np.full((batch, heads, k, 2), -1, dtype=np.int64)
    for b in range(batch):
        cells = [(i, j) for i in range(lengths[b]) for j in range(i, lengths[b])]
        for h in range(heads):
            n = rng.integers(0, k + 1)
            chosen = rng.choice(len(cells), size=n, replace=False)
            for slot, c in enumerate(chosen):
                spans[b, h, slot] = cells[c]
    dense = np.zeros(logits.shape)
    for b, h, slot in np.ndindex(spans.shape[:3]):
        i, j = spans[b, h, slot]
        if i >= 0:
            dense[b, h, i, j] = 1.0
    return seq, mask, logits, spans, dense


# --------------------------------------------------------------------------------------------
# A1 multilabel_crossentropy
# --------------------------------------------------------------------------------------------
def _ml_hard_bool(rng, dtype):
    return (rng.normal(0.0, 3.0, (5, 9)), _hard(rng, (5, 9))), {}


def _ml_hard_int(rng, dtype):
    return (rng.normal(0.0, 3.0, (4, 8)), _hard(rng, (4, 8)).astype(np.int64)), {}


def _ml_hard_float(rng, dtype):
    return (rng.normal(0.0, 3.0, (4, 8)), _hard(rng, (4, 8)).astype(np.float64)), {}


def _ml_soft_interior(rng, dtype):
    return (rng.normal(0.0, 3.0, (4, 7)), rng.uniform(0.05, 0.95, (4, 7))), {}


def _ml_soft_boundary(rng, dtype):
    t = rng.uniform(0.0, 1.0, (5, 8))
    t[rng.random(t.shape) < 0.3] = 0.0
    t[rng.random(t.shape) < 0.2] = 1.0
    t[4] = 1.0  # a row whose negative set is empty
    return (rng.normal(0.0, 3.0, (5, 8)), t), {}


def _ml_where(rng, dtype):
    s = rng.normal(0.0, 3.0, (5, 8))
    y = _hard(rng, (5, 8))
    where = rng.random((5, 8)) < 0.7
    where[2] = False  # fully masked row: loss 0, gradient 0
    s[~where] = rng.normal(0.0, 50.0, s.shape)[~where]  # large values under the mask must not matter
    return (s, y), {"where": where}


def _ml_padding(rng, dtype):
    s = rng.normal(0.0, 3.0, (5, 10))
    s[:, 7:] = -np.inf
    s[3] = -np.inf  # fully padded row
    y = _hard(rng, (5, 10), 0.4)
    y[0, 8] = True  # a positive under padding is dropped
    return (s, y), {}


def _ml_axis0(rng, dtype):
    return (rng.normal(0.0, 3.0, (9, 4)), _hard(rng, (9, 4))), {"axis": 0}


def _ml_tuple_axis(rng, dtype):
    return (rng.normal(0.0, 3.0, (3, 4, 2, 5)), _hard(rng, (3, 4, 2, 5))), {"axis": (1, 3)}


def _ml_extreme(rng, dtype):
    s = rng.normal(0.0, 3.0, (6, 8))
    y = _hard(rng, (6, 8))
    y[:, 0], y[:, 1] = True, False
    s[0, 0], s[0, 1] = -1e4, 1e4  # a badly wrong positive and negative
    s[1, 0], s[1, 1] = 1e4, -1e4  # a confidently right pair
    s[2, :] = np.where(y[2], 40.0, -40.0)  # a confident row: loss ~1e-17
    s[3, 1] = 200.0  # sets whose maxima are far apart
    s[4, 0] = -200.0
    return (s, y), {}


def _ml_half_range(rng, dtype):
    """Logits across the dtype's range, wrong and right, mixed with ordinary ones in each row (values
    only: a row whose loss is ~1e37 leaves its small entries' derivatives below float64's resolution
    of that loss, so central differences cannot see them; ``_ml_half_grad`` covers the gradient)."""
    big = finite_max(dtype) / 8
    s = rng.normal(0.0, 3.0, (6, 8))
    y = _hard(rng, (6, 8))
    y[:, 0], y[:, 1] = True, False
    s[0, 0], s[0, 1] = -big, big
    s[1, 0], s[1, 1] = big, -big
    s[2, 2:] = rng.uniform(-1.0, 1.0, 6) * big
    return (s, y), {}


def _ml_half_grad(rng, dtype):
    """Huge logits where finite differences can follow them: confidently right ones beside ordinary
    entries (the loss stays O(1)), and rows made only of huge or padded entries."""
    big = finite_max(dtype) / 8
    s = rng.normal(0.0, 3.0, (5, 6))
    y = _hard(rng, (5, 6))
    y[:, 0], y[:, 1] = True, False
    s[:3, 0], s[:3, 1] = big, -big  # confidently right
    s[3] = [-big, big, -big / 2, big / 4, -np.inf, -np.inf]  # confidently wrong, all huge
    y[3] = [True, False, True, False, True, False]
    s[4] = np.where(y[4], -1.0, 1.0) * rng.uniform(0.1, 1.0, 6) * big
    return (s, y), {}


def _ml_half_soft(rng, dtype):
    big = finite_max(dtype) / 8
    s = rng.normal(0.0, 3.0, (4, 6))
    t = rng.uniform(0.0, 1.0, (4, 6))
    s[0, 0], t[0, 0] = -big, 0.0  # confidently right
    s[1, 1], t[1, 1] = big, 1.0
    s[2] = rng.choice([-1.0, 1.0], 6) * rng.uniform(0.1, 1.0, 6) * big  # all huge
    return (s, t), {}


register(
    Case("multilabel_crossentropy/hard-bool", "multilabel_crossentropy", _ml_hard_bool),
    Case("multilabel_crossentropy/hard-int", "multilabel_crossentropy", _ml_hard_int),
    Case("multilabel_crossentropy/hard-float", "multilabel_crossentropy", _ml_hard_float,
         note="float 0/1 labels take the hard-label kernel in eager mode and the soft one when compiled"),
    Case("multilabel_crossentropy/soft", "multilabel_crossentropy", _ml_soft_interior, grad_args=(0, 1),
         note="labels in (0.05, 0.95) so that central differences in the labels stay inside [0, 1]"),
    Case("multilabel_crossentropy/soft-boundary", "multilabel_crossentropy", _ml_soft_boundary, dtypes=ALL_DTYPES),
    Case("multilabel_crossentropy/where", "multilabel_crossentropy", _ml_where, dtypes=ALL_DTYPES),
    Case("multilabel_crossentropy/padding", "multilabel_crossentropy", _ml_padding, dtypes=ALL_DTYPES),
    Case("multilabel_crossentropy/axis0", "multilabel_crossentropy", _ml_axis0),
    Case("multilabel_crossentropy/tuple-axis", "multilabel_crossentropy", _ml_tuple_axis),
    Case("multilabel_crossentropy/extreme", "multilabel_crossentropy", _ml_extreme),
    Case("multilabel_crossentropy/half-range", "multilabel_crossentropy", _ml_half_range, grad_args=(),
         dtypes=HALF_DTYPES),
    Case("multilabel_crossentropy/half-grad", "multilabel_crossentropy", _ml_half_grad, dtypes=HALF_DTYPES),
    Case("multilabel_crossentropy/half-soft", "multilabel_crossentropy", _ml_half_soft, dtypes=HALF_DTYPES),
)


# --------------------------------------------------------------------------------------------
# A2 sparse_multilabel_crossentropy
# --------------------------------------------------------------------------------------------
def _sp_padded(rng, dtype):
    return (rng.normal(0.0, 3.0, (6, 12)), _unique_positives(rng, 6, 12, 4, -1)), {"pad_index": -1}


def _sp_unpadded(rng, dtype):
    idx = np.stack([rng.choice(10, size=3, replace=False) for _ in range(5)])
    return (rng.normal(0.0, 3.0, (5, 10)), idx), {}


def _sp_where_axis0(rng, dtype):
    s = rng.normal(0.0, 3.0, (11, 4))
    idx = _unique_positives(rng, 4, 11, 3, 0).T.copy()  # class 0 used as padding
    where = rng.random((11, 4)) < 0.8
    return (s, idx), {"axis": 0, "pad_index": 0, "where": where}


def _sp_confident(rng, dtype):
    # positives far above the negatives: the log(1 - e^{lse_P - lse_all}) form loses every digit here
    s = rng.normal(-8.0, 1.0, (4, 40))
    idx = _unique_positives(rng, 4, 40, 3, -1)
    idx[:, 0] = [0, 1, 2, 3]
    for r in range(4):
        for c in idx[r]:
            if c >= 0:
                s[r, c] = 25.0 + r
    return (s, idx), {"pad_index": -1}


def _sp_half_range(rng, dtype):
    big = finite_max(dtype) / 8
    s = rng.normal(0.0, 3.0, (4, 9))
    idx = np.array([[0, 1, -1], [2, -1, -1], [3, 4, 5], [-1, -1, -1]])
    s[0, 0], s[1, 2] = big, big  # confidently right positives
    s[2, 7], s[3, 8] = -big, -big  # confidently right negatives
    s[3, :6] = rng.choice([-1.0, 1.0], 6) * rng.uniform(0.1, 1.0, 6) * big  # a row of huge values only
    s[3, 6:] = -np.inf
    return (s, idx), {"pad_index": -1}


register(
    Case("sparse_multilabel_crossentropy/padded", "sparse_multilabel_crossentropy", _sp_padded),
    Case("sparse_multilabel_crossentropy/unpadded", "sparse_multilabel_crossentropy", _sp_unpadded),
    Case(
        "sparse_multilabel_crossentropy/where-axis0",
        "sparse_multilabel_crossentropy",
        _sp_where_axis0,
        dtypes=ALL_DTYPES,
    ),
    Case("sparse_multilabel_crossentropy/confident", "sparse_multilabel_crossentropy", _sp_confident),
    Case(
        "sparse_multilabel_crossentropy/half-range",
        "sparse_multilabel_crossentropy",
        _sp_half_range,
        dtypes=HALF_DTYPES,
    ),
)


# --------------------------------------------------------------------------------------------
# A3 GlobalPointer
# --------------------------------------------------------------------------------------------
def _gp_dense(rng, dtype):
    _, _, logits, _, dense = _gp_inputs(rng)
    return (logits, dense), {}


def _gp_dense_where(rng, dtype):
    seq, mask, logits, _, dense = _gp_inputs(rng)
    finite = np.where(mask, logits, rng.normal(0.0, 3.0, logits.shape))  # padding given by where only
    return (finite, dense.astype(bool)), {"where": mask}


def _gp_sparse(rng, dtype):
    _, _, logits, spans, _ = _gp_inputs(rng)
    return (logits, spans), {"pad_index": -1}


def _gp_half(rng, dtype):
    _, mask, logits, spans, _ = _gp_inputs(rng, batch=1, heads=2, length=5, k=2)
    big = finite_max(dtype) / 8
    gold = np.zeros(mask.shape, dtype=bool)
    for h, slot in np.ndindex(spans.shape[1:3]):
        i, j = spans[0, h, slot]
        if i >= 0:
            gold[0, h, i, j] = True
    # confidently right spans across the dtype's range: gold ones huge, some others hugely negative
    logits = np.where(gold, big, np.where(mask & (rng.random(mask.shape) < 0.3), -big, logits))
    return (logits, spans), {"pad_index": -1}


def _gp_mask(rng, dtype):
    lengths = np.array([5, 3, 0, 1])
    return (np.arange(5)[None, :] < lengths[:, None],), {}


register(
    Case("global_pointer_crossentropy/padded", "global_pointer_crossentropy", _gp_dense),
    Case("global_pointer_crossentropy/where", "global_pointer_crossentropy", _gp_dense_where, dtypes=ALL_DTYPES),
    Case("sparse_global_pointer_crossentropy/padded", "sparse_global_pointer_crossentropy", _gp_sparse),
    Case(
        "sparse_global_pointer_crossentropy/half-range",
        "sparse_global_pointer_crossentropy",
        _gp_half,
        dtypes=HALF_DTYPES,
    ),
    Case(
        "global_pointer_mask/lengths",
        "global_pointer_mask",
        _gp_mask,
        grad_args=(),
        exact=True,
        dtypes=("float32",),
        note="boolean output; the dtype only names the row",
    ),
)


# --------------------------------------------------------------------------------------------
# A4 multilabel_divergence
# --------------------------------------------------------------------------------------------
def _div_basic(rng, dtype):
    a = rng.normal(0.0, 3.0, (5, 7))
    return (a, a + rng.normal(0.0, 1.0, a.shape)), {}


def _div_where(rng, dtype):
    a = rng.normal(0.0, 3.0, (4, 6))
    where = rng.random(a.shape) < 0.6
    where[1] = False
    return (a, rng.normal(0.0, 3.0, a.shape)), {"where": where}


def _div_padding_gp(rng, dtype):
    _, mask, logits, _, _ = _gp_inputs(rng)
    other = np.where(mask, logits + rng.normal(0.0, 0.5, logits.shape), -np.inf)
    return (logits, other), {"axis": (-2, -1)}


def _div_saturated(rng, dtype):
    a = rng.choice([-1.0, 1.0], (4, 6)) * rng.uniform(15.0, 35.0, (4, 6))
    b = a + rng.normal(0.0, 0.3, a.shape)
    return (a, b), {}


def _div_half_range(rng, dtype):
    big = finite_max(dtype) / 8
    a = rng.normal(0.0, 3.0, (3, 5))
    b = a + rng.normal(0.0, 1.0, a.shape)
    a[0], b[0] = big * np.array([1, -1, 0.5, 0.25, -1]), big * np.array([-1, -1, 1, 0.5, 0.5])
    a[1, 1], b[1, 1] = -big, -big  # equal: contributes exactly 0
    a[2, 0], b[2, 0] = big, big / 2  # saturated on one side: σ(hi) σ(-lo) (1 - e^{-d}) d underflows to 0
    return (a, b), {}


register(
    Case("multilabel_divergence/basic", "multilabel_divergence", _div_basic, grad_args=(0, 1)),
    Case("multilabel_divergence/where", "multilabel_divergence", _div_where, grad_args=(0, 1), dtypes=ALL_DTYPES),
    Case(
        "multilabel_divergence/gp-padding",
        "multilabel_divergence",
        _div_padding_gp,
        grad_args=(0, 1),
        dtypes=ALL_DTYPES,
    ),
    Case("multilabel_divergence/saturated", "multilabel_divergence", _div_saturated, grad_args=(0, 1)),
    Case(
        "multilabel_divergence/half-range",
        "multilabel_divergence",
        _div_half_range,
        grad_args=(0, 1),
        dtypes=HALF_DTYPES,
    ),
)


# --------------------------------------------------------------------------------------------
# reduce
# --------------------------------------------------------------------------------------------
def _reduce_mean(rng, dtype):
    return (rng.normal(0.0, 3.0, (4, 5)),), {}


def _reduce_sum_where(rng, dtype):
    v = rng.normal(0.0, 3.0, (6,))
    where = np.array([True, False, True, True, False, True])
    v[1] = np.inf  # masked: must not leak
    return (v, "sum"), {"where": where}


def _reduce_weighted(rng, dtype):
    return (rng.normal(0.0, 3.0, (3, 4)),), {"weights": rng.uniform(0.0, 2.0, (4,))}


def _reduce_all_masked(rng, dtype):
    return (rng.normal(0.0, 3.0, (5,)),), {"where": np.zeros(5, dtype=bool)}


register(
    Case("reduce/mean", "reduce", _reduce_mean),
    Case("reduce/sum-where", "reduce", _reduce_sum_where),
    Case("reduce/weighted-mean", "reduce", _reduce_weighted),
    Case("reduce/all-masked", "reduce", _reduce_all_masked),
)

"""Conformance cases of the classification, class-imbalance and regulariser family (``docs/classification.md``)."""

from __future__ import annotations

import numpy as np

from polyloss.conformance.registry import ALL_DTYPES, HALF_DTYPES, Case, finite_max, register


def _logits(rng, shape, scale=3.0):
    return rng.normal(0.0, scale, shape)


def _ids(rng, shape, classes):
    return rng.integers(0, classes, shape)


def _probs(rng, shape):
    t = rng.uniform(0.05, 1.0, shape)
    return t / t.sum(-1, keepdims=True)


def _binary(rng, shape):
    return rng.random(shape) < 0.4


def _soft(rng, shape):
    """Soft labels in (0.05, 0.95): central differences in the labels stay inside [0, 1]."""
    return rng.uniform(0.05, 0.95, shape)


def _saturated(rng, shape, big):
    """Logits of magnitude ``big`` with labels: half confidently right, half confidently wrong, beside
    ordinary entries."""
    s = _logits(rng, shape)
    y = _binary(rng, shape)
    flat_s, flat_y = s.reshape(-1), y.reshape(-1)
    n = flat_s.size
    right = rng.choice(n, n // 3, replace=False)
    flat_s[right] = np.where(flat_y[right], big, -big)
    wrong = np.setdiff1d(np.arange(n), right)[: n // 4]
    flat_s[wrong] = np.where(flat_y[wrong], -big, big)
    return s, y


def _ids_and_where(rng, rows, classes, empty_row):
    """Logits, class ids and a random class mask that keeps every row's target, with row
    ``empty_row`` fully masked (loss 0, gradient 0)."""
    s = _logits(rng, (rows, classes))
    y = _ids(rng, rows, classes)
    where = rng.random((rows, classes)) < 0.6
    where[np.arange(rows), y] = True
    where[empty_row] = False
    return s, y, where


def _confident_rows(rng, rows, classes, big):
    """Softmax logits whose target is ahead by ``big`` in some rows (p_y rounds to 1), behind in others."""
    s = _logits(rng, (rows, classes))
    y = _ids(rng, rows, classes)
    for r in range(rows):
        s[r, y[r]] = big if r % 2 == 0 else -big
    return s, y


# --------------------------------------------------------------------------------------------
# B1 softmax_crossentropy
# --------------------------------------------------------------------------------------------
def _ce_ids(rng, dtype):
    return (_logits(rng, (6, 7)), _ids(rng, 6, 7)), {}


def _ce_axis1(rng, dtype):
    # torch's layout [N, C, d]
    return (_logits(rng, (3, 5, 4)), _ids(rng, (3, 4), 5)), {"axis": 1}


def _ce_probs(rng, dtype):
    return (_logits(rng, (5, 6)), _probs(rng, (5, 6))), {}


def _ce_smoothing_ids(rng, dtype):
    return (_logits(rng, (6, 5)), _ids(rng, 6, 5)), {"label_smoothing": 0.1}


def _ce_smoothing_probs(rng, dtype):
    return (_logits(rng, (4, 6)), _probs(rng, (4, 6))), {"label_smoothing": 0.3}


def _ce_ignore(rng, dtype):
    y = _ids(rng, 8, 6)
    y[[1, 4]] = -100
    return (_logits(rng, (8, 6)), y), {"ignore_index": -100, "label_smoothing": 0.2}


def _ce_where(rng, dtype):
    s, y, where = _ids_and_where(rng, 6, 7, empty_row=3)
    s[~where] = rng.normal(0.0, 50.0, s.shape)[~where]  # large values under the mask must not matter
    return (s, y), {"where": where, "label_smoothing": 0.1}


def _ce_padding(rng, dtype):
    s = _logits(rng, (5, 8))
    s[:, 6:] = -np.inf
    s[2] = -np.inf  # a fully padded row: 0
    t = _probs(rng, (5, 8))
    t[:, 6:] = 0.0  # no mass on padding
    return (s, t), {}


def _ce_extreme(rng, dtype):
    s, y = _confident_rows(rng, 6, 5, 1e4)
    s[5] = [-1e4, 1e4, 0.5, -0.5, 3.0]
    return (s, y), {"label_smoothing": 0.05}


def _ce_half(rng, dtype):
    s, y = _confident_rows(rng, 6, 5, finite_max(dtype) / 8)
    return (s, y), {}


register(
    Case("softmax_crossentropy/ids", "softmax_crossentropy", _ce_ids),
    Case("softmax_crossentropy/axis1", "softmax_crossentropy", _ce_axis1),
    Case("softmax_crossentropy/probs", "softmax_crossentropy", _ce_probs, grad_args=(0, 1)),
    Case("softmax_crossentropy/smoothing-ids", "softmax_crossentropy", _ce_smoothing_ids),
    Case("softmax_crossentropy/smoothing-probs", "softmax_crossentropy", _ce_smoothing_probs, grad_args=(0, 1)),
    Case("softmax_crossentropy/ignore", "softmax_crossentropy", _ce_ignore),
    Case("softmax_crossentropy/where", "softmax_crossentropy", _ce_where, dtypes=ALL_DTYPES),
    Case("softmax_crossentropy/padding", "softmax_crossentropy", _ce_padding, dtypes=ALL_DTYPES),
    Case("softmax_crossentropy/extreme", "softmax_crossentropy", _ce_extreme, grad_tol={"float64": 1e-6},
         note="the smoothed loss is ~1e3 (ε·1e4/K): central differences of the reference resolve its "
              "gradient to ~1e-7 (checked against the closed form p - t' to 2e-16 in the property tests)"),
    Case("softmax_crossentropy/half-range", "softmax_crossentropy", _ce_half, dtypes=HALF_DTYPES,
         grad_args=(), note="losses up to ~1e37: values only (their small derivatives are below float64's "
                            "resolution of the loss, see the multi-label half-range case)"),
)


# --------------------------------------------------------------------------------------------
# B2 sigmoid_crossentropy
# --------------------------------------------------------------------------------------------
def _bce_hard(rng, dtype):
    return (_logits(rng, (5, 6)), _binary(rng, (5, 6))), {}


def _bce_soft(rng, dtype):
    return (_logits(rng, (5, 6)), _soft(rng, (5, 6))), {}


def _bce_extreme(rng, dtype):
    s, y = _saturated(rng, (6, 6), 1e4)
    s[0, :4] = [40.0, -40.0, 0.0, 17.0]  # losses of 4e-18 keep their digits
    y[0, :4] = [True, False, True, True]
    return (s, y), {}


def _bce_half(rng, dtype):
    return _saturated(rng, (6, 6), finite_max(dtype) / 8), {}


register(
    Case("sigmoid_crossentropy/hard", "sigmoid_crossentropy", _bce_hard),
    Case("sigmoid_crossentropy/soft", "sigmoid_crossentropy", _bce_soft, grad_args=(0, 1)),
    Case("sigmoid_crossentropy/extreme", "sigmoid_crossentropy", _bce_extreme),
    Case("sigmoid_crossentropy/half-range", "sigmoid_crossentropy", _bce_half, dtypes=HALF_DTYPES),
)


# --------------------------------------------------------------------------------------------
# B3 focal_loss
# --------------------------------------------------------------------------------------------
def _focal(gamma, alpha=None, soft=False):
    def inputs(rng, dtype):
        shape = (5, 6)
        labels = _soft(rng, shape) if soft else _binary(rng, shape)
        return (_logits(rng, shape), labels), {"gamma": gamma, "alpha": alpha}

    return inputs


def _focal_saturated(gamma):
    def inputs(rng, dtype):
        s, y = _saturated(rng, (6, 6), 1e4)
        s[0, :3] = [12.0, -12.0, 0.0]  # σ(∓12)^γ·sp(∓12) stays a normal float32 (at 30 it is ~1e-39)
        return (s, y), {"gamma": gamma}

    return inputs


def _focal_half(gamma):
    def inputs(rng, dtype):
        s, y = _saturated(rng, (6, 6), finite_max(dtype) / 8)
        return (s, y), {"gamma": gamma, "alpha": 0.25}

    return inputs


def _focal_softmax_ids(rng, dtype):
    return (_logits(rng, (6, 5)), _ids(rng, 6, 5)), {
        "activation": "softmax",
        "gamma": 2.0,
        "alpha": np.array([0.5, 1.0, 2.0, 0.25, 1.5]),
    }


def _focal_softmax_probs(rng, dtype):
    return (_logits(rng, (5, 6)), _probs(rng, (5, 6))), {"activation": "softmax", "gamma": 0.5, "alpha": 0.25}


def _focal_softmax_where(rng, dtype):
    s, y, where = _ids_and_where(rng, 6, 7, empty_row=2)
    return (s, y), {"activation": "softmax", "gamma": 1.5, "where": where}


def _focal_softmax_confident(rng, dtype):
    s, y = _confident_rows(rng, 6, 5, 40.0)  # p_y = 1 - 1e-17: (1 - p_y)^γ from the complement's sum
    return (s, y), {"activation": "softmax", "gamma": 0.5}


register(
    Case("focal_loss/gamma2", "focal_loss", _focal(2.0)),
    Case("focal_loss/gamma2-alpha", "focal_loss", _focal(2.0, 0.25)),
    Case("focal_loss/gamma0", "focal_loss", _focal(0.0)),
    Case("focal_loss/gamma0.5-soft", "focal_loss", _focal(0.5, 0.75, soft=True), grad_args=(0, 1)),
    Case("focal_loss/saturated-gamma0", "focal_loss", _focal_saturated(0.0)),
    Case("focal_loss/saturated-gamma0.5", "focal_loss", _focal_saturated(0.5)),
    Case("focal_loss/saturated-gamma2", "focal_loss", _focal_saturated(2.0)),
    Case("focal_loss/half-range", "focal_loss", _focal_half(0.5), dtypes=HALF_DTYPES),
    Case("focal_loss/softmax-ids", "focal_loss", _focal_softmax_ids),
    Case("focal_loss/softmax-probs", "focal_loss", _focal_softmax_probs, grad_args=(0, 1)),
    Case("focal_loss/softmax-where", "focal_loss", _focal_softmax_where, dtypes=ALL_DTYPES),
    Case("focal_loss/softmax-confident", "focal_loss", _focal_softmax_confident),
)


# --------------------------------------------------------------------------------------------
# B4 truncation
# --------------------------------------------------------------------------------------------
def _hard_sigmoid(rng, dtype):
    return (_logits(rng, (6, 6)), _binary(rng, (6, 6))), {"m": 0.6}


def _hard_soft(rng, dtype):
    t = rng.choice([0.0, 0.2, 0.3, 0.7, 0.9, 1.0], (5, 6))  # on both sides of m and 1 - m
    return (_logits(rng, (5, 6)), t), {"m": 0.65}


def _hard_softmax(rng, dtype):
    s, y = _ids_with_margin(rng)
    return (s, y), {"m": 0.7, "activation": "softmax"}


def _ids_with_margin(rng):
    s = _logits(rng, (8, 4))
    y = _ids(rng, 8, 4)
    s[::2][np.arange(4), y[::2]] += 6.0  # half the rows already right by more than m
    return s, y


def _hard_half(rng, dtype):
    return _saturated(rng, (6, 6), finite_max(dtype) / 8), {"m": 0.6}


def _softened(k, soft=False):
    def inputs(rng, dtype):
        return (_logits(rng, (5, 6)), _soft(rng, (5, 6)) if soft else _binary(rng, (5, 6))), {"k": k}

    return inputs


def _softened_extreme(rng, dtype):
    return _saturated(rng, (6, 6), 1e4), {"k": 3.0}


register(
    Case("hard_truncation_loss/sigmoid", "hard_truncation_loss", _hard_sigmoid),
    Case("hard_truncation_loss/soft-labels", "hard_truncation_loss", _hard_soft),
    Case("hard_truncation_loss/softmax", "hard_truncation_loss", _hard_softmax),
    Case("hard_truncation_loss/half-range", "hard_truncation_loss", _hard_half, dtypes=HALF_DTYPES),
    Case("softened_truncation_loss/k1", "softened_truncation_loss", _softened(1.0)),
    Case("softened_truncation_loss/k3-soft", "softened_truncation_loss", _softened(3.0, soft=True), grad_args=(0, 1)),
    Case("softened_truncation_loss/extreme", "softened_truncation_loss", _softened_extreme),
)


# --------------------------------------------------------------------------------------------
# B5 logit adjustment
# --------------------------------------------------------------------------------------------
def _prior(rng, classes):
    counts = rng.integers(1, 1000, classes).astype(np.float64)
    return counts / counts.sum()


def _la_ids(rng, dtype):
    return (_logits(rng, (6, 5)), _ids(rng, 6, 5), _prior(rng, 5)), {}


def _la_tau_smoothing(rng, dtype):
    return (_logits(rng, (6, 5)), _ids(rng, 6, 5), _prior(rng, 5)), {"tau": 1.5, "label_smoothing": 0.1}


def _la_axis0_counts(rng, dtype):
    counts = rng.integers(1, 500, 4).astype(np.float64)  # counts work as well as frequencies
    return (_logits(rng, (4, 6)), _ids(rng, 6, 4), counts), {"axis": 0}


def _adjust(rng, dtype):
    return (_logits(rng, (5, 4)), _prior(rng, 4)), {"tau": 0.5}


def _adjust_axis0(rng, dtype):
    return (_logits(rng, (4, 3, 2)), _prior(rng, 4)), {"axis": 0}


register(
    Case("logit_adjusted_crossentropy/ids", "logit_adjusted_crossentropy", _la_ids),
    Case("logit_adjusted_crossentropy/tau-smoothing", "logit_adjusted_crossentropy", _la_tau_smoothing),
    Case("logit_adjusted_crossentropy/axis0-counts", "logit_adjusted_crossentropy", _la_axis0_counts),
    Case("adjust_logits/basic", "adjust_logits", _adjust),
    Case("adjust_logits/axis0", "adjust_logits", _adjust_axis0),
)


# --------------------------------------------------------------------------------------------
# B6 smoothed F1 weighting
# --------------------------------------------------------------------------------------------
def _f1_batch(rng, dtype):
    return (_logits(rng, (6, 5)), _binary(rng, (6, 5))), {}


def _f1_given(rng, dtype):
    return (_logits(rng, (6, 5)), _soft(rng, (6, 5))), {"f1": 0.4}


register(
    Case(
        "smoothed_f1_weighted_crossentropy/batch-f1",
        "smoothed_f1_weighted_crossentropy",
        _f1_batch,
        grad_args=(),
        note="the batch F1 is held constant for the gradient (stop-gradient): values only; "
        "tests/test_classification_properties.py checks the gradient",
    ),
    Case(
        "smoothed_f1_weighted_crossentropy/given-f1", "smoothed_f1_weighted_crossentropy", _f1_given, grad_args=(0, 1)
    ),
)


# --------------------------------------------------------------------------------------------
# B7 Poly-1
# --------------------------------------------------------------------------------------------
def _poly_ids(rng, dtype):
    return (_logits(rng, (6, 5)), _ids(rng, 6, 5)), {"epsilon": 2.0}


def _poly_probs_smoothing(rng, dtype):
    return (_logits(rng, (5, 6)), _probs(rng, (5, 6))), {"epsilon": -0.5, "label_smoothing": 0.2}


def _poly_ids_where(rng, dtype):
    s, y, where = _ids_and_where(rng, 6, 7, empty_row=1)
    return (s, y), {"epsilon": 1.0, "label_smoothing": 0.1, "where": where}


def _poly_confident(rng, dtype):
    s, y = _confident_rows(rng, 6, 5, 30.0)
    return (s, y), {"epsilon": 1.0}


def _polyf_sigmoid(rng, dtype):
    return (_logits(rng, (5, 6)), _soft(rng, (5, 6))), {"epsilon": 1.0}


def _polyf_softmax(rng, dtype):
    return (_logits(rng, (6, 5)), _ids(rng, 6, 5)), {
        "activation": "softmax",
        "epsilon": 2.0,
        "gamma": 1.0,
        "alpha": None,
    }


def _polyf_half(rng, dtype):
    return _saturated(rng, (6, 6), finite_max(dtype) / 8), {"gamma": 0.5}


register(
    Case("poly1_crossentropy/ids", "poly1_crossentropy", _poly_ids),
    Case("poly1_crossentropy/probs-smoothing", "poly1_crossentropy", _poly_probs_smoothing, grad_args=(0, 1)),
    Case("poly1_crossentropy/where", "poly1_crossentropy", _poly_ids_where, dtypes=ALL_DTYPES),
    Case("poly1_crossentropy/confident", "poly1_crossentropy", _poly_confident),
    Case("poly1_focal_loss/sigmoid-soft", "poly1_focal_loss", _polyf_sigmoid, grad_args=(0, 1)),
    Case("poly1_focal_loss/softmax", "poly1_focal_loss", _polyf_softmax),
    Case("poly1_focal_loss/half-range", "poly1_focal_loss", _polyf_half, dtypes=HALF_DTYPES),
)


# --------------------------------------------------------------------------------------------
# B8 flooding
# --------------------------------------------------------------------------------------------
def _flood_below(rng, dtype):
    return (rng.uniform(0.0, 0.5, (8,)), 0.6), {}


def _flood_above(rng, dtype):
    return (rng.uniform(0.5, 2.0, (3, 4)), 0.2), {}


def _flood_where(rng, dtype):
    loss = rng.uniform(0.0, 1.0, (6,))
    where = np.array([True, False, True, True, False, True])
    loss[1] = np.inf  # masked: must not leak
    return (loss, 1.5), {"where": where}


register(
    Case("flooding/below-level", "flooding", _flood_below, dtypes=ALL_DTYPES),
    Case("flooding/above-level", "flooding", _flood_above),
    Case("flooding/where", "flooding", _flood_where),
)


# --------------------------------------------------------------------------------------------
# B9 R-Drop
# --------------------------------------------------------------------------------------------
def _rd_basic(rng, dtype):
    a = _logits(rng, (5, 7))
    return (a, a + rng.normal(0.0, 1.0, a.shape)), {}


def _rd_close(rng, dtype):
    # two dropout passes that nearly agree: the divergence is second order in the difference
    a = _logits(rng, (5, 7))
    return (a, a + rng.normal(0.0, 1e-2, a.shape)), {}


def _rd_where_axis0(rng, dtype):
    a = _logits(rng, (6, 4))
    where = rng.random((6, 4)) < 0.7
    where[:, 2] = False
    return (a, _logits(rng, (6, 4))), {"axis": 0, "where": where}


def _rd_padding(rng, dtype):
    a = _logits(rng, (4, 6))
    b = a + rng.normal(0.0, 0.5, a.shape)
    a[:, 4:], b[:, 4:] = -np.inf, -np.inf
    a[3], b[3] = -np.inf, -np.inf  # no valid class
    return (a, b), {}


def _rd_saturated(rng, dtype):
    a = rng.choice([-1.0, 1.0], (4, 6)) * rng.uniform(15.0, 35.0, (4, 6))
    return (a, a + rng.normal(0.0, 0.3, a.shape)), {}


def _rd_half(rng, dtype):
    big = finite_max(dtype) / 8
    a = _logits(rng, (3, 5))
    b = a + rng.normal(0.0, 1.0, a.shape)
    a[0], b[0] = big * np.array([1, -1, 0.5, 0.25, -1]), big * np.array([-1, -1, 1, 0.5, 0.5])
    a[1, 1], b[1, 1] = -big, -big
    return (a, b), {}


def _rl_ids(rng, dtype):
    a = _logits(rng, (6, 5))
    return (a, a + rng.normal(0.0, 0.5, a.shape), _ids(rng, 6, 5)), {"alpha": 4.0}


def _rl_close_smoothing(rng, dtype):
    # nearby passes (every |s_a - s_b| <= 1: the divergence's cancellation-free branch) with smoothed class ids
    a = _logits(rng, (5, 7))
    return (a, a + rng.normal(0.0, 1e-2, a.shape), _ids(rng, 5, 7)), {"alpha": 2.0, "label_smoothing": 0.1}


def _rl_probs(rng, dtype):
    a = _logits(rng, (5, 6))
    return (a, a + rng.normal(0.0, 0.5, a.shape), _probs(rng, (5, 6))), {"alpha": 1.0, "label_smoothing": 0.1}


def _rl_ignore_axis1(rng, dtype):
    a = _logits(rng, (3, 4, 5))
    y = _ids(rng, (3, 5), 4)
    y[1, 2] = -1
    return (a, a + rng.normal(0.0, 0.5, a.shape), y), {"axis": 1, "ignore_index": -1, "alpha": 0.3}


register(
    Case("rdrop_divergence/basic", "rdrop_divergence", _rd_basic, grad_args=(0, 1)),
    Case("rdrop_divergence/close", "rdrop_divergence", _rd_close, grad_args=(0, 1)),
    Case("rdrop_divergence/where-axis0", "rdrop_divergence", _rd_where_axis0, grad_args=(0, 1), dtypes=ALL_DTYPES),
    Case("rdrop_divergence/padding", "rdrop_divergence", _rd_padding, grad_args=(0, 1), dtypes=ALL_DTYPES),
    Case("rdrop_divergence/saturated", "rdrop_divergence", _rd_saturated, grad_args=(0, 1)),
    Case(
        "rdrop_divergence/half-range",
        "rdrop_divergence",
        _rd_half,
        grad_args=(),
        dtypes=HALF_DTYPES,
        note="values only: with log-probabilities near -1e37 the gradient is a difference of terms that "
        "large (true value O(1)), which no dtype resolves; gradients are checked finite there in "
        "tests/test_classification_properties.py",
    ),
    Case("rdrop_loss/ids", "rdrop_loss", _rl_ids, grad_args=(0, 1)),
    Case("rdrop_loss/probs-smoothing", "rdrop_loss", _rl_probs, grad_args=(0, 1, 2)),
    Case("rdrop_loss/close-smoothing", "rdrop_loss", _rl_close_smoothing, grad_args=(0, 1)),
    Case("rdrop_loss/ignore-axis1", "rdrop_loss", _rl_ignore_axis1, grad_args=(0, 1)),
)


# --------------------------------------------------------------------------------------------
# B10 squareplus
# --------------------------------------------------------------------------------------------
def _sq_basic(rng, dtype):
    return (_logits(rng, (4, 6), 4.0),), {}


def _sq_b(rng, dtype):
    return (_logits(rng, (20,), 2.0),), {"b": 1.52382}


def _sq_wide(rng, dtype):
    # |x| up to 1e30 (float32) and 1e300 (float64): no overflow of x², no cancellation for x < 0
    top = 30 if dtype != "float64" else 300
    x = rng.choice([-1.0, 1.0], 24) * 10.0 ** rng.uniform(-3, top, 24)
    return (x,), {"b": 4.0}


def _sq_half(rng, dtype):
    big = finite_max(dtype)
    x = rng.choice([-1.0, 1.0], 16) * 10.0 ** rng.uniform(-2, np.log10(big) - 0.1, 16)
    return (x,), {}


register(
    Case("squareplus/basic", "squareplus", _sq_basic),
    Case("squareplus/b-softplus-fit", "squareplus", _sq_b),
    Case("squareplus/wide-range", "squareplus", _sq_wide),
    Case("squareplus/half-range", "squareplus", _sq_half, dtypes=HALF_DTYPES),
)

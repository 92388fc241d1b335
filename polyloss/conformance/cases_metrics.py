"""Conformance cases of the metrics (``docs/metrics.md``): P/R/F1 and accuracy, the exact best threshold,
entity F1 of GlobalPointer logits, Pearson / Spearman, leaderboard means.

Scores are drawn on coarse grids in many cases, so that ties (equal scores, scores equal to the
threshold, several maxima in a row) are common: the decisions there are where implementations
differ. Metrics of counts have no gradient (``grad_args=()``); Pearson's r and the leaderboard
means are smooth and their gradients are checked.
"""

from __future__ import annotations

import numpy as np

from polyloss.conformance.registry import ALL_DTYPES, Case, register

# one size for the 1-D cases and one shape for the [N, C] ones: eager JAX compiles each operation
# once per shape, so shared shapes make the matrix several times faster there
N, C = 48, 4


def _grid(rng, shape, step=0.5, half_width=3):
    """Scores on a grid of ``step``: ties, and entries exactly at 0, on purpose."""
    return rng.integers(-half_width, half_width + 1, shape) * step


def _hot(rng, shape, p=0.4):
    return (rng.random(shape) < p).astype(np.int64)


# --------------------------------------------------------------------------------------------
# E1 precision_recall_f1, accuracy
# --------------------------------------------------------------------------------------------
def _binary(rng, dtype):
    return (rng.normal(0.0, 1.0, N), _hot(rng, N).astype(np.float64)), {"threshold": 0.3}


def _binary_bool_ties(rng, dtype):
    return (_grid(rng, N), _hot(rng, N).astype(bool)), {}


def _multilabel(average):
    def inputs(rng, dtype):
        return (_grid(rng, (4, 6, 5)), _hot(rng, (4, 6, 5))), {"average": average}

    return inputs


def _multiclass(average):
    def inputs(rng, dtype):
        # integer scores: rows with several maxima, where the first one is the prediction
        return (_grid(rng, (N, C), step=1.0, half_width=2), rng.integers(0, C, N)), {"average": average}

    return inputs


def _zero_division(rng, dtype):
    s = rng.normal(0.0, 1.0, (12, 4))
    y = _hot(rng, (12, 4))
    s[:, 1] = -1.0  # class 1 never predicted ...
    y[:, 3] = 0  # ... class 3 never true
    y[:, 1] = 0
    return (s, y), {"average": "none", "zero_division": 1.0}


def _empty(rng, dtype):
    return (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)), {"average": "macro", "zero_division": 0.5}


def _accuracy_binary(rng, dtype):
    return (_grid(rng, N), _hot(rng, N)), {"threshold": 0.5}


def _accuracy_subset(rng, dtype):
    s = _grid(rng, (N, C))
    y = (s > 0).astype(np.int64)
    flip = rng.random((N, C)) < 0.1  # about 40% of the rows have a wrong entry
    return (s, np.where(flip, 1 - y, y)), {}


def _accuracy_ids(rng, dtype):
    return (_grid(rng, (3, 10, 4), step=1.0, half_width=2), rng.integers(0, 4, (3, 10))), {}


register(
    Case("precision_recall_f1/binary", "precision_recall_f1", _binary, grad_args=(), dtypes=ALL_DTYPES),
    Case("precision_recall_f1/binary-bool-ties", "precision_recall_f1", _binary_bool_ties, grad_args=()),
    Case("precision_recall_f1/multilabel-micro", "precision_recall_f1", _multilabel("micro"), grad_args=(),
         dtypes=ALL_DTYPES),
    Case("precision_recall_f1/multilabel-macro", "precision_recall_f1", _multilabel("macro"), grad_args=()),
    Case("precision_recall_f1/multilabel-none", "precision_recall_f1", _multilabel("none"), grad_args=()),
    Case("precision_recall_f1/multiclass-micro", "precision_recall_f1", _multiclass("micro"), grad_args=()),
    Case("precision_recall_f1/multiclass-macro", "precision_recall_f1", _multiclass("macro"), grad_args=(),
         dtypes=ALL_DTYPES),
    Case("precision_recall_f1/multiclass-none", "precision_recall_f1", _multiclass("none"), grad_args=()),
    Case("precision_recall_f1/zero-division", "precision_recall_f1", _zero_division, grad_args=()),
    Case("precision_recall_f1/empty", "precision_recall_f1", _empty, grad_args=()),
    Case("accuracy/binary", "accuracy", _accuracy_binary, grad_args=(), dtypes=ALL_DTYPES),
    Case("accuracy/subset", "accuracy", _accuracy_subset, grad_args=()),
    Case("accuracy/class-ids", "accuracy", _accuracy_ids, grad_args=()),
)


# --------------------------------------------------------------------------------------------
# E2 best_threshold
# --------------------------------------------------------------------------------------------
def _best_f1(rng, dtype):
    s = rng.normal(0.0, 1.0, N)
    y = (s + rng.normal(0.0, 1.0, N) > 0.3).astype(np.int64)
    return (s, y), {}


def _best_f1_ties(rng, dtype):
    s = _grid(rng, (N, C), step=0.25, half_width=4)
    return (s, (s + rng.normal(0.0, 0.5, s.shape) > 0).astype(bool)), {}


def _best_accuracy(rng, dtype):
    s = _grid(rng, N, step=0.5, half_width=6)
    return (s, (s + rng.normal(0.0, 1.0, N) > 1.0).astype(np.int64)), {"metric": "accuracy"}


def _best_subset_accuracy(rng, dtype):
    s = rng.normal(0.0, 1.0, (N, C))
    return (s, (s + rng.normal(0.0, 0.4, s.shape) > 0.2).astype(np.int64)), {"metric": "accuracy"}


def _best_masked(rng, dtype):
    # GlobalPointer-style: masked entries are -inf (never positive; "all positive" is not a candidate)
    s = rng.normal(0.0, 2.0, (6, 6))
    y = (s + rng.normal(0.0, 1.0, s.shape) > 1.0).astype(np.int64)
    s[np.tril_indices(6, -1)] = -np.inf
    y[np.tril_indices(6, -1)] = 0
    s[0, 5] = np.inf
    return (s, y), {}


def _best_no_positive(rng, dtype):
    # F1 is 0 everywhere but "all negative", which is 0/0: zero_division decides
    return (rng.normal(0.0, 1.0, N), np.zeros(N, dtype=np.int64)), {"zero_division": 1.0}


def _best_all_positive(rng, dtype):
    return (rng.normal(0.0, 1.0, N), np.ones(N, dtype=np.int64)), {"metric": "accuracy"}


register(
    Case("best_threshold/f1", "best_threshold", _best_f1, grad_args=(), dtypes=ALL_DTYPES),
    Case("best_threshold/f1-ties", "best_threshold", _best_f1_ties, grad_args=()),
    Case("best_threshold/accuracy", "best_threshold", _best_accuracy, grad_args=(), dtypes=ALL_DTYPES),
    Case("best_threshold/subset-accuracy", "best_threshold", _best_subset_accuracy, grad_args=()),
    Case("best_threshold/masked-inf", "best_threshold", _best_masked, grad_args=()),
    Case("best_threshold/no-positive", "best_threshold", _best_no_positive, grad_args=()),
    Case("best_threshold/all-positive", "best_threshold", _best_all_positive, grad_args=()),
)


# --------------------------------------------------------------------------------------------
# E3 global_pointer_f1
# --------------------------------------------------------------------------------------------
def _gp(rng, dtype):
    b, h, n = 2, 3, 6
    s = rng.normal(-1.0, 2.0, (b, h, n, n))
    y = (rng.random((b, h, n, n)) < 0.15).astype(np.int64)
    lower = np.tril(np.ones((n, n), dtype=bool), -1)
    s[..., lower] = -np.inf
    y[..., lower] = 0
    s[1, :, 4:, :] = -np.inf  # padding of the second sentence
    s[1, :, :, 4:] = -np.inf
    y[1, :, 4:, :] = 0
    y[1, :, :, 4:] = 0
    return (s, y), {}


def _gp_nothing(rng, dtype):
    return (np.full((1, 2, 3, 3), -1.0), np.zeros((1, 2, 3, 3), dtype=np.int64)), {"zero_division": 1.0}


register(
    Case("global_pointer_f1/padded", "global_pointer_f1", _gp, grad_args=(), dtypes=ALL_DTYPES),
    Case("global_pointer_f1/nothing", "global_pointer_f1", _gp_nothing, grad_args=()),
)


# --------------------------------------------------------------------------------------------
# E4 pearson, spearman
# --------------------------------------------------------------------------------------------
def _pearson(rng, dtype):
    x = rng.normal(0.0, 1.0, N)
    return (x, 0.6 * x + rng.normal(0.0, 1.0, N)), {}


def _pearson_offset(rng, dtype):
    # a common offset far larger than the spread: the one-pass formula loses every digit here
    x = 1000.0 + rng.normal(0.0, 1.0, N)
    return (x, 3000.0 - x + rng.normal(0.0, 0.5, N)), {}


def _pearson_int(rng, dtype):
    return (rng.normal(0.0, 1.0, N), rng.integers(0, 6, N)), {}


def _spearman_ties(rng, dtype):
    return (_grid(rng, N, step=0.25, half_width=3), rng.integers(0, 5, N)), {}


def _spearman_inf(rng, dtype):
    x = rng.normal(0.0, 1.0, N)
    x[[2, 7]] = np.inf
    x[4] = -np.inf
    return (x, rng.normal(0.0, 1.0, N)), {}


register(
    Case("pearson/random", "pearson", _pearson, grad_args=(0, 1), dtypes=ALL_DTYPES),
    Case("pearson/offset", "pearson", _pearson_offset, grad_args=(0, 1),
         grad_tol={"float64": 3e-5},
         note="the finite-difference step of the reference gradient grows with |x| (6e-3 at 1000), and the "
              "curvature on a spread of 1 puts its own error near 1e-5"),
    Case("pearson/integer-y", "pearson", _pearson_int, grad_args=(0,)),
    Case("spearman/ties", "spearman", _spearman_ties, grad_args=(), dtypes=ALL_DTYPES),
    Case("spearman/inf", "spearman", _spearman_inf, grad_args=()),
)


# --------------------------------------------------------------------------------------------
# E5 leaderboard_mean
# --------------------------------------------------------------------------------------------
def _board(kind):
    def inputs(rng, dtype):
        return (rng.uniform(0.05, 0.95, (4, 7)),), {"kind": kind}

    return inputs


register(
    Case("leaderboard_mean/arithmetic", "leaderboard_mean", _board("arithmetic")),
    Case("leaderboard_mean/geometric", "leaderboard_mean", _board("geometric"), dtypes=ALL_DTYPES),
    Case("leaderboard_mean/harmonic", "leaderboard_mean", _board("harmonic")),
)


# --------------------------------------------------------------------------------------------
# best_threshold_vector
# --------------------------------------------------------------------------------------------
def _vector_scores(rng, rows, step=None):
    """``[rows, C]`` scores that favour the true class a little, and the class ids; on a grid of
    ``step`` (exact in every dtype, and ties on purpose) or continuous."""
    ids = rng.integers(0, C, rows)
    ids[:C] = np.arange(C)  # every class occurs
    s = rng.normal(0.0, 1.0, (rows, C)) + 0.8 * (ids[:, None] == np.arange(C))
    if step is not None:
        s = np.clip(np.round(s / step) * step, -4.0, 4.0)
    return s, ids


def _vector_f1(rng, dtype):
    return _vector_scores(rng, N), {}


def _vector_f1_grid(rng, dtype):
    return _vector_scores(rng, N, step=0.125), {"rounds": 2}


def _vector_accuracy_grid(rng, dtype):
    return _vector_scores(rng, N, step=0.25), {"metric": "accuracy"}


register(
    # continuous scores: the offsets are midpoints of differences of scores, whose float32 rounding
    # (a few 1e-7 absolute) is large relative to an offset near 0, so float64 only ...
    Case("best_threshold_vector/f1", "best_threshold_vector", _vector_f1, grad_args=(), dtypes=("float64",)),
    # ... and on a grid of 1/8, where every score, gap and midpoint is exact in every dtype
    Case("best_threshold_vector/f1-grid", "best_threshold_vector", _vector_f1_grid, grad_args=(),
         dtypes=ALL_DTYPES),
    Case("best_threshold_vector/accuracy-grid", "best_threshold_vector", _vector_accuracy_grid, grad_args=()),
)


# --------------------------------------------------------------------------------------------
# span_f1: spans are Python values, read in eager mode
# --------------------------------------------------------------------------------------------
def _spans(rng, sentences, per_sentence):
    """``[sentences, per_sentence, 3]`` integer spans ``(type, start, end)`` from a small grid, so that
    predicted and true spans overlap and a sentence may list a span twice (a set: it counts once)."""
    types = rng.integers(0, 2, (sentences, per_sentence))
    starts = rng.integers(0, 3, (sentences, per_sentence))
    ends = starts + rng.integers(0, 2, (sentences, per_sentence))
    return np.stack([types, starts, ends], axis=-1).astype(np.int64)


def _span_pairs(rng, dtype):
    return (_spans(rng, 6, 4), _spans(rng, 6, 3)), {}


def _span_nothing_predicted(rng, dtype):
    return (np.zeros((4, 0, 3), dtype=np.int64), _spans(rng, 4, 2)), {"zero_division": 1.0}


def _span_call(function, pred_spans, true_spans, **kwargs):
    """``span_f1`` on the backend's arrays, one ``[K, 3]`` array of span rows per sentence (array rows
    are spans, as the docstring says); its Python floats come back as float64 arrays of that backend."""
    import polyloss

    xp, backend = polyloss.get_namespace(pred_spans)
    sentences = backend.shape(pred_spans)[0]
    values = function([pred_spans[i, ...] for i in range(sentences)], [true_spans[i, ...] for i in range(sentences)],
                      **kwargs)
    return tuple(xp.asarray(v, dtype=xp.float64, device=backend.device(pred_spans)) for v in values)


def _span_reference_call(function, pred_spans, true_spans, **kwargs):
    return function([[tuple(row) for row in sentence.tolist()] for sentence in pred_spans],
                    [[tuple(row) for row in sentence.tolist()] for sentence in true_spans], **kwargs)


register(
    Case("span_f1/overlapping", "span_f1", _span_pairs, grad_args=(), dtypes=("float64",), modes=("eager",),
         call=_span_call, reference_call=_span_reference_call),
    Case("span_f1/nothing-predicted", "span_f1", _span_nothing_predicted, grad_args=(), dtypes=("float64",),
         modes=("eager",), call=_span_call, reference_call=_span_reference_call),
)

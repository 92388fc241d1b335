"""Conformance cases of the contrastive, similarity and margin family (``docs/contrastive.md``)."""

from __future__ import annotations

import numpy as np

from polyloss.conformance.registry import ALL_DTYPES, Case, register


def _scores(rng, shape, scale=3.0):
    return rng.normal(0.0, scale, shape)


def _ids(rng, shape, classes):
    return rng.integers(0, classes, shape)


def _cosines(rng, shape, low=-0.95, high=0.95):
    return rng.uniform(low, high, shape)


def _one_hot(ids, classes):
    return np.eye(classes, dtype=np.int64)[ids]


def _ids_and_where(rng, rows, classes, *, empty_row=None, keep_target=True):
    """Scores, ids and a candidate mask keeping each row's target (``empty_row``: nothing kept);
    large values under the mask must not matter."""
    s = _scores(rng, (rows, classes))
    y = _ids(rng, rows, classes)
    where = rng.random((rows, classes)) < 0.6
    if keep_target:
        where[np.arange(rows), y] = True
    if empty_row is not None:
        where[empty_row] = False
    s[~where] = rng.normal(0.0, 50.0, s.shape)[~where]
    return s, y, where


def _multi_hot(rng, rows, classes):
    """0/1 labels with rows of one, several, no positive and no negative."""
    y = (rng.random((rows, classes)) < 0.35).astype(np.int64)
    y[0] = 0
    y[0, 2] = 1
    y[1] = 1
    y[2] = 0
    return y


# --------------------------------------------------------------------------------------------
# C1 infonce, infonce_from_embeddings
# --------------------------------------------------------------------------------------------
def _infonce(rng, dtype):
    return (_scores(rng, (6, 9)), _ids(rng, 6, 9)), {}


def _infonce_axis(rng, dtype):
    return (_scores(rng, (3, 5, 4)), _ids(rng, (3, 4), 5)), {"axis": 1}


def _infonce_where(rng, dtype):
    s, y, where = _ids_and_where(rng, 6, 8, empty_row=4)
    return (s, y), {"where": where}


def _infonce_far(rng, dtype):
    # scores of magnitude 1e4 (float32's range for logits): confident rows, right and wrong
    s = _scores(rng, (4, 6))
    y = _ids(rng, 4, 6)
    s[np.arange(4), y] = [1e4, -1e4, 1e4, 50.0]
    return (s, y), {}


def _embeddings_diagonal(rng, dtype):
    # 5 queries, 7 keys: keys 5 and 6 are hard negatives
    return (rng.normal(size=(5, 8)), rng.normal(size=(7, 8))), {"temperature": 0.1}


def _embeddings_simcse(rng, dtype):
    return (rng.normal(size=(6, 8)),), {"pairing": "simcse"}


def _embeddings_dot(rng, dtype):
    return (rng.normal(size=(4, 5)), rng.normal(size=(4, 5))), {"temperature": 2.0, "normalize": False}


def _embeddings_zero_row(rng, dtype):
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    a[1] = 0.0
    b[2] = 0.0
    return (a, b), {}


def _embeddings_scaled(rng, dtype):
    # rows of magnitude 1e30 and 1e-30: the norm must not overflow or underflow in float32
    a = rng.normal(size=(4, 6)) * np.array([[1e30], [1e-30], [1.0], [1e30]])
    return (a,), {"pairing": "simcse", "temperature": 0.2}


register(
    Case("infonce/basic", "infonce", _infonce, dtypes=ALL_DTYPES),
    Case("infonce/axis1", "infonce", _infonce_axis),
    Case("infonce/where", "infonce", _infonce_where, dtypes=ALL_DTYPES),
    Case("infonce/far", "infonce", _infonce_far),
    Case("infonce_from_embeddings/diagonal", "infonce_from_embeddings", _embeddings_diagonal, grad_args=(0, 1)),
    Case("infonce_from_embeddings/simcse", "infonce_from_embeddings", _embeddings_simcse, dtypes=ALL_DTYPES),
    Case("infonce_from_embeddings/dot", "infonce_from_embeddings", _embeddings_dot, grad_args=(0, 1)),
    Case("infonce_from_embeddings/zero-row", "infonce_from_embeddings", _embeddings_zero_row, grad_args=(),
         note="a zero embedding is normalised to 0, a point where the normalisation is not differentiable: "
              "values only (the gradient is checked finite, 0 on that row, in the property tests)"),
    Case("infonce_from_embeddings/scaled", "infonce_from_embeddings", _embeddings_scaled, grad_args=(),
         note="rows of norm 1e30 and 1e-30: values (the scale-free direction); gradients of order 1e-30 are "
              "below finite differences' resolution"),
)


# --------------------------------------------------------------------------------------------
# C2 flatnce
# --------------------------------------------------------------------------------------------
def _flatnce(rng, dtype):
    return (_scores(rng, (6, 9)), _ids(rng, 6, 9)), {}


def _flatnce_where(rng, dtype):
    # row 4 has nothing, row 5 only its positive: both 0
    s, y, where = _ids_and_where(rng, 6, 8, empty_row=4)
    where[5] = False
    where[5, y[5]] = True
    return (s, y), {"where": where}


def _flatnce_paper(rng, dtype):
    s, y, where = _ids_and_where(rng, 6, 8, empty_row=4)
    return (s, y), {"where": where, "form": "paper"}


register(
    Case("flatnce/log", "flatnce", _flatnce, dtypes=ALL_DTYPES),
    Case("flatnce/log-where", "flatnce", _flatnce_where, dtypes=ALL_DTYPES),
    Case("flatnce/paper", "flatnce", _flatnce_paper, dtypes=ALL_DTYPES, grad_args=(),
         note="the paper form xi/sg(xi) has the value 1 and the gradient of the log form, which finite "
              "differences of its value cannot see: values only; the property tests compare its gradient "
              "with the log form's"),
)


# --------------------------------------------------------------------------------------------
# C3 am_softmax, arcface
# --------------------------------------------------------------------------------------------
def _am(rng, dtype):
    return (_cosines(rng, (6, 10)), _ids(rng, 6, 10)), {}


def _am_one_hot(rng, dtype):
    y = _ids(rng, 5, 7)
    return (_cosines(rng, (5, 7)), _one_hot(y, 7)), {"scale": 16.0, "margin": 0.2}


def _am_where(rng, dtype):
    c = _cosines(rng, (6, 8))
    y = _ids(rng, 6, 8)
    where = rng.random((6, 8)) < 0.6
    where[np.arange(6), y] = True
    where[3] = False
    return (c, y), {"where": where}


def _arcface(rng, dtype):
    return (_cosines(rng, (6, 10)), _ids(rng, 6, 10)), {}


def _arcface_one_hot(rng, dtype):
    y = _ids(rng, 5, 7)
    return (_cosines(rng, (5, 7)), _one_hot(y, 7)), {"scale": 30.0, "margin": 0.3}


def _arcface_axis(rng, dtype):
    y = _ids(rng, (3, 4), 6)
    where = rng.random((1, 6, 4)) < 0.9
    where[0, y[0], np.arange(4)] = True  # the targets of row 0 stay; rows 1, 2 may lose theirs (+inf)
    y[1:] = y[0]
    return (_cosines(rng, (3, 6, 4)), y), {"axis": 1, "where": where}


def _arcface_boundary(rng, dtype):
    # target cosines at exactly ±1, slightly beyond (rounding of normalised dot products), and a
    # non-target at ±1
    c = _cosines(rng, (6, 5))
    y = np.array([0, 1, 2, 3, 4, 0])
    c[np.arange(6), y] = [1.0, -1.0, 1.0000001, -1.0000001, 0.999, 1.0]
    c[5, 1] = -1.0
    return (c, y), {"scale": 16.0}


register(
    Case("am_softmax/ids", "am_softmax", _am, dtypes=ALL_DTYPES),
    Case("am_softmax/one-hot", "am_softmax", _am_one_hot),
    Case("am_softmax/where", "am_softmax", _am_where, dtypes=ALL_DTYPES),
    Case("arcface/ids", "arcface", _arcface, dtypes=ALL_DTYPES),
    Case("arcface/one-hot", "arcface", _arcface_one_hot),
    Case("arcface/axis1-where", "arcface", _arcface_axis),
    Case("arcface/boundary", "arcface", _arcface_boundary, dtypes=ALL_DTYPES, grad_args=(),
         note="cos(θ+m) has an infinite derivative at cos θ = ±1 (the library's is finite there by design): "
              "values only; finiteness of the gradient is a property test"),
)


# --------------------------------------------------------------------------------------------
# C4 cosent_loss
# --------------------------------------------------------------------------------------------
def _cosent_binary(rng, dtype):
    return (_cosines(rng, 16), rng.random(16) < 0.5), {}


def _cosent_graded(rng, dtype):
    # STS-like scores 0..5 with ties
    return (_cosines(rng, 24), rng.integers(0, 6, 24).astype(np.float64)), {"scale": 10.0}


def _cosent_where(rng, dtype):
    s = _cosines(rng, 20)
    where = rng.random(20) < 0.7
    s[~where] = rng.normal(0.0, 50.0, 20)[~where]
    return (s, rng.integers(0, 4, 20)), {"where": where}


def _cosent_single_label(rng, dtype):
    return (_cosines(rng, 6), np.full(6, 2)), {}


_SORTED = {"method": "sorted"}
_PAIRWISE = {"method": "pairwise"}
_ROUNDING = "the sorted form's exponents are λs_b and -λs_a, not λ(s_b - s_a): rounding of eps·λ·|s| (λ = 20)"

register(
    Case("cosent_loss/binary", "cosent_loss", _cosent_binary, dtypes=ALL_DTYPES, options=_PAIRWISE),
    Case("cosent_loss/graded", "cosent_loss", _cosent_graded, options=_PAIRWISE),
    Case("cosent_loss/where", "cosent_loss", _cosent_where, dtypes=ALL_DTYPES, options=_PAIRWISE),
    Case("cosent_loss/no-pairs", "cosent_loss", _cosent_single_label, options=_PAIRWISE),
    Case("cosent_loss/sorted-binary", "cosent_loss", _cosent_binary, dtypes=ALL_DTYPES, options=_SORTED,
         value_tol={"float32": 1e-4}, note=_ROUNDING),
    Case("cosent_loss/sorted-graded", "cosent_loss", _cosent_graded, options=_SORTED),
    Case("cosent_loss/sorted-where", "cosent_loss", _cosent_where, dtypes=ALL_DTYPES, options=_SORTED,
         value_tol={"float32": 1e-4}, note=_ROUNDING),
    Case("cosent_loss/sorted-no-pairs", "cosent_loss", _cosent_single_label, options=_SORTED),
)


# --------------------------------------------------------------------------------------------
# C5 unified_pairwise_loss, circle_loss
# --------------------------------------------------------------------------------------------
def _unified(rng, dtype):
    return (_scores(rng, (6, 8), scale=1.0), _multi_hot(rng, 6, 8)), {"gamma": 2.0, "margin": 0.25}


def _unified_ids(rng, dtype):
    return (_scores(rng, (5, 7), scale=1.0), _ids(rng, 5, 7)), {}


def _unified_where(rng, dtype):
    s = _scores(rng, (6, 8), scale=1.0)
    where = rng.random((6, 8)) < 0.7
    s[~where] = rng.normal(0.0, 50.0, s.shape)[~where]
    return (s, _multi_hot(rng, 6, 8)), {"where": where, "gamma": 4.0}


def _unified_far(rng, dtype):
    # scores near 1e4 whose differences are O(1): the shift keeps them
    return (1e4 + _scores(rng, (4, 6), scale=1.0), _multi_hot(rng, 4, 6)), {}


def _circle(rng, dtype):
    return (_cosines(rng, (6, 8)), _multi_hot(rng, 6, 8)), {"gamma": 16.0, "margin": 0.25}


def _circle_ids(rng, dtype):
    return (_cosines(rng, (5, 9)), _ids(rng, 5, 9)), {}


register(
    Case("unified_pairwise_loss/multi-hot", "unified_pairwise_loss", _unified, dtypes=ALL_DTYPES),
    Case("unified_pairwise_loss/ids", "unified_pairwise_loss", _unified_ids),
    Case("unified_pairwise_loss/where", "unified_pairwise_loss", _unified_where, dtypes=ALL_DTYPES),
    Case("unified_pairwise_loss/far", "unified_pairwise_loss", _unified_far, grad_args=(),
         note="scores near 1e4: finite differences of the reference carry ~1e-4 of noise there; values only "
              "(the property tests check that the gradient does not change under the shift)"),
    Case("circle_loss/multi-hot", "circle_loss", _circle, dtypes=ALL_DTYPES, grad_args=(),
         note="the weights α are held constant in the gradient (stop-gradient, as the paper): values only; "
              "the property tests check the gradient against the frozen-weight closed form"),
    Case("circle_loss/ids", "circle_loss", _circle_ids, grad_args=(), note="as circle_loss/multi-hot"),
)

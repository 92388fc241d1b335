"""The float64 CRF reference (polyloss.reference.structured) against the peer libraries.

Optional: each peer is skipped when it is not installed (they are not in pyproject). Checked with
pytorch-crf 0.7.2, torch-struct 0.5 (installed with --no-deps) and tensorflow-addons 0.23.0 on torch
2.13.0 and TensorFlow 2.21.0. TF Addons does not import under Keras 3 (it imports keras.src.engine);
it runs in a subprocess with tf-keras 2.21.0, TF_USE_LEGACY_KERAS=1 and keras.src.engine aliased to
tf_keras.src.engine. Every comparison is in float64; the largest differences seen were about 4e-15
(pytorch-crf), 2e-15 (torch-struct) and 9e-16 (TF Addons). The peers' conventions, and how they are
converted here:

=================  ==========================  ===========================  ===========================
                   pytorch-crf ``CRF``          torch-struct                  TF Addons ``text.crf_*``
                                                ``LinearChainCRF``
=================  ==========================  ===========================  ===========================
output             log-likelihood (= -nll)     partition, marginals of       log-likelihood (= -nll),
                                               edges (no nll)                [B]
reduction          "sum" over the batch by     none ([B])                    none ([B])
                   default; "none", "mean",
                   "token_mean"
layout             [T, B, K] unless            edge potentials               [B, T, K]
                   batch_first=True            [B, T-1, K_to, K_from]
padding            mask, right only: "mask of  lengths (right padding),      lengths (right padding)
                   the first timestep must     every length >= 2, the
                   all be on"                  longest = T
transitions        [from, to]                  folded into the edges,        [from, to]
                                               [to, from]
start / end        always (learned            folded into the first /       none
                   parameters; 0 = none)       last edge
decode             list of lists (no padding,  one-hot edges -> tags (0      [B, T] tags and scores, 0
                   no score)                   past the length); max score   past the length here; a
                                                                             length-0 row gets the
                                                                             first token's argmax and
                                                                             its score
-inf constraints   padding tags and emissions  no feasible path: about       padding: 0 * -inf = NaN;
                   are multiplied by 0:        -1e9 per edge (finite), not   no feasible path: NaN
                   0 * -inf = NaN; no          -inf; a length-1 sequence     log-likelihood, score -inf
                   feasible path: NaN          has no edge (partition
                                               log K)
=================  ==========================  ===========================  ===========================
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from polyloss.reference import structured as R

INF = np.inf


def random_crf(rng, B, T, K, *, min_length=1, constraints=False, lengths=None):
    e = 2.0 * rng.normal(size=(B, T, K))
    A = rng.normal(size=(K, K))
    st, en = rng.normal(size=K), rng.normal(size=K)
    if constraints:
        A[rng.random((K, K)) < 0.25] = -INF
    if lengths is None:
        lengths = rng.integers(min_length, T + 1, size=B)
        lengths[0] = T
    lengths = np.asarray(lengths)
    mask = np.arange(T)[None, :] < lengths[:, None]
    tags = rng.integers(0, K, size=(B, T))  # in range everywhere: pytorch-crf indexes the padding too
    return e, tags, A, st, en, mask, lengths


def agree(a, b, scale, tol=1e-12):
    """|a - b| <= tol (1 + |scale|), inf / NaN in the same places; returns the largest difference."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
    np.testing.assert_array_equal(a[~np.isfinite(b)], b[~np.isfinite(b)])
    finite = np.isfinite(b)
    diff = np.abs(a[finite] - b[finite])
    s = np.abs(np.asarray(scale, dtype=np.float64))
    s = s[np.isfinite(s)]
    bound = tol * (1.0 + (s.max() if s.size else 0.0))
    assert (diff <= bound).all(), (diff.max(), bound)
    MAX_DIFF[_peer()] = max(MAX_DIFF.get(_peer(), 0.0), float(diff.max()) if diff.size else 0.0)
    return float(diff.max()) if diff.size else 0.0


MAX_DIFF: dict = {}


def _peer():
    name = os.environ.get("PYTEST_CURRENT_TEST", "")
    return next((p for p in ("pytorch_crf", "torch_struct", "tensorflow_addons") if p in name), "other")


# ---------------------------------------------------------------------------------------------
# pytorch-crf
# ---------------------------------------------------------------------------------------------


def torchcrf_module(A, st, en):
    torch = pytest.importorskip("torch")
    torchcrf = pytest.importorskip("torchcrf")
    crf = torchcrf.CRF(A.shape[0], batch_first=True).double()
    with torch.no_grad():
        crf.transitions.copy_(torch.from_numpy(A))
        crf.start_transitions.copy_(torch.from_numpy(np.zeros(A.shape[0]) if st is None else st))
        crf.end_transitions.copy_(torch.from_numpy(np.zeros(A.shape[0]) if en is None else en))
    return torch, crf


@pytest.mark.parametrize("seed,B,T,K", [(0, 6, 5, 3), (1, 5, 6, 4), (2, 8, 3, 2), (3, 4, 1, 3)])
@pytest.mark.parametrize("boundary", [True, False])
def test_pytorch_crf_log_likelihood_and_decode(seed, B, T, K, boundary):
    rng = np.random.default_rng(seed)
    e, tags, A, st, en, mask, lengths = random_crf(rng, B, T, K)
    if not boundary:
        st = en = None  # pytorch-crf always has start / end: zeros are "none"
    torch, crf = torchcrf_module(A, st, en)
    args = (torch.from_numpy(e), torch.from_numpy(tags))
    llh = crf(*args, mask=torch.from_numpy(mask), reduction="none").detach().numpy()
    nll = R.crf_nll(e, tags, A, mask=mask, start=st, end=en)
    log_z = R.crf_log_partition(e, A, mask=mask, start=st, end=en)
    agree(-llh, nll, log_z)
    # its other reductions are over the batch / tokens of the log-likelihood
    for reduction, expected in [("sum", -nll.sum()), ("mean", -nll.mean()), ("token_mean", -nll.sum() / mask.sum())]:
        got = crf(*args, mask=torch.from_numpy(mask), reduction=reduction).item()
        assert abs(got - expected) <= 1e-12 * (1 + np.abs(log_z).sum())
    # decode: lists cut at each length, no score
    paths = crf.decode(torch.from_numpy(e), mask=torch.from_numpy(mask))
    ref_tags, _ = R.crf_decode(e, A, mask=mask, start=st, end=en)
    for row, path in enumerate(paths):
        assert len(path) == lengths[row]
        assert path == ref_tags[row, : lengths[row]].tolist()
        assert (ref_tags[row, lengths[row]:] == -1).all()


def test_pytorch_crf_constraints_and_ties():
    rng = np.random.default_rng(4)
    # -inf transitions on feasible rows with feasible gold paths; pytorch-crf agrees
    e, _, A, st, en, mask, lengths = random_crf(rng, 6, 5, 3, constraints=True)
    A[np.diag_indices(3)] = np.where(np.isneginf(A.diagonal()), 0.0, A.diagonal())  # feasible rows
    ref_tags, _ = R.crf_decode(e, A, mask=mask, start=st, end=en)
    torch, crf = torchcrf_module(A, st, en)
    # padding tags repeat the last real tag: pytorch-crf multiplies the padding's transition scores by
    # 0, which gives NaN for a -inf one (see test_pytorch_crf_differences); A[y, y] is finite here
    gold = np.array([np.where(m, t, t[m][-1]) for t, m in zip(ref_tags, mask)])
    llh = crf(torch.from_numpy(e), torch.from_numpy(gold), mask=torch.from_numpy(mask), reduction="none")
    agree(-llh.detach().numpy(), R.crf_nll(e, gold, A, mask=mask, start=st, end=en),
          R.crf_log_partition(e, A, mask=mask, start=st, end=en))
    # exact ties (integer scores): pytorch-crf's torch.max returns the first index, which is the
    # reference's rule (the smallest reversed path)
    B, T, K = 60, 5, 3
    e = rng.integers(-1, 2, size=(B, T, K)).astype(float)
    A = rng.integers(-1, 2, size=(K, K)).astype(float)
    st, en = rng.integers(-1, 2, size=K).astype(float), rng.integers(-1, 2, size=K).astype(float)
    mask = np.arange(T)[None, :] < rng.integers(1, T + 1, size=(B, 1))
    torch, crf = torchcrf_module(A, st, en)
    paths = crf.decode(torch.from_numpy(e), mask=torch.from_numpy(mask))
    ref_tags, _ = R.crf_decode(e, A, mask=mask, start=st, end=en)
    assert paths == [ref_tags[row][mask[row]].tolist() for row in range(B)]


def test_pytorch_crf_left_padding_converted():
    # pytorch-crf refuses left padding; shifting each row to the right-padded layout agrees
    rng = np.random.default_rng(5)
    e, tags, A, st, en, mask, lengths = random_crf(rng, 5, 6, 3)
    left_e, left_tags, left_mask = np.zeros_like(e), np.zeros_like(tags), np.zeros_like(mask)
    for row, n in enumerate(lengths):
        T = mask.shape[1]
        left_e[row, T - n:], left_tags[row, T - n:], left_mask[row, T - n:] = e[row, :n], tags[row, :n], True
    torch, crf = torchcrf_module(A, st, en)
    with pytest.raises(ValueError, match="mask of the first timestep must all be on"):
        crf(torch.from_numpy(left_e), torch.from_numpy(left_tags), mask=torch.from_numpy(left_mask))
    llh = crf(torch.from_numpy(e), torch.from_numpy(tags), mask=torch.from_numpy(mask), reduction="none")
    np.testing.assert_allclose(-llh.detach().numpy(), R.crf_nll(left_e, left_tags, A, mask=left_mask, start=st, end=en),
                               rtol=1e-12, atol=1e-12)


def test_pytorch_crf_differences():
    """Where pytorch-crf departs from the contract (documented, not bugs of the reference)."""
    torch, crf = torchcrf_module(np.array([[0.0, -INF], [0.0, 0.0]]), np.zeros(2), np.zeros(2))
    e = torch.zeros(2, 3, 2, dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    # a padding tag reached by a -inf transition: 0 * -inf = NaN (the reference ignores padding tags)
    tags = torch.tensor([[0, 0, 0], [0, 1, 1]])
    llh = crf(e, tags, mask=mask, reduction="none").detach().numpy()
    assert np.isnan(llh[1]) and not np.isnan(llh[0])
    assert R.crf_nll(e.numpy(), tags.numpy(), crf.transitions.detach().numpy(), mask=mask.numpy())[1] == np.log(2.0)
    # no feasible path: log-likelihood NaN (reference: nll +inf), decode returns tags anyway
    torch, crf = torchcrf_module(np.full((2, 2), -INF), np.zeros(2), np.zeros(2))
    llh = crf(e, tags, mask=mask, reduction="none").detach().numpy()
    assert np.isnan(llh[0]) and R.crf_nll(e.numpy(), tags.numpy(), np.full((2, 2), -INF), mask=mask.numpy())[0] == INF
    assert crf.decode(e, mask=mask)[0] == [0, 0, 0]
    # NaN emissions at padding leak into the result (0 * NaN)
    e2 = e.clone()
    e2[1, 2] = float("nan")
    torch, crf = torchcrf_module(np.zeros((2, 2)), np.zeros(2), np.zeros(2))
    assert np.isnan(crf(e2, tags, mask=mask, reduction="none").detach().numpy()[1])


# ---------------------------------------------------------------------------------------------
# torch-struct
# ---------------------------------------------------------------------------------------------


def torch_struct_edges(e, A, st, en, lengths):
    """Fold emissions, transitions ([from, to] -> [to, from]), start and end into torch-struct's
    edge potentials phi[b, n, z_{n+1}, z_n], n = 0 .. T-2."""
    B, T, K = e.shape
    edges = np.zeros((B, T - 1, K, K))
    for b in range(B):
        for n in range(T - 1):
            edges[b, n] = A.T + e[b, n + 1][:, None]
            if n == 0:
                edges[b, n] += (e[b, 0] + st)[None, :]
            if n == lengths[b] - 2:
                edges[b, n] += en[:, None]
    return edges


def torch_struct_dist(e, A, st, en, lengths):
    torch = pytest.importorskip("torch")
    torch_struct = pytest.importorskip("torch_struct")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "does not define `arg_constraints`"
        return torch, torch_struct, torch_struct.LinearChainCRF(
            torch.from_numpy(torch_struct_edges(e, A, st, en, lengths)), lengths=torch.from_numpy(lengths))


@pytest.mark.parametrize("seed,B,T,K", [(0, 5, 4, 3), (1, 4, 6, 4), (2, 6, 2, 2), (3, 5, 5, 3)])
@pytest.mark.parametrize("constraints", [False, True])
def test_torch_struct_partition_marginals_argmax(seed, B, T, K, constraints):
    rng = np.random.default_rng(10 + seed)
    e, _, A, st, en, mask, lengths = random_crf(rng, B, T, K, min_length=2, constraints=constraints)
    if constraints:
        A[np.isneginf(A).all(1), 0] = 0.0  # every row feasible (see the differences below)
    torch, _, dist = torch_struct_dist(e, A, st, en, lengths)
    log_z = R.crf_log_partition(e, A, mask=mask, start=st, end=en)
    agree(dist.partition.detach().numpy(), log_z, log_z)
    edge_marg = dist.marginals.detach().numpy()  # [B, T-1, to, from]
    node = np.zeros((B, T, K))
    node[:, 0] = edge_marg[:, 0].sum(-2)
    node[:, 1:] = edge_marg.sum(-1)
    agree(node, R.crf_marginals(e, A, mask=mask, start=st, end=en), 1.0)
    # argmax: one-hot edges -> tags (0 past the length)
    tags, _ = type(dist).struct.from_parts(dist.argmax.detach())
    ref_tags, ref_scores = R.crf_decode(e, A, mask=mask, start=st, end=en)
    np.testing.assert_array_equal(np.where(mask, tags.numpy(), -1), ref_tags)
    assert (tags.numpy()[~mask] == 0).all()
    agree(dist.max.detach().numpy(), ref_scores, ref_scores)


def test_torch_struct_differences():
    """Where torch-struct departs from the contract."""
    rng = np.random.default_rng(20)
    e, _, A, st, en, mask, lengths = random_crf(rng, 3, 4, 3, lengths=[4, 3, 2])
    # no feasible path: a large finite negative partition (the log semiring's zero), not -inf
    torch, torch_struct, dist = torch_struct_dist(e, np.full((3, 3), -INF), st, en, lengths)
    part = dist.partition.detach().numpy()
    assert np.isfinite(part).all() and (part <= -1e8).all()
    assert (R.crf_log_partition(e, np.full((3, 3), -INF), mask=mask, start=st, end=en) == -INF).all()
    # a sequence of one token has no edge: its emissions are lost (the partition is log K)
    lengths = np.array([4, 1, 2])
    _, _, dist = torch_struct_dist(e, A, st, en, lengths)
    np.testing.assert_allclose(dist.partition.detach().numpy()[1], np.log(3.0))
    # the longest sequence must fill T
    with pytest.raises(AssertionError, match="One length must be at least N"):
        torch_struct_dist(e, A, st, en, np.array([3, 3, 2]))[2].partition  # noqa: B018


# ---------------------------------------------------------------------------------------------
# TensorFlow Addons (end of life): in a subprocess, with the legacy Keras it needs
# ---------------------------------------------------------------------------------------------

TFA_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    # TFA 0.23 imports keras.src.engine (Keras 2 layout); with TF_USE_LEGACY_KERAS=1 it lives in tf_keras
    import tf_keras.src.engine
    sys.modules["keras.src.engine"] = tf_keras.src.engine
    import numpy as np
    import tensorflow as tf
    import tensorflow_addons as tfa
    d = np.load(sys.argv[1])
    e, tags, A, lengths = (tf.constant(d[k]) for k in ("e", "tags", "A", "lengths"))
    llh, _ = tfa.text.crf_log_likelihood(e, tags, lengths, A)
    log_norm = tfa.text.crf_log_norm(e, lengths, A)
    dtags, dscore = tfa.text.crf_decode(e, A, lengths)
    np.savez(sys.argv[2], llh=llh.numpy(), log_norm=log_norm.numpy(), tags=dtags.numpy(), score=dscore.numpy(),
             version=np.array(tfa.__version__))
    """
)


def run_tfa(tmp_path, **arrays):
    if importlib.util.find_spec("tensorflow_addons") is None or importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tensorflow-addons (with tf-keras) unavailable: an optional peer")
    np.savez(tmp_path / "in.npz", **arrays)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", TFA_SCRIPT, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"tensorflow-addons does not run here: {proc.stderr.strip().splitlines()[-1:]}")
    return dict(np.load(tmp_path / "out.npz"))


def test_tensorflow_addons(tmp_path):
    rng = np.random.default_rng(30)
    B, T, K = 8, 5, 3
    e, tags, A, _, _, mask, _ = random_crf(rng, B, T, K, lengths=[5, 5, 4, 3, 2, 1, 1, 0])
    lengths = mask.sum(1)
    out = run_tfa(tmp_path, e=e, tags=tags, A=A, lengths=lengths)
    log_z = R.crf_log_partition(e, A, mask=mask)  # TFA has no start / end scores
    agree(-out["llh"], R.crf_nll(e, tags, A, mask=mask), log_z)
    agree(out["log_norm"], log_z, log_z)
    ref_tags, ref_scores = R.crf_decode(e, A, mask=mask)
    real = lengths > 0
    np.testing.assert_array_equal(np.where(mask, out["tags"], -1)[real], ref_tags[real])
    agree(out["score"][real], ref_scores[real], ref_scores[real])
    # a length-0 row still gets a tag and the best first-token score (the reference: fill and 0)
    assert ref_scores[~real].tolist() == [0.0] and out["score"][~real][0] == e[~real][0, 0].max()

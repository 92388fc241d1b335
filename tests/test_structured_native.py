"""The structured-prediction core against the peers, where their conventions meet ours, and under the
frameworks' compilers.

Peers (optional, skipped when absent; pinned in .ci/constraints.txt): pytorch-crf 0.7.2, torch-struct
0.5, TensorFlow Addons 0.23 (in a subprocess with tf-keras: it does not import under Keras 3). Each
convention difference is named where it is converted:

- pytorch-crf returns the log-likelihood (our ``-crf_nll``), summed over the batch by default
  (``reduction="none"`` here), time first unless ``batch_first=True``, right padding only ("mask of the
  first timestep must all be on"), transitions ``[from, to]`` as ours, start / end always present (its
  learned ``start_transitions`` / ``end_transitions``: ours with zeros for "none"); it multiplies the
  padding's scores by the mask (NaN next to ``-inf``: the inputs here have none), and ``decode``
  returns Python lists (ours: a padded tensor).
- torch-struct takes edge potentials ``[B, T-1, K_to, K_from]``: ours folded in with the transitions
  transposed, the first emission and ``start`` on the first edge, ``end`` on each row's last edge; it
  needs every length >= 2 and returns edge marginals (summed here into tag marginals).
- TF Addons takes lengths (right padding), no start / end, and returns the log-likelihood.

Compiled modes: ``jax.jit`` traces one ``lax.scan`` (the number of equations does not grow with T) and
``tf.function`` with an unknown T builds one ``While`` loop; both give the eager values and gradients.
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

import polyloss
from polyloss.testing import assert_close

from helpers import get

INF = np.inf


def right_padded(rng, b, t, k, *, min_length=1, scale=2.0):
    e = rng.normal(0.0, scale, (b, t, k))
    a, start, end = rng.normal(size=(k, k)), rng.normal(size=k), rng.normal(size=k)
    lengths = rng.integers(min_length, t + 1, size=b)
    lengths[0] = t
    mask = np.arange(t)[None, :] < lengths[:, None]
    tags = rng.integers(0, k, (b, t))
    return e, tags, a, start, end, mask, lengths


# --------------------------------------------------------------------------------------------
# pytorch-crf
# --------------------------------------------------------------------------------------------
def pytorch_crf(a, start, end, dtype):
    torch = pytest.importorskip("torch")
    get("torch")
    torchcrf = pytest.importorskip("torchcrf")
    crf = torchcrf.CRF(a.shape[0], batch_first=True).to(dtype)
    with torch.no_grad():
        crf.transitions.copy_(torch.from_numpy(a))
        crf.start_transitions.copy_(torch.from_numpy(start))
        crf.end_transitions.copy_(torch.from_numpy(end))
    return torch, crf


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed,b,t,k", [(0, 8, 12, 5), (1, 4, 1, 3), (2, 16, 40, 9)])
def test_pytorch_crf_log_likelihood_gradients_and_decode(dtype, seed, b, t, k):
    rng = np.random.default_rng(seed)
    e, tags, a, start, end, mask, lengths = right_padded(rng, b, t, k)
    torch, crf = pytorch_crf(a, start, end, getattr(__import__("torch"), dtype))
    emissions = torch.tensor(e, dtype=crf.transitions.dtype, requires_grad=True)
    tags_t, mask_t = torch.from_numpy(tags), torch.from_numpy(mask)
    theirs = -crf(emissions, tags_t, mask=mask_t, reduction="none")
    ours = polyloss.crf_nll(emissions, tags_t, crf.transitions, mask=mask_t, start=crf.start_transitions,
                            end=crf.end_transitions)
    tol = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=2e-5, atol=2e-5)}[dtype]
    assert_close(ours, theirs.detach(), **tol)
    params = [emissions, crf.transitions, crf.start_transitions, crf.end_transitions]
    grads = [torch.autograd.grad(loss.sum(), params, allow_unused=True) for loss in (ours, theirs)]
    for p, g_ours, g_theirs in zip(params, *grads):  # T = 1: pytorch-crf never uses the transitions (None)
        assert_close(g_ours, g_theirs if g_theirs is not None else torch.zeros_like(p), **tol)
    paths = crf.decode(emissions.detach(), mask=mask_t)  # lists cut at each length
    got, _ = polyloss.crf_decode(emissions.detach(), crf.transitions.detach(), mask=mask_t,
                                 start=crf.start_transitions.detach(), end=crf.end_transitions.detach())
    assert [row[:n].tolist() for row, n in zip(got, lengths)] == paths


def test_pytorch_crf_zero_initialised_model_ties():
    """Every path ties at zero scores: both return all zeros (first-index argmax, the tie rule)."""
    torch, crf = pytorch_crf(np.zeros((4, 4)), np.zeros(4), np.zeros(4), __import__("torch").float32)
    e = torch.zeros(3, 5, 4)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    got, _ = polyloss.crf_decode(e, crf.transitions.detach(), mask=mask)
    assert got.tolist() == [[0] * 5, [0, 0, 0, -1, -1], [0, -1, -1, -1, -1]]
    assert [row[row >= 0].tolist() for row in got] == crf.decode(e, mask=mask)


def test_pytorch_crf_left_padding_is_ours_shifted():
    """pytorch-crf refuses left padding; ours takes it and equals pytorch-crf on the shifted rows."""
    rng = np.random.default_rng(3)
    e, tags, a, start, end, mask, lengths = right_padded(rng, 5, 6, 3)
    torch, crf = pytorch_crf(a, start, end, __import__("torch").float64)
    t = mask.shape[1]
    left_e, left_tags, left_mask = np.zeros_like(e), np.zeros_like(tags), np.zeros_like(mask)
    for row, n in enumerate(lengths):
        left_e[row, t - n:], left_tags[row, t - n:], left_mask[row, t - n:] = e[row, :n], tags[row, :n], True
    with pytest.raises(ValueError, match="mask of the first timestep must all be on"):
        crf(torch.from_numpy(left_e), torch.from_numpy(left_tags), mask=torch.from_numpy(left_mask))
    theirs = -crf(torch.from_numpy(e), torch.from_numpy(tags), mask=torch.from_numpy(mask), reduction="none")
    ours = polyloss.crf_nll(torch.from_numpy(left_e), torch.from_numpy(left_tags), crf.transitions.detach(),
                            mask=torch.from_numpy(left_mask), start=crf.start_transitions.detach(),
                            end=crf.end_transitions.detach())
    assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-12)


def test_pytorch_crf_differences():
    """Named differences: sign and reduction by default; NaN where -inf meets the padding (ours ignores
    the padding); NaN for an infeasible row (ours: +inf and decode score -inf, tags fill)."""
    torch, crf = pytorch_crf(np.array([[0.0, -INF], [0.0, 0.0]]), np.zeros(2), np.zeros(2), __import__("torch").float64)
    e = torch.zeros(2, 3, 2, dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    tags = torch.tensor([[0, 0, 0], [0, 1, 1]])  # row 1's padding "transitions" 0 -> 1 (forbidden)
    theirs = crf(e, tags, mask=mask)  # reduction "sum" of the log-likelihood
    assert theirs.ndim == 0 and torch.isnan(theirs)
    ours = polyloss.crf_nll(e, tags, crf.transitions.detach(), mask=mask)
    assert torch.isfinite(ours).all() and ours[1].item() == pytest.approx(np.log(2.0), rel=1e-15)
    infeasible = torch.full((2, 2), -INF, dtype=torch.float64)
    _, crf = pytorch_crf(infeasible.numpy(), np.zeros(2), np.zeros(2), torch.float64)
    assert torch.isnan(crf(e, tags, mask=mask, reduction="none")[0])
    assert polyloss.crf_nll(e, tags, infeasible, mask=mask)[0].item() == INF
    got, score = polyloss.crf_decode(e, infeasible, mask=mask)
    assert got[0].tolist() == [-1, -1, -1] and score[0].item() == -INF


# --------------------------------------------------------------------------------------------
# torch-struct
# --------------------------------------------------------------------------------------------
def torch_struct_edges(e, a, start, end, lengths):
    """Ours folded into torch-struct's edge potentials ``phi[b, n, to, from]``, n = 0 .. T-2."""
    b, t, k = e.shape
    edges = a.T[None, None] + e[:, 1:, :, None]
    edges[:, 0] += (e[:, 0] + start)[:, None, :]
    for row, n in enumerate(lengths):
        edges[row, n - 2] += end[:, None]
    return edges


@pytest.mark.parametrize("seed,b,t,k", [(0, 6, 5, 3), (1, 4, 9, 5)])
def test_torch_struct_partition_and_marginals(seed, b, t, k):
    torch = pytest.importorskip("torch")
    torch_struct = pytest.importorskip("torch_struct")
    rng = np.random.default_rng(seed)
    e, _, a, start, end, mask, lengths = right_padded(rng, b, t, k, min_length=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "does not define `arg_constraints`"
        dist = torch_struct.LinearChainCRF(torch.from_numpy(torch_struct_edges(e, a, start, end, lengths)),
                                           lengths=torch.from_numpy(lengths))
    kw = {"mask": torch.from_numpy(mask), "start": torch.from_numpy(start), "end": torch.from_numpy(end)}
    assert_close(polyloss.crf_log_partition(torch.from_numpy(e), torch.from_numpy(a), **kw), dist.partition.detach(),
                 rtol=1e-12)
    edge = dist.marginals.detach().numpy()  # [B, T-1, to, from]
    node = np.zeros((b, t, k))
    node[:, 0] = edge[:, 0].sum(-2)
    node[:, 1:] = edge.sum(-1)
    assert_close(polyloss.crf_marginals(torch.from_numpy(e), torch.from_numpy(a), **kw), node, rtol=1e-11, atol=1e-13)


# --------------------------------------------------------------------------------------------
# TensorFlow Addons (end of life): in a subprocess, with the legacy Keras it needs
# --------------------------------------------------------------------------------------------
TFA_SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    warnings.simplefilter("ignore")
    import tf_keras.src.engine  # TFA 0.23 imports keras.src.engine (Keras 2 layout)
    sys.modules["keras.src.engine"] = tf_keras.src.engine
    import numpy as np
    import tensorflow as tf
    import tensorflow_addons as tfa
    d = np.load(sys.argv[1])
    e, tags, a, lengths = (tf.constant(d[k]) for k in ("e", "tags", "a", "lengths"))
    llh, _ = tfa.text.crf_log_likelihood(e, tags, lengths, a)
    dtags, dscore = tfa.text.crf_decode(e, a, lengths)
    np.savez(sys.argv[2], llh=llh.numpy(), log_norm=tfa.text.crf_log_norm(e, lengths, a).numpy(),
             tags=dtags.numpy(), score=dscore.numpy())
    """
)


def test_tensorflow_addons(tmp_path):
    tf = pytest.importorskip("tensorflow")
    get("tensorflow")
    if importlib.util.find_spec("tensorflow_addons") is None or importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tensorflow-addons (with tf-keras) unavailable: an optional peer")
    rng = np.random.default_rng(30)
    e, tags, a, _, _, mask, lengths = right_padded(rng, 8, 7, 4)
    np.savez(tmp_path / "in.npz", e=e, tags=tags, a=a, lengths=lengths)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", TFA_SCRIPT, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"tensorflow-addons does not run here: {done.stderr.strip().splitlines()[-1:]}")
    out = dict(np.load(tmp_path / "out.npz"))
    args = (tf.constant(e), tf.constant(a))
    kw = {"mask": tf.constant(mask)}
    assert_close(polyloss.crf_nll(args[0], tf.constant(tags), args[1], **kw), -out["llh"], rtol=1e-12)
    assert_close(polyloss.crf_log_partition(*args, **kw), out["log_norm"], rtol=1e-12)
    got, score = polyloss.crf_decode(*args, **kw)
    assert_close(got, np.where(mask, out["tags"], -1))  # TF Addons leaves its own values past the length
    assert_close(score, out["score"], rtol=1e-12)


# --------------------------------------------------------------------------------------------
# compiled: jax.jit and tf.function (unknown T), one loop, never unrolled
# --------------------------------------------------------------------------------------------
def _inputs(t, seed=5, b=3, k=4):
    rng = np.random.default_rng(seed)
    e, tags, a, start, end, mask, _ = right_padded(rng, b, t, k)
    return e, tags, a, start, end, np.roll(mask, 1, axis=1) if t > 2 else mask  # some left padding too


def _equations(jaxpr) -> int:
    """The number of equations of a jaxpr, those of its sub-programs (scan bodies, custom rules) included."""
    import jax.extend.core as jax_core

    count = 0
    for eqn in jaxpr.eqns:
        count += 1
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax_core.ClosedJaxpr):
                    count += _equations(sub.jaxpr)
                elif isinstance(sub, jax_core.Jaxpr):
                    count += _equations(sub)
    return count


def test_jax_jit_one_scan_whatever_t():
    get("jax")
    import jax
    import jax.numpy as jnp

    def loss(e, tags, a, s, u, m):
        return jnp.sum(polyloss.crf_nll(e, tags, a, mask=m, start=s, end=u))

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 2, 3, 4)))
    sizes = []
    for t in (6, 48):
        arrays = [jnp.asarray(x) for x in _inputs(t)]
        value, grads = value_and_grad(*arrays)
        eager_value, eager_grads = jax.value_and_grad(loss, argnums=(0, 2, 3, 4))(*arrays)
        assert_close(value, np.asarray(eager_value), rtol=1e-12)
        for g, h in zip(grads, eager_grads):
            assert_close(g, np.asarray(h), rtol=1e-10, atol=1e-12)
        jaxpr = jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 2, 3, 4)))(*arrays)
        assert "scan" in str(jaxpr)
        sizes.append(_equations(jaxpr.jaxpr))
    assert sizes[0] == sizes[1]  # the program does not grow with T: nothing is unrolled
    decode = jax.jit(lambda e, a, m: polyloss.crf_decode(e, a, mask=m))
    e, _, a, _, _, m = _inputs(9)
    tags, score = decode(jnp.asarray(e), jnp.asarray(a), jnp.asarray(m))
    eager_tags, eager_score = polyloss.crf_decode(e, a, mask=m)
    assert_close(np.asarray(tags), eager_tags)
    assert_close(np.asarray(score), eager_score, rtol=1e-12)


def test_tf_function_with_unknown_length():
    tf = pytest.importorskip("tensorflow")
    get("tensorflow")
    k = 4
    spec = [tf.TensorSpec([None, None, k], tf.float64), tf.TensorSpec([None, None], tf.int64),
            tf.TensorSpec([k, k], tf.float64), tf.TensorSpec([k], tf.float64), tf.TensorSpec([k], tf.float64),
            tf.TensorSpec([None, None], tf.bool)]

    @tf.function(input_signature=spec)
    def value_and_grad(e, tags, a, s, u, m):
        with tf.GradientTape() as tape:
            tape.watch([e, a, s, u])
            loss = tf.reduce_sum(polyloss.crf_nll(e, tags, a, mask=m, start=s, end=u))
        return loss, tape.gradient(loss, [e, a, s, u])

    @tf.function(input_signature=[spec[0], spec[2], spec[5]])
    def decode(e, a, m):
        return polyloss.crf_decode(e, a, mask=m)

    graph = value_and_grad.get_concrete_function().graph.as_graph_def()
    ops = [node.op for node in graph.node] + [node.op for f in graph.library.function for node in f.node_def]
    assert {"While", "StatelessWhile"} & set(ops)  # the scan is a loop (inside the kernel's XLA function)
    for t in (1, 3, 11):  # one graph for every length, T = 1 included
        arrays = [tf.constant(x) for x in _inputs(t)]
        value, grads = value_and_grad(*arrays)
        e, tags, a, s, u, m = _inputs(t)
        assert_close(value, np.sum(polyloss.crf_nll(e, tags, a, mask=m, start=s, end=u)), rtol=1e-12)
        eager = [tf.constant(x) for x in (e, a, s, u)]
        with tf.GradientTape() as tape:
            tape.watch(eager)
            eager_loss = tf.reduce_sum(polyloss.crf_nll(eager[0], tf.constant(tags), eager[1], mask=tf.constant(m),
                                                        start=eager[2], end=eager[3]))
        for g, h in zip(grads, tape.gradient(eager_loss, eager)):
            assert_close(g, h.numpy(), rtol=1e-10, atol=1e-12)
        tags_got, score = decode(arrays[0], arrays[2], arrays[5])
        want_tags, want_score = polyloss.crf_decode(e, a, mask=m)
        assert_close(tags_got, want_tags)
        assert_close(score, want_score, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# a toy tagger with the native face, polyloss.torch.CRF (the Keras layer's: tests/test_keras_wrappers.py)
# --------------------------------------------------------------------------------------------
def test_torch_toy_tagger_trains_and_decodes():
    """Embeddings + linear + ``polyloss.torch.CRF`` (BIO constraints through ``allowed=``) on a BIO task
    where the tag depends on the previous word: the loss falls and the decoded accuracy rises."""
    torch = pytest.importorskip("torch")
    get("torch")
    plt = pytest.importorskip("polyloss.torch")
    torch.manual_seed(0)
    labels = ["O", "B-X", "I-X"]
    vocab, k = 6, len(labels)

    def batch(n, t, rng):
        words = rng.integers(0, vocab, (n, t))
        # a word 0 opens an entity (B-X) that runs over the following words 1 (I-X); the rest is O
        tags = np.zeros((n, t), dtype=np.int64)
        for row in range(n):
            for i in range(t):
                if words[row, i] == 0:
                    tags[row, i] = 1
                elif words[row, i] == 1 and i > 0 and tags[row, i - 1] in (1, 2):
                    tags[row, i] = 2
        lengths = rng.integers(2, t + 1, n)
        mask = np.arange(t)[None, :] < lengths[:, None]
        return torch.from_numpy(words), torch.from_numpy(tags), torch.from_numpy(mask)

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, 8)
            self.proj = torch.nn.Linear(8, k)
            self.crf = plt.CRF(k, allowed=polyloss.allowed_transitions(labels))

        def forward(self, words, tags, mask):
            return self.crf(self.proj(self.embed(words)), tags, mask=mask)

        def decode(self, words, mask):
            with torch.no_grad():
                return self.crf.decode(self.proj(self.embed(words)), mask=mask)[0]

    def accuracy(model, words, tags, mask):
        got = model.decode(words, mask)
        assert (got[~mask] == -1).all()
        return (got[mask] == tags[mask]).float().mean().item()

    rng = np.random.default_rng(0)
    model = Tagger()
    test = batch(64, 12, np.random.default_rng(1))
    before = accuracy(model, *test)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(60):
        loss = model(*batch(32, 10, rng))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:10])
    after = accuracy(model, *test)
    assert before < 0.9 < 0.99 < after, (before, after)

"""``polyloss.multitask`` against the peers (LibMTL 1.1.5, TorchJD 0.18.0) where their conventions match
ours, each difference named, and ``task_gradients`` against each framework's own differentiation.

Conventions (details and the peers' bugs in ``tests/test_multitask_peers.py`` and ``docs/multitask.md``):

* MGDA: LibMTL and TorchJD return α with ``u = Σ α_i g_i``, as our ``weights``. For two tasks all three
  use the closed form, but LibMTL clips to 0.999 / 0.001 where we (and TorchJD) return 1 / 0. For
  K >= 3 both peers iterate (LibMTL a projected-gradient loop stopped by an L1 change below 1e-5,
  TorchJD Frank-Wolfe with ε = 1e-3 and 100 iterations): their value is never below ours, and
  usually above it by more than 1e-6.
* PCGrad: TorchJD draws ``torch.randperm(K)`` per task and skips j = i (as Yu et al. and we do); with
  the same permutations, identical. LibMTL shuffles all indices, i included, and projects a task on
  its own gradient when ``<g_i', g_i> < 0`` (then the results differ); elsewhere identical. Both sum
  the projected gradients (our direction) and return the effective weights (ours).
* Uncertainty weighting: LibMTL's ``UW`` and TorchJD's ``scalarization.UW`` are Kendall's Gaussian form
  ``Σ ½ e^{-s} L + ½ s``, ours; TorchJD's ``GeometricMean`` is our "power" with γ = 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from polyloss import multitask as MT
from polyloss.testing import assert_close

from helpers import get, libmtl_weighting


@pytest.fixture
def torch():
    get("torch")
    import torch

    return torch


pytestmark = pytest.mark.usefixtures("restore_global_rngs")


def value(grads, w):
    u = np.asarray(w) @ grads
    return float(u @ u)


# --------------------------------------------------------------------------------------------
# MGDA
# --------------------------------------------------------------------------------------------
def test_min_norm_against_libmtl(torch, float64_default):
    mgda = libmtl_weighting().MGDA()
    rng = np.random.default_rng(0)
    interior = 0
    for _ in range(20):  # two tasks: the same closed form in the interior
        grads = rng.normal(size=(2, 5)) * np.exp(rng.normal(size=(2, 1)))
        ours = MT.combine_gradients(torch.tensor(grads), method="min_norm")[1].numpy()
        theirs = mgda._find_min_norm_element(torch.tensor(grads)).numpy()
        if 0.0 < ours[0] < 1.0:
            interior += 1
            assert_close(theirs, ours, rtol=1e-12, atol=1e-14)
        else:  # LibMTL's clipped convention
            assert sorted(theirs.tolist()) == pytest.approx([0.001, 0.999], abs=1e-15)
    assert interior >= 8
    misses = 0
    for k in range(3, 8):  # iterative on their side: never below our value, often above it
        for _ in range(3):
            grads = rng.normal(size=(k, 2 * k))
            ours = MT.combine_gradients(torch.tensor(grads), method="min_norm")[1].numpy()
            theirs = mgda._find_min_norm_element(torch.tensor(grads)).numpy()
            assert value(grads, theirs) >= value(grads, ours) * (1 - 1e-13)
            misses += value(grads, theirs) > value(grads, ours) * (1 + 1e-6)
    assert misses >= 1  # LibMTL stops on an L1 change of α below 1e-5, not on optimality (15 % above here)


def test_min_norm_against_torchjd(torch):
    aggregation = pytest.importorskip("torchjd.aggregation")
    rng = np.random.default_rng(1)
    for _ in range(20):  # two tasks: one exact Frank-Wolfe step on their side
        jac = torch.tensor(rng.normal(size=(2, 6)) * np.exp(rng.normal(size=(2, 1))))
        u, w = MT.combine_gradients(jac, method="min_norm")
        assert_close(w, aggregation.MGDAWeighting()(jac @ jac.T), rtol=1e-12, atol=1e-14)
        assert_close(u, aggregation.MGDA()(jac), rtol=1e-12, atol=1e-13)
    misses = total = 0
    for k in range(3, 9):
        for _ in range(3):
            grads = rng.normal(size=(k, 2 * k))
            jac = torch.tensor(grads)
            ours = MT.combine_gradients(jac, method="min_norm")[1].numpy()
            theirs = aggregation.MGDAWeighting()(jac @ jac.T).numpy()
            assert value(grads, theirs) >= value(grads, ours) * (1 - 1e-13)
            total += 1
            misses += value(grads, theirs) > value(grads, ours) * (1 + 1e-6)
    assert misses > total // 2  # Frank-Wolfe with their defaults misses 1e-6 in most cases


# --------------------------------------------------------------------------------------------
# PCGrad
# --------------------------------------------------------------------------------------------
def test_pcgrad_against_torchjd_with_the_same_permutations(torch):
    aggregation = pytest.importorskip("torchjd.aggregation")
    rng = np.random.default_rng(2)
    for seed in range(30):
        k = int(rng.integers(2, 7))
        jac = torch.tensor(rng.normal(size=(k, int(rng.integers(2, 8)))))
        torch.manual_seed(seed)
        orders = [torch.randperm(k).tolist() for _ in range(k)]  # what PCGradWeighting draws
        u, w = MT.combine_gradients(jac, method="pcgrad", order=orders)
        torch.manual_seed(seed)
        assert_close(w, aggregation.PCGradWeighting()(jac @ jac.T), rtol=1e-12, atol=1e-13)
        torch.manual_seed(seed)
        assert_close(u, aggregation.PCGrad()(jac), rtol=1e-12, atol=1e-13)


def test_pcgrad_against_libmtl_where_it_does_not_project_a_task_on_itself(torch, float64_default):
    import random
    import sys

    weighting = libmtl_weighting()
    module = sys.modules["LibMTL.weighting.PCGrad"]
    rng = np.random.default_rng(3)
    compared = differ = 0
    for seed in range(40):
        k = int(rng.integers(2, 6))
        grads = rng.normal(size=(k, int(rng.integers(2, 8))))
        pc = weighting.PCGrad()
        pc.task_num, pc.rep_grad = k, False
        pc._compute_grad_dim = lambda: None
        pc._compute_grad = lambda losses, mode, g=grads: torch.tensor(g)
        captured = {}
        pc._reset_grad = lambda new: captured.setdefault("u", new.clone().numpy())
        random.seed(seed)
        orders = []
        for _ in range(k):  # LibMTL: one random.shuffle of every index per task
            order = list(range(k))
            module.random.shuffle(order)
            orders.append(order)
        random.seed(seed)
        theirs_w = np.asarray(pc.backward([None] * k))
        u, w = MT.combine_gradients(torch.tensor(grads), method="pcgrad", order=orders)
        if not np.allclose(captured["u"], u.numpy(), rtol=1e-9, atol=1e-12):
            differ += 1  # LibMTL projected a task on its own gradient (j = i in its order)
            continue
        compared += 1
        assert_close(theirs_w, w.numpy(), rtol=1e-12, atol=1e-13)
    assert compared >= 30 and differ >= 1


# --------------------------------------------------------------------------------------------
# loss weighting
# --------------------------------------------------------------------------------------------
def test_uncertainty_against_libmtl_and_torchjd(torch, float64_default):
    scalarization = pytest.importorskip("torchjd.scalarization")
    values = np.array([0.7, 2.0, 5.0])
    s = np.array([-0.5, 0.3, 1.2])
    losses = torch.tensor(values, requires_grad=True)
    log_vars = torch.tensor(s, requires_grad=True)
    ours = MT.weigh_losses(losses, method="uncertainty", log_vars=log_vars)
    ours_grads = torch.autograd.grad(ours, [losses, log_vars])
    uw = scalarization.UW(3).double()
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor(s))
    theirs_losses = torch.tensor(values, requires_grad=True)
    theirs = uw(theirs_losses)
    theirs_grads = torch.autograd.grad(theirs, [theirs_losses, uw.log_var])
    assert_close(ours, theirs, rtol=1e-14)
    for a, b in zip(ours_grads, theirs_grads):
        assert_close(a, b, rtol=1e-14)
    # LibMTL's UW.backward: d/dL_i = ½ e^{-s_i}, which it also returns
    weighting = libmtl_weighting()
    lib = weighting.UW()
    lib.task_num, lib.device = 3, torch.device("cpu")
    lib.init_param()
    with torch.no_grad():
        lib.loss_scale.copy_(torch.tensor(s))
    lib_losses = torch.tensor(values, requires_grad=True)
    returned = lib.backward(lib_losses)
    assert_close(lib_losses.grad, ours_grads[0], rtol=1e-14)
    assert_close(np.asarray(returned), ours_grads[0].numpy(), rtol=1e-14)
    assert_close(lib.loss_scale.grad, ours_grads[1], rtol=1e-14)


def test_geometric_mean_against_torchjd(torch):
    scalarization = pytest.importorskip("torchjd.scalarization")
    values = torch.tensor([0.7, 2.0, 5.0], dtype=torch.float64)
    assert_close(MT.weigh_losses(values, method="power", gamma=0.0), scalarization.GeometricMean()(values),
                 rtol=1e-14)


def test_sum_and_mean_against_torchjd(torch):
    aggregation = pytest.importorskip("torchjd.aggregation")
    jac = torch.tensor(np.random.default_rng(4).normal(size=(4, 6)))
    assert_close(MT.combine_gradients(jac, method="sum")[0], aggregation.Sum()(jac), rtol=1e-14)
    assert_close(MT.combine_gradients(jac, method="mean")[0], aggregation.Mean()(jac), rtol=1e-14)


# --------------------------------------------------------------------------------------------
# task_gradients: each framework's own differentiation
# --------------------------------------------------------------------------------------------
def _data():
    rng = np.random.default_rng(5)
    return {"x": rng.normal(size=(8, 4)), "w": rng.normal(size=(4, 3)), "b": rng.normal(size=3),
            "heads": rng.normal(size=(3, 3)), "y": rng.normal(size=(8, 3))}


def _expected():
    """Per-task gradients of L_t = mean((tanh(x W + b) h_t - y_t)²), by torch.func.jacrev (an independent
    route: functional, vmapped), with respect to W, b and the representation tanh(x W + b)."""
    import torch
    from torch.func import jacrev

    d = {k: torch.tensor(v) for k, v in _data().items()}

    def losses(w, b):
        rep = torch.tanh(d["x"] @ w + b)
        return ((rep @ d["heads"] - d["y"]) ** 2).mean(0)

    jw, jb = jacrev(losses, argnums=(0, 1))(d["w"], d["b"])
    rep = torch.tanh(d["x"] @ d["w"] + d["b"])
    jrep = jacrev(lambda r: ((r @ d["heads"] - d["y"]) ** 2).mean(0))(rep)
    return jw.numpy(), jb.numpy(), jrep.numpy()


def test_task_gradients_torch(torch):
    jw, jb, jrep = _expected()
    d = {k: torch.tensor(v) for k, v in _data().items()}
    model = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        model.weight.copy_(d["w"].T)
        model.bias.copy_(d["b"])
    rep = torch.tanh(model(d["x"]))
    losses = ((rep @ d["heads"] - d["y"]) ** 2).mean(0)  # a [K] tensor
    grads = MT.task_gradients(losses, dict(model.named_parameters()))
    for t in range(3):
        assert_close(grads[t]["weight"], jw[t].T, rtol=1e-13)
        assert_close(grads[t]["bias"], jb[t], rtol=1e-13)
    assert model.weight.grad is None and model.bias.grad is None  # autograd.grad, never .backward()
    # a generator of parameters, the losses as a list, and the shared representation (MGDA-UB)
    listed = MT.task_gradients(list(losses.unbind(0)), model.parameters())
    assert_close(listed[1][0], jw[1].T, rtol=1e-13)
    on_rep = MT.task_gradients(losses, rep)
    for t in range(3):
        assert_close(on_rep[t], jrep[t], rtol=1e-13)
    # MGDA-UB: weights from the representation's gradients, then one backward of the weighted sum
    _, alpha = MT.combine_gradients(on_rep, method="min_norm")
    # the graph was retained by task_gradients (and is kept here for the checks below)
    (weighted,) = torch.autograd.grad((alpha.detach() * losses).sum(), [model.bias], retain_graph=True)
    assert_close(weighted, sum(alpha[t].item() * jb[t] for t in range(3)), rtol=1e-13)
    # create_graph: the gradients are differentiable (a gradient penalty on one task's gradient)
    graphs = MT.task_gradients(losses, [model.bias], create_graph=True)
    assert graphs[0][0].requires_grad
    # a function of the parameters
    functional = MT.task_gradients(lambda p: ((torch.tanh(d["x"] @ p["w"] + p["b"]) @ d["heads"] - d["y"]) ** 2)
                                   .mean(0), {"w": d["w"], "b": d["b"]})
    assert_close(functional[2]["w"], jw[2], rtol=1e-13)
    # a loss that does not reach a parameter: zeros
    other = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    zeros = MT.task_gradients([losses[0], (other**2).sum()], [model.bias, other])
    assert_close(zeros[1][0], np.zeros(3), rtol=0.0)
    assert_close(zeros[0][1], np.zeros(2), rtol=0.0)


def test_task_gradients_jax():
    get("jax")
    import jax
    import jax.numpy as jnp

    jw, jb, jrep = _expected()
    d = {k: jnp.asarray(v) for k, v in _data().items()}

    def losses(p):
        return jnp.mean((jnp.tanh(d["x"] @ p["w"] + p["b"]) @ d["heads"] - d["y"]) ** 2, axis=0)

    params = {"w": d["w"], "b": d["b"]}
    for run in (MT.task_gradients, jax.jit(MT.task_gradients, static_argnums=0)):
        grads = run(losses, params)
        for t in range(3):
            assert_close(grads[t]["w"], jw[t], rtol=1e-13)
            assert_close(grads[t]["b"], jb[t], rtol=1e-13)
    # a sequence of scalar losses, and the representation
    rep = jnp.tanh(d["x"] @ d["w"] + d["b"])
    on_rep = MT.task_gradients(lambda r: [jnp.mean((r @ d["heads"][:, t] - d["y"][:, t]) ** 2) for t in range(3)], rep)
    for t in range(3):
        assert_close(on_rep[t], jrep[t], rtol=1e-13)
    # differentiable: the gradient of ||g_0||² by JAX through jacrev
    penalty = jax.grad(lambda p: jnp.sum(MT.task_gradients(losses, p)[0]["b"] ** 2))(params)
    assert penalty["w"].shape == (4, 3)


def test_task_gradients_tensorflow():
    get("tensorflow")
    import tensorflow as tf

    jw, jb, jrep = _expected()
    d = {k: tf.constant(v) for k, v in _data().items()}
    w, b = tf.Variable(d["w"]), tf.Variable(d["b"])
    with tf.GradientTape(persistent=True) as tape:
        rep = tf.tanh(d["x"] @ w + b)
        losses = tf.reduce_mean((rep @ d["heads"] - d["y"]) ** 2, axis=0)  # a [K] tensor
    grads = MT.task_gradients(losses, {"w": w, "b": b}, tape=tape)
    on_rep = MT.task_gradients(losses, rep, tape=tape)
    for t in range(3):
        assert_close(grads[t]["w"], jw[t], rtol=1e-13)
        assert_close(grads[t]["b"], jb[t], rtol=1e-13)
        assert_close(on_rep[t], jrep[t], rtol=1e-13)

    @tf.function
    def in_graph():
        def fn(p):
            out = tf.tanh(d["x"] @ p[0] + p[1]) @ d["heads"]
            return [tf.reduce_mean((out[:, t] - d["y"][:, t]) ** 2) for t in range(3)]

        return MT.task_gradients(fn, [w, b])

    graph = in_graph()
    for t in range(3):
        assert_close(graph[t][0], jw[t], rtol=1e-13)
    # a Keras model's trainable variables
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.layers.Dense(3, activation="tanh", dtype="float64")])
    model.build((None, 4))
    model.layers[0].kernel.assign(d["w"])
    model.layers[0].bias.assign(d["b"])
    with tf.GradientTape(persistent=True) as tape:
        losses = tf.reduce_mean((model(d["x"]) @ d["heads"] - d["y"]) ** 2, axis=0)
    grads = MT.task_gradients(losses, model.trainable_variables, tape=tape)
    assert_close(grads[1][0], jw[1], rtol=1e-13)
    assert_close(grads[1][1], jb[1], rtol=1e-13)

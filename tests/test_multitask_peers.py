"""The multi-task reference (polyloss.reference.multitask) against the peers: LibMTL and TorchJD.

Optional: each peer's tests are skipped when the peer is absent (neither is a dependency of polyloss).
Versions checked: LibMTL 1.1.5 (PyPI, the latest there; installed with --no-deps) and TorchJD 0.18.0,
with torch 2.13.0+cpu.

The conventions differ; each difference is named where it matters:

LibMTL 1.1.5 (``LibMTL.weighting``):
* importing the package runs ``LibMTL/__init__.py``, which imports its ResNet model and with it
  ``torchvision.models.utils``: torchvision (a declared dependency) is absent here (--no-deps,
  torch stays 2.13.0+cpu), and that module is gone from torchvision >= 0.13 anyway (LibMTL issue 62,
  fixed on GitHub after 1.1.5). Only ``LibMTL.weighting`` is needed (torch, numpy, and scipy for
  CAGrad), so it is loaded without the package ``__init__`` (see ``libmtl_weighting``).
  LibMTL's GitHub main (checked at commit 2d842d6) has the same MGDA solver and PCGrad projection
  loop; its ``PCGrad.backward`` returns None instead of the weights.
* MGDA (``_find_min_norm_element``, copied from Sener & Koltun's code): K = 2 in closed form but with
  the clipped cases returning 0.999 / 0.001 instead of 1 / 0; K >= 3 starts from the best pair and
  iterates a projected-gradient step with a line search, stopping when the L1 change of α is
  below 1e-5. Its ``MAX_ITER = 250`` is never used: ``iter_count`` is never incremented, so the loop
  runs until the change criterion holds (demonstrated below: 388 iterations on a 3-task problem,
  and 35,469 on a 5-task one in the research notes). The change criterion is no optimality test: on
  some problems it stops at a point far from the minimum (demonstrated below: 6.2 % above it).
  ``_min_norm_2d`` starts from ``dmin = 1e8``, so when every pairwise minimum is >= 1e8 (gradients
  of norm >= 1e4) ``sol`` is never set: UnboundLocalError (demonstrated below). With float64
  gradients and K >= 3 it fails unless torch's default dtype is float64 (``torch.zeros(n)`` meets a
  float64 Gram matrix); LibMTL's trainer itself always builds float32 gradients.
  Gradient normalisation ``mgda_gn``: "none", "l2" (g_i / ||g_i||), "loss" (g_i / L_i), "loss+"
  (g_i / (L_i ||g_i||)); the min-norm problem is solved on the normalised gradients and the update
  is Σ α_i (normalised g_i): reference equivalent ``combine_gradients([g_i / n_i], method="min_norm")``.
  ``backward`` returns α (the weights of the NORMALISED gradients).
* PCGrad: per task a new ``random.shuffle`` of ALL task indices, the task itself included: when
  ``<g_i', g_i> < 0`` after earlier projections it projects on the normal plane of its own g_i too
  (Yu et al. skip j = i; so do the reference and TorchJD). Projections on the ORIGINAL g_j; the
  update is the SUM of the g_i'; ``backward`` returns the effective weights ``1 - Σ coefficients``,
  the reference's ``weights``. Not supported with ``rep_grad``.
* UW: ``Σ L_i / (2 e^{s_i}) + s_i / 2`` (Kendall's Gaussian form, the reference's), s initialised to
  -0.5; ``backward`` returns ``1 / (2 e^{s_i})``.

TorchJD 0.18.0 (``torchjd.aggregation``, ``torchjd.scalarization``):
* Aggregators act on the [K, dim] Jacobian (rows = task gradients) and return ``weights @ J``;
  the Gramian-based ones compute ``J J^T`` in the Jacobian's dtype.
* MGDA: Frank-Wolfe from the uniform α with exact line search, ``epsilon = 1e-3`` (stop when the step
  γ < ε), ``max_iters = 100``; no normalisation; exact for K = 2 (one step), approximate for K >= 3.
* PCGrad: per task a fresh ``torch.randperm(K)``, skipping j = i, on the Gramian; projections on the
  ORIGINAL g_j; weights = the sum of the per-task coefficient vectors (the reference's weights),
  aggregation = weights @ J (the sum, not the mean). Reproducible by seeding torch and drawing the
  same K permutations.
* UPGrad (not in the reference): projects each row onto the dual cone of the rows with a QP solved on
  the host (quadprog via qpsolvers, an optional extra) on a normalised Gramian with 1e-4 added to its
  diagonal, then averages; not compared.
* scalarization.UW: ``Σ ½ e^{-s_i} L_i + ½ s_i`` with s initialised to 0 (the reference's form);
  scalarization.GeometricMean: ``exp(mean log L)`` = the reference's ``power`` with γ = 0.
"""

from __future__ import annotations

import math
import random
import sys

import numpy as np
import pytest

from polyloss.reference import multitask as MT

from helpers import libmtl_weighting

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("restore_global_rngs")


def quad(gram, w):
    w = np.asarray(w, dtype=np.float64)
    return float(w @ np.asarray(gram) @ w)


def fw_gap(gram, alpha):
    ga = np.asarray(gram) @ alpha
    return float(alpha @ ga - np.min(ga))


class IterationCounter:
    """Counts the calls of LibMTL's inner ``_next_point`` (one per loop iteration) with a profile hook."""

    def __init__(self):
        self.n = 0

    def __call__(self, frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_next_point":
            self.n += 1

    def __enter__(self):
        sys.setprofile(self)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)


# ---------------------------------------------------------------------------------------------
# LibMTL
# ---------------------------------------------------------------------------------------------


def libmtl_mgda(grads):
    return libmtl_weighting().MGDA()._find_min_norm_element(torch.tensor(grads)).numpy()


def test_libmtl_mgda_two_tasks(float64_default):
    rng = np.random.default_rng(0)
    interior = 0
    for _ in range(30):
        grads = rng.normal(size=(2, 4)) * np.exp(rng.normal(size=(2, 1)))
        gram = MT.gram_matrix(list(grads))
        ours = MT.min_norm_weights(gram)
        theirs = libmtl_mgda(grads)
        if 0.0 < ours[0] < 1.0:  # interior: the same closed form
            interior += 1
            np.testing.assert_allclose(theirs, ours, rtol=1e-12, atol=1e-14)
        else:  # convention difference: LibMTL clips to 0.999 / 0.001, the reference to exactly 1 / 0
            assert sorted(theirs.tolist()) == pytest.approx([0.001, 0.999], abs=1e-15)
            assert theirs[int(np.argmax(ours))] == pytest.approx(0.999)
    assert interior >= 10
    # <g1, g2> >= ||g1||²: the minimum is g1 itself; LibMTL keeps 0.1 % of g2
    grads = np.array([[1.0, 0.0], [2.0, 1.0]])
    assert MT.min_norm_weights(MT.gram_matrix(list(grads))).tolist() == [1.0, 0.0]
    np.testing.assert_allclose(libmtl_mgda(grads), [0.999, 0.001], rtol=1e-15)


def test_libmtl_mgda_many_tasks(float64_default):
    # well-conditioned problems (dim = 2K): LibMTL stops near the minimum, never below it
    worst = 0.0
    for k in range(3, 9):
        rng = np.random.default_rng(1000 + k)
        for rep in range(3):
            grads = rng.normal(size=(k, 2 * k))
            if (k, rep) == (7, 0):
                continue  # stops early: see test_libmtl_mgda_stops_early
            gram = MT.gram_matrix(list(grads))
            ours = quad(gram, MT.min_norm_weights(gram))
            theirs = quad(gram, libmtl_mgda(grads))
            assert theirs >= ours * (1 - 1e-14)
            worst = max(worst, (theirs - ours) / ours)
    assert worst <= 1e-7  # measured: 1.9e-9 (stopping at an L1 change of 1e-5)


def test_libmtl_mgda_stops_early(float64_default):
    # BUG (LibMTL 1.1.5): the stopping rule "L1 change of α < 1e-5" holds here after 5 iterations at a
    # point 6.2 % above the minimum (Frank-Wolfe gap 0.76, the reference's is ~1e-16)
    grads = np.random.default_rng(1007).normal(size=(7, 14))
    gram = MT.gram_matrix(list(grads))
    ours = MT.min_norm_weights(gram)
    with IterationCounter() as count:
        theirs = libmtl_mgda(grads)
    assert count.n == 5
    assert fw_gap(gram, ours) <= 1e-14 * np.max(np.diag(gram))
    assert fw_gap(gram, theirs) > 0.5
    assert quad(gram, theirs) > 1.06 * quad(gram, ours)


def test_libmtl_mgda_never_counts_iterations(float64_default):
    # BUG (LibMTL 1.1.5): MAX_ITER = 250 but `iter_count` is never incremented, so the while loop
    # runs until the change criterion holds: 388 iterations here (3 tasks); 35,469 iterations
    # (30 s) on a 5-task problem found while preparing this test
    rng = np.random.default_rng(4)
    grads = rng.normal(size=(3, 3)) * np.exp(2 * rng.normal(size=(3, 1)))
    with IterationCounter() as count:
        theirs = libmtl_mgda(grads)
    assert count.n > 250
    gram = MT.gram_matrix(list(grads))
    ours = quad(gram, MT.min_norm_weights(gram))
    assert quad(gram, theirs) >= ours * (1 - 1e-14)


def test_libmtl_mgda_unbound_local_for_large_gradients(float64_default):
    # BUG (LibMTL 1.1.5): _min_norm_2d starts from dmin = 1e8; when every pairwise minimum is >= 1e8,
    # `sol` is never assigned
    grads = 1e4 * np.array([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]])
    with pytest.raises(UnboundLocalError):
        libmtl_mgda(grads)
    gram = MT.gram_matrix(list(grads))
    # <g,h> = -1, ||g||² = 14, ||h||² = 2: α_1 = (2 + 1)/(14 + 2 + 2) = 1/6 (scale-free)
    np.testing.assert_allclose(MT.min_norm_weights(gram), [1 / 6, 5 / 6], rtol=1e-14)


def test_libmtl_mgda_float64_needs_float64_default():
    # with torch's default dtype float32, float64 gradients and K >= 3 fail (sol_vec = torch.zeros(n))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with pytest.raises(RuntimeError, match="dtype"):
            libmtl_mgda(np.random.default_rng(0).normal(size=(3, 4)))
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("mode", ["none", "l2", "loss", "loss+"])
def test_libmtl_mgda_normalisation_modes(float64_default, mode):
    # LibMTL's backward: grads / n_i, α = min-norm of those, update Σ α_i grads_i / n_i, returns α
    weighting = libmtl_weighting()
    rng = np.random.default_rng(31)
    for k in (2, 3, 4):
        grads = rng.normal(size=(k, 6)) * np.exp(rng.normal(size=(k, 1)))
        losses = np.exp(rng.normal(size=k))
        m = weighting.MGDA()
        m.device = torch.device("cpu")
        m.rep_grad = False
        m._get_grads = lambda losses_, mode="backward": torch.tensor(grads)
        captured = {}
        m._reset_grad = lambda new: captured.setdefault("u", new.clone().numpy())
        alpha = m.backward([torch.tensor(x) for x in losses], mgda_gn=mode)
        norms = np.linalg.norm(grads, axis=1)
        n = {"none": np.ones(k), "l2": norms, "loss": losses, "loss+": losses * norms}[mode]
        normalised = grads / n[:, None]
        u, w = MT.combine_gradients(list(normalised), method="min_norm")
        gram = MT.gram_matrix(list(normalised))
        if k == 2 and w[0] in (0.0, 1.0):  # LibMTL's clipped two-task convention: 0.999 / 0.001
            w = np.where(w == 1.0, 0.999, 0.001)
            u = w @ normalised
        # the update is Σ α_i (normalised g_i), α the returned weights
        np.testing.assert_allclose(captured["u"], alpha @ normalised, rtol=1e-13, atol=1e-15)
        if k == 2:  # closed form on both sides
            np.testing.assert_allclose(alpha, w, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(captured["u"], u, rtol=1e-12, atol=1e-14)
        else:  # LibMTL's iteration is approximate (measured here: up to 1e-4 above the minimum)
            assert quad(gram, w) * (1 - 1e-14) <= quad(gram, alpha) <= quad(gram, w) * (1 + 1e-3)


def libmtl_pcgrad(grads, *, seed=None, fixed=False):
    """LibMTL's PCGrad.backward on given gradients: returns (update, returned weights)."""
    weighting = libmtl_weighting()
    module = sys.modules["LibMTL.weighting.PCGrad"]
    pc = weighting.PCGrad()
    pc.task_num = len(grads)
    pc.rep_grad = False
    pc._compute_grad_dim = lambda: None
    pc._compute_grad = lambda losses, mode: torch.tensor(grads, dtype=torch.float64)
    captured = {}
    pc._reset_grad = lambda new: captured.setdefault("u", new.clone().numpy())
    shuffle = module.random.shuffle
    if fixed:
        module.random.shuffle = lambda x: None
    else:
        random.seed(seed)
    try:
        w = pc.backward([None] * len(grads))
    finally:
        module.random.shuffle = shuffle
    return captured["u"], np.asarray(w, dtype=np.float64)


def libmtl_orders(k, seed):
    """The permutations LibMTL's PCGrad draws after random.seed(seed): one shuffle per task."""
    random.seed(seed)
    orders = []
    for _ in range(k):
        order = list(range(k))
        random.shuffle(order)
        orders.append(order)
    return orders


def test_libmtl_pcgrad_same_permutations():
    libmtl_weighting()
    rng = np.random.default_rng(5)
    compared = worst = 0
    for seed in range(60):
        k = int(rng.integers(2, 6))
        grads = rng.normal(size=(k, int(rng.integers(2, 8))))
        theirs_u, theirs_w = libmtl_pcgrad(grads, seed=seed)
        ours_u, ours_w = MT.combine_gradients(list(grads), method="pcgrad", order=libmtl_orders(k, seed))
        if not np.allclose(theirs_u, ours_u, rtol=1e-9, atol=1e-12):
            continue  # LibMTL projected a task on its own gradient (see test_libmtl_pcgrad_self_projection)
        compared += 1
        worst = max(worst, float(np.max(np.abs(theirs_w - ours_w))))
        np.testing.assert_allclose(theirs_w, ours_w, rtol=1e-12, atol=1e-13)
    assert compared >= 50
    assert worst <= 1e-12


def test_libmtl_pcgrad_self_projection():
    # the 3-task example worked by hand in test_multitask_reference.py, fixed order (shuffle disabled):
    # after projecting on g0 and g1, task 2 has g2'' = (0.2, -0.6) with <g2'', g2> = -0.2 < 0;
    # Yu et al. (and the reference) stop there, LibMTL also visits j = i and projects on the normal
    # plane of g2: g2''' = g2'' + 0.04 g2 = (0.28, -0.56)
    grads = np.array([[-1.0, -1.0], [-3.0, -1.0], [2.0, 1.0]])
    u, w = libmtl_pcgrad(grads, fixed=True)
    np.testing.assert_allclose(u, [0.28, -0.56], rtol=1e-14)
    np.testing.assert_allclose(w, [2.5, 1.1, 3.04], rtol=1e-14)
    ours_u, ours_w = MT.combine_gradients(list(grads), method="pcgrad", order="fixed")
    np.testing.assert_allclose(ours_u, [0.2, -0.6], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(ours_w, [2.5, 1.1, 3.0], rtol=1e-14)
    # the difference is exactly 0.04 g2
    np.testing.assert_allclose(u - ours_u, 0.04 * grads[2], atol=1e-15)


def test_libmtl_uw(float64_default):
    weighting = libmtl_weighting()
    uw = weighting.UW()
    uw.task_num, uw.device = 3, torch.device("cpu")
    uw.init_param()
    assert uw.loss_scale.detach().numpy().tolist() == [-0.5, -0.5, -0.5]
    s = np.array([-0.5, 0.3, 1.2])
    with torch.no_grad():
        uw.loss_scale.copy_(torch.tensor(s))
    values = np.array([0.7, 2.0, 5.0])
    losses = torch.tensor(values, requires_grad=True)
    returned = uw.backward(losses)
    # d/dL_i = ½ e^{-s_i}: the reference is linear in L_i, so a unit step gives the exact slope
    base = MT.weigh_losses(values, method="uncertainty", log_vars=s)
    for i in range(3):
        step = values.copy()
        step[i] += 1.0
        slope = MT.weigh_losses(step, method="uncertainty", log_vars=s) - base
        assert losses.grad[i].item() == pytest.approx(slope, rel=1e-13)
        assert returned[i] == pytest.approx(slope, rel=1e-13)
        # d/ds_i = ½ - ½ e^{-s_i} L_i, against a central difference of the reference
        h = 1e-6
        up, down = s.copy(), s.copy()
        up[i] += h
        down[i] -= h
        fd = (MT.weigh_losses(values, method="uncertainty", log_vars=up)
              - MT.weigh_losses(values, method="uncertainty", log_vars=down)) / (2 * h)
        assert uw.loss_scale.grad[i].item() == pytest.approx(fd, rel=1e-8)


# ---------------------------------------------------------------------------------------------
# TorchJD
# ---------------------------------------------------------------------------------------------


def test_torchjd_mgda_two_tasks():
    agg = pytest.importorskip("torchjd.aggregation")
    rng = np.random.default_rng(40)
    for _ in range(30):
        grads = rng.normal(size=(2, 5)) * np.exp(rng.normal(size=(2, 1)))
        jac = torch.tensor(grads)
        u, w = MT.combine_gradients(list(grads), method="min_norm")
        theirs_w = agg.MGDAWeighting()(jac @ jac.T).numpy()
        np.testing.assert_allclose(theirs_w, w, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(agg.MGDA()(jac).numpy(), u, rtol=1e-12, atol=1e-14 * np.max(np.abs(grads)))


def test_torchjd_mgda_many_tasks():
    # Frank-Wolfe (default ε = 1e-3, 100 iterations) is approximate for K >= 3: never below the exact
    # minimum; with the defaults most cases miss 1e-6 relative (the finding)
    agg = pytest.importorskip("torchjd.aggregation")
    rng = np.random.default_rng(41)
    misses = total = 0
    for k in range(3, 9):
        for _ in range(3):
            grads = rng.normal(size=(k, 2 * k))
            jac = torch.tensor(grads)
            gram = MT.gram_matrix(list(grads))
            ours = quad(gram, MT.min_norm_weights(gram))
            theirs = quad(gram, agg.MGDAWeighting()(jac @ jac.T).numpy())
            assert theirs >= ours * (1 - 1e-13)
            total += 1
            misses += theirs > ours * (1 + 1e-6)
    assert misses > total // 2


def torchjd_orders(k, seed):
    """The permutations TorchJD's PCGradWeighting draws after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return [torch.randperm(k).tolist() for _ in range(k)]


def test_torchjd_pcgrad_same_permutations():
    agg = pytest.importorskip("torchjd.aggregation")
    rng = np.random.default_rng(42)
    worst = 0.0
    for seed in range(40):
        k = int(rng.integers(2, 7))
        grads = rng.normal(size=(k, int(rng.integers(2, 8))))
        jac = torch.tensor(grads)
        ours_u, ours_w = MT.combine_gradients(list(grads), method="pcgrad", order=torchjd_orders(k, seed))
        torch.manual_seed(seed)
        theirs_w = agg.PCGradWeighting()(jac @ jac.T).numpy()
        torch.manual_seed(seed)
        theirs_u = agg.PCGrad()(jac).numpy()
        np.testing.assert_allclose(theirs_w, ours_w, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(theirs_u, ours_u, rtol=1e-12, atol=1e-13)
        worst = max(worst, float(np.max(np.abs(theirs_u - ours_u))))
    assert worst <= 1e-13
    # the hand-worked 3-task example: TorchJD skips j = i like Yu et al. and the reference
    grads = np.array([[-1.0, -1.0], [-3.0, -1.0], [2.0, 1.0]])
    for seed in range(5):
        ours_u, _ = MT.combine_gradients(list(grads), method="pcgrad", order=torchjd_orders(3, seed))
        torch.manual_seed(seed)
        np.testing.assert_allclose(agg.PCGrad()(torch.tensor(grads)).numpy(), ours_u, atol=1e-15)


def test_torchjd_sum_and_mean():
    agg = pytest.importorskip("torchjd.aggregation")
    grads = np.random.default_rng(43).normal(size=(4, 6))
    for name, method in (("Sum", "sum"), ("Mean", "mean")):
        u, _ = MT.combine_gradients(list(grads), method=method)
        np.testing.assert_allclose(getattr(agg, name)()(torch.tensor(grads)).numpy(), u, rtol=1e-14, atol=1e-15)


def test_torchjd_scalarizers():
    sc = pytest.importorskip("torchjd.scalarization")
    values = np.array([0.7, 2.0, 5.0])
    s = np.array([-0.5, 0.3, 1.2])
    uw = sc.UW(3)
    assert uw.log_var.detach().numpy().tolist() == [0.0, 0.0, 0.0]
    uw = uw.double()
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor(s))
    theirs = uw(torch.tensor(values)).item()
    assert theirs == pytest.approx(MT.weigh_losses(values, method="uncertainty", log_vars=s), rel=1e-14)
    gm = sc.GeometricMean()(torch.tensor(values)).item()
    assert gm == pytest.approx(MT.weigh_losses(values, method="power", gamma=0.0), rel=1e-14)
    assert math.isclose(gm, math.exp(MT.weigh_losses(values, method="geometric") / 3), rel_tol=1e-14)

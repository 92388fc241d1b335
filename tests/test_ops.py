"""The numerics of ``_ops`` and the semantics of ``polyloss.reduce``, on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import polyloss
from polyloss import _ops
from polyloss.testing import assert_close

from helpers import AUTOGRAD_BACKENDS, get, with_hooks


def _xp(be, a, dtype="float64"):
    return be.from_numpy(np.asarray(a), dtype=dtype)


def test_log1mexp_is_accurate_on_both_branches(backend):
    xp = backend.namespace
    x = np.array([-1e-20, -1e-8, -0.5, -math.log(2.0), -0.7, -5.0, -50.0, -800.0])
    expected = np.array([math.log(-math.expm1(v)) if v > -1.0 else math.log1p(-math.exp(v)) for v in x])
    got = backend.to_numpy(_ops.log1mexp(xp, _xp(backend, x)))
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    edge = backend.to_numpy(_ops.log1mexp(xp, _xp(backend, [0.0, 1e-3])))
    assert edge[0] == -np.inf and np.isnan(edge[1])  # log(1 - e^0) = -inf; x > 0 is outside the domain


def test_log1mexp_gradient_is_finite_away_from_zero(autograd_backend):
    be = autograd_backend
    x = np.array([-1e-3, -0.69, -0.7, -30.0])
    g = be.to_numpy(be.grad(lambda u: be.namespace.sum(_ops.log1mexp(be.namespace, u)))(_xp(be, x)))
    np.testing.assert_allclose(g, -np.exp(x) / -np.expm1(x), rtol=1e-12)


def test_softplus_and_sigmoid(backend):
    """Through the adapter's fused softplus (torch, TensorFlow) or the composed form (the others)."""
    xp = backend.namespace
    x = np.array([-1e4, -40.0, -1.0, 0.0, 1e-12, 3.0, 40.0, 1e4])
    sp = backend.to_numpy(_ops.softplus(xp, backend, _xp(backend, x)))
    np.testing.assert_allclose(sp, np.logaddexp(0.0, x), rtol=1e-15)
    sig = backend.to_numpy(_ops.sigmoid(xp, _xp(backend, x)))
    np.testing.assert_allclose(
        sig, np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))), rtol=1e-15
    )


def test_logsumexp_masks_and_appended_zero(backend):
    xp = backend.namespace
    x = np.array([[1.0, 2.0, -np.inf], [-np.inf, -np.inf, -np.inf], [1e4, -1e4, 0.0]])
    lse = backend.to_numpy(_ops.logsumexp(xp, backend, _xp(backend, x)))
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(lse, [np.logaddexp(1.0, 2.0), -np.inf, 1e4], rtol=1e-15)
    lse0 = backend.to_numpy(_ops.logsumexp(xp, backend, _xp(backend, x), append_zero=True))
    np.testing.assert_allclose(lse0, [np.logaddexp.reduce([0.0, 1.0, 2.0]), 0.0, 1e4], rtol=1e-15)
    where = backend.from_numpy(np.array([[True, False, True], [True, True, True], [False, True, True]]))
    masked = backend.to_numpy(_ops.logsumexp(xp, backend, _xp(backend, x), where=where))
    np.testing.assert_allclose(masked, [1.0, -np.inf, np.logaddexp(-1e4, 0.0)], rtol=1e-15)
    tiny = backend.to_numpy(_ops.logsumexp(xp, backend, _xp(backend, [[-40.0]]), append_zero=True))
    np.testing.assert_allclose(tiny, [math.log1p(math.exp(-40.0))], rtol=1e-14)  # keeps relative precision


def test_log_softmax(backend):
    xp = backend.namespace
    x = np.array([[1.0, 2.0, 3.0], [1e4, 0.0, -np.inf]])
    got = backend.to_numpy(_ops.log_softmax(xp, backend, _xp(backend, x)))
    np.testing.assert_allclose(got[0], x[0] - np.logaddexp.reduce(x[0]), rtol=1e-14)
    np.testing.assert_allclose(got[1], [0.0, -1e4, -np.inf])


def test_reduce_semantics(backend):
    v = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 6.0]])
    where = np.array([[True, True, False], [True, False, True]])
    r = lambda *a, **k: float(backend.to_numpy(polyloss.reduce(*a, **k)))  # noqa: E731
    x = _xp(backend, v)
    w = backend.from_numpy(where)
    assert r(x, "sum", where=w) == 13.0
    assert r(x, where=w) == 13.0 / 4  # the mean over the valid entries, not over all six
    weights = np.array([1.0, 3.0, 0.0])
    assert r(x, weights=weights, where=w) == pytest.approx((1 + 6 + 4) / (1 + 3 + 1))
    assert r(x, where=backend.from_numpy(np.zeros((2, 3), bool))) == 0.0  # nothing valid: 0, not NaN
    assert r(_xp(backend, v[:1]), weights=[0.0, 0.0, 0.0]) == 0.0
    assert math.isnan(r(x))  # an unmasked NaN is never hidden


def test_reduce_gradient_ignores_masked_entries(autograd_backend):
    be = autograd_backend
    v = np.array([1.0, np.inf, 3.0])
    where = be.from_numpy(np.array([True, False, True]))
    g = be.to_numpy(be.grad(lambda u: polyloss.reduce(u, where=where))(_xp(be, v)))
    np.testing.assert_array_equal(g, [0.5, 0.0, 0.5])


def test_reduce_of_half_precision_is_float32(backend):
    if "float16" not in backend.dtypes():
        assert backend.name == "array_api_strict"  # the only backend without float16
        return
    out = polyloss.reduce(backend.from_numpy(np.full(4, 60000.0), dtype="float16"), "sum")
    assert out.dtype == backend.dtype("float32") and float(backend.to_numpy(out)) == 240000.0


@pytest.mark.parametrize("reverse", [False, True])
def test_logcumsumexp_value_and_gradient(backend, reverse):
    """The log-space scan (the adapter's where it has one) against NumPy, and (autograd backends) its
    gradient against the closed form ``x̄_j = Σ_{i: j in S_i} ḡ_i e^{x_j - R_i}`` with a cotangent of both signs (the
    hand-written backward splits it into positive and negative parts)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 3, 7), [-40.0, 30.0]])
    g = rng.normal(size=9)
    order = slice(None, None, -1) if reverse else slice(None)
    want = np.logaddexp.accumulate(x[order])[order]
    xs = backend.from_numpy(x, dtype="float64") if "float64" in backend.dtypes() else None
    if xs is None:
        pytest.skip(f"{backend.name} without float64")
    np.testing.assert_allclose(
        backend.to_numpy(_ops.logcumsumexp(backend.namespace, backend, xs, reverse=reverse)), want, rtol=1e-13
    )
    if not backend.has_autograd:
        return
    gs = backend.from_numpy(g, dtype="float64")
    _, grad = backend.value_and_grad(
        lambda v: backend.namespace.sum(_ops.logcumsumexp(backend.namespace, backend, v, reverse=reverse) * gs)
    )(xs)
    inside = (
        (np.arange(9)[None, :] >= np.arange(9)[:, None])
        if reverse
        else (np.arange(9)[None, :] <= np.arange(9)[:, None])
    )
    closed = (g[:, None] * np.where(inside, np.exp(x[None, :] - want[:, None]), 0.0)).sum(axis=0)
    np.testing.assert_allclose(backend.to_numpy(grad), closed, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_sigmoid_and_log_softmax_hooks(backend, dtype):
    """``Backend.sigmoid`` and ``Backend.log_softmax`` (where an adapter has them) against float64 closed
    forms: ``σ`` within a few ulps wherever it is a normal number (below the smallest normal it may be 0, as
    documented), the log-softmax within a few ulps of the largest entry's magnitude."""
    info = np.finfo(dtype)
    if backend.sigmoid is not None:
        x = np.array([-80.0, -30.0, -5.0, -1e-3, 0.0, 1e-3, 2.0, 16.0, 40.0, 1e4], dtype=dtype)
        x = x[np.abs(x) < -math.log(info.smallest_normal)]  # σ(x) a normal number
        want = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
        got = backend.to_numpy(backend.sigmoid(backend.from_numpy(x, dtype=dtype)))
        assert_close(got, want, rtol=4 * info.eps, atol=0.0)
        below = np.array([-2.0 * math.log(info.max)], dtype=dtype)  # σ below the smallest normal
        low = backend.to_numpy(backend.sigmoid(backend.from_numpy(below, dtype=dtype)))
        assert 0.0 <= float(low[0]) < info.smallest_normal
    if backend.log_softmax is not None:
        rng = np.random.default_rng(3)
        x = rng.normal(0.0, 30.0, (5, 9)).astype(dtype)
        x64 = x.astype(np.float64)
        m = x64.max(axis=-1, keepdims=True)
        want = x64 - m - np.log(np.sum(np.exp(x64 - m), axis=-1, keepdims=True))
        got = backend.to_numpy(backend.log_softmax(backend.from_numpy(x, dtype=dtype)))
        scale = np.max(np.abs(x64 - m), axis=-1, keepdims=True) + 1.0
        assert_close(got / scale, want / scale, rtol=0.0, atol=8 * info.eps)


@pytest.mark.parametrize("name", with_hooks(AUTOGRAD_BACKENDS, "log_softmax"))
def test_fused_log_softmax_hook_gradient(name):
    """``Backend.log_softmax`` is differentiated by the framework (the smoothed cross-entropy relies on it):
    the gradient of ``Σ w·log_softmax(x)`` is ``w - softmax(x)·Σ w`` per row (the adapters that have the
    hook; without it the composed form has the kernel's own gradient, tested with the kernels)."""
    be = get(name)
    rng = np.random.default_rng(4)
    x, w = rng.normal(0.0, 3.0, (4, 6)), rng.normal(size=(4, 6))
    (g,) = be.grad(lambda v: be.namespace.sum(be.log_softmax(v) * be.from_numpy(w, dtype="float64")),
                   argnums=(0,))(be.from_numpy(x, dtype="float64"))
    p = np.exp(x - x.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    assert_close(be.to_numpy(g), w - p * w.sum(axis=-1, keepdims=True), rtol=1e-13, atol=1e-14)

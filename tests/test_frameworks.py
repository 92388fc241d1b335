"""How the losses meet the frameworks: shapes, dtypes, transforms (jit, vmap, torch.func, tf.function with
unknown dimensions, Keras fit) and placements that real training code reaches."""

from __future__ import annotations

import numpy as np
import pytest

import polyloss
from polyloss import reference

from helpers import get, run_python

RNG = np.random.default_rng(0)
S = RNG.normal(0.0, 2.0, (3, 7))
Y = RNG.random((3, 7)) < 0.4


def _run(code: str, env=None, timeout=300) -> str:
    return run_python(code=code, env=env, timeout=timeout).stdout


# --------------------------------------------------------------------------------------------
# TensorFlow graphs with unknown dimensions (tf.function signatures, Keras fit)
# --------------------------------------------------------------------------------------------
def test_tf_function_with_unknown_dimensions():
    get("tensorflow")
    import tensorflow as tf

    def spec(shape, dtype=tf.float32):
        return tf.TensorSpec(shape, dtype)

    cases = [
        (lambda s, y: polyloss.multilabel_crossentropy(s, y), [spec([None, None]), spec([None, None], tf.bool)],
         (S, Y), reference.multilabel_crossentropy(S, Y)),
        (lambda s, y: polyloss.multilabel_crossentropy(s, y, axis=(1, 2)),
         [spec([None, None, None]), spec([None, None, None], tf.bool)],
         (S.reshape(3, 7, 1), Y.reshape(3, 7, 1)), reference.multilabel_crossentropy(S, Y)),
        (lambda s, i: polyloss.sparse_multilabel_crossentropy(s, i, pad_index=-1),
         [spec([None, None]), spec([None, None], tf.int64)],
         (S, np.array([[0, -1], [2, 5], [-1, -1]])),
         reference.sparse_multilabel_crossentropy(S, np.array([[0, -1], [2, 5], [-1, -1]]), pad_index=-1)),
        (lambda v: polyloss.reduce(v), [spec([None])], (S[0],), S[0].mean()),
        (lambda a, b: polyloss.multilabel_divergence(a, b), [spec([None, 7]), spec([None, 7])], (S, S[::-1]),
         reference.multilabel_divergence(S, S[::-1])),
    ]
    for fn, signature, args, expected in cases:
        compiled = tf.function(fn, input_signature=signature)
        got = compiled(*[tf.constant(a, dtype=sig.dtype) for a, sig in zip(args, signature)])
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_tf_function_metrics_with_unknown_dimensions():
    """Counting metrics divide by the number of entries, which a graph with ``None`` dimensions
    only knows at run time."""
    get("tensorflow")
    import tensorflow as tf

    from polyloss import metrics
    from polyloss.reference import metrics as ref

    scores = RNG.normal(size=(9, 4)).astype(np.float32)
    labels = (RNG.random((9, 4)) < 0.4).astype(np.float32)
    ids = RNG.integers(0, 4, 9)
    unknown2, unknown1 = tf.TensorSpec([None, None]), tf.TensorSpec([None])
    cases = {
        "accuracy multi-label": (metrics.accuracy, {}, [unknown2, unknown2], (scores, labels)),
        "accuracy binary": (metrics.accuracy, {}, [unknown1, unknown1], (scores[:, 0], labels[:, 0])),
        "accuracy class ids": (metrics.accuracy, {}, [tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int64)],
                               (scores, ids)),
        "precision_recall_f1 macro": (metrics.precision_recall_f1, {"average": "macro"}, [unknown2, unknown2],
                                      (scores, labels)),
        "best_threshold f1": (metrics.best_threshold, {}, [unknown2, unknown2], (scores, labels)),
        "best_threshold accuracy binary": (metrics.best_threshold, {"metric": "accuracy"}, [unknown1, unknown1],
                                           (scores[:, 0], labels[:, 0])),
        "best_threshold subset accuracy": (metrics.best_threshold, {"metric": "accuracy"}, [unknown2, unknown2],
                                           (scores, labels)),
    }
    for name, (fn, kwargs, signature, args) in cases.items():
        compiled = tf.function(lambda *a, fn=fn, kwargs=kwargs: fn(*a, **kwargs), input_signature=signature)
        got = compiled(*[tf.constant(a, dtype=spec.dtype) for a, spec in zip(args, signature)])
        expected = getattr(ref, fn.__name__)(*args, **kwargs)
        if fn is metrics.best_threshold:  # the threshold may sit anywhere in the winning gap
            got, expected = got[1], expected[1]
        np.testing.assert_allclose(np.array(got, dtype=np.float64), np.array(expected, dtype=np.float64),
                                   rtol=1e-6, err_msg=name)


def test_tf_global_pointer_with_unknown_length():
    get("tensorflow")
    import tensorflow as tf

    seq = np.arange(5)[None] < np.array([[5], [3]])
    mask = np.broadcast_to(reference.global_pointer_mask(seq), (2, 2, 5, 5))
    logits = np.where(mask, RNG.normal(0, 2, (2, 2, 5, 5)), -np.inf).astype(np.float32)
    spans = np.array([[[[0, 1]], [[2, 4]]], [[[1, 1]], [[-1, -1]]]])

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, None]), tf.TensorSpec([None, None, None, 2], tf.int64)]
    )
    def loss(s, sp):
        return polyloss.sparse_global_pointer_crossentropy(s, sp, pad_index=-1)

    np.testing.assert_allclose(
        loss(tf.constant(logits), tf.constant(spans)).numpy(),
        reference.sparse_global_pointer_crossentropy(logits, spans, pad_index=-1),
        rtol=1e-5,
    )


def test_keras_fit_with_polyloss():
    get("tensorflow")
    keras = pytest.importorskip("keras")
    x = RNG.normal(size=(64, 4)).astype(np.float32)
    y = (RNG.random((64, 5)) < 0.3).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    model.compile("sgd", loss=lambda yt, yp: polyloss.multilabel_crossentropy(yp, yt))
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))


# --------------------------------------------------------------------------------------------
# index dtypes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32])
def test_narrow_index_dtypes(backend, dtype):
    s = RNG.normal(size=(2, 200))
    pad = 255 if dtype == np.uint8 else -1
    indices = np.array([[3, pad], [7, 120]], dtype=dtype)
    out = polyloss.sparse_multilabel_crossentropy(
        backend.from_numpy(s, dtype="float64"), backend.from_numpy(indices), pad_index=pad
    )
    dense = np.zeros((2, 200), bool)
    dense[0, 3] = dense[1, 7] = dense[1, 120] = True
    np.testing.assert_allclose(backend.to_numpy(out), reference.multilabel_crossentropy(s, dense), rtol=1e-12)


def test_int16_spans_with_long_sequences(backend):
    length = 256  # i·L + j overflows int16
    logits = np.zeros((1, 1, length, length))
    spans = np.array([[[[200, 250], [-1, -1]]]], dtype=np.int16)
    out = polyloss.sparse_global_pointer_crossentropy(
        backend.from_numpy(logits, dtype="float32"), backend.from_numpy(spans), pad_index=-1
    )
    dense = np.zeros(logits.shape)
    dense[0, 0, 200, 250] = 1.0
    np.testing.assert_allclose(backend.to_numpy(out), reference.global_pointer_crossentropy(logits, dense), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# transforms over labels only: value checks must not touch tracers
# --------------------------------------------------------------------------------------------
def test_jax_transforms_over_labels_and_indices_only():
    get("jax")
    import jax
    import jax.numpy as jnp

    s = jnp.asarray(S)
    t = jnp.asarray(np.where(Y, 0.8, 0.1))
    g = jax.jit(jax.grad(lambda u: polyloss.multilabel_crossentropy(s, u).sum()))(t)
    assert np.all(np.isfinite(np.asarray(g)))
    idx = jnp.asarray([[0, -1], [2, 5], [-1, -1]])
    out = jax.jit(lambda i: polyloss.sparse_multilabel_crossentropy(s, i, pad_index=-1))(idx)
    np.testing.assert_allclose(
        np.asarray(out), reference.sparse_multilabel_crossentropy(S, np.asarray(idx), pad_index=-1), rtol=1e-12
    )
    batched = jax.vmap(lambda u: polyloss.multilabel_crossentropy(s, u))(t[None])
    np.testing.assert_allclose(np.asarray(batched)[0], np.asarray(polyloss.multilabel_crossentropy(s, t)), rtol=1e-12)


def test_torch_func_over_labels_and_per_sample_gradients():
    torch = pytest.importorskip("torch")
    get("torch")
    s, t = torch.tensor(S), torch.tensor(np.where(Y, 0.8, 0.1))
    batched = torch.func.vmap(lambda u: polyloss.multilabel_crossentropy(s, u))(t[None])
    torch.testing.assert_close(batched[0], polyloss.multilabel_crossentropy(s, t))
    per_sample = torch.func.vmap(
        torch.func.grad(lambda x, u: polyloss.multilabel_crossentropy(x[None], u[None]).sum())
    )(s, t)
    x = s.clone().requires_grad_(True)
    (full,) = torch.autograd.grad(polyloss.multilabel_crossentropy(x, t).sum(), x)
    torch.testing.assert_close(per_sample, full)


# --------------------------------------------------------------------------------------------
# JAX arrays sharded over several devices, and JAX without float64
# --------------------------------------------------------------------------------------------
def test_jax_sharded_arrays_with_host_inputs():
    get("jax")
    out = _run(
        """
        import numpy as np, jax, polyloss
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        mesh = Mesh(np.array(jax.devices()[:2]), ("b",))
        x = np.random.default_rng(0).normal(size=(4, 6))
        y = np.random.default_rng(1).random((4, 6)) < 0.4
        s = jax.device_put(x, NamedSharding(mesh, P("b")))
        dense = polyloss.multilabel_crossentropy(s, y)
        sparse = polyloss.sparse_multilabel_crossentropy(s, [[0, -1], [1, 2], [-1, -1], [5, -1]], pad_index=-1)
        total = polyloss.reduce(dense, weights=[1.0, 2.0, 1.0, 1.0])
        oracle = polyloss.reference.multilabel_crossentropy(x, y)
        print(np.allclose(dense, oracle, rtol=1e-5), float(total) > 0, sparse.shape)
        """,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"},
    )
    assert out.split() == ["True", "True", "(4,)"]


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_jax_rows_without_float64(mode):
    """The test process runs JAX with x64; this subprocess runs the JAX float32 rows in JAX's default
    setup (int32 indices, no float64). Half precision computes in float32 with or without x64: its
    rows run in the main process. One mode per test, so that the two run side by side."""
    get("jax")
    out = _run(
        f"""
        import jax, polyloss
        from polyloss import conformance
        results, missing = conformance.check(backends=["jax"], modes=["{mode}"], dtypes=["float32"])
        assert not jax.config.jax_enable_x64, "check() must not turn on float64"
        bad = [(r.case, r.mode, r.dtype, r.message) for r in results if not r.passed]
        print(len(results), sorted({{r.mode for r in results}}), bad)
        """,
        timeout=600,
    )
    count, rest = out.split(" ", 1)
    assert int(count) > 100 and rest.strip() == f"['{mode}'] []", out


# --------------------------------------------------------------------------------------------
# shapes at the edges: no class, no row, no index
# --------------------------------------------------------------------------------------------
def test_zero_classes_give_zero_loss(backend):
    s = backend.from_numpy(np.zeros((3, 0)), dtype="float32")
    out = polyloss.multilabel_crossentropy(s, backend.from_numpy(np.zeros((3, 0), bool)))
    np.testing.assert_array_equal(backend.to_numpy(out), np.zeros(3))
    out = polyloss.multilabel_crossentropy(s, backend.from_numpy(np.zeros((3, 0)), dtype="float32"))
    np.testing.assert_array_equal(backend.to_numpy(out), np.zeros(3))
    sparse = polyloss.sparse_multilabel_crossentropy(s, backend.from_numpy(np.full((3, 2), -1)), pad_index=-1)
    np.testing.assert_array_equal(backend.to_numpy(sparse), np.zeros(3))


def test_zero_rows_and_zero_indices(backend):
    s = backend.from_numpy(np.zeros((0, 5)), dtype="float32")
    assert backend.to_numpy(
        polyloss.sparse_multilabel_crossentropy(s, backend.from_numpy(np.zeros((0, 2), np.int64)))
    ).shape == (0,)
    assert backend.to_numpy(polyloss.multilabel_crossentropy(s, backend.from_numpy(np.zeros((0, 5), bool)))).shape == (
        0,
    )
    no_index = polyloss.sparse_multilabel_crossentropy(
        backend.from_numpy(S, dtype="float64"), backend.from_numpy(np.zeros((3, 0), np.int64))
    )
    np.testing.assert_allclose(
        backend.to_numpy(no_index), reference.multilabel_crossentropy(S, np.zeros_like(Y)), rtol=1e-12
    )
    assert float(backend.to_numpy(polyloss.reduce(backend.from_numpy(np.zeros(0), dtype="float32")))) == 0.0


def test_global_pointer_of_length_one(backend):
    logits = backend.from_numpy(np.array([[[[1.5]]]]), dtype="float64")
    out = polyloss.sparse_global_pointer_crossentropy(logits, backend.from_numpy(np.array([[[[0, 0]]]])))
    np.testing.assert_allclose(backend.to_numpy(out), [[np.log1p(np.exp(-1.5))]], rtol=1e-12)


# --------------------------------------------------------------------------------------------
# values at the edges
# --------------------------------------------------------------------------------------------
def test_out_of_range_spans_are_ignored_when_compiled():
    get("jax")
    import jax

    logits = RNG.normal(size=(1, 1, 3, 3))
    bad = np.array([[[[0, 4], [1, 2]]]])  # (0, 4) is outside L = 3: must not alias cell (1, 1)
    out = jax.jit(lambda s, sp: polyloss.sparse_global_pointer_crossentropy(s, sp, pad_index=-1))(logits, bad)
    expected = reference.sparse_global_pointer_crossentropy(logits, np.array([[[[1, 2], [-1, -1]]]]), pad_index=-1)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12)


def test_plus_inf_logit_on_a_negative_gives_inf(backend):
    s = np.array([[np.inf, 0.0, 1.0], [0.0, np.inf, -1.0]])
    y = np.array([[False, True, False], [False, True, False]])  # row 1: +inf on a positive costs nothing
    out = backend.to_numpy(
        polyloss.multilabel_crossentropy(backend.from_numpy(s, dtype="float64"), backend.from_numpy(y))
    )
    np.testing.assert_allclose(out, reference.multilabel_crossentropy(s, y), rtol=1e-14)
    assert out[0] == np.inf and np.isfinite(out[1])


def test_divergence_hessian_at_ties(autograd_backend):
    """VAT's power iteration differentiates the divergence twice at s = t: the Hessian is 2σ'(s)."""
    be = autograd_backend
    xp = be.namespace
    point = np.array([[0.0, 1.5, -2.0]])
    target = be.from_numpy(point, dtype="float64")

    def grad_dot(u):
        g = be.grad(lambda a: xp.sum(polyloss.multilabel_divergence(a, target)))(u)
        return xp.sum(g * be.from_numpy(np.ones_like(point), dtype="float64"))

    hv = be.to_numpy(be.grad(grad_dot)(be.from_numpy(point, dtype="float64")))  # Hessian · 1
    sigma = 1.0 / (1.0 + np.exp(-point))
    np.testing.assert_allclose(hv, 2 * sigma * (1 - sigma), rtol=1e-12)


def test_reduce_integer_and_boolean_weights(backend):
    v = backend.from_numpy(np.array([1.0, 2.0, 4.0]), dtype="float32")
    assert float(backend.to_numpy(polyloss.reduce(v, weights=[1, 0, 1]))) == 2.5
    assert float(backend.to_numpy(polyloss.reduce(v, weights=np.array([True, True, False])))) == 1.5


def test_numpy_bfloat16_is_a_clear_error():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match="logits has dtype bfloat16, which this backend does not support"):
        polyloss.multilabel_crossentropy(np.zeros((1, 2), dtype=ml_dtypes.bfloat16), np.zeros((1, 2), bool))


def test_sparse_axis_must_be_one_int():
    with pytest.raises(TypeError, match="axis must be a single int for sparse labels"):
        polyloss.sparse_multilabel_crossentropy(S, np.zeros((3, 1), np.int64), axis=(0, 1))
    out = polyloss.multilabel_crossentropy(S, Y, axis=np.int64(-1))
    np.testing.assert_allclose(out, reference.multilabel_crossentropy(S, Y), rtol=1e-13)


def test_global_pointer_rejects_lists_with_a_type_error():
    with pytest.raises(TypeError, match="logits must be an array of a supported framework"):
        polyloss.global_pointer_crossentropy([[[1.0]]], [[[1.0]]])


# --------------------------------------------------------------------------------------------
# second review: inference under torch.compile, TF graphs with unknown spans, dtypes, precision
# --------------------------------------------------------------------------------------------
def test_torch_compile_fullgraph_in_inference():
    torch = pytest.importorskip("torch")
    get("torch")
    s, y = torch.tensor(S), torch.tensor(Y)
    compiled = torch.compile(lambda a, b: polyloss.multilabel_crossentropy(a, b), fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(s, y), torch.tensor(reference.multilabel_crossentropy(S, Y)))
    torch.testing.assert_close(compiled(s, y), torch.tensor(reference.multilabel_crossentropy(S, Y)))


def test_tf_sparse_global_pointer_with_unknown_span_dimensions():
    get("tensorflow")
    import tensorflow as tf

    logits = np.where(np.triu(np.ones((4, 4), bool)), RNG.normal(size=(2, 3, 4, 4)), -np.inf)
    spans = np.full((2, 3, 2, 2), -1)
    spans[0, 1, 0] = (1, 2)
    spans[1, 2, 1] = (0, 3)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 3, None, None], tf.float64),
            tf.TensorSpec([None, None, None, 2], tf.int64),
        ]
    )
    def loss(s, sp):
        return polyloss.sparse_global_pointer_crossentropy(s, sp, pad_index=-1)

    np.testing.assert_allclose(
        loss(tf.constant(logits), tf.constant(spans)).numpy(),
        reference.sparse_global_pointer_crossentropy(logits, spans, pad_index=-1),
        rtol=1e-12,
    )


def test_divergence_converts_host_inputs_to_the_logits_dtype(backend):
    a = backend.from_numpy(S, dtype="float32")
    out = polyloss.multilabel_divergence(a, S[::-1].tolist())
    assert out.dtype == backend.dtype("float32")
    rounded = S.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(
        backend.to_numpy(out), reference.multilabel_divergence(rounded, rounded[::-1]), rtol=1e-5
    )


def test_sparse_with_no_row_and_no_index(backend):
    out = polyloss.sparse_multilabel_crossentropy(
        backend.from_numpy(np.zeros((0, 3)), dtype="float32"), backend.from_numpy(np.zeros((0, 0), np.int64))
    )
    assert backend.to_numpy(out).shape == (0,)


def test_soft_label_gradient_is_backward_stable_at_large_logits(autograd_backend):
    """The log-weights are folded into the logits, so at |s| = 1e4 the float32 shares carry a relative
    error of about |s|·eps, the size of the change that rounding s itself makes in them."""
    be = autograd_backend
    s = np.array([[1e4, 1e4 - 1.0, -3.0, 2.0], [-1e4, 5.0, -1e4 + 0.5, 0.0]])
    t = np.array([[0.3, 0.6, 0.1, 0.9], [0.8, 0.2, 0.45, 0.5]])
    grads = []
    for dtype in ("float32", "float64"):
        labels = be.from_numpy(t, dtype=dtype)
        g = be.grad(lambda x: be.namespace.sum(polyloss.multilabel_crossentropy(x, labels)))(
            be.from_numpy(s, dtype=dtype)
        )
        grads.append(be.to_numpy(g))
    bound = 1e4 * float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(grads[0], grads[1], rtol=2 * bound, atol=1e-7)

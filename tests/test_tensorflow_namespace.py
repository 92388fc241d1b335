"""The hand-written TensorFlow array API namespace against NumPy / array_api_strict (2024.12).

Every case is a function ``f(m, *arrays)`` of a namespace ``m``: it runs on the TF namespace (eagerly
and inside ``tf.function``, the arrays passed as graph inputs) and on the reference namespace
(NumPy 2, which follows the standard's names and NEP 50 "weak" Python scalars, or array_api_strict
where NumPy lacks the API, e.g. ``descending=``), and the results must agree in dtype, shape and value.
"""

from __future__ import annotations

import ast
import inspect
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

tf = pytest.importorskip("tensorflow")

from polyloss.backends import _tensorflow_namespace as xp  # noqa: E402

MODES = ("eager", "function")
STRICT_VERSION = "2024.12"


@pytest.fixture(scope="module")
def xs():
    strict = pytest.importorskip("array_api_strict")
    with strict.ArrayAPIStrictFlags(api_version=STRICT_VERSION):
        yield strict


def run(mode, f, *arrays):
    """``f(xp, *arrays)`` eagerly, or traced by ``tf.function`` with the arrays as graph inputs.

    AutoGraph is off here (it triples the run time, and the namespace has no tensor-dependent
    Python control flow); ``test_under_autograph`` covers the default ``tf.function``."""
    tensors = [tf.constant(a) for a in arrays]

    def g(*ts):
        return f(xp, *ts)

    out = (tf.function(g, autograph=False) if mode == "function" else g)(*tensors)
    assert isinstance(out, tf.Tensor), type(out)
    return out


def assert_same(got, want):
    got = np.asarray(got.numpy())
    want = np.asarray(want)
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    if want.dtype.kind == "f" or want.dtype.name == "bfloat16":
        rtol = 1e-12 if want.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=rtol)
    else:
        np.testing.assert_array_equal(got, want)


def case(name, f, *inputs, ref="numpy"):
    """One reference case, as an (eager, function) pair of params."""
    return tuple(pytest.param(f, inputs, ref, mode, id=f"{name}-{mode}") for mode in MODES)


rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 4)).astype(np.float32)  # mixed signs
P = rng.uniform(0.5, 2.0, (2, 3)).astype(np.float32)  # positive
Q = rng.uniform(0.5, 2.0, (2, 3)).astype(np.float32)
F = np.array([np.nan, np.inf, -np.inf, 0.0, -1.5, 2.0], np.float32)  # non-finite values
G = np.array([1.0, np.nan, -np.inf, 3.0, np.inf, -1.5], np.float32)
I = np.array([[3, -1, 2], [0, 5, -4]], np.int32)  # noqa: E741
J = np.array([[1, 2, 2], [-3, 5, 0]], np.int32)
B = np.array([[True, False, True], [False, False, True]])
C = np.array([[True, True, False], [False, True, True]])
T = np.array([[1, 3, 1, 3, 2], [2, 2, 0, 0, 1]], np.int32)  # ties, for stability
V = np.arange(1, 6, dtype=np.float32)
A4 = np.zeros((2, 3, 4, 5), np.float32)
f64 = np.float64

CASES = []
# --- element-wise ---------------------------------------------------------------------------------
for n in ("exp", "expm1", "log", "log1p", "sqrt", "square", "abs", "negative", "sign", "tanh"):
    op = lambda m, x, n=n: getattr(m, n)(x)  # noqa: E731
    CASES += [case(f"{n}-f32", op, P), case(f"{n}-f64", op, P.astype(f64))]
    if n not in ("log", "log1p", "sqrt"):
        CASES += [case(f"{n}-mixed-sign", op, X), case(f"{n}-nonfinite", op, F)]
    if n in ("abs", "negative", "sign", "square"):
        CASES.append(case(f"{n}-int32", op, I))
CASES.append(case("logical_not", lambda m, x: m.logical_not(x), B))
for n in ("isfinite", "isinf", "isnan"):
    CASES.append(case(f"{n}-nonfinite", lambda m, x, n=n: getattr(m, n)(x), F))

BINARY_FLOAT = ("add", "subtract", "multiply", "divide", "pow", "maximum", "minimum", "logaddexp",
                "equal", "not_equal", "less", "less_equal", "greater", "greater_equal")
for n in BINARY_FLOAT:
    op = lambda m, a, b, n=n: getattr(m, n)(a, b)  # noqa: E731
    CASES += [
        case(f"{n}-f32", op, P, Q), case(f"{n}-f64", op, P.astype(f64), Q.astype(f64)), case(f"{n}-bc", op, P, Q[0]),
        case(f"{n}-pyfloat-right", lambda m, a, n=n: getattr(m, n)(a, 1.5), P),
        case(f"{n}-pyfloat-left", lambda m, a, n=n: getattr(m, n)(1.5, a), P),
        case(f"{n}-pyint-right", lambda m, a, n=n: getattr(m, n)(a, 2), P.astype(f64)),
    ]
    if n not in ("divide", "pow", "logaddexp"):
        CASES += [case(f"{n}-int32", op, I, J), case(f"{n}-int32-pyint", lambda m, a, n=n: getattr(m, n)(3, a), I)]
for n in ("maximum", "minimum", "equal", "less"):  # NaN propagates / compares False
    CASES.append(case(f"{n}-nonfinite", lambda m, a, b, n=n: getattr(m, n)(a, b), F, G))
CASES += [case("pow-int32-pyint", lambda m, a: m.pow(a, 2), I), case(
    "logaddexp-infinities", lambda m, a: m.logaddexp(a, a), F[1:].astype(f64))]  # NumPy warns on NaN
CASES += [case("nextafter-f32", lambda m, a, b: m.nextafter(a, b), P, Q),
          case("nextafter-f64-nonfinite", lambda m, a, b: m.nextafter(a, b), F.astype(f64), G.astype(f64))]
for n in ("logical_and", "logical_or", "logical_xor"):
    CASES += [case(f"{n}", lambda m, a, b, n=n: getattr(m, n)(a, b), B, C),
              case(f"{n}-pybool", lambda m, a, n=n: getattr(m, n)(a, True), B)]

CASES += [
    case("where-arrays", lambda m, c, a, b: m.where(c, a, b), B, P, Q),
    case("where-promotes", lambda m, c, a, b: m.where(c, a, b), B, P, Q.astype(f64)),
    case("where-broadcast-cond", lambda m, c, a: m.where(c, a, 0.5), B[0], P),
    case("where-pyfloat-right", lambda m, c, a: m.where(c, a, -1.0), B, P),
    case("where-pyfloat-left", lambda m, c, a: m.where(c, 2.0, a), B, P.astype(f64)),
    case("where-pyint-left", lambda m, c, a: m.where(c, 7, a), B, I),
    case("where-pyint-right", lambda m, c, a: m.where(c, a, 7), B, I),
    case("clip-both", lambda m, x: m.clip(x, -0.5, 0.5), X), case("clip-min", lambda m, x: m.clip(x, min=0.0), X),
    case("clip-max", lambda m, x: m.clip(x, max=0.0), X), case("clip-int32", lambda m, x: m.clip(x, 0, 2), I),
    case("clip-arrays", lambda m, x, lo: m.clip(x, lo, 1.0), P, Q),
]

# --- reductions -----------------------------------------------------------------------------------
AXES = (None, 0, -1, 1, (0, 2), (-1, 0), ())
for n in ("sum", "prod", "mean", "max", "min", "any", "all", "count_nonzero"):
    src = (X > 0) if n in ("any", "all", "count_nonzero") else X
    for axis in AXES:
        for keepdims in (False, True):
            if axis == () and n in ("max", "min", "mean"):
                continue
            CASES.append(case(f"{n}-axis{axis}-keepdims{keepdims}".replace(" ", ""),
                              lambda m, x, n=n, a=axis, k=keepdims: getattr(m, n)(x, axis=a, keepdims=k), src))
CASES += [
    case("any-int", lambda m, x: m.any(x, axis=1), I), case("all-int", lambda m, x: m.all(x, axis=0), I),
    case("sum-dtype-f64", lambda m, x: m.sum(x, axis=1, dtype=m.float64), X),
    case("prod-dtype-f64", lambda m, x: m.prod(x, dtype=m.float64), X),
    case("sum-bool", lambda m, x: m.sum(x, axis=0), B),
    case("mean-f64", lambda m, x: m.mean(x, axis=(0, 1)), X.astype(f64)),
]
# the standard accumulates narrow signed ints in the default integer dtype (int64)
for n in ("sum", "prod"):
    CASES.append(case(f"{n}-int32-dtype", lambda m, x, n=n: getattr(m, n)(x), I))
for axis in (None, 0, 1, -1):
    for keepdims in (False, True):
        CASES.append(case(f"argmax-axis{axis}-keepdims{keepdims}",
                          lambda m, x, a=axis, k=keepdims: m.argmax(x, axis=a, keepdims=k), T))
for inc in (False, True):
    for axis, x, dtype in ((None, V, None), (0, X, None), (-1, X, None), (1, X, "float64")):
        CASES.append(case(f"cumulative_sum-axis{axis}-{dtype}-include{inc}", lambda m, x, a=axis, d=dtype, i=inc:
                          m.cumulative_sum(x, axis=a, dtype=d and getattr(m, d), include_initial=i), x))
CASES += [
    case("cumulative_sum-int32-dtype", lambda m, x: m.cumulative_sum(x, axis=1), I),
    case("cumulative_sum-empty-include", lambda m, x: m.cumulative_sum(x, include_initial=True), V[:0]),
]

# --- shapes and indexing ----------------------------------------------------------------------------
IDX = np.argsort(X, axis=0)
CASES += [
    case("reshape", lambda m, x: m.reshape(x, (6, 4)), X), case("reshape-infer", lambda m, x: m.reshape(x, (-1,)), X),
    case("permute_dims", lambda m, x: m.permute_dims(x, (2, 0, 1)), X),
    case("broadcast_to", lambda m, x: m.broadcast_to(x, (4, 2, 3)), P),
    case("squeeze-int", lambda m, x: m.squeeze(x, axis=1), X[:, :1]),
    case("squeeze-neg", lambda m, x: m.squeeze(x, axis=-1), X[..., :1]),
    case("squeeze-tuple", lambda m, x: m.squeeze(x, axis=(0, 2)), X[:1, :, :1]),
    case("squeeze-empty-tuple", lambda m, x: m.squeeze(x, axis=()), X[:1, :, :1]),
    case("concat-None", lambda m, a, b: m.concat([a, b], axis=None), P, X),
    case("concat-promotes", lambda m, a, b: m.concat([a, b]), P, Q.astype(f64)),
    case("stack-promotes", lambda m, a, b: m.stack([a, b], axis=1), I.astype(np.int8), I.astype(np.uint8)),
    case("take-None", lambda m, x, i: m.take(x, i), V, np.array([4, 0, 2])),
    case("take-1", lambda m, x, i: m.take(x, i, axis=1), X, np.array([2, 0])),
    case("take-0", lambda m, x, i: m.take(x, i, axis=0), P, np.array([1, 1, 0])),
    case("matmul", lambda m, a, b: m.matmul(a, b), P, X[0]),
    case("matmul-batched", lambda m, a, b: m.matmul(a, b), X, X.transpose(0, 2, 1)),
    case("matmul-promotes", lambda m, a, b: m.matmul(a, b), P.astype(f64), X[1]),
    # 1-D operands: a matrix times a vector, a vector times a matrix, two vectors (0-d), batched times a vector
    case("matmul-matrix-vector", lambda m, a, b: m.matmul(a, b), P, Q[0]),
    case("matmul-vector-matrix", lambda m, a, b: m.matmul(a, b), P[0], X[0]),
    case("matmul-vector-vector", lambda m, a, b: m.matmul(a, b), P[0], Q[1]),
    case("matmul-batched-vector", lambda m, a, b: m.matmul(a, b), X, V[:4]),
    case("vecdot", lambda m, a, b: m.vecdot(a, b), P, Q[0]),
    case("vecdot-axis0", lambda m, a, b: m.vecdot(a, b, axis=0), P, Q),
    case("take_along_axis-broadcast", lambda m, x, i: m.take_along_axis(x, i, axis=1), P, np.zeros((1, 3), np.int64)),
]
for axis in (0, 1, -1, 2, -3):
    CASES += [case(f"expand_dims-{axis}", lambda m, x, a=axis: m.expand_dims(x, axis=a), X),
              case(f"concat-{axis}", lambda m, a, b, ax=axis: m.concat([a, b], axis=ax), X, X[:, :, ::-1]),
              case(f"stack-{axis}", lambda m, a, b, ax=axis: m.stack([a, b], axis=ax), X, X[::-1]),
              case(f"take_along_axis-{axis}", lambda m, x, i, a=axis: m.take_along_axis(x, i, axis=a),
                   X, np.argsort(X, axis=axis))]
for src, dst in ((0, -1), (-1, 0), (1, 2), ((0, 1), (2, 0)), ((0, 3), (1, 2)), ((3, 1), (0, 3))):
    CASES.append(case(f"moveaxis-{src}-{dst}".replace(" ", ""), lambda m, x, s=src, d=dst: m.moveaxis(x, s, d), A4))
for axis in (-1, 0):
    for desc in (False, True):
        for name, x in (("int", T), ("float", X[0])):
            sort = lambda m, x, a=axis, d=desc: m.sort(x, axis=a, descending=d)  # noqa: E731
            # the index dtype is test_argsort_index_dtype's; here the (stable) order
            argsort = lambda m, x, a=axis, d=desc: m.astype(m.argsort(x, axis=a, descending=d), m.int64)  # noqa: E731
            CASES += [case(f"sort-{name}-axis{axis}-desc{desc}", sort, x, ref="strict"),
                      case(f"argsort-{name}-axis{axis}-desc{desc}", argsort, x, ref="strict")]
for axis in (None, 0, -1, (0, 2)):
    CASES.append(case(f"flip-{axis}".replace(" ", ""), lambda m, x, a=axis: m.flip(x, axis=a), X))
SORTED = np.array([-2.0, 0.5, 0.5, 0.5, 3.0])
for side in ("left", "right"):
    # searchsorted returns the default index dtype: compared as int64
    CASES += [case(f"searchsorted-{side}", lambda m, a, v, s=side: m.astype(m.searchsorted(a, v, side=s), m.int64),
                   SORTED, np.array([[-3.0, 0.5], [0.5, 4.0]])),
              case(f"searchsorted-{side}-sorter", lambda m, a, v, s=side: m.astype(
                  m.searchsorted(a, v, side=s, sorter=m.argsort(a)), m.int64), SORTED[::-1].copy(), SORTED)]

# --- creation ---------------------------------------------------------------------------------------
NO_INPUT = {  # the default dtypes: int64 for Python ints, float64 for floats (and zeros/ones), bool
    "arange-int": lambda m: m.arange(5), "arange-start-stop-step": lambda m: m.arange(1, 8, 2),
    "arange-negative-step": lambda m: m.arange(10, 0, -3), "arange-float": lambda m: m.arange(0.5, 3),
    "arange-float-step": lambda m: m.arange(0, 1, 0.25), "arange-dtype": lambda m: m.arange(4, dtype=m.float32),
    "zeros": lambda m: m.zeros((2, 3)), "ones": lambda m: m.ones(3),
    "zeros-dtype": lambda m: m.zeros((2,), dtype=m.int32), "full-int": lambda m: m.full((2, 2), 3),
    "full-float": lambda m: m.full((2,), 1.5), "full-bool": lambda m: m.full((3,), True),
    "full-dtype": lambda m: m.full((2,), 2, dtype=m.float32), "asarray-floats": lambda m: m.asarray([1.0, 2.5]),
    "asarray-ints": lambda m: m.asarray([[1, 2], [3, 4]]), "asarray-bool": lambda m: m.asarray(True),
    "asarray-dtype": lambda m: m.asarray([1, 2], dtype=m.float32),
    "asarray-ndarray": lambda m: m.asarray(np.array([1.0, 2.0], np.float32)),
}
CASES += [case(name, f) for name, f in NO_INPUT.items()] + [
    case("zeros_like", lambda m, x: m.zeros_like(x), I),
    case("ones_like-dtype", lambda m, x: m.ones_like(x, dtype=m.float64), P),
    case("full_like", lambda m, x: m.full_like(x, 0.25), P), case("full_like-int", lambda m, x: m.full_like(x, 7), I),
    case("asarray-array", lambda m, x: m.asarray(x, dtype=m.float64), P),
    case("astype-int", lambda m, x: m.astype(x, m.int32), X * 3),
    case("astype-f64", lambda m, x: m.astype(x, m.float64), I),
]
PARAMS = [p for pair in CASES for p in pair]


@pytest.mark.parametrize(("f", "inputs", "ref", "mode"), PARAMS)
def test_matches_reference(f, inputs, ref, mode, request):
    got = run(mode, f, *inputs)
    if ref == "strict":
        strict = request.getfixturevalue("xs")
        want = np.asarray(f(strict, *[strict.asarray(a) for a in inputs]))
    else:
        want = f(np, *inputs)
    assert_same(got, want)


def test_every_public_function_is_covered():
    public = {n for n, v in vars(xp).items()
              if inspect.isfunction(v) and not n.startswith("_") and v.__module__ == xp.__name__}
    tested = {p.id.split("-")[0] for p in PARAMS} | {"isdtype", "result_type", "finfo", "iinfo"}
    assert len(public) > 60 and public - tested == set()


@pytest.mark.parametrize("mode", MODES)
def test_argsort_index_dtype(mode):
    assert run(mode, lambda m, x: m.argmax(x, axis=1), T).dtype == tf.int64
    assert run(mode, lambda m, x: m.argsort(x), T).dtype == tf.int64


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "uint32", "bool"])
@pytest.mark.parametrize("fn", ["isfinite", "isinf", "isnan"])
def test_isfinite_family_on_integer_arrays(fn, dtype, mode):
    x = np.array([[0, 1, 1], [1, 0, 1]]).astype(dtype)
    assert_same(run(mode, lambda m, a: getattr(m, fn)(a), x), getattr(np, fn)(x))


# --- promotion ----------------------------------------------------------------------------------------
STRICT_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float32", "float64")


def test_result_type_matches_strict_table(xs):
    for a in STRICT_DTYPES:
        for b in STRICT_DTYPES:
            try:
                want = xs.result_type(getattr(xs, a), getattr(xs, b))
            except TypeError:
                with pytest.raises(TypeError):
                    xp.result_type(getattr(xp, a), getattr(xp, b))
                continue
            assert xp.result_type(getattr(xp, a), getattr(xp, b)) == getattr(xp, str(want).split(".")[-1]), (a, b)
    # several arguments, arrays and dtypes mixed
    assert xp.result_type(xp.int8, xp.uint8, xp.int32) == xp.int32
    assert xp.result_type(tf.zeros(1, tf.float16), xp.float32, tf.zeros(1, tf.float16)) == xp.float32


# (a, b, result). float16 + bfloat16 is not in the standard; our choice is float32, the smallest
# float that holds both exactly (JAX's lattice does the same).
PAIRS = [("float32", "float64", "float64"), ("int8", "uint8", "int16"), ("uint32", "int32", "int64"),
         ("float16", "bfloat16", "float32"), ("int16", "uint8", "int16"), ("uint8", "uint16", "uint16"),
         ("int8", "int64", "int64"), ("float16", "float32", "float32"), ("bfloat16", "float64", "float64"),
         ("uint8", "int32", "int32"), ("int8", "uint16", "int32")]
BINARY = {
    "add": lambda m, a, b: m.add(a, b), "multiply": lambda m, a, b: m.multiply(a, b),
    "maximum": lambda m, a, b: m.maximum(a, b), "where": lambda m, a, b: m.where(m.greater(a, 1), a, b),
    "concat": lambda m, a, b: m.concat([a, b]), "stack": lambda m, a, b: m.stack([a, b]),
    "matmul": lambda m, a, b: m.matmul(m.reshape(a, (1, 3)), m.reshape(b, (3, 1))),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fn", BINARY)
@pytest.mark.parametrize(("a", "b", "want"), PAIRS, ids=["+".join(p[:2]) for p in PAIRS])
def test_binary_functions_promote(a, b, want, fn, mode):
    assert xp.result_type(getattr(xp, a), getattr(xp, b)) == getattr(xp, want)
    assert xp.result_type(getattr(xp, b), getattr(xp, a)) == getattr(xp, want)
    if fn == "matmul" and want in ("int16", "uint16"):
        pytest.skip("TF has no MatMul kernel for 8/16-bit integers (a TF limitation, not a promotion issue)")
    x1 = np.array([1, 2, 3]).astype(getattr(tf, a).as_numpy_dtype)
    x2 = np.array([3, 1, 2]).astype(getattr(tf, b).as_numpy_dtype)
    got = run(mode, BINARY[fn], x1, x2)
    assert got.dtype == getattr(tf, want)
    assert_same(tf.cast(got, tf.float64), BINARY[fn](np, x1.astype(f64), x2.astype(f64)))


SCALAR_CASES = [("float32", 1.5), ("float64", 1.5), ("float16", 1.5), ("bfloat16", 1.5), ("float32", 2),
                ("int32", 2), ("int8", 2), ("uint8", 3), ("int64", 2), ("bool", True)]
SCALAR_PARAMS = [(d, s, fn) for d, s in SCALAR_CASES
                 for fn in (("equal", "where", "logical_or") if d == "bool" else ("add", "maximum", "equal", "where"))]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("left", [False, True], ids=["array-scalar", "scalar-array"])
@pytest.mark.parametrize(("dtype", "scalar", "fn"), SCALAR_PARAMS, ids=[f"{d}-{s!r}-{f}" for d, s, f in SCALAR_PARAMS])
def test_python_scalars_take_the_array_dtype(dtype, scalar, fn, left, mode):
    x = np.array([0, 1, 1]).astype(getattr(tf, dtype).as_numpy_dtype)

    def f(m, a):
        args = (scalar, a) if left else (a, scalar)
        return m.where(m.asarray([True, False, True]), *args) if fn == "where" else getattr(m, fn)(*args)

    got = run(mode, f, x)
    assert got.dtype == (tf.bool if fn == "equal" else getattr(tf, dtype))
    if dtype != "bfloat16":  # NumPy (NEP 50) as the value reference
        assert_same(got, f(np, x))


_a = lambda dtype: np.ones(1, dtype)  # noqa: E731
MIXED = {  # kinds the standard does not promote together: array-array and Python scalar-array
    "bool+int32": (_a(bool), _a(np.int32)), "int32+float32": (_a(np.int32), _a(np.float32)),
    "uint8+float64": (_a(np.uint8), _a(f64)), "bool+float32": (_a(bool), _a(np.float32)),
    "int64-array+pyfloat": (_a(np.int64), 1.5), "uint8-array+pyfloat": (_a(np.uint8), 2.0),
    "int32-array+pybool": (_a(np.int32), True), "bool-array+pyint": (_a(bool), 1),
    "int64+uint64": (_a(np.int64), _a(np.uint64)),
}
MIXED_FNS = {
    "add": lambda m, a, b: m.add(a, b), "add-swapped": lambda m, a, b: m.add(b, a),
    "less": lambda m, a, b: m.less(a, b), "maximum": lambda m, a, b: m.maximum(a, b),
    "where": lambda m, a, b: m.where(m.asarray([True]), a, b), "concat": lambda m, a, b: m.concat([a, b]),
}
MIXED_PARAMS = [(p, fn) for p in MIXED for fn in MIXED_FNS if fn != "concat" or isinstance(MIXED[p][1], np.ndarray)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("pair", "fn"), MIXED_PARAMS, ids=[f"{p}-{f}" for p, f in MIXED_PARAMS])
def test_mixed_kinds_raise_type_error(pair, fn, mode):
    a, b = MIXED[pair]
    if isinstance(b, np.ndarray):
        with pytest.raises(TypeError):
            run(mode, MIXED_FNS[fn], a, b)
        if pair != "int64+uint64":
            with pytest.raises(TypeError):
                xp.result_type(tf.constant(a), tf.constant(b))
    else:  # a Python scalar: keep it out of the graph inputs
        with pytest.raises(TypeError):
            run(mode, lambda m, x: MIXED_FNS[fn](m, x, b), a)


@pytest.mark.parametrize(("dtype", "scalar"), [("float32", 2.0), ("uint8", 3), ("int32", 1), ("float16", 1.0)])
def test_result_type_with_python_scalars(dtype, scalar):
    assert xp.result_type(tf.zeros((1,), getattr(tf, dtype)), scalar) == getattr(tf, dtype)


# --- data-type information -----------------------------------------------------------------------------
KINDS = ("bool", "signed integer", "unsigned integer", "integral", "real floating", "complex floating", "numeric")


def test_isdtype_every_kind_matches_strict(xs):
    for d in STRICT_DTYPES:
        for kind in KINDS:
            assert xp.isdtype(getattr(xp, d), kind) == xs.isdtype(getattr(xs, d), kind), (d, kind)
        assert xp.isdtype(getattr(xp, d), ("bool", "integral")) == xs.isdtype(getattr(xs, d), ("bool", "integral"))
        assert xp.isdtype(getattr(xp, d), (xp.float32, "bool")) == xs.isdtype(getattr(xs, d), (xs.float32, "bool"))
        for other in STRICT_DTYPES:
            assert xp.isdtype(getattr(xp, d), getattr(xp, other)) == (d == other)
    for dt in (xp.float16, xp.bfloat16):  # not in array_api_strict
        assert {k for k in KINDS if xp.isdtype(dt, k)} == {"real floating", "numeric"}
        assert xp.isdtype(dt, ("integral", "real floating")) and not xp.isdtype(dt, ("bool", "integral"))
    with pytest.raises((ValueError, TypeError)):
        xp.isdtype(xp.float32, "floating point")


BF16 = {"bits": 16, "eps": 2.0**-7, "max": (2 - 2.0**-7) * 2.0**127, "min": -(2 - 2.0**-7) * 2.0**127,
        "smallest_normal": 2.0**-126}


@pytest.mark.parametrize("d", ["float16", "bfloat16", "float32", "float64"])
def test_finfo(d, xs):
    if d == "bfloat16":
        want = BF16
    else:
        info = xs.finfo(getattr(xs, d)) if d != "float16" else np.finfo(np.float16)
        want = {k: getattr(info, "tiny" if k == "smallest_normal" and d == "float16" else k) for k in BF16}
    for got in (xp.finfo(getattr(xp, d)), xp.finfo(tf.zeros((2,), getattr(tf, d)))):
        assert got.dtype == getattr(xp, d)
        for k, v in want.items():
            assert getattr(got, k) == v and type(getattr(got, k)) is (int if k == "bits" else float), k


@pytest.mark.parametrize("d", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"])
def test_iinfo(d, xs):
    want = xs.iinfo(getattr(xs, d))
    for got in (xp.iinfo(getattr(xp, d)), xp.iinfo(tf.zeros((2,), getattr(tf, d)))):
        assert (got.bits, got.min, got.max, got.dtype) == (want.bits, want.min, want.max, getattr(xp, d))
        assert all(type(v) is int for v in (got.bits, got.min, got.max))


def test_constants_and_version():
    assert xp.__array_api_version__ == STRICT_VERSION
    assert (xp.e, xp.pi, xp.inf, xp.newaxis) == (np.e, np.pi, np.inf, None) and np.isnan(xp.nan)


def test_under_autograph():
    def f(m, x, y, i):
        z = m.where(m.greater(x, 0.0), m.logaddexp(x, y), m.clip(y, -1.0, 1.0))
        z = m.take_along_axis(m.moveaxis(z, 0, -1), m.moveaxis(i, 0, -1), axis=1)
        top = m.max(m.cumulative_sum(m.sort(z), axis=-1), axis=(0, 1))
        return m.stack([m.sum(z, axis=(0, 1), keepdims=True)[0, 0], top])

    args = (X, X[::-1] * 2, IDX)
    assert_same(tf.function(lambda *t: f(xp, *t))(*[tf.constant(a) for a in args]), f(np, *args))


# --- no process-wide NumPy behaviour ---------------------------------------------------------------------
def test_never_enables_numpy_behavior():
    tree = ast.parse(inspect.getsource(xp))
    names = {getattr(n, "attr", None) or getattr(n, "id", None) for n in ast.walk(tree)
             if isinstance(n, (ast.Attribute, ast.Name))}
    assert not {n for n in names if n and "numpy_behavior" in n}
    for mode in MODES:  # run some ops both ways first, then check TF's own promotion is untouched
        run(mode, lambda m, a, b: m.sum(m.add(m.where(m.greater(a, 0.0), a, 1), b), axis=0), P, Q.astype(f64))
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError)):
        tf.constant(1, tf.int32) + tf.constant(1.0, tf.float32)

"""Run one case on one backend, mode, device and dtype, against the float64 reference.

Values (one per example) are compared entry by entry, ``max |a - r| / |r|``; gradients normwise,
``max|a - r| / max|r|``; non-finite reference entries must match exactly. The reference sees exactly the
inputs the backend saw (rounded to the dtype); gradients are compared with central finite
differences of the reference in float64, for a random cotangent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import polyloss
from polyloss import reference
from polyloss._ops import compute_dtype_name
from polyloss.conformance.registry import Case

__all__ = ["Result", "run_case", "tolerance", "relative_error", "reference_gradient", "library_function",
           "library_call", "reference_function"]

# Tolerances by dtype: values are computed in float64 or float32 (half precision computes in
# float32), so their tolerance follows the compute dtype; gradients come back in the input dtype.
_VALUE_TOL = {"float64": 1e-12, "float32": 2e-5}
_GRAD_TOL = {"float64": 1e-7, "float32": 2e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def tolerance(case: Case, dtype: str, kind: str) -> float:
    if kind == "value":
        return case.value_tol.get(dtype, _VALUE_TOL[compute_dtype_name(dtype)])
    return case.grad_tol.get(dtype, _GRAD_TOL[dtype])


@dataclass
class Result:
    case: str
    function: str
    backend: str
    mode: str
    device: str
    dtype: str
    value_error: float | None = None
    grad_error: float | None = None
    status: str = "PASS"  # PASS, FAIL or ERROR (SKIP: polyloss.testing.check_implementation, a case not run)
    message: str = ""
    value_tol: float | None = None  # the tolerances the errors were held to (grad_tol: None when not checked)
    grad_tol: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def relative_error(actual: np.ndarray, expected: np.ndarray, *, elementwise: bool = False,
                   floor: float = 0.0) -> float:
    """The error of ``actual`` against ``expected``; inf if shapes or non-finite entries differ.

    Normwise (gradients): ``max|a - r| / max|r|`` over the finite entries of ``r``. Elementwise
    (values: one loss per example, each must be accurate on its own scale):
    ``max |a - r| / max(|r|, floor)``, with ``floor`` the compute dtype's smallest normal number.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    finite = np.isfinite(expected)
    same_nonfinite = np.array_equal(actual[~finite], expected[~finite], equal_nan=True)
    if not same_nonfinite or not np.all(np.isfinite(actual[finite])):
        return math.inf
    if not finite.any():
        return 0.0
    a, r = actual[finite], expected[finite]
    if elementwise:
        return float(np.max(np.abs(a - r) / np.maximum(np.abs(r), floor)))
    scale = np.max(np.abs(r))
    diff = np.max(np.abs(a - r))
    return float(diff / scale) if scale > 0.0 else float(diff)


def _is_float_array(v) -> bool:
    return isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)


def _to_backend(backend, value, dtype, device):
    if isinstance(value, np.ndarray):
        return backend.from_numpy(value, dtype=dtype if _is_float_array(value) else None, device=device)
    return value


def _rounded(backend, converted, original):
    """What the reference sees: the backend's rounded floating values, in float64."""
    if _is_float_array(original):
        return backend.to_numpy(converted).astype(np.float64)
    return original


def library_function(name: str):
    """The public function ``name``: a loss (``polyloss.<name>``), a metric (``polyloss.metrics.<name>``),
    or a dotted path below ``polyloss`` (``"multitask.gram_matrix"``)."""
    if "." in name:
        return _resolve(polyloss, name)
    fn = getattr(polyloss, name, None)
    return fn if fn is not None else getattr(polyloss.metrics, name)


def reference_function(name: str):
    """The oracle of ``name``: the same path below ``polyloss.reference``."""
    return _resolve(reference, name)


def _resolve(root, dotted: str):
    out = root
    for part in dotted.split("."):
        out = getattr(out, part)
    return out


def library_call(case: Case, function=None):
    """``(*args, **kwargs) -> result`` of the library side of ``case`` (through ``case.call``); ``function``
    replaces the library function (a user's implementation, for ``polyloss.testing.check_implementation``)."""
    function = library_function(case.function) if function is None else function
    if case.call is None:
        return function
    return lambda *args, **kwargs: case.call(function, *args, **kwargs)


def _reference_call(case: Case):
    """``(*args, **kwargs) -> result`` of the reference side of ``case`` (through ``case.reference_call``)."""
    function = reference_function(case.function)
    if case.reference_call is None:
        return function
    return lambda *args, **kwargs: case.reference_call(function, *args, **kwargs)


_FD_CACHE: dict[bytes, tuple] = {}


def reference_gradient(case: Case, args, kwargs, weights) -> tuple:
    """Central finite differences of ``Σ reference(*args, **kwargs) · weights`` with respect to
    ``args[i]`` for ``i`` in ``case.grad_args`` (float64; cached, as every backend asks the same).

    The difference is taken per output entry before the weighted sum, so that a huge loss in one
    row does not absorb the small change of another."""
    parts = [case.name.encode()]
    for v in list(args) + [kwargs[k] for k in sorted(kwargs)] + [weights]:
        parts.append(np.asarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v).encode())
    key = b"|".join(parts)
    if key not in _FD_CACHE:
        fn = _reference_call(case)
        grads = []
        for i in case.grad_args:
            x = np.array(args[i], dtype=np.float64)
            g = np.zeros_like(x)
            for idx in np.ndindex(x.shape):
                if not np.isfinite(x[idx]):
                    continue  # padding (-inf): the function does not depend on it
                h = 6e-6 * max(1.0, abs(x[idx]))
                shifted = []
                for sign in (1.0, -1.0):
                    moved = x.copy()
                    moved[idx] += sign * h
                    arguments = list(args)
                    arguments[i] = moved
                    shifted.append((moved[idx], np.asarray(fn(*arguments, **kwargs), dtype=np.float64)))
                (x_plus, f_plus), (x_minus, f_minus) = shifted
                with np.errstate(invalid="ignore"):
                    slope = np.where(f_plus == f_minus, 0.0, (f_plus - f_minus) / (x_plus - x_minus))
                g[idx] = float(np.sum(slope * weights))
            grads.append(g)
        _FD_CACHE[key] = tuple(grads)
    return _FD_CACHE[key]


@dataclass
class _Call:
    """One case's inputs on a backend, and what the reference sees."""

    args: list  # positional arguments, arrays converted to the backend
    kwargs: dict
    ref_args: list  # the same values as float64 NumPy, rounded as the backend rounded them
    ref_kwargs: dict
    positions: list  # the positions of the array arguments (those passed through compile/grad)
    function: object  # the library function
    options: dict  # the case's options of the library function (none for a user's function)

    def __call__(self, *arrays, options):
        full = list(self.args)
        for p, a in zip(self.positions, arrays):
            full[p] = a
        return self.function(*full, **self.kwargs, **options)

    @property
    def arrays(self):
        return [self.args[p] for p in self.positions]


def _prepare_call(case: Case, backend, dtype: str, device, function=None) -> _Call:
    args_np, kwargs_np = case.inputs(np.random.default_rng(case.seed), dtype)
    args = [_to_backend(backend, a, dtype, device) for a in args_np]
    kwargs = {k: _to_backend(backend, v, dtype, device) for k, v in kwargs_np.items()}
    return _Call(
        args=args,
        kwargs=kwargs,
        ref_args=[_rounded(backend, a, o) for a, o in zip(args, args_np)],
        ref_kwargs={k: _rounded(backend, kwargs[k], o) for k, o in kwargs_np.items()},
        positions=[i for i, a in enumerate(args_np) if isinstance(a, np.ndarray)],
        function=library_call(case, function),
        options=case.options if function is None else {},
    )


def _reference_output(case: Case, call: _Call):
    out = _reference_call(case)(*call.ref_args, **call.ref_kwargs)
    return tuple(np.asarray(r) for r in out) if isinstance(out, tuple) else np.asarray(out)


def _worst_entry(actual: np.ndarray, expected: np.ndarray, floor: float) -> tuple[float, str]:
    """The largest entry-wise error of ``actual`` and where it is, in words (for a failure message)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf, f"shape {actual.shape}, reference {expected.shape}"
    if actual.size == 0:
        return 0.0, ""
    with np.errstate(all="ignore"):
        same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
        error = np.where(np.isfinite(expected), np.abs(actual - expected) / np.maximum(np.abs(expected), floor), np.inf)
        error = np.where(same, 0.0, np.where(np.isnan(error), np.inf, error))
    index = np.unravel_index(int(np.argmax(error)), error.shape)
    where = f"at {tuple(int(i) for i in index)}" if index else "for the 0-d result"
    return float(error[index]), f"worst {where}: {actual[index]:.6g}, reference {expected[index]:.6g}"


def _compare_values(case, backend, call, out, expected, *, dtype, device, mode, problems,
                    output_policy=True, worst=None) -> float:
    """The largest relative error of the results against the reference; dtype and device problems are
    appended to ``problems`` (the output dtype only under ``output_policy``: polyloss's compute dtype),
    and the worst entry, in words, to ``worst``."""
    # several results (precision, recall, f1; threshold, value) are compared one by one
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    expected_all = expected if isinstance(expected, tuple) else (expected,)
    if len(outs) != len(expected_all):
        raise ValueError(f"{len(outs)} results, the reference has {len(expected_all)}")
    errors = []
    for position, (o, e) in enumerate(zip(outs, expected_all)):
        actual, e = backend.to_numpy(o), np.asarray(e)
        if not case.exact and output_policy:
            want = backend.dtype(compute_dtype_name(dtype))
            if o.dtype != want:
                problems.append(f"output dtype {o.dtype}, expected {want}")
        if device is not None and mode == "eager" and str(backend.device(o)) != str(backend.device(call.args[0])):
            problems.append(f"output on {backend.device(o)}, input on {backend.device(call.args[0])}")
        if case.exact:
            errors.append(0.0 if np.array_equal(actual, e) else math.inf)
        else:
            floor = float(np.finfo(compute_dtype_name(dtype)).tiny)
            errors.append(relative_error(actual, e, elementwise=position not in case.normwise, floor=floor))
            if worst is not None:
                worst.append(_worst_entry(actual, e, floor))
    return max(errors)


# modes that compile: the value and the gradient are traced and compiled as one function (one compile
# per row instead of two; the value is still the plain call, the gradient still the adapter's
# value_and_grad of Σ out · w, so both paths are exactly those of two separate compiles)
_ONE_COMPILE_MODES = ("jit", "function")


def _cotangent(case, backend, expected, *, dtype, device):
    """The random cotangent ``w`` of the gradient check (NumPy float64, and on the backend)."""
    weights = np.random.default_rng(case.seed + 1).standard_normal(np.shape(expected))
    return weights, backend.from_numpy(weights, dtype=compute_dtype_name(dtype), device=device)


def _value_and_grad(case, backend, call, w):
    """The (uncompiled) value and gradient of ``Σ out · w`` with respect to ``case.grad_args``."""
    diff_positions = tuple(call.positions.index(i) for i in case.grad_args)
    xp = backend.namespace

    def objective(*arrays):
        out = call(*arrays, options=call.options)
        # a user's function may return another dtype than polyloss's (check_implementation): the
        # cotangent follows its output
        return xp.sum(out * (w if out.dtype == w.dtype else xp.astype(w, out.dtype)))

    return backend.value_and_grad(objective, argnums=diff_positions)


def _compare_gradients(case, backend, call, grads, weights, *, problems) -> float:
    """The largest normwise error of the gradients of ``Σ out · w`` against central finite differences
    of the reference; dtype problems are appended to ``problems``."""
    ref_grads = reference_gradient(case, call.ref_args, call.ref_kwargs, weights)
    for i, g in zip(case.grad_args, grads):
        if g.dtype != call.args[i].dtype:
            problems.append(f"gradient of argument {i} has dtype {g.dtype}, input {call.args[i].dtype}")
    return max(relative_error(backend.to_numpy(g), r) for g, r in zip(grads, ref_grads))


def run_case(case: Case, backend, *, mode: str = "eager", device=None, device_label: str = "cpu",
             dtype: str = "float32", check_grad: bool = True, function=None, output_policy: bool = True,
             value_tol: float | None = None) -> Result:
    """Evaluate ``case`` on ``backend`` and compare with the reference: the values, then (on backends
    with autograd) the gradients. Any exception is reported as an ERROR row, never hidden.

    For a user's implementation (``polyloss.testing.check_implementation``): ``function`` replaces the
    library function, ``output_policy=False`` drops the check of polyloss's output dtype, and
    ``value_tol`` replaces the value tolerance."""
    result = Result(case.name, case.function, backend.name, mode, device_label, dtype)
    problems: list[str] = []
    value_tolerance = tolerance(case, dtype, "value") if value_tol is None else value_tol
    worst: list = []
    try:
        call = _prepare_call(case, backend, dtype, device, function)
        expected = _reference_output(case, call)

        def forward(*arrays):
            return call(*arrays, options=call.options)

        grads = value_and_grad = None
        if check_grad and case.grad_args and backend.has_autograd:
            weights, w = _cotangent(case, backend, expected, dtype=dtype, device=device)
            value_and_grad = _value_and_grad(case, backend, call, w)
        if value_and_grad is not None and mode in _ONE_COMPILE_MODES:
            out, grads = backend.compile(lambda *arrays: (forward(*arrays), value_and_grad(*arrays)[1]),
                                         mode)(*call.arrays)
        else:
            out = backend.compile(forward, mode)(*call.arrays)
        result.value_error = _compare_values(case, backend, call, out, expected, dtype=dtype, device=device,
                                             mode=mode, problems=problems, output_policy=output_policy, worst=worst)
        if not case.exact:
            result.value_tol = value_tolerance
            if result.value_error > value_tolerance:
                where = max(worst)[1] if worst else ""
                problems.append(f"value error {result.value_error:.3g} > {value_tolerance:.1g}"
                                + (f" ({where})" if where else ""))
        if value_and_grad is not None:
            result.grad_tol = tolerance(case, dtype, "grad")
            if grads is None:
                grads = backend.compile(value_and_grad, mode)(*call.arrays)[1]
            result.grad_error = _compare_gradients(case, backend, call, grads, weights, problems=problems)
            if result.grad_error > result.grad_tol:
                problems.append(f"gradient error {result.grad_error:.3g} > {result.grad_tol:.1g}")
    except Exception as exc:  # reported, never hidden: the row is an ERROR
        result.status = "ERROR"
        result.message = f"{type(exc).__name__}: {exc}"
        return result
    if problems:
        result.status = "FAIL"
        result.message = "; ".join(problems)
    return result

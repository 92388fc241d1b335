"""Testing helpers for checking an implementation of a loss or a metric, yours or ours.

:func:`assert_close` compares an array of any supported framework with expected values, checking
the framework, the dtype and the shape as well as the values, with a tolerance that comes from the
dtype. polyloss's own tests use it; so can yours::

    >>> import numpy as np, polyloss
    >>> from polyloss.testing import assert_close
    >>> logits, labels = np.array([[2.0, -1.0]]), np.array([[1, 0]])
    >>> assert_close(polyloss.multilabel_crossentropy(logits, labels),
    ...              polyloss.reference.multilabel_crossentropy(logits, labels))

:func:`check_implementation` runs the conformance registry's cases of one of our functions against
*your* implementation of it, in any framework, and prints the rows of ``polyloss check``::

    >>> import numpy as np
    >>> from polyloss.testing import check_implementation
    >>> def my_reduce(values, reduction="mean", *, weights=None, where=None):   # a NumPy port
    ...     w = np.broadcast_to(1.0 if weights is None else weights, np.shape(values)).astype(values.dtype)
    ...     keep = (w != 0) & (True if where is None else where)      # masked entries never touched
    ...     total = np.multiply(values, w, out=np.zeros_like(w), where=keep).sum()
    ...     if reduction == "sum":
    ...         return total
    ...     count = np.sum(w, where=keep)
    ...     return total / count if count != 0 else np.zeros_like(total)
    >>> report = check_implementation(my_reduce, "reduce", backends="numpy", file=None)
    >>> report.ok, len(report.results) > 0
    (True, True)
"""

from __future__ import annotations

import inspect
import math
import sys
from dataclasses import dataclass, field

import numpy as np

__all__ = ["assert_close", "RTOL", "default_rtol", "check_implementation", "ImplementationReport"]

#: The default relative tolerance by dtype: a few units in the last place of float64, and for the
#: narrower dtypes a small multiple of their epsilon (float32 ``2^-23 ≈ 1.2e-7``, float16 ``2^-10``,
#: bfloat16 ``2^-7``) that covers the rounding of the inputs and of a float32 computation.
RTOL = {"float64": 1e-12, "float32": 2e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def _dtype_name(dtype) -> str:
    """``"float32"`` for ``np.float32``, ``torch.float32``, ``jnp.float32``, ``tf.float32``, ``"float32"``."""
    if isinstance(dtype, str):
        return dtype
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    return str(dtype).rsplit(".", 1)[-1].replace("'>", "")


def default_rtol(dtype) -> float:
    """:data:`RTOL` of a floating dtype (any framework's dtype object or its name); float64's for
    integers, booleans and unknown dtypes."""
    return RTOL.get(_dtype_name(dtype), RTOL["float64"])


def _framework(x) -> str | None:
    """The framework of an array (``"numpy"``, ``"torch"``, ...), or None for Python values."""
    if isinstance(x, (bool, int, float, list, tuple)) or x is None:
        return None
    from polyloss import backends

    backend = backends.backend_for(x)
    return backend.name if backend is not None else type(x).__module__.split(".")[0]


def _host(x) -> np.ndarray:
    """``x`` as a NumPy array (float64 for floating values), on the host."""
    from polyloss import backends

    backend = backends.backend_for(x) if _framework(x) is not None else None
    a = backend.to_numpy(x) if backend is not None else np.asarray(x)
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def assert_close(actual, desired, *, rtol: float | None = None, atol: float = 0.0, dtype=None,
                 equal_nan: bool = True, err_msg: str = "") -> None:
    """Assert that ``actual`` equals ``desired`` within ``atol + rtol·|desired|``, entry by entry.

    Checked, in order:

    1. the framework: ``desired`` may be a Python value or a NumPy array (expected values, such as the
       reference's) or an array of ``actual``'s framework; an array of another framework is an error;
    2. the dtype: ``actual.dtype`` must be ``dtype`` when it is given (a dtype object of any framework,
       or a name such as ``"float32"``), else ``desired``'s dtype when both are arrays of the same
       framework other than NumPy (a NumPy ``desired`` is read as expected values, often float64);
    3. the shape: equal shapes, no broadcasting; a Python number as ``desired`` is the expected value
       of every entry;
    4. the values: NaN matches NaN (when ``equal_nan``), infinities must match exactly, and every other
       entry must lie within ``atol + rtol·|desired|``.

    ``rtol`` defaults to :func:`default_rtol` of ``actual``'s dtype (``dtype`` when given).

    Raises:
      AssertionError: naming what differs (framework, dtype, shape, or the worst entry and its error).
    """
    prefix = f"{err_msg}: " if err_msg else ""
    frame_a, frame_d = _framework(actual), _framework(desired)
    if frame_d not in (None, "numpy", frame_a):
        raise AssertionError(f"{prefix}actual is a {frame_a} array but desired is a {frame_d} array")
    actual_dtype = getattr(actual, "dtype", None)
    if dtype is not None:
        if actual_dtype is None or _dtype_name(actual_dtype) != _dtype_name(dtype):
            raise AssertionError(f"{prefix}actual has dtype {actual_dtype}, expected {_dtype_name(dtype)}")
    elif (
        frame_d == frame_a
        and frame_a not in (None, "numpy")
        and _dtype_name(actual_dtype) != _dtype_name(desired.dtype)
    ):
        raise AssertionError(f"{prefix}actual has dtype {actual_dtype} but desired has dtype {desired.dtype}")
    a, d = _host(actual), _host(desired)
    if isinstance(desired, (int, float)):
        d = np.full(a.shape, d, dtype=d.dtype)
    if a.shape != d.shape:
        raise AssertionError(f"{prefix}actual has shape {a.shape} but desired has shape {d.shape}")
    if rtol is None:
        rtol = default_rtol(dtype if dtype is not None else (actual_dtype if actual_dtype is not None else a.dtype))
    if a.dtype.kind not in "fc" or d.dtype.kind not in "fc":
        if not np.array_equal(a, d):
            bad = np.argwhere(a != d)[0] if a.shape else ()
            raise AssertionError(
                f"{prefix}values differ at {tuple(int(i) for i in bad)}: {a[tuple(bad)]!r} != {d[tuple(bad)]!r}"
            )
        return
    nan_a, nan_d = np.isnan(a), np.isnan(d)
    if equal_nan and not np.array_equal(nan_a, nan_d):
        where = tuple(int(i) for i in np.argwhere(nan_a != nan_d)[0])
        raise AssertionError(f"{prefix}NaN differs at {where}: actual {a[where]!r}, desired {d[where]!r}")
    inf = np.isinf(d) | np.isinf(a)
    if not np.array_equal(a[inf], d[inf]):
        where = tuple(int(i) for i in np.argwhere(inf & (a != d))[0])
        raise AssertionError(f"{prefix}infinities differ at {where}: actual {a[where]!r}, desired {d[where]!r}")
    finite = ~(inf | nan_a | nan_d) if equal_nan else ~inf
    with np.errstate(invalid="ignore"):
        excess = np.abs(a - d) - (atol + rtol * np.abs(d))
    bad = finite & ~(excess <= 0.0)
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[np.argmax(excess[bad])])
        error = abs(a[where] - d[where])
        relative = error / abs(d[where]) if d[where] != 0 else math.inf
        raise AssertionError(
            f"{prefix}{int(np.sum(bad))} of {a.size} entries differ beyond rtol={rtol:g}, atol={atol:g}; worst at "
            f"{where}: actual {a[where]!r}, desired {d[where]!r} (absolute {error:.3g}, relative {relative:.3g})"
        )


# ------------------------------------------------------------------------------------------------
# check_implementation: the registry's cases against a user's implementation
# ------------------------------------------------------------------------------------------------
@dataclass
class ImplementationReport:
    """What :func:`check_implementation` found: one :class:`~polyloss.conformance.Result` per case run
    (status PASS, FAIL, ERROR, or SKIP for a case your function cannot take).

    ``ok`` is True only when every case run passed: a skipped case is not a pass, and neither is a
    report with no case run at all."""

    function: str
    implementation: str
    results: list = field(default_factory=list)
    missing: dict = field(default_factory=dict)
    header: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.status == "PASS" for r in self.results)

    @property
    def passed(self) -> list:
        return [r for r in self.results if r.status == "PASS"]

    @property
    def failed(self) -> list:
        """The case runs that failed (FAIL: an error beyond the tolerance; ERROR: an exception)."""
        return [r for r in self.results if r.status in ("FAIL", "ERROR")]

    @property
    def skipped(self) -> list:
        return [r for r in self.results if r.status == "SKIP"]

    def table(self, format: str = "text") -> str:
        """The rows of ``polyloss check`` (``format``: text, markdown or json)."""
        from polyloss.conformance import report

        return report.render(self.results, format=format, header=self.header, missing=self.missing)

    def __str__(self) -> str:
        return self.table()


def _name_of(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _cannot_take(fn, n_args: int, keywords) -> str | None:
    """Why ``fn`` cannot be called with ``n_args`` positional arguments and ``keywords``, or None (also when
    its signature cannot be read: then the call decides)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*([None] * n_args), **dict.fromkeys(keywords))
    except TypeError:
        params = signature.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        absent = [k for k in keywords if k not in params and not takes_any]
        if absent:
            return "your function takes no " + ", ".join(f"{k}=" for k in absent)
        return f"your function cannot be called with {n_args} arguments and {', '.join(keywords) or 'no keywords'}"
    return None


def check_implementation(fn, function: str, *, backends=None, modes=None, devices=None, dtypes=None, cases=None,
                         file=sys.stdout, format: str = "text") -> ImplementationReport:
    """Run the conformance cases of polyloss's ``function`` against your implementation ``fn`` and
    print the rows of ``polyloss check``.

    Every case of the registry for ``function`` (``polyloss check --list --functions NAME`` lists them)
    calls ``fn`` with the same arguments as our function, as arrays of each backend in ``backends``,
    and compares the result with the float64 reference: the values entry by entry, and, on backends
    with autograd, the gradients against central finite differences of the reference. The steps are
    the conformance runner's (:func:`polyloss.conformance.run_case`), with two differences:

    - a case that passes an argument ``fn`` does not take (a ``where=`` or ``axis=`` your port does
      not have) is **skipped**, listed with the reason, and never counted as a pass;
    - the output dtype is yours to choose: a float16 or bfloat16 result is judged by its values at
      that dtype's tolerance (:data:`RTOL`), not by polyloss's policy of computing half precision
      in float32 (and the values of a float32 result of half-precision input are held to the same
      tolerance).

    Args:
      fn: your implementation, called as ``fn(*args, **kwargs)`` with our function's argument order
        (wrap it, e.g. ``lambda logits, labels: port(labels, logits)``, if yours differs).
      function: the name of the polyloss function it implements (``"multilabel_crossentropy"``).
      backends: the frameworks to feed it, a name or a list: ``"torch"``, ``["numpy", "jax"]``.
        Default: every installed backend (a port written for one framework: name that one).
      modes: ``"eager"``, ``"jit"`` (``jax.jit``), ``"function"`` (``tf.function``), ``"compile"``
        (``torch.compile``). Default: eager, jit and function where the backend has them.
      devices, dtypes: restrict the devices (``"cpu"``, ``"cuda"``) and dtypes (``"float16"``, ...).
      cases: restrict to these case names (``"multilabel_crossentropy/hard-bool"`` or ``"hard-bool"``).
      file: where the table is printed (``None``: not printed).
      format: ``"text"``, ``"markdown"`` or ``"json"``.

    Returns:
      An :class:`ImplementationReport`: ``ok`` (True only when every case run passed), ``results``,
      ``failed``, ``skipped``, and ``table()``.

    JAX runs float64 only when ``jax_enable_x64`` is on (``polyloss check`` turns it on for its own
    process; this function leaves your JAX as it is).
    """
    from polyloss import backends as _backends
    from polyloss.conformance import matrix, registry, report, runner

    names = [backends] if isinstance(backends, str) else list(backends) if backends is not None else None
    selected = registry.cases_for([function])
    if cases is not None:
        wanted = {cases} if isinstance(cases, str) else set(cases)
        selected = [c for c in selected if c.name in wanted or c.label in wanted]
        if not selected:
            raise ValueError(f"no case of {function} is named {sorted(wanted)}")
    runs, missing = matrix.plan(backends=names, modes=[modes] if isinstance(modes, str) else modes,
                                devices=[devices] if isinstance(devices, str) else devices,
                                dtypes=[dtypes] if isinstance(dtypes, str) else dtypes, cases=selected)
    results = []
    for target, case, dtype in runs:
        args, kwargs = case.inputs(np.random.default_rng(case.seed), dtype)
        reason = None if case.call is not None else _cannot_take(fn, len(args), kwargs)
        if reason is not None:
            results.append(runner.Result(case.name, case.function, target.backend, target.mode, target.device_label,
                                         dtype, status="SKIP", message=f"{reason} (the case passes "
                                         + ", ".join(f"{k}=" for k in kwargs) + ")"))
            continue
        value_tol = max(runner.tolerance(case, dtype, "value"), default_rtol(dtype))
        results.append(runner.run_case(case, _backends.get_backend(target.backend), mode=target.mode,
                                       device=target.device, device_label=target.device_label, dtype=dtype,
                                       function=fn, output_policy=False, value_tol=value_tol))
    name = _name_of(fn)
    header = {
        "title": f"check_implementation: {name} against polyloss.reference.{function}",
        "lines": [f"{len(selected)} cases of {function}; backends: "
                  + (", ".join(sorted({t.backend for t, _, _ in runs})) or "none")],
        "implementation": name,
        "function": function,
    }
    out = ImplementationReport(function=function, implementation=name, results=results, missing=missing,
                               header=header)
    if file is not None:
        file.write(report.render(results, format=format, header=header, missing=missing))
    return out

"""The case registry: one declaration per case, read by the tests and by ``polyloss check``.

A :class:`Case` names a public function (looked up in ``polyloss`` and in ``polyloss.reference``),
a generator of NumPy inputs, the positional arguments to differentiate, and the dtypes it runs
at. Adding a function to the library means adding its cases to its family's ``cases_<family>.py``
in this package (found by :func:`cases_for`, nothing to register elsewhere); every backend, mode,
device and dtype then runs them, in the tests and in ``polyloss check``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Case", "register", "CASES", "cases_for", "FULL_DTYPES", "HALF_DTYPES", "ALL_DTYPES", "finite_max"]

FULL_DTYPES = ("float64", "float32")
HALF_DTYPES = ("float16", "bfloat16")
ALL_DTYPES = FULL_DTYPES + HALF_DTYPES  # masking and range paths run in half precision too


def finite_max(dtype: str) -> float:
    """The largest finite value of ``dtype`` (bfloat16 shares float32's exponent range)."""
    return {"float16": 65504.0, "bfloat16": 3.3895e38, "float32": 3.4028e38, "float64": 1.7977e308}[dtype]


@dataclass(frozen=True)
class Case:
    """One conformance case.

    ``inputs(rng, dtype)`` returns ``(args, kwargs)`` of NumPy values: floating arrays are cast to
    the case dtype on the backend (and the reference sees exactly the rounded values), boolean and
    integer arrays keep their dtype, other values pass unchanged. ``grad_args`` are the positions
    of the floating arguments to differentiate (checked against central finite differences of the
    reference); ``()`` for functions without a gradient. ``exact`` compares outputs for equality
    (boolean results). ``value_tol`` / ``grad_tol`` override the dtype's tolerance, by dtype name,
    where the math allows a tighter one or needs a looser one (say why in ``note``). ``options`` are
    keyword arguments for the library function only: choices of algorithm (``method="sorted"``) that
    change how, not what, it computes, and that the reference does not have.

    ``function`` is a public name of ``polyloss`` (``"multilabel_crossentropy"``), of
    ``polyloss.metrics``, or a dotted path below ``polyloss`` (``"multitask.gram_matrix"``); the
    reference is the same path below ``polyloss.reference``. Functions that take more than arrays (a
    user's loss function, a model) are called through ``call`` / ``reference_call``:
    ``call(function, *args, **kwargs)`` receives the library function and the case's arguments on the
    backend (arrays of the backend's framework) and returns its result as an array or a tuple of arrays;
    ``reference_call`` does the same with the reference function and float64 NumPy arguments. Both are
    written in the cases module: ``call`` against the array API (``polyloss.get_namespace``), never with
    framework imports, and ``reference_call`` with the reference only.

    ``autograd``: the function differentiates (a user's loss function, through the adapter's hooks), so
    backends without automatic differentiation do not run the case (:meth:`runs_on`). ``normwise``: the
    positions of results that are gradients (returned as values by ``call``, e.g. the weight gradients of a
    training step), compared normwise like gradients instead of entry by entry.
    ``modes`` limits the modes the case runs in (None: every mode of every backend): a function of
    Python values such as ``span_f1`` reads its inputs' values, which no compiled mode has.
    """

    name: str
    function: str
    inputs: Callable[[np.random.Generator, str], tuple[tuple, dict]]
    grad_args: tuple[int, ...] = (0,)
    dtypes: tuple[str, ...] = FULL_DTYPES
    exact: bool = False
    value_tol: dict = field(default_factory=dict)
    grad_tol: dict = field(default_factory=dict)
    seed: int = 0
    note: str = ""
    options: dict = field(default_factory=dict)
    call: Callable | None = None
    reference_call: Callable | None = None
    autograd: bool = False
    normwise: tuple[int, ...] = ()
    modes: tuple[str, ...] | None = None

    def runs_on(self, backend) -> bool:
        """Whether ``backend`` runs this case: it supports the function, and has autograd if the case needs it."""
        return backend.supports(self.function) and (backend.has_autograd or not self.autograd)

    @property
    def label(self) -> str:
        return self.name.split("/", 1)[1] if "/" in self.name else self.name


CASES: list[Case] = []


def register(*cases: Case) -> None:
    names = {c.name for c in CASES}
    for case in cases:
        if case.name in names:
            raise ValueError(f"duplicate conformance case {case.name!r}")
        names.add(case.name)
        CASES.append(case)


def cases_for(functions=None) -> list[Case]:
    """The registered cases, optionally only those of the named functions."""
    _load()
    if functions is None:
        return list(CASES)
    wanted = set(functions)
    known = sorted({c.function for c in CASES})
    unknown = wanted - set(known)
    if unknown:
        raise ValueError(f"no conformance cases for {sorted(unknown)} ({_suggestions(unknown, known)})")
    return [c for c in CASES if c.function in wanted]


def _suggestions(unknown, known) -> str:
    """``'focal_los': did you mean 'focal_loss'?`` for each unknown name (close matches by difflib)."""
    import difflib

    hints = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hints.append(f"{name!r}: did you mean {' or '.join(map(repr, close))}?" if close
                     else f"{name!r}: no such function")
    return "; ".join(hints)


def _load() -> None:
    """Import every ``cases_*.py`` module of this package (each registers its cases on import): a new
    family adds its module and nothing else."""
    import importlib
    import pkgutil

    import polyloss.conformance as package

    for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("cases_")):
        importlib.import_module(f"{package.__name__}.{module}")

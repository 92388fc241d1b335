"""Conformance: every public function against the float64 reference, on every backend.

``polyloss.conformance.check(...)`` runs the case registry on the installed backends, modes,
devices and dtypes and returns one :class:`Result` per case; ``polyloss check`` prints them as a
table (one row per function x backend x mode x device x dtype). The tests run the same registry.
"""

from polyloss.conformance.matrix import Target, check, targets
from polyloss.conformance.registry import CASES, FULL_DTYPES, HALF_DTYPES, Case, cases_for, register
from polyloss.conformance.runner import Result, reference_gradient, relative_error, run_case, tolerance

__all__ = [
    "Case",
    "CASES",
    "FULL_DTYPES",
    "HALF_DTYPES",
    "Result",
    "Target",
    "cases_for",
    "check",
    "register",
    "relative_error",
    "reference_gradient",
    "run_case",
    "targets",
    "tolerance",
]

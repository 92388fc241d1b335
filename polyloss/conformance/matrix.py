"""The backend x mode x device x dtype matrix that a conformance run walks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from polyloss import backends as _backends
from polyloss.conformance.registry import Case, cases_for
from polyloss.conformance.runner import Result, run_case

__all__ = ["Target", "targets", "plan", "check", "prepare"]

# modes beyond eager that run by default; torch.compile is opt-in (minutes of compilation)
DEFAULT_MODES = ("eager", "jit", "function")


@dataclass(frozen=True)
class Target:
    backend: str
    mode: str
    device_label: str
    device: object


def prepare(backend) -> None:
    """The process-wide settings the matrix needs (``Backend.prepare_conformance``: JAX's float64):
    the ``polyloss check`` command and the test suite call it; :func:`check` does not, so that it
    leaves a caller's JAX as it found it (without x64 the JAX float64 rows are simply not run)."""
    backend.prepare_conformance()


def targets(backends: Iterable[str] | None = None, modes: Iterable[str] | None = None,
            devices: Iterable[str] | None = None) -> tuple[list[Target], dict[str, str]]:
    """The targets to run and, separately, the backends that are not installed (name -> reason)."""
    wanted_modes = set(modes) if modes is not None else set(DEFAULT_MODES)
    wanted_devices = set(devices) if devices is not None else None
    out, missing = [], {}
    # by default the GPU-only backends (CuPy) join where they import; absent, they are not missing
    gpu_only = () if backends else tuple(_backends.GPU_BACKEND_NAMES)
    for name in backends or (*_backends.BACKEND_NAMES, *gpu_only):
        try:
            backend = _backends.get_backend(name)
            backend.namespace  # noqa: B018 - import check
        except ImportError as exc:
            if name not in gpu_only:
                missing[name] = f"not installed ({exc})"
            continue
        for mode in backend.modes:
            if mode != "eager" and mode not in wanted_modes:
                continue
            if mode == "eager" and modes is not None and "eager" not in wanted_modes:
                continue
            for label, device in backend.devices():
                kind = label.split(":")[0]
                if wanted_devices is not None and label not in wanted_devices and kind not in wanted_devices:
                    continue
                out.append(Target(name, mode, label, device))
    return out, missing


def plan(functions=None, *, backends=None, modes=None, devices=None, dtypes=None,
         cases: list[Case] | None = None) -> tuple[list[tuple[Target, Case, str]], dict[str, str]]:
    """The case runs of a selection, ``(target, case, dtype)`` in the order :func:`check` runs them, and
    the backends that are not installed (name -> reason)."""
    selected = cases if cases is not None else cases_for(functions)
    wanted_targets, missing = targets(backends, modes, devices)
    runs = []
    for target in wanted_targets:
        backend = _backends.get_backend(target.backend)
        available = backend.dtypes(target.device)
        for case in selected:
            if not case.runs_on(backend) or (case.modes is not None and target.mode not in case.modes):
                continue
            for dtype in case.dtypes:
                if dtype not in available or (dtypes is not None and dtype not in dtypes):
                    continue
                runs.append((target, case, dtype))
    return runs, missing


def check(functions=None, *, backends=None, modes=None, devices=None, dtypes=None,
          cases: list[Case] | None = None, on_result=None) -> tuple[list[Result], dict[str, str]]:
    """Run the registry; returns the results and the backends that could not run."""
    runs, missing = plan(functions, backends=backends, modes=modes, devices=devices, dtypes=dtypes, cases=cases)
    results = []
    for target, case, dtype in runs:
        result = run_case(case, _backends.get_backend(target.backend), mode=target.mode, device=target.device,
                          device_label=target.device_label, dtype=dtype)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results, missing

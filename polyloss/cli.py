"""The ``polyloss`` command. ``polyloss check`` prints the conformance table of this machine."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import OrderedDict

__all__ = ["main"]

MODES = ("eager", "jit", "function", "compile")
DEVICE_KINDS = ("cpu", "cuda", "gpu", "device1")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _versions(names) -> list[str]:
    from importlib import metadata

    dists = {"array_api_strict": "array-api-strict"}  # the others are named as their distribution
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(dists.get(name, name))}")
        except metadata.PackageNotFoundError:
            if name == "cupy":  # CuPy's wheels are named after the CUDA version
                found = [d.version for d in metadata.distributions()
                         if (d.metadata["Name"] or "").lower().startswith("cupy-cuda")]
                if found:
                    out.append(f"{name} {found[0]}")
                    continue
            if name == "tensorflow":
                try:
                    out.append(f"{name} {metadata.version('tensorflow-cpu')}")
                    continue
                except metadata.PackageNotFoundError:
                    pass
            out.append(f"{name} -")
    return out


def _fmt(err) -> str:
    if err is None:
        return "-"
    return f"{err:.1e}" if err != float("inf") else "inf"


def _check(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import polyloss
    from polyloss import backends, conformance

    backend_names = _csv(args.backends) if args.backends else list(backends.BACKEND_NAMES)
    known = (*backends.BACKEND_NAMES, *backends.GPU_BACKEND_NAMES)
    unknown = set(backend_names) - set(known)
    if unknown:
        print(f"unknown backends: {', '.join(sorted(unknown))}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    functions = _csv(args.functions) if args.functions else None
    modes = _csv(args.modes) if args.modes else None
    devices = _csv(args.devices) if args.devices else None
    dtypes = _csv(args.dtypes) if args.dtypes else None
    for option, given, known in (("--modes", modes, MODES), ("--dtypes", dtypes, backends.DTYPE_NAMES)):
        wrong = sorted(set(given or ()) - set(known))
        if wrong:
            print(f"unknown {option}: {', '.join(wrong)}; known: {', '.join(known)}", file=sys.stderr)
            return 2
    if devices and not any(d.split(":")[0] in DEVICE_KINDS for d in devices):
        print(f"unknown --devices: {', '.join(devices)}; use labels such as cpu, cuda:0, gpu, device1",
              file=sys.stderr)
        return 2
    for name in backend_names:
        try:
            conformance.matrix.prepare(backends.get_backend(name))
        except ImportError:
            pass  # reported below as not installed

    print(f"polyloss {polyloss.__version__} conformance check - Python {platform.python_version()}, "
          + ", ".join(_versions(backend_names)))
    rows: OrderedDict = OrderedDict()
    failures = []
    started = time.perf_counter()

    def on_result(r):
        key = (r.function, r.backend, r.mode, r.device, r.dtype)
        row = rows.setdefault(key, {"value": None, "grad": None, "cases": 0, "bad": 0})
        row["cases"] += 1
        for kind, err in (("value", r.value_error), ("grad", r.grad_error)):
            if err is not None:
                row[kind] = err if row[kind] is None else max(row[kind], err)
        if not r.passed:
            row["bad"] += 1
            failures.append(r)
        if args.verbose:
            print(f"  {r.status:5} {r.case} [{r.backend}/{r.mode}/{r.device}/{r.dtype}] "
                  f"value {_fmt(r.value_error)} grad {_fmt(r.grad_error)} {r.message}", flush=True)

    try:
        _, missing = conformance.check(functions, backends=backend_names, modes=modes, devices=devices,
                                       dtypes=dtypes, on_result=on_result)
    except ValueError as exc:
        print(f"polyloss check: {exc}", file=sys.stderr)
        return 2

    header = ("function", "backend", "mode", "device", "dtype", "cases", "value err", "grad err", "result")
    table = [header] + [
        (*key, str(row["cases"]), _fmt(row["value"]), _fmt(row["grad"]), "PASS" if not row["bad"] else "FAIL")
        for key, row in rows.items()
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if failures:
        print("\nfailures:")
        for r in failures:
            print(f"  {r.status} {r.case} [{r.backend}/{r.mode}/{r.device}/{r.dtype}]: {r.message}")
    for name, reason in missing.items():
        print(f"{name}: {reason}; its rows were not run")
    ran = sorted({key[1] for key in rows})
    passed = sum(1 for row in rows.values() if not row["bad"])
    print(
        f"\n{len(rows)} rows ({sum(r['cases'] for r in rows.values())} case runs) on {', '.join(ran) or 'no backend'}: "
        f"{passed} PASS, {len(rows) - passed} FAIL; not installed: {', '.join(missing) or 'none'} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    if not rows:
        return 1
    return 0 if passed == len(rows) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="polyloss", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="compare every function with the float64 reference on the installed backends",
        description="Run the conformance registry: one row per function x backend x mode x device x dtype, "
        "with the largest relative error of the value and of the gradient (against central finite "
        "differences of the reference). Exits non-zero when a row fails.",
    )
    check.add_argument("--backends", help="comma-separated: numpy,array_api_strict,torch,jax,tensorflow,dask,cupy "
                       "(default: all installed; CuPy, a GPU-only backend, where it imports)")
    check.add_argument(
        "--modes",
        help="comma-separated modes to run: eager,jit,function,compile (default: "
        "eager,jit,function; compile, for torch.compile, is slow)",
    )
    check.add_argument("--devices", help="comma-separated device labels or kinds: cpu,cuda,gpu,device1 (default: all)")
    check.add_argument("--dtypes", help="comma-separated: float64,float32,float16,bfloat16 (default: all)")
    check.add_argument("--functions", help="comma-separated public function names (default: all)")
    check.add_argument("-v", "--verbose", action="store_true", help="print every case as it runs")
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

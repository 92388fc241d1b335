"""The ``polyloss`` command. ``polyloss check`` prints the conformance table of this machine."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import re
import sys
import tempfile
import time

__all__ = ["main"]

MODES = ("eager", "jit", "function", "compile")
MODE_OWNERS = {"jit": "jax (jax.jit)", "function": "tensorflow (tf.function)", "compile": "torch (torch.compile)"}
DEVICE_KINDS = ("cpu", "cuda", "gpu", "device1")

CHECK_EPILOG = """\
examples:
  polyloss check                                  every installed backend, the default modes, all dtypes
  polyloss check --backends numpy                 NumPy only: a few seconds
  polyloss check --backends torch,jax --dtypes float32 --functions multilabel_crossentropy
  polyloss check --devices cuda                   the GPU rows only
  polyloss check --modes compile --backends torch torch.compile (slow: seconds per graph)
  polyloss check --list                           the functions and their cases
  polyloss check --format markdown --output check.md   a table to paste into a bug report
  polyloss check --format json --output check.json     for a program

Each row is one function x backend x mode x device x dtype. 'value err' is the largest relative error of
the values against the float64 reference (entry by entry), 'grad err' the largest normwise error of the
gradients against central finite differences of the reference ('-': no gradient checked: a backend
without autograd, or a function without a gradient), 'tol' the tolerances of the dtype (value/gradient).
Rows 'device1' run on array-api-strict's second device. The exit status is 0 when every row passes, 1
when a row fails or nothing ran (the reason is printed), 2 for a usage error. A backend that is not
installed is listed as such, never counted as passed.
"""


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


# the frameworks' native log lines (glog / absl format, written by C++ straight to the process's stderr
# at import and at first use: "Could not find cuda drivers", oneDNN's notice) and TensorFlow's retracing
# warnings; everything else written to stderr is passed on
_NOISE = re.compile(r"^[IW]\d{4} \d\d:\d\d:\d\d|All log messages before absl::InitializeLog|oneDNN custom operations|"
                    r"triggered tf\.function retracing|^To enable the following instructions|^\s*$")


@contextlib.contextmanager
def _native_logs_filtered():
    """Send file descriptor 2 to a temporary file while the frameworks run, then write back to stderr
    every line that is not framework noise (``_NOISE``)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an embedding host): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines() if not _NOISE.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def _quiet_frameworks() -> None:
    """The frameworks' log lines are not the checker's output: TensorFlow's C++ logs (oneDNN's notice)
    go before TensorFlow is imported, its retracing warnings (every case traces a new tf.function)
    through Python's logging; JAX's and absl's warnings likewise."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL") or "3"
    for name in ("tensorflow", "absl", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _Progress:
    """``rows done/total, case runs, elapsed`` on one terminal line, rewritten in place; nothing at
    all when ``stream`` is not a terminal."""

    def __init__(self, stream, total_runs: int, rows_of_run: list):
        self.stream = stream
        self.enabled = bool(getattr(stream, "isatty", lambda: False)())
        self.total_runs = total_runs
        self.rows_of_run = rows_of_run  # the row key of each run, in order
        self.total_rows = len(set(rows_of_run))
        self.done = 0
        self.rows_done = 0
        self.started = time.perf_counter()
        self.last = 0.0

    def advance(self, result) -> None:
        self.done += 1
        key = self.rows_of_run[self.done - 1] if self.done <= len(self.rows_of_run) else None
        following = self.rows_of_run[self.done] if self.done < len(self.rows_of_run) else None
        if key != following:
            self.rows_done += 1
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.1 or self.done == self.total_runs):
            self.last = now
            self.stream.write(f"\r\033[K{self.rows_done}/{self.total_rows} rows, {self.done}/{self.total_runs} case "
                              f"runs, {now - self.started:.0f} s - {result.backend}/{result.mode}/{result.device}/"
                              f"{result.dtype} {result.function}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _why_nothing(backend_names, targets, missing, runs_without_dtypes, args) -> list[str]:
    """The reasons a selection has no case runs, one line each."""
    from polyloss import backends

    installed = [n for n in backend_names if n not in missing]
    if not installed:
        return [f"none of the selected backends ({', '.join(backend_names)}) is installed"]
    lines = []
    modes = _csv(args.modes) if args.modes else None
    if modes:
        offered = {n: backends.get_backend(n).modes for n in installed}
        for mode in modes:
            if not any(mode in m for m in offered.values()):
                owner = MODE_OWNERS.get(mode, "every backend")
                lines.append(f"--modes {mode}: no selected backend runs it ({mode} is {owner}; installed here: "
                             f"{', '.join(installed)})")
    devices = _csv(args.devices) if args.devices else None
    if devices and not targets:
        present = {n: [label for label, _ in backends.get_backend(n).devices()] for n in installed}
        lines.append(f"--devices {','.join(devices)}: no selected backend has such a device (devices here: "
                     + "; ".join(f"{n}: {', '.join(labels)}" for n, labels in present.items()) + ")")
    if targets and runs_without_dtypes and args.dtypes:
        for name in sorted({t.backend for t in targets}):
            adapter = backends.get_backend(name)
            have = sorted({d for t in targets if t.backend == name for d in adapter.dtypes(t.device)})
            lines.append(f"--dtypes {args.dtypes}: {name} runs {', '.join(have)} here"
                         + (" (NumPy has no bfloat16)" if name == "numpy" and "bfloat16" in args.dtypes else ""))
    if targets and not runs_without_dtypes:
        names = sorted({t.backend for t in targets})
        lines.append(f"the selected functions do not run on {', '.join(names)} "
                     f"(dask runs the metrics only: polyloss check --list shows what runs where)")
    return lines or ["the selection has no case runs"]


def _list(args) -> int:
    from polyloss import conformance

    cases = conformance.cases_for(_csv(args.functions) if args.functions else None)
    by_function: dict = {}
    for case in cases:
        by_function.setdefault(case.function, []).append(case)
    if args.format == "json":
        text = json.dumps({function: [{"case": c.label, "dtypes": list(c.dtypes), "gradient": bool(c.grad_args),
                                       "modes": list(c.modes) if c.modes else "all", "note": c.note}
                                      for c in items] for function, items in by_function.items()}, indent=2)
    else:
        lines = [f"{len(by_function)} functions, {len(cases)} conformance cases "
                 "(polyloss check --functions NAME runs one function's cases)", ""]
        for function, items in by_function.items():
            lines.append(f"{function} ({len(items)} cases)")
            width = max(len(c.label) for c in items)
            for c in items:
                extra = " (eager only)" if c.modes else ""
                lines.append(f"  {c.label.ljust(width)}  {','.join(c.dtypes)}{'' if c.grad_args else ', no gradient'}"
                             f"{extra}")
        text = "\n".join(lines)
    _emit(text + "\n", args.output)
    return 0


def _emit(text: str, output) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def _check(args) -> int:
    _quiet_frameworks()
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
    try:
        conformance.cases_for(functions)
    except ValueError as exc:
        print(f"polyloss check: {exc}; polyloss check --list shows every function", file=sys.stderr)
        return 2
    if args.list:
        return _list(args)
    with _native_logs_filtered():
        return _run(args, backend_names, functions, modes, devices, dtypes)


def _run(args, backend_names, functions, modes, devices, dtypes) -> int:
    import polyloss
    from polyloss import backends, conformance
    from polyloss.conformance import matrix, report

    for name in backend_names:
        try:
            matrix.prepare(backends.get_backend(name))
        except ImportError:
            pass  # reported below as not installed

    runs, missing = matrix.plan(functions, backends=backend_names, modes=modes, devices=devices, dtypes=dtypes)
    targets, _ = matrix.targets(backend_names, modes, devices)
    device_labels = {}
    for t in targets:
        device_labels.setdefault(t.backend, [])
        if t.device_label not in device_labels[t.backend]:
            device_labels[t.backend].append(t.device_label)
    row_keys = [(c.function, t.backend, t.mode, t.device_label, d) for t, c, d in runs]
    header = {
        "title": f"polyloss {polyloss.__version__} conformance check",
        "lines": [
            f"Python {platform.python_version()} on {platform.system()} {platform.machine()}; "
            + ", ".join(_versions(backend_names)),
            "devices: " + ("; ".join(f"{n}: {', '.join(labels)}" for n, labels in device_labels.items()) or "none"),
            f"selection: {len(set(row_keys))} rows, {len(runs)} case runs"
            + (f"; modes {','.join(modes)}" if modes else "; modes eager, jit, function (--modes compile adds "
               "torch.compile)"),
        ],
        "polyloss": polyloss.__version__,
        "python": platform.python_version(),
        "versions": dict(v.split(" ", 1) for v in _versions(backend_names)),
        "devices": device_labels,
    }
    notes = []
    if not runs:
        with_any_dtype, _ = matrix.plan(functions, backends=backend_names, modes=modes, devices=devices)
        notes = ["0 rows: " + line for line in _why_nothing(backend_names, targets, missing, with_any_dtype, args)]
    text_on_terminal = args.format == "text" and not args.output
    if text_on_terminal:  # the header first, so that a long run shows what it is doing
        print(report.header_text(header), end="", flush=True)
    progress = _Progress(sys.stdout, len(runs), row_keys)
    started = time.perf_counter()

    def on_result(r):
        progress.advance(r)
        if args.verbose:
            progress.close()
            print(f"  {r.status:5} {r.case} [{r.backend}/{r.mode}/{r.device}/{r.dtype}] value "
                  f"{report.format_error(r.value_error)} grad {report.format_error(r.grad_error)} {r.message}",
                  flush=True)

    try:
        results, missing = conformance.check(functions, backends=backend_names, modes=modes, devices=devices,
                                             dtypes=dtypes, on_result=on_result)
    finally:
        progress.close()
    text = report.render(results, format=args.format, header=header, missing=missing,
                         elapsed=time.perf_counter() - started, notes=notes, include_header=not text_on_terminal)
    _emit(text, args.output)
    rows = report.rows_of(results)
    if args.output:
        passed = sum(r.result == "PASS" for r in rows)
        print(f"wrote {args.output}: {len(rows)} rows, {passed} PASS, {len(rows) - passed} FAIL"
              + "".join(f"\n{note}" for note in notes))
    if not rows:
        return 1
    return 0 if all(r.result == "PASS" for r in rows) else 1


def main(argv=None) -> int:
    import polyloss

    parser = argparse.ArgumentParser(
        prog="polyloss", description=__doc__,
        epilog="Run 'polyloss check --help' for the checker's options and examples.")
    parser.add_argument("--version", action="version", version=f"polyloss {polyloss.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="compare every function with the float64 reference on the installed backends",
        description="Run the conformance registry on this machine: one row per function x backend x mode x "
        "device x dtype, with the largest relative error of the value and of the gradient (against central "
        "finite differences of the float64 reference) and PASS/FAIL.",
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--backends", metavar="LIST",
                       help="comma-separated backends: numpy, array_api_strict, torch, jax, tensorflow, dask, cupy "
                       "(dask runs the metrics only; cupy, GPU-only, where it imports). Default: all of them; "
                       "those not installed are listed as such. Example: --backends numpy,torch")
    check.add_argument("--modes", metavar="LIST",
                       help="comma-separated modes: eager (every backend), jit (jax.jit), function (tf.function), "
                       "compile (torch.compile). Default: eager,jit,function (compile takes seconds per graph). "
                       "Example: --modes eager")
    check.add_argument("--devices", metavar="LIST",
                       help="comma-separated device labels or kinds: cpu, cuda, cuda:0, gpu, device1 "
                       "(array-api-strict's second device). Default: every device the backends see. "
                       "Example: --devices cuda")
    check.add_argument("--dtypes", metavar="LIST",
                       help="comma-separated dtypes: float64, float32, float16, bfloat16 (not on NumPy). "
                       "Default: all that a backend has. Example: --dtypes float32,float16")
    check.add_argument("--functions", metavar="LIST",
                       help="comma-separated public function names (see --list). Default: all. "
                       "Example: --functions multilabel_crossentropy,span_f1")
    check.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                       help="text (default), markdown (for a bug report) or json (for a program). "
                       "Example: --format markdown")
    check.add_argument("--output", metavar="FILE",
                       help="write the table to FILE instead of the terminal (progress and a one-line summary "
                       "stay on the terminal). Example: --output check.md")
    check.add_argument("--list", action="store_true",
                       help="list the functions and their cases (with --functions, --format json, --output) "
                       "and exit. Example: polyloss check --list --functions span_f1")
    check.add_argument("-v", "--verbose", action="store_true",
                       help="print every case as it runs, with its errors. Example: -v --functions reduce")
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

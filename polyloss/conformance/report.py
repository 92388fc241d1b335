"""The results of a conformance run as a table: one row per function x backend x mode x device x dtype.

``polyloss check`` and :func:`polyloss.testing.check_implementation` print the same rows, in text
(a terminal), Markdown (a bug report) or JSON (a program):

- ``cases``: the cases run in the row (``skipped`` counts the ones that were not: a user's function that
  takes no ``where=``, say); ``value err``: the largest relative error of the values, entry by entry;
  ``grad err``: the largest normwise error of the gradients against central finite differences of the
  reference, ``-`` where no gradient is checked; ``tol``: the tolerances of the dtype (value / gradient);
  ``result``: PASS, FAIL (a case failed or raised), or SKIP (every case of the row was skipped).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["Row", "rows_of", "render", "header_text", "format_error", "LEGEND", "FORMATS"]

FORMATS = ("text", "markdown", "json")

LEGEND = (
    "grad err '-': no gradient was checked in that row: the backend has no autograd (numpy, array_api_strict, "
    "dask) or the function has none (metrics of counts).",
    "device1: array-api-strict's second device; its rows check that outputs stay on the input's device.",
    "tol: the tolerances the row was held to, value / gradient (relative: values entry by entry, gradients "
    "normwise); polyloss computes half precision in float32 and is held to float32's value tolerance, while "
    "check_implementation holds a user's half-precision values to that dtype's.",
)

_COLUMNS = ("function", "backend", "mode", "device", "dtype", "cases", "value err", "grad err", "tol", "result")


@dataclass
class Row:
    """The cases of one function on one backend, mode, device and dtype."""

    function: str
    backend: str
    mode: str
    device: str
    dtype: str
    cases: int = 0
    skipped: int = 0
    value_error: float | None = None
    grad_error: float | None = None
    value_tol: float | None = None
    grad_tol: float | None = None
    failures: list = field(default_factory=list)

    @property
    def result(self) -> str:
        if self.failures:
            return "FAIL"
        return "SKIP" if self.cases == 0 else "PASS"

    def add(self, result) -> None:
        if result.status == "SKIP":
            self.skipped += 1
            return
        self.cases += 1
        for name in ("value_error", "grad_error", "value_tol", "grad_tol"):
            mine, theirs = getattr(self, name), getattr(result, name, None)
            if theirs is not None:
                setattr(self, name, theirs if mine is None else max(mine, theirs))
        if not result.passed:
            self.failures.append(result)


def rows_of(results) -> list[Row]:
    """The rows of ``results`` (:class:`~polyloss.conformance.Result`), in the order they first appear."""
    rows: OrderedDict = OrderedDict()
    for r in results:
        key = (r.function, r.backend, r.mode, r.device, r.dtype)
        if key not in rows:
            rows[key] = Row(*key)
        rows[key].add(r)
    return list(rows.values())


def format_error(err) -> str:
    """An error as the table shows it: ``1.2e-07``, ``inf``, or ``-`` when it was not measured."""
    if err is None:
        return "-"
    return "inf" if err == math.inf else f"{err:.1e}"


def _tol(row: Row) -> str:
    if row.value_tol is None:
        return "-"
    return format_error(row.value_tol) + ("" if row.grad_tol is None else f"/{format_error(row.grad_tol)}")


def _cells(row: Row, with_skipped: bool) -> tuple:
    cases = str(row.cases) + (f" ({row.skipped} skipped)" if with_skipped and row.skipped else "")
    return (row.function, row.backend, row.mode, row.device, row.dtype, cases, format_error(row.value_error),
            format_error(row.grad_error), _tol(row), row.result)


def _label(r) -> str:
    return f"{r.case} [{r.backend}/{r.mode}/{r.device}/{r.dtype}]"


def _summary(rows, results, missing, elapsed) -> dict:
    passed = sum(row.result == "PASS" for row in rows)
    failed = sum(row.result == "FAIL" for row in rows)
    return {
        "rows": len(rows),
        "case_runs": sum(row.cases for row in rows),
        "skipped_case_runs": sum(row.skipped for row in rows),
        "pass": passed,
        "fail": failed,
        "skip": len(rows) - passed - failed,
        "backends_run": sorted({row.backend for row in rows if row.cases}),
        "not_installed": sorted(missing),
        "seconds": None if elapsed is None else round(elapsed, 1),
    }


def _summary_line(summary) -> str:
    skip = f", {summary['skip']} SKIP" if summary["skip"] else ""
    skipped = (f"; {summary['skipped_case_runs']} case runs skipped (never counted as passed)"
               if summary["skipped_case_runs"] else "")
    seconds = "" if summary["seconds"] is None else f" ({summary['seconds']:.0f} s)"
    return (f"{summary['rows']} rows ({summary['case_runs']} case runs) on "
            f"{', '.join(summary['backends_run']) or 'no backend'}: {summary['pass']} PASS, {summary['fail']} FAIL"
            f"{skip}{skipped}; not installed: {', '.join(summary['not_installed']) or 'none'}{seconds}")


def header_text(header: dict, *, format: str = "text") -> str:
    """The title and lines of ``header`` (text or Markdown), ending with a blank line."""
    markdown = format == "markdown"
    lines = []
    if header.get("title"):
        lines.append(("## " if markdown else "") + header["title"])
        if markdown:
            lines.append("")
    lines.extend(f"- {line}" if markdown else line for line in header.get("lines", ()))
    return "\n".join(lines) + "\n\n" if lines else ""


def render(results, *, format: str = "text", header: dict | None = None, missing: dict | None = None,
           elapsed: float | None = None, notes=(), include_header: bool = True) -> str:
    """The table of ``results`` with its header lines, failures, skipped cases, legend and summary.

    ``header``: ``{"title": str, "lines": [str], ...}`` (extra keys go to the JSON output as they are);
    ``missing``: backends that could not run (name -> reason); ``notes``: lines printed after the table
    (why a selection has no rows, say)."""
    header = dict(header or {})
    missing = dict(missing or {})
    results = list(results)
    rows = rows_of(results)
    summary = _summary(rows, results, missing, elapsed)
    failures = [r for r in results if r.status not in ("PASS", "SKIP")]
    skipped = [r for r in results if r.status == "SKIP"]
    if format == "json":
        return json.dumps({
            **{k: v for k, v in header.items() if k not in ("title", "lines")},
            "columns": list(_COLUMNS),
            "rows": [_json_row(row) for row in rows],
            "failures": [_json_result(r) for r in failures],
            "skipped": [_json_result(r) for r in skipped],
            "not_installed": missing,
            "notes": list(notes),
            "legend": list(LEGEND),
            "summary": summary,
        }, indent=2, allow_nan=False)
    with_skipped = any(row.skipped for row in rows)
    table = [_COLUMNS] + [_cells(row, with_skipped) for row in rows]
    lines = []
    markdown = format == "markdown"
    if rows:
        if markdown:
            lines.append("| " + " | ".join(table[0]) + " |")
            lines.append("|" + "|".join(" --- " for _ in table[0]) + "|")
            lines.extend("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in table[1:])
        else:
            widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]
            for i, cells in enumerate(table):
                lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
                if i == 0:
                    lines.append("  ".join("-" * w for w in widths))
    bullet = "- " if markdown else "  "
    if failures:
        lines += ["", "failures:"] + [f"{bullet}{r.status} {_label(r)}: {r.message}" for r in failures]
    if skipped:
        lines += ["", "skipped (not run, not counted as passed):"]
        lines += [f"{bullet}{_label(r)}: {r.message}" for r in skipped]
    for name, reason in missing.items():
        lines.append(f"{name}: {reason}; its rows were not run")
    if notes:
        lines += [""] + list(notes)
    if rows:
        lines += ["", "legend:"] + [f"{bullet}{text}" for text in LEGEND]
    lines += ["", _summary_line(summary)]
    body = "\n".join(lines).lstrip("\n") + "\n"
    return (header_text(header, format=format) if include_header else "") + body


def _finite(value):
    if value is None:
        return None
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf" if value < 0 else "nan")


def _json_row(row: Row) -> dict:
    return {"function": row.function, "backend": row.backend, "mode": row.mode, "device": row.device,
            "dtype": row.dtype, "cases": row.cases, "skipped": row.skipped,
            "value_error": _finite(row.value_error), "grad_error": _finite(row.grad_error),
            "value_tol": row.value_tol, "grad_tol": row.grad_tol, "result": row.result}


def _json_result(r) -> dict:
    return {"case": r.case, "function": r.function, "backend": r.backend, "mode": r.mode, "device": r.device,
            "dtype": r.dtype, "status": r.status, "value_error": _finite(r.value_error),
            "grad_error": _finite(r.grad_error), "message": r.message}

"""``sop spec check``: run the proofs, print the table, write proofs/REPORT.md."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from proofs.check import run_all
from proofs.render import counterexample_text, markdown_report
from proofs.results import CheckReport

__all__ = ["DEFAULT_REPORT", "spec_check"]

DEFAULT_REPORT = Path(__file__).resolve().parent / "REPORT.md"
"""Where the report goes by default: REPORT.md next to this package's modules."""

_STYLE = {"PROVED": "green", "FAILED": "bold red", "UNKNOWN": "bold yellow"}


def _table(report: CheckReport) -> Table:
    table = Table(title="SOP invariants (sop spec check)")
    for col, justify in (
        ("INV", "left"),
        ("transition", "left"),
        ("method", "left"),
        ("verdict", "left"),
        ("seconds", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]  # rich's literal
    for r in report.results:
        table.add_row(
            r.inv,
            r.transition,
            r.method,
            f"[{_STYLE[r.verdict]}]{r.verdict}[/]",
            f"{r.seconds:.3f}",
        )
    return table


def _summary(report: CheckReport) -> str:
    if report.ok:
        return (
            f"all {len(report.results)} checks PROVED in {report.seconds:.2f} s "
            f"(z3 {report.z3_version})"
        )
    return (
        f"{len(report.failures)} of {len(report.results)} checks did not prove "
        f"({report.seconds:.2f} s, z3 {report.z3_version})"
    )


def _failure_texts(report: CheckReport) -> list[str]:
    out = []
    for r in report.failures:
        if r.counterexample is not None:
            out.append(counterexample_text(r.counterexample))
        else:
            out.append(f"{r.inv} {r.name} × {r.transition}: {r.verdict} {r.detail}".rstrip())
    return out


def spec_check(
    json_output: bool, report_path: Path | None = None, mutations: Iterable[str] = frozenset()
) -> int:
    """Run every check, print the results, write the report.

    Args:
        json_output: print one JSON object ``{"ok", "results"}`` instead of a table.
        report_path: where to write the markdown report (default
            :data:`DEFAULT_REPORT`, ``proofs/REPORT.md``).
        mutations: seeded bugs to build into the model (for demonstrations
            and tests; see ``spec.model.MUTATIONS``).

    Returns:
        0 when every check PROVED and the report was written, 1 otherwise.

    Raises:
        InputError: an unknown mutation name.
    """
    report = run_all(frozenset(mutations))
    path = DEFAULT_REPORT if report_path is None else report_path
    try:
        path.write_text(markdown_report(report), encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"could not write the report to `{path}`: {exc.strerror or exc}\n")
        return 1
    texts = _failure_texts(report)
    if json_output:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
        for text in texts:
            sys.stderr.write(text + "\n\n")
    else:
        console = Console(file=sys.stdout, highlight=False, soft_wrap=False)
        console.print(_table(report))
        console.print(_summary(report))
        for text in texts:
            console.print()
            console.print(text, markup=False, soft_wrap=True)
        console.print(f"report written to {path}")
    return 0 if report.ok else 1

"""`sop demo`: a guided run of SOP, its intended refusals marked, and what to try next.

Registered on the main app by :func:`register`. The demo (``nexus/demo.py``)
runs on a fresh data directory: a temporary one unless ``--data-dir`` names
one; the temporary one is removed when the demo ends unless ``--keep``. The
demo's policy tests (``sop policy test``) are run on the policy set it
activated. Exit 0 when every decision was the one the demo meant, 1 if one
was not.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from sop_verified.cli_support import DsnOption, JsonFlag, guarded, out, print_json

__all__ = ["next_commands", "register"]


def register(app: typer.Typer) -> None:
    """Add ``sop demo`` to ``app``."""
    app.command("demo")(guarded(demo_cmd))


def demo_cmd(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="A fresh directory, kept (default: a temporary one, removed)."
        ),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary data directory to look around.")
    ] = False,
    dsn: DsnOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Boot a fresh SOP, refuse an unsound policy set, activate a sound one, decide requests.

    Every DENY the demo shows is intended: each is one way SOP refuses. The demo's
    data directory is a temporary one, removed at the end unless --keep (or --data-dir,
    which is always kept). Exit 1 if a decision was not the one the demo meant.
    """
    from sop_verified.nexus.demo import run_demo  # noqa: PLC0415 - keep `sop --help` fast

    temporary: Path | None = None
    if data_dir is None:
        temporary = Path(tempfile.mkdtemp(prefix="sop-demo-"))
        data_dir = temporary / "data"
    target = data_dir
    alarms = _Alarms()
    try:
        with alarms:
            result = run_demo(target, dsn=dsn)
        data = result.to_dict()
        data["policy_tests"] = _policy_tests(Path(result.policies))
    finally:
        if temporary is not None and not keep:
            shutil.rmtree(temporary, ignore_errors=True)
    data["alarms"] = alarms.messages
    kept = temporary is None or keep
    data["kept"] = kept
    data["next"] = next_commands(target if kept else None)
    if json_output:
        print_json(data)
    else:
        _render_demo(result, data)
    failed = data["unexpected"] or data["policy_tests"]["failed"]
    raise typer.Exit(1 if failed else 0)


class _Alarms(logging.Handler):
    """The warnings SOP logs while the demo runs, kept to be shown as what they are.

    The demo edits a stored blob on purpose (the tampered snapshot): the integrity
    alarm it raises is the refusal being shown, not a failure of the demo.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._logger = logging.getLogger("sop_verified")

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> _Alarms:
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)


def _policy_tests(policies: Path) -> dict[str, Any]:
    """Run the demo's policy tests (``<policies>/tests``) as ``sop policy test`` does."""
    from sop_verified.core.policy import PolicySet  # noqa: PLC0415
    from sop_verified.policy_cases import load_cases, run_cases  # noqa: PLC0415

    tests = policies / "tests"
    report = run_cases(PolicySet.from_path(policies), load_cases(tests), str(policies))
    return {
        "tests": str(tests),
        "passed": report.passed,
        "failed": len(report.results) - report.passed,
    }


def next_commands(kept: Path | None) -> list[str]:
    """What a user would try after the demo (on the kept data directory, when there is one)."""
    if kept is None:
        return [
            "sop demo --keep                      # keep the demo's data directory to look around",
            "sop init --data-dir sop-data         # a data directory of your own",
            "sop policy test docs/examples/demo-policies/tests   # the demo's policy set, tested",
            "sop policy activate docs/examples/demo-policies --data-dir sop-data",
            "sop cap admit -p drac -a artifact.persist -r 'artifacts/drac/**' --data-dir sop-data",
            "sop decide request.json --data-dir sop-data --dry-run   # decide without logging",
            "sop log verify --data-dir sop-data   # every entry, tile and checkpoint checked",
        ]
    d = str(kept)
    return [
        f"sop status --data-dir {d}",
        f"sop log verify --data-dir {d}",
        f"sop policy test {d}/policies/sound/tests",
        f"sop policy check {d}/policies/sound --data-dir {d}",
        f"sop decide request.json --data-dir {d} --dry-run   # a request of your own",
    ]


def _render_demo(result: Any, data: dict[str, Any]) -> None:
    out.rule("[bold]SOP demo")
    out.print(
        f"data directory: {escape(result.data_dir)}   state: {escape(result.storage)}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"boot order: {' -> '.join(result.boot_order)}   health: [green]{result.health}[/]")
    ref = result.refused
    out.print(
        "\n[bold]expected: the unsound policy set is refused[/] by Z3 analysis"
        f" ({escape(ref['code'])}): {escape(ref['message'])}",
        highlight=False,
    )
    out.print("counterexample request (what the unsound set would have allowed):")
    out.print_json(orjson.dumps(ref["counterexample"]).decode())
    out.print(f"sound policy set activated: {result.activated}\n")
    _render_capabilities(result.capabilities)
    _render_decisions(result.rows)
    tally = (
        f"{data['allowed']} allowed, {data['denied']} denied"
        + (", all as the demo meant" if not data["unexpected"] else "")
        + "; every decision is in the log."
    )
    out.print(tally)
    _render_session(result.session)
    for alarm in data["alarms"]:
        out.print(
            f"expected: the edited blob raised an integrity alarm — {escape(alarm)}",
            highlight=False,
        )
    tests = data["policy_tests"]
    out.print(
        f"policy tests of the sound set (`sop policy test`): {tests['passed']} passed,"
        f" {tests['failed']} failed"
    )
    out.print("`sop demo --json` prints each decision's full reasons.")
    where = (
        f"data directory kept: {escape(result.data_dir)}"
        if data["kept"]
        else "the temporary data directory was removed (`--keep` keeps it)"
    )
    out.print(f"\n{where}", highlight=False, soft_wrap=True)
    out.print("[bold]next, try:[/]")
    for command in data["next"]:
        out.print(f"  {escape(command)}", highlight=False, soft_wrap=True)


def _render_capabilities(capabilities: list[dict[str, Any]]) -> None:
    caps = Table(title="capabilities admitted", box=box.SIMPLE)
    for col in ("holder", "actions", "resources"):
        caps.add_column(col)
    for c in capabilities:
        caps.add_row(c["holder"], ", ".join(c["actions"]), ", ".join(c["resources"]))
    out.print(caps)


def _render_decisions(rows: list[dict[str, Any]]) -> None:
    from sop_verified.nexus.demo import effect_colour  # noqa: PLC0415

    table = Table(
        title="decisions (every DENY is an intended refusal)",
        box=box.SIMPLE,
    )
    for col in ("#", "request", "effect", "as meant", "why (stage: code)"):
        table.add_column(col)
    for i, r in enumerate(rows, 1):
        colour = effect_colour(r["effect"])
        why = f"{r['stage']}: {r['code']}"
        if "verdict" in r:
            model = r.get("evidence", {}).get("model")
            why += f" — {r['verdict']}" + (f", counterexample {model}" if model else "")
        meant = "yes" if r["effect"] == r["expected"] else f"[bold red]NO: {r['expected']}[/]"
        table.add_row(str(i), escape(r["label"]), f"[{colour}]{r['effect']}[/]", meant, escape(why))
    out.print(table)


def _render_session(session: dict[str, Any]) -> None:
    from sop_verified.nexus.demo import effect_colour  # noqa: PLC0415

    table = Table(
        title="a whole session: DRAC, EMP, CSP (every DENY is an intended refusal)",
        box=box.SIMPLE,
    )
    for col in ("protocol", "step", "effect", "why (stage: code)"):
        table.add_column(col)
    for r in session["rows"]:
        colour = effect_colour(r["effect"])
        table.add_row(
            r["act"],
            escape(r["label"]),
            f"[{colour}]{r['effect']}[/]",
            escape(f"{r['stage']}: {r['code']}"),
        )
    out.print(table)
    audit = session["log_verify"]
    verdict = "[green]ok[/]" if audit["ok"] else "[red]FAILED[/]"
    out.print(
        f"{session['receipts_verified']} receipts verified offline "
        "(signature, inclusion, payload); "
        f"`sop log verify`: {verdict} ({audit['entries']} entries, "
        f"{audit['checkpoints']} signed checkpoints, root {audit['root'][:16]}…)"
    )

"""The `sop` command: the admin plane and the auditor's tools.

Humans get rich tables; ``--json`` prints one JSON object for machines.
Errors are one line on stderr (what, where, what is accepted) and exit 2;
a check that fails exits 1. Keys are never printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from sop_verified.cli_paths import require_file, require_new_dir, require_output_file
from sop_verified.cli_support import (
    DEFAULT_DATA_DIR,
    EXIT_CODES_HELP,
    DataDir,
    DsnOption,
    JsonFlag,
    SopGroup,
    boot_data_dir,
    err,
    fail,
    guarded,
    out,
    plural,
    print_json,
    require_data_dir,
    shown,
)
from sop_verified.errors import PolicyError, SOPError

__all__ = ["app", "main"]

app = typer.Typer(
    cls=SopGroup,
    no_args_is_help=True,
    add_completion=True,
    help="SOP, the verified operations kernel.",
    epilog=EXIT_CODES_HELP,
)


def _version(value: bool) -> None:
    if value:
        from sop_verified.cli_inspect import version_line

        sys.stdout.write(version_line() + "\n")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """SOP, the verified operations kernel."""


spec_app = typer.Typer(no_args_is_help=True, help="The formal spec and its proofs.")
policy_app = typer.Typer(
    no_args_is_help=True, help="Policy sets: analyse, activate, test and format."
)
cap_app = typer.Typer(no_args_is_help=True, help="Capabilities: admit, attenuate, revoke, list.")
app.add_typer(spec_app, name="spec")
app.add_typer(policy_app, name="policy")
app.add_typer(cap_app, name="cap")
proofs_app = typer.Typer(no_args_is_help=True, help="Recorded proof verdicts.")
app.add_typer(proofs_app, name="proofs")


SPEC_REPORT = Path("REPORT.md")  # relative: the current directory, never the installed package


@spec_app.command("check")
@guarded
def spec_check(
    json_output: JsonFlag = False,
    report_out: Annotated[
        Path, typer.Option("--out", help="Where to write the markdown report.")
    ] = SPEC_REPORT,
) -> None:
    """Discharge every invariant with Z3; write the report (--out, default ./REPORT.md)."""
    from sop_verified.proofs.cli import spec_check as run

    require_output_file(report_out, "a file to write the markdown report to")
    raise typer.Exit(run(json_output=json_output, report_path=report_out))


SchemaOption = Annotated[
    str, typer.Option(help="The PostgreSQL schema (with --dsn): `[a-z_][a-z0-9_]{0,62}`.")
]


@app.command("init")
@guarded
def init_cmd(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    dsn: DsnOption = None,
    schema: SchemaOption = "sop",
    replica_of: Annotated[
        Path | None,
        typer.Option(
            help="Another replica's data directory: copy its configuration and keys, to"
            " serve the same PostgreSQL log (nothing is created in the database)."
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a data directory: configuration, keys (0600), database."""
    from sop_verified.nexus.config import init_replica
    from sop_verified.nexus.sop import SOP

    require_new_dir(data_dir, "a new path or a directory, where the data directory is made")
    if replica_of is not None:
        require_data_dir(replica_of)
        if dsn is not None:
            fail("`--replica-of` copies the other replica's database settings; drop `--dsn`")
        init_replica(data_dir, replica_of)
    else:
        SOP.init(data_dir, dsn=dsn, schema=schema)
    sop = SOP.boot(data_dir)
    status = sop.status()
    sop.close()
    if json_output:
        print_json(status)
        return
    out.print(f"initialised [bold]{escape(str(data_dir))}[/] — health {status['health']}")


def _given(ctx: typer.Context) -> bool:
    """Whether ``--data-dir`` (or SOP_DATA_DIR) was given, not left at its default."""
    source = ctx.get_parameter_source("data_dir")
    return source is not None and source.name != "DEFAULT"


def _served(data_dir: Path) -> Any:
    """The admin client of the server holding ``data_dir`` (None: no server holds it)."""
    from sop_verified.server.admin_client import served

    return served(data_dir)


def _policy_report(data: dict[str, Any], json_output: bool, verb: str) -> None:
    if json_output:
        print_json(data)
        return
    table = Table(title=escape(f"policy {verb}: {data['source']}"), box=box.SIMPLE)
    for col in ("check", "severity", "message"):
        table.add_column(col)
    for f in data["findings"]:
        table.add_row(escape(f["code"]), f["severity"], escape(f["message"]))
    out.print(table)
    for f in data["findings"]:
        if f.get("counterexample"):
            out.print(f"[bold]counterexample request for {escape(f['code'])}:[/]")
            out.print_json(orjson.dumps(f["counterexample"]).decode())
    out.print(
        f"{plural(data['policy_count'], 'policy', 'policies')},"
        f" digest {shown(data['digest'])}: " + ("[green]ok[/]" if data["ok"] else "[red]refused[/]")
    )


def _refuse_unloadable(data: dict[str, Any]) -> None:
    """A policy set that does not load is an input error (exit 2), for check and activate alike;
    one that loads and fails an analysis is refused (exit 1)."""
    unloadable = [f for f in data["findings"] if f["code"] == "invalid_policy_set"]
    if data["digest"] is None and unloadable:
        fail(
            f"the policy set `{data['source']}` does not load: {unloadable[0]['message']}",
            stage="policy",
            error="invalid_policy_set",
        )


_POLICY_PATH = "a policy file, or a directory of *.toml and *.json policy files"


@policy_app.command("check")
@guarded
def policy_check(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A policy file or a directory of *.toml / *.json.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Run the Z3 analyses (always-denies, governance, implies/equivalent vs the active set)."""
    from sop_verified.core.policy import check_directory
    from sop_verified.nexus.config import DEFAULT_CONFIG

    require_file(path, _POLICY_PATH, directory_too=True)
    if _given(ctx):  # the default `sop-data` may be absent: the default scopes are used
        require_data_dir(data_dir)
    if (data_dir / "sop.toml").exists() and (server := _served(data_dir)) is not None:
        data = server.call("POST", "/admin/policy/check", {"path": str(path.absolute())})
    elif (data_dir / "sop.toml").exists():
        sop = boot_data_dir(data_dir)
        data = sop.check_policy(path).to_dict()
        sop.close()
    else:
        import tomllib

        scopes = tomllib.loads(DEFAULT_CONFIG)["scopes"]["approved"]
        data = check_directory(path, scopes).to_dict()
    _refuse_unloadable(data)
    _policy_report(data, json_output, "check")
    raise typer.Exit(0 if data["ok"] else 1)


@policy_app.command("activate")
@guarded
def policy_activate(
    path: Annotated[Path, typer.Argument(help="A policy file or a directory of *.toml / *.json.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Activate a policy set; refused (exit 1, with the counterexample) if an analysis fails."""
    from sop_verified.nexus.sop import PolicyRefusedError
    from sop_verified.server.admin_client import AdminRefusedError

    require_file(path, _POLICY_PATH, directory_too=True)
    require_data_dir(data_dir)
    if (server := _served(data_dir)) is not None:
        try:
            data = server.call("POST", "/admin/policy/activate", {"path": str(path.absolute())})
        except AdminRefusedError as exc:
            if "report" not in exc.problem:
                raise
            _policy_report(exc.problem["report"], json_output, "activate (refused)")
            raise typer.Exit(1) from None
        _policy_report(data, json_output, "activate")
        return
    sop = boot_data_dir(data_dir)
    try:
        report = sop.activate_policy(path)
    except PolicyRefusedError as exc:
        _policy_report(exc.report.to_dict(), json_output, "activate (refused)")
        raise typer.Exit(1) from None
    except PolicyError as exc:  # does not load: as `sop policy check` says it
        fail(
            f"the policy set `{path}` does not load: {exc}",
            stage="policy",
            error="invalid_policy_set",
        )
    finally:
        sop.close()
    _policy_report(report.to_dict(), json_output, "activate")


def _cap_out(claims: dict[str, Any], token: str, json_output: bool) -> None:
    data = {"capability": claims, "token": token}
    if json_output:
        print_json(data)
    else:
        what = f"{', '.join(sorted(claims['actions']))} on {', '.join(claims['resources'])}"
        out.print(
            f"capability [bold]{escape(claims['id'])}[/] for {escape(claims['principal'])}: "
            + escape(what)
        )
        out.print(
            "token (hand it to the holder; it is a bearer credential bound to its principal):"
        )
        sys.stdout.write(token + "\n")


def _now() -> int:
    from sop_verified.nexus.sop import wall_clock

    return wall_clock()


Actions = Annotated[list[str], typer.Option("--action", "-a", help="An action (repeatable).")]
Resources = Annotated[
    list[str], typer.Option("--resource", "-r", help="A resource glob (repeatable).")
]


@cap_app.command("admit")
@guarded
def cap_admit(
    principal: Annotated[str, typer.Option("--principal", "-p", help="The protocol identity.")],
    action: Actions,
    resource: Resources,
    expires_in: Annotated[
        int, typer.Option(help="Seconds until expiry (1 or more).", min=1)
    ] = 86_400,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Admit a root capability."""
    if (server := _served(data_dir)) is not None:
        body = {"principal": principal, "actions": action, "resources": resource}
        data = server.call("POST", "/admin/cap/admit", {**body, "expires": _now() + expires_in})
        _cap_out(data["capability"], data["token"], json_output)
        return
    sop = boot_data_dir(data_dir)
    try:
        cap, token = sop.admit(principal, action, resource, expires=sop.now() + expires_in)
    finally:
        sop.close()
    _cap_out(cap.to_claims(), token, json_output)


@cap_app.command("attenuate")
@guarded
def cap_attenuate(
    token: Annotated[str, typer.Option("--token", help="The parent token.")],
    action: Actions,
    resource: Resources,
    expires_in: Annotated[
        int | None, typer.Option(help="Seconds until expiry (1 or more).", min=1)
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Derive a narrower capability (Z3 proves it is a subset of the parent)."""
    if (server := _served(data_dir)) is not None:
        expires = None if expires_in is None else _now() + expires_in
        body = {"parent_token": token, "actions": action, "resources": resource}
        data = server.call("POST", "/admin/cap/attenuate", {**body, "expires": expires})
        _cap_out(data["capability"], data["token"], json_output)
        return
    sop = boot_data_dir(data_dir)
    try:
        expires = None if expires_in is None else sop.now() + expires_in
        cap, child = sop.attenuate(token, actions=action, resources=resource, expires=expires)
    finally:
        sop.close()
    _cap_out(cap.to_claims(), child, json_output)


@cap_app.command("revoke")
@guarded
def cap_revoke(
    cap_id: Annotated[str, typer.Argument(help="The capability id.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Revoke a capability and all its descendants."""
    if (server := _served(data_dir)) is not None:
        revoked = server.call("POST", "/admin/cap/revoke", {"capability_id": cap_id})["revoked"]
    else:
        sop = boot_data_dir(data_dir)
        try:
            revoked = sop.revoke(cap_id)
        finally:
            sop.close()
    if json_output:
        print_json({"revoked": revoked})
    else:
        count = plural(len(revoked), "capability", "capabilities")
        out.print(f"revoked {count}: " + escape(", ".join(revoked)))


RLIMIT_MAX = 2**32 - 1
"""z3's resource limit is an unsigned 32-bit integer."""


@app.command("prove")
@guarded
def prove_cmd(
    path: Annotated[
        str,
        typer.Argument(
            help="An obligation: .smt2 script or .json structured form; `-` reads standard"
            " input (its format from --format, or sniffed)."
        ),
    ],
    json_output: JsonFlag = False,
    rlimit: Annotated[
        int | None,
        typer.Option(
            help="z3's resource limit, 1 to 4,294,967,295 (default 5,000,000).",
            min=1,
            max=RLIMIT_MAX,
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="`smt2` or `json`: the obligation's format, whatever its name says."
        ),
    ] = None,
) -> None:
    """Check one obligation with the proof gate; exit 0 PROVED, 1 REFUTED or UNKNOWN,
    2 REJECTED (the file is missing, unreadable or not an obligation)."""
    from sop_verified.cli_support import STDIN, read_input, sniff_obligation
    from sop_verified.core.proofgate import prove_command

    if fmt is not None and fmt not in ("smt2", "json"):
        fail(f"`--format {fmt}` is not a format; accepted: `smt2`, `json`")
    data = None
    if path != STDIN:
        require_file(Path(path), "an obligation file: an .smt2 script or a .json structured form")
    else:
        data = read_input(path, what="obligation", accepted="SMT-LIB 2 or its JSON form")
        if fmt is None:
            fmt, why = sniff_obligation(data)
            err.print(f"reading standard input as `{fmt}` ({why}; `--format` sets it)")
    raise typer.Exit(prove_command(Path(path), json_output, rlimit, fmt=fmt, data=data))


@proofs_app.command("replay")
@guarded
def proofs_replay(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    sample: Annotated[
        float, typer.Option(help="Percent of recorded verdicts to re-check.")
    ] = 100.0,
    json_output: JsonFlag = False,
) -> None:
    """Re-check recorded verdicts; any disagreement raises the integrity alarm and exits 1."""
    from sop_verified.core.proofgate import Z3ProofGate
    from sop_verified.core.proofgate.replay import replay

    if not 0.0 <= sample <= 100.0:
        fail(f"`--sample {sample}` is out of range; accepted: 0 to 100")
    sop = boot_data_dir(data_dir, "sop proofs replay")
    try:
        if not isinstance(sop.gate, Z3ProofGate):
            fail("this SOP has no Z3 proof gate to replay")
        report = replay(sop.gate, sample)
    finally:
        sop.close()
    data = {
        "ok": report.ok,
        "total": report.total,
        "checked": report.checked,
        "agreed": report.agreed,
        "inconclusive": list(report.inconclusive),
        "disagreements": [
            {
                "digest": d.digest,
                "recorded": d.recorded,
                "rechecked": d.rechecked,
                "reason": d.reason,
            }
            for d in report.disagreements
        ],
    }
    if json_output:
        print_json(data)
    else:
        out.print(
            f"replayed {report.checked} of {plural(report.total, 'recorded verdict')}: "
            f"{report.agreed} agree, "
            f"{len(report.disagreements)} disagree, {len(report.inconclusive)} inconclusive"
        )
        for d in report.disagreements:
            what = f"{d.digest}: recorded {d.recorded}, now {d.rechecked}: {d.reason}"
            out.print(f"[red]DISAGREE[/] {escape(what)}")
    raise typer.Exit(0 if report.ok else 1)


def _register_log_commands() -> None:
    from sop_verified.cli_certs import register as register_certs  # the TLS ones in cli_certs
    from sop_verified.cli_emp import register as register_emp  # `sop emp revoke-key`
    from sop_verified.cli_events import register as register_events  # `sop events tail`
    from sop_verified.cli_inspect import register as register_inspect  # status, cap list, ...
    from sop_verified.cli_log import register  # the log commands live in cli_log
    from sop_verified.cli_serve import register as register_serve  # `sop serve`
    from sop_verified.cli_state import register as register_state  # and state's in cli_state
    from sop_verified.cli_witness import register as register_witness  # `sop witness`

    register(app)
    register_state(app)
    register_serve(app)
    register_certs(app)
    register_witness(app)
    register_events(app)
    register_emp(app)
    register_inspect(app)  # after `cap`, `log` and `attest` exist: it adds to them


_register_log_commands()


def _register_decide_and_policy_tools() -> None:
    from sop_verified.cli_decide import register as register_decide  # `sop decide`
    from sop_verified.cli_demo import register as register_demo  # `sop demo`
    from sop_verified.cli_policy import register as register_policy  # `sop policy test|fmt`

    register_decide(app)
    register_demo(app)
    register_policy(policy_app)


_register_decide_and_policy_tools()


def main() -> None:
    """Console-script entry point: SOP errors become one line and exit status 2."""
    try:
        app()
    except SOPError as exc:
        fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("COLUMNS", "120")
    main()

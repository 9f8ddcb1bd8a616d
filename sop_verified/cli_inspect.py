"""The read-only inspection commands: `sop status`, `sop cap list`, `sop attest verify`.

Registered on the main app by :func:`register` (with `sop log show`, from
:mod:`sop_verified.cli_log_show`). None of them boots SOP or changes a byte
of the data directory: the log and the derived state are read as boot checks
them (:mod:`sop_verified.nexus.status_ops`, :mod:`sop_verified.nexus.cap_ops`),
with the database opened read-only. Exit status: 0 success, 1 a check failed
(not READY, a log or state that does not verify, an attestation that does
not), 2 bad input (no data directory, a missing or malformed file), 3 an
internal error. ``--json`` prints one JSON object, errors included.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from sop_verified.cli_support import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    classify,
    describe,
    guarded,
    guarded_stream,
    out,
    print_json,
    progress_bar,
    read_input,
    require_data_dir,
)
from sop_verified.errors import InputError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["iso_time", "register", "version_line"]

_COLOURS = {
    "READY": "green",
    "active": "green",
    "DEGRADED": "yellow",
    "not_yet_valid": "yellow",
    "expired": "yellow",
    "FAILED": "red",
    "revoked": "red",
    "NOT_CHECKED": "dim",
}


def iso_time(seconds: int | None) -> str:
    """Unix seconds as ISO 8601 UTC (``2026-12-07T10:35:14Z``); ``-`` for none."""
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def version_line() -> str:
    """``sop-verified <version>`` from the installed distribution's metadata (the package's
    own ``__version__`` when run from a source tree that is not installed)."""
    from importlib import metadata  # noqa: PLC0415 - only for --version

    try:
        version = metadata.version("sop-verified")
    except metadata.PackageNotFoundError:
        from sop_verified import __version__ as version  # noqa: PLC0415

    return f"sop-verified {version}"


def _paint(word: str) -> str:
    colour = _COLOURS.get(word)
    return f"[{colour}]{escape(word)}[/]" if colour else escape(word)


# ---- sop status ------------------------------------------------------------------------------
def status_cmd(data_dir: DataDir = DEFAULT_DATA_DIR, json_output: JsonFlag = False) -> None:
    """Run boot's integrity checks read-only (log, anchor, state seal, config digest, keys) and
    report READY, DEGRADED or FAILED with the reason; exit 1 unless READY.

    Nothing in the data directory changes. While a server holds it, its admin socket answers.
    """
    from sop_verified.server.admin_client import served  # noqa: PLC0415 - keep --help fast

    require_data_dir(data_dir)
    if (server := served(data_dir)) is not None:
        status = _from_server(server.call("GET", "/admin/status"), server.pid)
    elif json_output:
        status = _inspect(data_dir, None)
    else:
        with progress_bar() as bar:
            task = bar.add_task("auditing the log", total=None)
            status = _inspect(
                data_dir, lambda done, rows: bar.update(task, completed=done, total=rows)
            )
    if json_output:
        print_json(status)
    else:
        _render_status(status)
    raise typer.Exit(0 if status["health"] == "READY" else 1)


def _inspect(data_dir: Path, progress: Any) -> dict[str, Any]:
    from sop_verified.nexus.status_ops import inspect_status  # noqa: PLC0415 - keep --help fast

    return inspect_status(data_dir, progress=progress)


def _from_server(status: dict[str, Any], pid: int) -> dict[str, Any]:
    """The server's status with the read-only report's ``checks``, ``reason`` and ``source``."""
    order = status.get("boot_order") or list(status.get("services", {}))
    checks = [{"name": n, **status["services"][n]} for n in order if n in status["services"]]
    bad = [f"{c['name']}: {c['detail']}" for c in checks if c["health"] != "READY"]
    reason = None if status["health"] == "READY" else (bad[0] if bad else status["health"])
    return {**status, "checks": checks, "reason": reason, "source": f"server (pid {pid})"}


def _render_status(status: dict[str, Any]) -> None:
    table = Table(title=f"SOP {status['health']} ({status['source']})", box=box.SIMPLE)
    for col in ("service", "health", "detail"):
        table.add_column(col)
    for check in status["checks"]:
        table.add_row(escape(check["name"]), _paint(check["health"]), escape(check["detail"]))
    out.print(table)
    size = status.get("log_size")
    checked = status.get("services", {}).get("policy", {}).get("health") == "READY"
    policy = status.get("policy_digest") or ("none active" if checked else "not checked")
    out.print(
        f"log size: {'unknown' if size is None else size}   policy: {escape(policy)}",
        highlight=False,
    )
    if (witnessed := status.get("witnesses")) is not None:
        out.print(f"published (witnessed) size: {witnessed['published_size']}", highlight=False)
        for w in witnessed["witnesses"]:
            alarm = f"  [bold red]alarm[/]: {escape(w['alarm'])}" if w["alarm"] else ""
            out.print(
                f"  witness {escape(w['name'])} at {escape(w['url'])}:"
                f" cosigned {w['cosigned_size']}{alarm}",
                highlight=False,
            )
    if (sink := status.get("events_nats")) is not None:  # a broker down is not SOP down
        connected = sink.get("connected")
        state = (
            "publishing"
            if connected
            else "broker not contacted (the cursor's figures)"
            if connected is None
            else f"[bold yellow]not publishing[/] ({escape(str(sink.get('last_error')))})"
        )
        out.print(
            f"NATS stream {escape(sink['stream'])} at {escape(', '.join(sink['servers']))}:"
            f" {state}; lag {sink['lag']} of {sink['events']} events",
            highlight=False,
        )
    if status["reason"]:
        colour = _COLOURS.get(status["health"], "red")
        out.print(f"[{colour}]{status['health']}[/]: {escape(status['reason'])}", highlight=False)


# ---- sop cap list ----------------------------------------------------------------------------
_LIVE = ("active", "not_yet_valid")


def cap_list(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also show revoked and expired capabilities.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """List admitted capabilities: status (active, not yet valid, expired, revoked) and lineage
    (parent, children, attenuation depth), read-only, checked against the state seal."""
    from sop_verified.nexus.cap_ops import list_capabilities  # noqa: PLC0415 - keep --help fast
    from sop_verified.nexus.sop import wall_clock  # noqa: PLC0415 - keep --help fast

    require_data_dir(data_dir)
    listing = list_capabilities(data_dir, wall_clock())
    caps = listing["capabilities"]
    shown = caps if show_all else [c for c in caps if c["status"] in _LIVE]
    if json_output:
        print_json({**listing, "capabilities": shown, "all": show_all})
        return
    _render_caps(listing, shown, hidden=len(caps) - len(shown))


def _render_caps(listing: dict[str, Any], shown: list[dict[str, Any]], hidden: int) -> None:
    title = f"capabilities at {iso_time(listing['now'])} (log size {listing['log_size']})"
    tree = Tree(f"[bold]{escape(title)}[/]", guide_style="dim")
    by_id = {c["id"]: c for c in shown}

    def add(parent: Tree, cap: dict[str, Any]) -> None:
        status = _paint(cap["status"]).replace("_", " ")
        grants = f"{', '.join(cap['actions'])} on {', '.join(cap['resources'])}"
        window = f"from {iso_time(cap['not_before'])} until {iso_time(cap['expires'])}"
        if cap["revoked_by"] is not None:
            window += f"\nrevoked {iso_time(cap['revoked_at'])}"
            if cap["revoked_by"] != cap["id"]:
                window += f" with {escape(cap['revoked_by'])}"
        node = parent.add(
            f"[bold]{escape(cap['id'])}[/]  {escape(cap['principal'])}  {status}\n"
            f"{escape(grants)}\n[dim]{window}[/]"
        )
        for child in cap["children"]:
            if child in by_id:
                add(node, by_id[child])

    for cap in shown:
        if cap["parent_id"] not in by_id:  # a root, or a child whose parent is not shown
            add(tree, cap)
    out.print(tree, highlight=False)
    counts = listing["counts"]
    parts = [f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n]
    total = sum(counts.values())
    noun = "capability" if total == 1 else "capabilities"
    summary = f"{total} {noun} admitted" + (f": {', '.join(parts)}" if parts else "")
    if hidden:
        summary += f"; {hidden} revoked or expired not shown (`--all` shows them)"
    out.print(summary, highlight=False)


# ---- sop attest verify -----------------------------------------------------------------------
def attest_verify(
    files: Annotated[
        list[str],
        typer.Argument(help="Exported envelopes (`sop attest export`); `-` reads standard input."),
    ],
    pem: Annotated[
        str,
        typer.Option(
            "--pem",
            help="The attestation public key (PEM; `sop keys export --pem`), held by you;"
            " `-` reads standard input.",
        ),
    ],
    json_output: JsonFlag = False,
) -> None:
    """Verify DSSE envelopes holding in-toto Statements v1 against an Ed25519 public key;
    exit 1 if one does not verify, 2 if one is not an envelope."""
    if [pem, *files].count("-") > 1:
        raise InputError("standard input (`-`) can be read once", accepted="one `-`")
    key = _public_key(pem)
    results = [_verify_one(name, key) for name in files]
    status = max(r["exit"] for r in results)
    if json_output:  # when one failed: the CLI's error members, of the first that failed
        first = next((r for r in results if not r["ok"]), None)
        error = {} if first is None else {k: first[k] for k in ("stage", "code")}
        if first is not None:
            error["message"] = f"`{first['file']}`: {first['message']}"
        print_json({"ok": status == 0, "exit": status, **error, "files": results})
    else:
        for r in results:
            label = escape(r["file"])
            if r["ok"]:
                subjects = ", ".join(s["name"] for s in r["subjects"])
                out.print(
                    f"[green]verified[/] {label}: {escape(r['predicate_type'])}"
                    f" about {escape(subjects)}",
                    highlight=False,
                )
            else:
                out.print(f"[red]not verified[/] {label}: {escape(r['message'])}", highlight=False)
    raise typer.Exit(status)


def _public_key(pem: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import load_pem_public_key  # noqa: PLC0415

    accepted = "an Ed25519 public key in PEM (`sop keys export --pem`)"
    data = read_input(pem, what="attestation public key", accepted=accepted, max_bytes=1 << 16)
    where = "standard input" if pem == "-" else f"`{pem}`"
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        raise InputError(f"{where} is not a PEM public key", accepted=accepted) from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{where} is not an Ed25519 key", accepted=accepted)
    return key


def _verify_one(name: str, key: Ed25519PublicKey) -> dict[str, Any]:
    from sop_verified.tools.attest import verify_envelope  # noqa: PLC0415 - keep --help fast

    label = "standard input" if name == "-" else name
    try:
        data = read_input(name, what="attestation", accepted="a DSSE envelope (JSON)")
        statement = verify_envelope(data, key)
        subjects = _subjects(statement)
    except Exception as exc:  # each file's own verdict; the table decides its exit status
        status, stage, code = classify(exc)
        return {
            "file": label,
            "ok": False,
            "exit": int(status),
            "stage": stage,
            "code": code,
            "message": describe(exc),
        }
    return {
        "file": label,
        "ok": True,
        "exit": 0,
        "predicate_type": statement["predicateType"],
        "subjects": subjects,
        "statement": statement,
    }


def _subjects(statement: dict[str, Any]) -> list[dict[str, Any]]:
    """The statement's subjects, each a name and its digests (in-toto Statement v1).

    Raises:
        InputError: no subject, a subject without a digest, or no ``predicateType``.
    """
    subjects = statement.get("subject")
    if not isinstance(statement.get("predicateType"), str):
        raise InputError("the statement has no `predicateType`", accepted="in-toto Statement v1")
    if not isinstance(subjects, list) or not subjects:
        raise InputError("the statement has no subject", accepted="in-toto Statement v1")
    for i, subject in enumerate(subjects):
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digest, dict) or not digest:
            raise InputError(f"subject {i} has no digest", accepted="in-toto Statement v1")
    return [{"name": s.get("name", ""), "digest": s["digest"]} for s in subjects]


def _group(app: typer.Typer, name: str) -> typer.Typer:
    """The sub-app registered on ``app`` as ``name`` (``cap``, ``log``, ``attest``)."""
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    raise RuntimeError(f"no `sop {name}` group is registered")


def register(app: typer.Typer) -> None:
    """Add `sop status`, `sop cap list`, `sop log show` and `sop attest verify` to ``app``.

    Args:
        app: The main ``sop`` app, after ``cap``, ``log`` and ``attest`` are registered.
    """
    from sop_verified.cli_log_show import log_show  # noqa: PLC0415 - one module per command

    app.command("status")(guarded(status_cmd))
    _group(app, "cap").command("list")(guarded(cap_list))
    _group(app, "log").command("show")(guarded_stream(log_show))
    _group(app, "attest").command("verify")(guarded(attest_verify))

"""The `sop log`, `sop receipt`, `sop keys` and `sop attest` commands (the auditor's tools).

Registered on the main app by :func:`register` (called from ``sop_verified.cli``),
with the same conventions: rich output for humans, ``--json`` for machines,
the exit-code table of :mod:`sop_verified.cli_support` (2 for bad input, 1 when
a check fails).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from sop_verified.cli_paths import require_file, require_output_dir, require_output_file
from sop_verified.cli_support import (
    DEFAULT_DATA_DIR,
    STDIN,
    DataDir,
    ExitCode,
    JsonFlag,
    boot_data_dir,
    err,
    fail,
    guarded,
    out,
    plural,
    print_json,
    progress_bar,
    read_input,
    refuse_if_served,
    require_data_dir,
)
from sop_verified.errors import InputError, PathError, ReceiptError
from sop_verified.tools.private_fs import write_private

if TYPE_CHECKING:
    from sop_verified.tools.cosignature import CosignatureVerifier

__all__ = ["register"]


log_app = typer.Typer(
    no_args_is_help=True, help="The tamper-evident log: verify, show, prove, checkpoint."
)
receipt_app = typer.Typer(no_args_is_help=True, help="Offline receipts (C2SP tlog-proof).")
keys_app = typer.Typer(
    no_args_is_help=True, help="Public keys, checkpoint-key rotation, the telemetry key."
)
attest_app = typer.Typer(
    no_args_is_help=True, help="in-toto attestations in DSSE envelopes: export, verify."
)


def log_verify(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    vkey: Annotated[
        str | None,
        typer.Option(
            help="Trusted checkpoint key (string or file), held outside the data directory;"
            " default the data directory's own genesis key, which proves nothing against"
            " whoever can rewrite that directory."
        ),
    ] = None,
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            help="A checkpoint or receipt you kept; the log must match it (repeatable;"
            " `-` reads one from standard input)."
        ),
    ] = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            help="The rollback anchor to check against, e.g. a copy kept off the machine"
            " (`-` reads it from standard input); default the data directory's"
            " checkpoint.anchor."
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Recompute every leaf, tile and root; check every checkpoint and the rollback anchor;
    exit 1 on any tampering."""
    from sop_verified.nexus.log_ops import audit_data_dir  # noqa: PLC0415 - keep --help fast

    require_data_dir(data_dir)
    if [*(checkpoint or []), anchor, vkey].count(STDIN) > 1:
        raise InputError(
            "standard input (`-`) can be read once",
            where="--checkpoint, --anchor, --vkey",
            accepted="one `-`",
        )
    accepted = "a signed checkpoint note or a C2SP tlog-proof file"
    held: list[Path | bytes] = []  # files by name, so a finding names the file
    for c in checkpoint or []:
        note = read_input(c, what="checkpoint", accepted=accepted, nonempty=True)
        held.append(note if str(c) == STDIN else Path(c))
    given_anchor: Path | bytes | None = None
    if anchor is not None:
        expected = "a rollback anchor: a copy of a data directory's checkpoint.anchor"
        anchor_bytes = read_input(anchor, what="rollback anchor", accepted=expected, nonempty=True)
        given_anchor = anchor_bytes if anchor == STDIN else Path(anchor)
    if json_output:
        report, trusted = audit_data_dir(data_dir, vkey=vkey, held=held, anchor=given_anchor)
    else:
        with progress_bar() as bar:
            task = bar.add_task("verifying", total=None)

            def step(done: int, rows: int) -> None:
                bar.update(task, completed=done, total=rows)

            report, trusted = audit_data_dir(
                data_dir, vkey=vkey, progress=step, held=held, anchor=given_anchor
            )
    data = {**report.to_dict(), **trusted.to_dict()}
    if json_output:
        print_json(data)
    else:
        _render_audit(data, trusted.origin())
    raise typer.Exit(0 if report.ok else 1)


def _render_audit(data: dict[str, Any], origin: str) -> None:
    name = f"{data['trusted_key_name']}+{data['trusted_key_id']}"
    out.print(f"trusted key: {name}, {origin}", markup=False, highlight=False)
    out.print(f"  {data['trusted_key']}", markup=False, highlight=False)
    if data["trusted_key_warning"]:
        out.print(f"[yellow]warning[/]: {escape(data['trusted_key_warning'])}")
    out.print(_anchor_line(data["anchor"]), markup=False, highlight=False)
    out.print(
        f"{plural(data['entries'], 'entry', 'entries')},"
        f" {data['verified_checkpoints']}/{data['checkpoints']}"
        f" checkpoints verified, root {data['root'] or 'none (an empty log)'}",
        highlight=False,
    )
    out.print(f"derived state: {escape(str(data['derived_state']))}")
    if data["ok"]:
        caveat = " [yellow](against the data directory's own key: see the warning)[/]"
        out.print(
            "[green]log verified: no tampering found[/]"
            + (caveat if data["trusted_key_warning"] else "")
        )
        return
    table = Table(title="findings", box=box.SIMPLE)
    for col in ("kind", "index", "what"):
        table.add_column(col)
    for f in data["findings"]:
        index = "" if f["index"] is None else str(f["index"])
        table.add_row(escape(f["kind"]), index, escape(f["message"]))
    out.print(table)
    first = data["first_bad_index"]
    out.print(
        f"[red]tampering found[/]: {plural(data['total_findings'], 'finding')}"
        + ("" if first is None else f", first bad index [bold]{first}[/]")
    )


def _anchor_line(anchor: dict[str, Any]) -> str:
    where = f"{anchor['path']} ({anchor['source']})"
    if not anchor["found"]:
        return f"rollback anchor: none at {where}"
    if anchor.get("size") is None:
        return f"rollback anchor {where}: not a checkpoint (see the findings)"
    return (
        f"checked against the rollback anchor {where}: size {anchor['size']}, root {anchor['root']}"
    )


def log_anchor(
    accept_current: Annotated[
        bool,
        typer.Option(
            "--accept-current",
            help="Accept the log as it is now as the new anchor (logged). Only for a data"
            " directory made before anchors, or after `sop log verify --anchor <your copy>`.",
        ),
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Re-anchor the log (the rollback anchor): audit it, log the change, write the anchor."""
    from sop_verified.nexus.reanchor import unsafe_accept_current  # noqa: PLC0415 - keep --help fast
    from sop_verified.nexus.sop import wall_clock  # noqa: PLC0415 - keep --help fast

    require_data_dir(data_dir)
    if not accept_current:
        raise InputError(
            "`sop log anchor` changes nothing without `--accept-current`",
            accepted="`sop log anchor --accept-current`",
        )
    refuse_if_served(data_dir, "sop log anchor")
    done = unsafe_accept_current(data_dir, wall_clock())
    if json_output:
        print_json(done)
        return
    err.print(
        f"[yellow]re-anchored[/]: the log was accepted at size {done['accepted']['size']}"
        f" (previous anchor: {done['previous']}); logged as entry {done['entry']}",
        highlight=False,
    )
    out.print(f"anchor: size {done['anchor']['size']}, root {done['anchor']['root']}")


def log_prove(
    index: Annotated[int, typer.Argument(help="The entry index (0 or more).", min=0)],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the bundle here.")] = None,
    unwitnessed: Annotated[
        bool,
        typer.Option(
            "--unwitnessed",
            help="With witnesses configured, prove against SOP's own latest checkpoint"
            " instead of the latest one they cosigned (no cosignatures).",
        ),
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Write the offline proof bundle (C2SP tlog-proof) of entry INDEX.

    With `[witnesses]` in sop.toml the bundle carries the published checkpoint:
    the latest one the witnesses cosigned, with their cosignatures.
    """
    from sop_verified.nexus.log_ops import prove_entry  # noqa: PLC0415 - lazy: keeps `sop --help` fast

    require_data_dir(data_dir)
    if out_file is not None:
        require_output_file(out_file, "a file to write the receipt to")
    text = prove_entry(data_dir, index, unwitnessed=unwitnessed).to_text()
    if out_file is not None:
        write_private(out_file, text.encode("utf-8"))
    if json_output:
        where = None if out_file is None else str(out_file)
        print_json({"index": index, "receipt": text, "written": where})
    elif out_file is None:
        sys.stdout.write(text)
    else:
        err.print(f"wrote the receipt of entry {index} to {out_file}", markup=False)


def log_checkpoint(data_dir: DataDir = DEFAULT_DATA_DIR, json_output: JsonFlag = False) -> None:
    """Print the latest signed checkpoint (verified against the public key)."""
    from sop_verified.nexus.log_ops import latest_checkpoint  # noqa: PLC0415 - lazy: keeps `sop --help` fast

    require_data_dir(data_dir)
    note = latest_checkpoint(data_dir)
    if json_output:
        print_json({"checkpoint": note})
    elif note is None:
        out.print("the log has no checkpoint yet")
    else:
        sys.stdout.write(note)


def receipt_verify(
    bundle: Annotated[str, typer.Argument(help="The .tlog-proof file; `-` reads standard input.")],
    vkey: Annotated[
        list[str],
        typer.Option("--vkey", help="The log's verifier key, string or file (repeatable)."),
    ],
    payload: Annotated[
        str | None,
        typer.Option(help="The entry as you hold it; must match the bundle (`-`: standard input)."),
    ] = None,
    leaf_hash: Annotated[
        str | None, typer.Option(help="The leaf hash (hex) your decision receipt carries.")
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option(
            "--witness",
            help="A witness's cosigner key (C2SP tlog-cosignature), string or file"
            " (repeatable); its cosignature must be on the receipt's checkpoint.",
        ),
    ] = None,
    minimum: Annotated[
        int | None,
        typer.Option(
            "--min", help="How many of the --witness keys must have cosigned; default all.", min=0
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Check a receipt with nothing but the file and the keys: signature, witnesses'
    cosignatures, payload hash, inclusion."""
    from sop_verified.nexus.log_ops import parse_vkeys  # noqa: PLC0415 - lazy: keeps `sop --help` fast
    from sop_verified.tools.tlog_receipt import verify_bundle  # noqa: PLC0415 - lazy: keeps `sop --help` fast

    if bundle == STDIN and payload == STDIN:
        raise InputError("standard input (`-`) can be read once", accepted="one `-`")
    data = read_input(bundle, what="receipt", accepted="a C2SP tlog-proof file", nonempty=True)
    held = None
    if payload is not None:
        held = read_input(payload, what="entry", accepted="the entry's bytes, as logged")
    leaf = bytes.fromhex(leaf_hash) if leaf_hash and _is_hex(leaf_hash) else None
    if leaf_hash and leaf is None:
        raise InputError(f"leaf hash `{leaf_hash[:80]}` is not hex", accepted="64 hex digits")
    witnesses = _witness_keys(witness or [], minimum)
    try:
        result = verify_bundle(
            data,
            parse_vkeys(vkey),
            payload=held,
            expected_leaf=leaf,
            witnesses=witnesses,
            min_cosignatures=minimum,
        )
    except ReceiptError as exc:
        _receipt_failed(exc, json_output)
    cp = result.checkpoint
    summary = {
        "ok": True,
        "index": result.index,
        "leaf_hash": result.leaf_hash.hex(),
        "origin": cp.origin,
        "tree_size": cp.size,
        "root": cp.root_hash.hex(),
        "cosignatures": [{"vkey": c.vkey, "timestamp": c.timestamp} for c in result.cosignatures],
    }
    if json_output:
        print_json(summary)
        return
    out.print(  # the origin and the witnesses' names come from the file: text, not markup
        f"[green]receipt verified[/]: entry {result.index} (leaf {summary['leaf_hash']}) is in"
        f" {escape(cp.origin)} at size {cp.size}, signed root {summary['root']}"
    )
    for c in result.cosignatures:
        who = c.vkey.split("+")[0]
        out.print(f"  cosigned by {who} at {c.timestamp}", highlight=False, markup=False)


def _witness_keys(values: list[str], minimum: int | None) -> list[CosignatureVerifier]:
    """The ``--witness`` keys (strings or files); ``--min`` must be reachable with them."""
    from sop_verified.nexus.trusted_key import key_text  # noqa: PLC0415 - keep --help fast
    from sop_verified.tools.cosignature import CosignatureVerifier  # noqa: PLC0415 - keep --help fast

    keys = []
    for value in values:
        text, path = key_text(value, "--witness", _WITNESS_KEY, "witness key")
        try:
            keys.append(CosignatureVerifier.from_string(text))
        except InputError as exc:
            if path is None:
                raise
            raise InputError(f"`{path}` holds no witness key: {exc}") from None
    if minimum is not None and minimum > len(keys):
        raise InputError(
            f"`--min {minimum}` cosignatures cannot come from {len(keys)} `--witness` keys",
            accepted=f"at most the number of --witness keys ({len(keys)})",
        )
    return keys


_WITNESS_KEY = (
    "a witness's cosigner key string (C2SP tlog-cosignature, `name+keyid+base64`) or the path"
    " of a file holding one"
)


def _is_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _receipt_failed(exc: ReceiptError, json_output: bool) -> None:
    """A receipt that does not verify exits 1, whichever check it failed: one that does not
    parse (stage ``format``) included, since a receipt altered on its way cannot be told from
    one that was never a receipt (an empty or missing file is exit 2, before this)."""
    if json_output:
        fail(str(exc), ExitCode.FAILED, stage=exc.stage, error="receipt_rejected")
    err.print(f"[bold red]receipt rejected[/] ({exc.stage}): {escape(str(exc))}", highlight=False)
    raise typer.Exit(ExitCode.FAILED)


def keys_export(
    attestation_pem: Annotated[
        bool, typer.Option("--pem", help="Print the attestation public key (PEM).")
    ] = False,
    genesis: Annotated[
        bool, typer.Option("--genesis", help="Print the first checkpoint key (the chain's start).")
    ] = False,
    checkpoint_vkey: Annotated[
        bool, typer.Option("--vkey", help="Print the checkpoint verifier key (default).")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Print a public key: the checkpoint verifier key, the genesis one, or the attestation PEM."""
    from sop_verified.nexus import keys  # noqa: PLC0415 - lazy: keeps `sop --help` fast

    if attestation_pem + genesis + checkpoint_vkey > 1:
        raise InputError(
            "choose one of `--vkey`, `--genesis`, `--pem`: they print different keys",
            accepted="one of them, or none for `--vkey`",
        )
    require_data_dir(data_dir)
    if attestation_pem:
        path = data_dir / keys.ATTESTATION_PUB
        require_file(path, "the attestation public key (PEM) that `sop init` writes")
        text = path.read_text(encoding="utf-8")
        if "-----BEGIN PUBLIC KEY-----" not in text:
            raise PathError(
                f"`{path}` holds no PEM public key; expected the attestation public key (PEM)"
                " that `sop init` writes",
                code="malformed",
                path=str(path),
            )
        kind = "attestation_pem"
    else:
        path = data_dir / (keys.CHECKPOINT_GENESIS if genesis else keys.CHECKPOINT_VKEY)
        text = keys.read_vkey(path).vkey + "\n"
        kind = "genesis_vkey" if genesis else "checkpoint_vkey"
    if json_output:
        print_json({"kind": kind, "key": text.strip(), "path": str(path)})
        return
    sys.stdout.write(text)


def keys_rotate(data_dir: DataDir = DEFAULT_DATA_DIR, json_output: JsonFlag = False) -> None:
    """Rotate the checkpoint key; the new key is announced in the log under the old one."""
    from sop_verified.server.admin_client import served  # noqa: PLC0415 - keep --help fast

    require_data_dir(data_dir)
    if (server := served(data_dir)) is not None:
        data = server.call("POST", "/admin/keys/rotate", {})
    else:
        sop = boot_data_dir(data_dir)
        try:
            receipt = sop.rotate_checkpoint_key()
            data = {"vkey": sop.log.verifiers[0].vkey, "receipt": receipt.to_dict()}
        finally:
            sop.close()
    new, index = data["vkey"], data["receipt"]["index"]
    if json_output:
        print_json(data)
        return
    out.print(f"checkpoint key rotated at entry {index}; new verifier key:")
    sys.stdout.write(new + "\n")


def keys_telemetry(data_dir: DataDir = DEFAULT_DATA_DIR, json_output: JsonFlag = False) -> None:
    """Make the telemetry key (keys/telemetry.key, 0600) for `[telemetry] mode = "hash"`.

    `sop init` makes it; a data directory made before it existed has none. Never printed.
    """
    from sop_verified.nexus.telemetry_config import create_telemetry_key  # noqa: PLC0415 - lazy: keeps `sop --help` fast

    require_data_dir(data_dir)
    path = create_telemetry_key(data_dir)
    if json_output:
        print_json({"created": str(path)})
        return
    out.print(
        f"made the telemetry key {path} (0600); copy it to every replica of this log",
        markup=False,
    )


def attest_export(
    out_dir: Annotated[Path, typer.Argument(help="Where to write the envelopes.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Write each logged DSSE envelope (in-toto Statement v1) as a JSON file in OUT_DIR."""
    from sop_verified.nexus.log_ops import export_attestations  # noqa: PLC0415 - lazy: keeps `sop --help` fast

    require_data_dir(data_dir)
    require_output_dir(out_dir, "a directory to write the envelopes in")
    written = export_attestations(data_dir, out_dir)
    if json_output:
        print_json({"written": [str(p) for p in written]})
        return
    out.print(f"wrote {plural(len(written), 'envelope')} to {out_dir}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the log, receipt, keys and attest sub-commands to ``app``.

    Args:
        app: The main ``sop`` app (``sop_verified.cli.app``).
    """
    log_app.command("verify")(guarded(log_verify))
    log_app.command("prove")(guarded(log_prove))
    log_app.command("checkpoint")(guarded(log_checkpoint))
    log_app.command("anchor")(guarded(log_anchor))
    receipt_app.command("verify")(guarded(receipt_verify))
    keys_app.command("export")(guarded(keys_export))
    keys_app.command("rotate")(guarded(keys_rotate))
    keys_app.command("telemetry")(guarded(keys_telemetry))
    attest_app.command("export")(guarded(attest_export))
    app.add_typer(log_app, name="log")
    app.add_typer(receipt_app, name="receipt")
    app.add_typer(keys_app, name="keys")
    app.add_typer(attest_app, name="attest")

"""`sop witness`: run a C2SP tlog-witness that cosigns logs' checkpoints (docs/WITNESS.md).

``init`` makes a witness directory (a fresh cosigner key 0600, the logs it
witnesses), ``add-log`` adds a log or a log's new key, ``serve`` answers
``add-checkpoint``, ``show`` prints the key, the logs and what was cosigned.
Same conventions as every `sop` command: ``--json`` for machines, the exit-code
table of :mod:`sop_verified.cli_support` (one error line and exit 2 for bad input).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.markup import escape

from sop_verified.cli_paths import require_made_dir, require_new_dir
from sop_verified.cli_support import (
    JsonFlag,
    err,
    fail,
    guarded,
    guarded_stream,
    out,
    plural,
    print_json,
)
from sop_verified.errors import InputError

__all__ = ["register"]

witness_app = typer.Typer(
    no_args_is_help=True, help="A C2SP tlog-witness: cosign logs' checkpoints, never two forks."
)

WitnessDirOption = Annotated[
    Path, typer.Option("--dir", help="The witness directory (made by `sop witness init`).")
]
LogKeys = Annotated[
    list[str] | None,
    typer.Option(
        "--log",
        help="A log's checkpoint verifier key, string or file; its origin is the key's name"
        " (repeatable; `sop witness add-log --origin` for another origin).",
    ),
]


def _witness_dir(directory: Path) -> None:
    """``--dir`` must be a witness directory (it holds ``witness.key``)."""
    expected = "a witness directory made by `sop witness init`"
    require_made_dir(directory, "witness.key", expected, f"sop witness init --dir {directory}")


def _vkey_text(value: str, where: str = "--log") -> str:
    """A verifier key given as a string or as a file holding one (a file of that name wins).

    Raises:
        InputError: no such file and not a key string, a directory, or an empty file.
    """
    from sop_verified.nexus.trusted_key import key_text  # noqa: PLC0415 - keep --help fast
    from sop_verified.tools.signed_note import Verifier  # noqa: PLC0415 - keep --help fast

    accepted = "a log's checkpoint verifier key string (`name+keyid+base64`) or a file holding one"
    text, path = key_text(value, where, accepted)
    if path is not None:
        try:
            Verifier.from_string(text)
        except InputError as exc:
            raise InputError(f"`{path}` holds no verifier key: {exc}") from None
    return text


def witness_init(
    directory: WitnessDirOption,
    name: Annotated[
        str,
        typer.Option(help="The witness's name, a schema-less URL such as `witness.example/w1`."),
    ] = "localhost/sop-witness",
    log: LogKeys = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a witness directory: a cosigner key (0600) and the logs it witnesses."""
    from sop_verified.tools.witness_config import init_witness_dir  # noqa: PLC0415 - keep --help fast

    logs: list[tuple[str, str | None]] = [(_vkey_text(v), None) for v in log or []]
    require_new_dir(directory, "a new path or an empty directory for the witness", empty=True)
    vkey = init_witness_dir(directory, name, logs)
    if json_output:
        print_json({"dir": str(directory), "vkey": vkey, "logs": len(logs)})
        return
    out.print(f"witness created in [bold]{escape(str(directory))}[/]; its verifier key:")
    sys.stdout.write(vkey + "\n")
    if not logs:
        err.print("[yellow]no log yet[/]: add one with `sop witness add-log`")


def witness_add_log(
    vkey: Annotated[str, typer.Argument(help="The log's checkpoint verifier key, string or file.")],
    directory: WitnessDirOption,
    origin: Annotated[
        str | None, typer.Option(help="The log's checkpoint origin; default the key's name.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Witness another log, or trust another key of a witnessed log (its rotated key)."""
    from sop_verified.tools.witness_config import add_log  # noqa: PLC0415 - keep --help fast

    _witness_dir(directory)
    log = add_log(directory, _vkey_text(vkey, "VKEY"), origin)
    if json_output:
        print_json({"origin": log.origin, "vkeys": list(log.vkeys)})
        return
    keys = plural(len(log.vkeys), "key")
    out.print(f"witnessing [bold]{escape(log.origin)}[/] with {keys}", highlight=False)
    err.print("restart `sop witness serve` for the change to take effect", style="dim")


def witness_show(directory: WitnessDirOption, json_output: JsonFlag = False) -> None:
    """Print the witness's key, its logs and the latest size it cosigned for each."""
    from sop_verified.tools.witness_config import load_witness_dir  # noqa: PLC0415 - keep --help fast

    _witness_dir(directory)
    loaded = load_witness_dir(directory)
    try:
        logs = [
            {
                "origin": log.origin,
                "vkeys": list(log.vkeys),
                "cosigned_size": loaded.store.latest(log.origin).size,
            }
            for log in loaded.logs
        ]
        evidence = len(loaded.store.evidence())
    finally:
        loaded.close()
    data = {"vkey": loaded.vkey, "logs": logs, "evidence": evidence}
    if json_output:
        print_json(data)
        return
    sys.stdout.write(f"vkey {loaded.vkey}\n")
    for entry in logs:
        size = entry["cosigned_size"]
        shown_size = "nothing yet" if size is None else str(size)
        out.print(f"log  {entry['origin']}  cosigned size {shown_size}", markup=False)
    if evidence:
        kept = plural(evidence, "refused checkpoint")
        out.print(f"[bold red]{kept} kept as evidence[/] (forks, proofs)")


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        fail(f"`--listen` is `{text}`; expected HOST:PORT (for example `127.0.0.1:7650`)")
    return host, int(port)


def witness_serve(
    directory: WitnessDirOption,
    listen: Annotated[
        str, typer.Option(help="HOST:PORT to listen on (port 0: any free port).")
    ] = "127.0.0.1:7650",
    json_output: JsonFlag = False,
) -> None:
    """Serve C2SP tlog-witness `POST /add-checkpoint` until SIGTERM or Ctrl-C."""
    from sop_verified.server.witness import WitnessListener, serve_witness  # noqa: PLC0415

    host, port = _address(listen)
    _witness_dir(directory)

    def started(at: WitnessListener) -> None:
        if json_output:
            facts = {"url": at.url, "vkey": at.vkey, "logs": list(at.logs)}
            sys.stdout.write(orjson.dumps(facts).decode() + "\n")
        else:
            out.print(f"witness  {at.url}  (POST /add-checkpoint)", highlight=False)
            out.print(f"vkey     {at.vkey}", highlight=False)
            for origin in at.logs:
                out.print(f"log      {origin}", highlight=False)
            out.print("stop with SIGTERM or Ctrl-C", style="dim")
        sys.stdout.flush()

    raise typer.Exit(serve_witness(directory, host, port, on_started=started))


def register(app: typer.Typer) -> None:
    """Add `sop witness` to ``app``."""
    witness_app.command("init")(guarded(witness_init))
    witness_app.command("add-log")(guarded(witness_add_log))
    witness_app.command("show")(guarded(witness_show))
    witness_app.command("serve")(guarded_stream(witness_serve))
    app.add_typer(witness_app, name="witness")

"""The `sop certs` commands: the bridge plane's local CA and its client certificates.

Registered on the main app by :func:`register`, with the CLI's conventions:
rich output for humans, ``--json`` for machines, the exit-code table of
:mod:`sop_verified.cli_support` (one error line and exit 2 for bad input).
Paths, principals, serials and fingerprints are printed; key contents never
are. docs/TLS.md is the guide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sop_verified.cli_paths import require_output_dir
from sop_verified.cli_support import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    guarded,
    out,
    print_json,
    require_data_dir,
)

__all__ = ["register"]

certs_app = typer.Typer(
    no_args_is_help=True,
    help="The bridge plane's mutual TLS: the local CA and client certificates.",
)


def certs_init(data_dir: DataDir = DEFAULT_DATA_DIR, json_output: JsonFlag = False) -> None:
    """Create the local CA and server certificate in keys/tls/ (`sop init` does it already)."""
    from sop_verified.server.certs import check_authority, create_authority  # noqa: PLC0415

    require_data_dir(data_dir)
    create_authority(data_dir)
    status = check_authority(data_dir)
    tls = data_dir / "keys" / "tls"
    data = {
        "ca": str(tls / "ca.pem"),
        "server_cert": str(tls / "server.pem"),
        "ca_fingerprint": status.ca_fingerprint,
        "ca_not_after": status.ca_not_after.isoformat(),
        "server_not_after": status.server_not_after.isoformat(),
    }
    if json_output:
        print_json(data)
        return
    out.print(f"created the TLS authority in `{escape(str(tls))}`")
    out.print(f"CA `{escape(data['ca'])}` ({data['ca_fingerprint']}), until {data['ca_not_after']}")
    out.print(
        f"issue client certificates with `sop certs issue NAME --data-dir {escape(str(data_dir))}`"
    )


Out = Annotated[
    Path | None,
    typer.Option(
        "--out", help="Where to write NAME.pem, NAME.key and ca.pem (default: ./NAME-cert/)."
    ),
]
Days = Annotated[int, typer.Option("--days", help="Validity in days (1 or more).", min=1)]


def certs_issue(
    name: Annotated[str, typer.Argument(help="The principal the certificate authenticates.")],
    out_dir: Out = None,
    days: Days = 365,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Issue a client certificate for principal NAME (files 0600, directory 0700)."""
    from sop_verified.server.certs import issue_client  # noqa: PLC0415 - keep --help fast

    require_data_dir(data_dir)
    target = out_dir or Path(f"{name}-cert")
    require_output_dir(target, "a directory for the certificate, its key and the CA")
    issued = issue_client(data_dir, name, target, days=days)
    data = issued.to_dict()
    if json_output:
        print_json(data)
        return
    out.print(f"issued a client certificate for principal `{escape(issued.principal)}`")
    for label in ("cert", "key", "ca"):
        out.print(f"  {label:<5}{escape(data[label])}", soft_wrap=True)  # paths unbroken
    out.print(f"  serial {data['serial']}, valid until {data['not_after']}")


def register(app: typer.Typer) -> None:
    """Add the certs sub-commands to ``app`` (``sop_verified.cli.app``)."""
    certs_app.command("init")(guarded(certs_init))
    certs_app.command("issue")(guarded(certs_issue))
    app.add_typer(certs_app, name="certs")

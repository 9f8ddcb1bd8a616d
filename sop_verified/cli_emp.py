"""The `sop emp` commands: the operator's acts on EMP's signing keys.

Registered on the main app by :func:`register`. ``sop emp revoke-key`` goes
through the running server's admin socket when a server holds the data
directory, and boots SOP on it otherwise, like ``sop cap revoke``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sop_verified.cli_support import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    boot_data_dir,
    guarded,
    out,
    print_json,
    require_data_dir,
)

__all__ = ["register"]

emp_app = typer.Typer(no_args_is_help=True, help="EMP's signing keys: revoke one.")


@emp_app.command("revoke-key")
@guarded
def emp_revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id (hex SHA-256 of the public key).")],
    reason: Annotated[
        str, typer.Option(help="Why, kept in the log entry.")
    ] = "revoked by the operator",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: JsonFlag = False,
) -> None:
    """Revoke an EMP signing key: logged; no output it signs is recorded from then on.

    Outputs it signed that were recorded before stay recorded and verifiable.
    """
    from sop_verified.server.admin_client import served  # noqa: PLC0415 - only when it runs

    require_data_dir(data_dir)
    server = served(data_dir)
    if server is not None:
        body = {"key_id": key_id, "reason": reason}
        result: dict[str, Any] = server.call("POST", "/admin/emp/keys/revoke", body)
    else:
        result = _revoke_here(data_dir, key_id, reason)
    if json_output:
        print_json(result)
    elif result["revoked"]:
        out.print(f"revoked EMP key {escape(key_id)} at log index {result['log_index']}")
    else:
        out.print(f"EMP key {escape(key_id)} was revoked already: nothing logged")


def _revoke_here(data_dir: Path, key_id: str, reason: str) -> dict[str, Any]:
    from sop_verified.nexus.protocols import emp_revocation  # noqa: PLC0415 - boots SOP: heavy

    sop = boot_data_dir(data_dir)
    try:
        return emp_revocation(key_id, sop.revoke_emp_key(key_id, reason))
    finally:
        sop.close()


def register(app: typer.Typer) -> None:
    """Add ``sop emp`` to the main app."""
    app.add_typer(emp_app, name="emp")

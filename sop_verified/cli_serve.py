"""`sop serve`: SOP as a service (the bridge, read and admin planes; docs/HTTP_API.md)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.markup import escape

from sop_verified.cli_paths import require_output_file
from sop_verified.cli_support import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    err,
    fail,
    guarded_stream,
    out,
    require_data_dir,
)

__all__ = ["register"]

Address = Annotated[str, typer.Option(help="HOST:PORT to listen on (port 0: any free port).")]


def _address(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        fail(f"`{flag}` is `{text}`; expected HOST:PORT (for example `127.0.0.1:7600`)")
    return host, int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_cmd(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    bridge: Address = "127.0.0.1:7600",
    read: Address = "127.0.0.1:7601",
    unsafe_no_tls: Annotated[
        bool,
        typer.Option(
            "--unsafe-no-tls",
            help="UNSAFE: plain HTTP on the bridge plane, no client authenticated (loopback only).",
        ),
    ] = False,
    queue: Annotated[int, typer.Option(help="Requests that may wait before 429.", min=1)] = 4096,
    decision_log: Annotated[
        Path | None,
        typer.Option(
            help="Write one JSON line per decision (id, log index, effect, code, latency;"
            " no request values) to this file, or `-` for standard error."
        ),
    ] = None,
    dsn: Annotated[
        str | None,
        typer.Option(
            help="Reach the data directory's PostgreSQL database at this DSN instead of the"
            " one in sop.toml (a replica on another host); the password is never shown."
        ),
    ] = None,
    no_admin_socket: Annotated[bool, typer.Option("--no-admin-socket", hidden=True)] = False,
    bench_echo: Annotated[bool, typer.Option("--bench-echo", hidden=True)] = False,
    json_output: JsonFlag = False,
) -> None:
    """Serve SOP: the bridge plane (mutual TLS), the public read plane, the admin socket."""
    from sop_verified.server.serve import Listeners, ServeSettings, serve  # noqa: PLC0415

    bridge_at, read_at = _address(bridge, "--bridge"), _address(read, "--read")
    if unsafe_no_tls and not _loopback(bridge_at[0]):
        fail(
            f"`--unsafe-no-tls` listens on loopback only; `{bridge_at[0]}` is not loopback;"
            " expected `--bridge 127.0.0.1:PORT` (or another loopback address)"
        )
    require_data_dir(data_dir)
    if decision_log is not None and str(decision_log) != "-":
        require_output_file(decision_log, "a file to append the decision lines to, or `-`")
    settings = ServeSettings(
        data_dir,
        bridge=bridge_at,
        read=read_at,
        unsafe_no_tls=unsafe_no_tls,
        queue_capacity=queue,
        admin_socket=not no_admin_socket,
        decision_log=decision_log,
        bench_echo=bench_echo,  # bench/bench_http.py's echo route: hidden, warned about
        dsn=dsn,
    )

    def started(at: Listeners) -> None:
        scheme = "http" if unsafe_no_tls else "https"
        facts = {
            "bridge": f"{scheme}://{at.bridge[0]}:{at.bridge[1]}",
            "read": f"http://{at.read[0]}:{at.read[1]}",
            "admin": None if at.admin is None else str(at.admin),
            "vkey": at.vkey,
            "warnings": at.warnings,
        }
        for warning in at.warnings:
            err.print(f"[bold red]WARNING:[/] {escape(warning)}", highlight=False)
        if json_output:
            sys.stdout.write(orjson.dumps(facts).decode() + "\n")
            sys.stdout.flush()
            return
        out.print(
            f"bridge plane  {facts['bridge']}  (mutual TLS)"
            if not unsafe_no_tls
            else f"bridge plane  {facts['bridge']}  [bold red](NO TLS)[/]"
        )
        out.print(f"read plane    {facts['read']}  (/log/, /v1/receipts/, /health/, /metrics)")
        if at.admin is not None:
            out.print(f"admin socket  {at.admin}", markup=False)
        out.print(f"vkey          {at.vkey}", highlight=False, markup=False)
        out.print("stop with SIGTERM or Ctrl-C", style="dim")
        sys.stdout.flush()

    raise typer.Exit(serve(settings, on_started=started))


def register(app: typer.Typer) -> None:
    """Add `sop serve` to ``app``."""
    app.command("serve")(guarded_stream(serve_cmd))

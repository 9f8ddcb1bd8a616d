"""The CLI's side of the admin plane: while a server holds the data directory, ask it.

A running server holds its data directory (:mod:`.serve_lock`) and is the
only writer of its database. The admin commands (``sop status``, ``sop cap
...``, ``sop policy check|activate``, ``sop keys rotate``) then go through
its admin socket (:func:`served`); every other command that would open the
database for writing refuses (:func:`refuse_while_served`), naming the
server's pid and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson

from sop_verified.errors import SOPError
from sop_verified.server.serve_lock import holder

__all__ = ["SOCKET_NAME", "AdminClient", "AdminRefusedError", "refuse_while_served", "served"]

SOCKET_NAME = "admin.sock"
"""The admin socket's name in the data directory."""

_TIMEOUT = httpx.Timeout(10.0, read=300.0)  # an activation runs the Z3 analyses


class AdminRefusedError(SOPError):
    """The server refused an admin action; carries its RFC 9457 problem.

    Attributes:
        status: the HTTP status.
        problem: the problem object (``code``, ``detail``; a refused policy set's ``report``).
    """

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(str(problem.get("detail") or f"the server answered {status}"))


class AdminClient:
    """An HTTP client over the admin socket of the server holding a data directory."""

    def __init__(self, data_dir: Path, pid: int) -> None:
        self.pid = pid
        self.socket = data_dir / SOCKET_NAME

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one admin request and return its JSON answer.

        Args:
            method: ``GET`` or ``POST``.
            path: the endpoint (``/admin/cap/admit``).
            body: the JSON body (POST).

        Returns:
            The decoded JSON answer.

        Raises:
            AdminRefusedError: the server answered with a problem.
            SOPError: the socket does not answer.
        """
        content = None if body is None else orjson.dumps(body)
        headers = {} if body is None else {"content-type": "application/json"}
        try:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            with httpx.Client(transport=transport, timeout=_TIMEOUT) as http:
                answer = http.request(
                    method, "http://sop-admin" + path, content=content, headers=headers
                )
        except httpx.TransportError as exc:
            raise SOPError(
                f"the server (pid {self.pid}) holds the data directory but its admin socket"
                f" `{self.socket}` does not answer ({type(exc).__name__}: {exc}); is it running"
                " with the admin socket off?"
            ) from None
        try:
            data = orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            data = {"detail": f"the server answered {answer.status_code} without JSON"}
        if answer.status_code >= 400:
            raise AdminRefusedError(answer.status_code, data if isinstance(data, dict) else {})
        return data


def served(data_dir: Path) -> AdminClient | None:
    """A client of the server holding ``data_dir``, or None when no server holds it."""
    pid = holder(data_dir)
    return None if pid is None else AdminClient(data_dir, pid)


def refuse_while_served(data_dir: Path, command: str) -> None:
    """Refuse ``command`` while a server holds ``data_dir`` (it would open the database).

    Raises:
        SOPError: a server holds ``data_dir``; the message names its pid and what to do.
    """
    pid = holder(data_dir)
    if pid is None:
        return
    raise SOPError(
        f"a server (pid {pid}) holds `{data_dir}` and is the only writer of its database;"
        f" `{command}` cannot run beside it: stop the server first (kill -TERM {pid}), or use"
        " the admin plane (`sop status`, `sop cap`, `sop policy`, `sop keys rotate` go"
        " through its admin socket)"
    )

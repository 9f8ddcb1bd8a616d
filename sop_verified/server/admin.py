"""The admin plane: SOP's admin actions on a Unix socket only the server's user reaches.

``<data_dir>/admin.sock`` is mode 0600 before it listens, so only its owner
(and root) may connect: the kernel checks the socket file's write permission
at ``connect(2)``. Each accepted connection is checked again by the peer's
credentials (``SO_PEERCRED``): a peer that is neither the server's uid nor
root is closed before a byte is read (:class:`AdminProtocol`), so a socket
file whose mode was widened still admits nobody else.

The endpoints (JSON in, JSON out, errors as RFC 9457 problems) call the same
:class:`~sop_verified.nexus.sop.SOP` methods as the CLI, one at a time on one
worker thread: admin actions are serialised and never block the event loop.
Bodies are parsed strictly (pydantic, strict, unknown fields refused,
duplicate keys refused): a mistake is 400 or 422 with what was wrong, never 500.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sop_verified.errors import SOPError
from sop_verified.server.admin_client import SOCKET_NAME
from sop_verified.server.admin_routes import admin_routes
from sop_verified.server.app import plane

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from sop_verified.server.state import ServerState

__all__ = [
    "AdminProtocol",
    "admin_app",
    "bind_admin_socket",
    "peer_allowed",
    "peer_credentials",
]

_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes on Linux, NUL included
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

_log = logging.getLogger("sop.server")


def bind_admin_socket(data_dir: Path) -> tuple[Path, socket.socket]:
    """Bind and listen on ``<data_dir>/admin.sock``, mode 0600 before it listens.

    A socket file left by a server that was killed is replaced (the serve lock,
    held by the caller, guarantees no live server owns it); anything else at the
    path is refused.

    Args:
        data_dir: the data directory the caller holds (:class:`~.serve_lock.ServeLock`).

    Returns:
        The socket's path and the listening socket (non-blocking).

    Raises:
        SOPError: the path holds something that is not a socket, or is too long to bind.
    """
    path = data_dir.absolute() / SOCKET_NAME
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise SOPError(
            f"the admin socket path `{path}` is longer than {_SUN_PATH_MAX} bytes, the limit of"
            " a Unix socket address; use a data directory with a shorter path"
        )
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        # No window: nobody can connect before listen(), and by then only the owner may.
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return path, sock


def _remove_stale(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SOPError(
            f"`{path}` exists and is not a socket; the server makes its admin socket there:"
            " move that file away (or start the server with the admin socket off), then start"
            " it again"
        )
    os.unlink(path)  # a killed server's socket: the serve lock says no live server owns it


def peer_credentials(sock: Any) -> tuple[int, int, int]:
    """The ``(pid, uid, gid)`` of a connected Unix socket's peer (``SO_PEERCRED``)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def peer_allowed(uid: int) -> bool:
    """Whether a peer with ``uid`` may use the admin plane: the server's own user, or root."""
    return uid in (os.getuid(), 0)


class AdminProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol that closes a connection whose peer is not allowed.

    The ASGI application never sees the socket, so the check is here, once per
    connection, before any byte of it is read.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Go on as uvicorn does, then drop the connection unless the peer is allowed."""
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        try:
            pid, uid, _ = peer_credentials(sock)
        except (OSError, AttributeError, struct.error):
            pid, uid = -1, -1
        if not peer_allowed(uid):
            _log.warning(
                "admin socket: refused a connection from pid %s uid %s (allowed: uid %s or 0)",
                pid,
                uid,
                os.getuid(),
            )
            transport.abort()


def admin_app(state: ServerState) -> Starlette:
    """The admin plane's application over ``state`` (the endpoints: :mod:`.admin_routes`).

    Args:
        state: the running server's state; the handlers use its ``sop`` and ``stopping``.

    Returns:
        The Starlette application (problem+json errors).
    """
    return plane(admin_routes(state))

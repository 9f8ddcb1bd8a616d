"""``sop witness serve``: a C2SP tlog-witness over HTTP (c2sp.org/tlog-witness).

One listener, one route that matters: ``POST /add-checkpoint`` (the
submission prefix is the root), decided by
:class:`~sop_verified.tools.witness.Witness` in a worker thread: 200 with
the cosignature lines (``text/plain``), 409 with the witness's latest
cosigned size (``text/x.tlog.size``), and 400, 403, 404, 413, 422 as RFC 9457
problems whose ``code`` names the reason. The state is committed before the
answer is sent; a storage failure is a 503 and nothing is cosigned.
``GET /`` says who the witness is (its verifier key, the logs it witnesses).

Lifecycle: SIGTERM or SIGINT stops accepting, lets in-flight requests
finish, closes the state. A kill -9 loses nothing answered: an answer is sent
only after its state change is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sop_verified.errors import StorageError
from sop_verified.server.app import plane
from sop_verified.server.problems import problem
from sop_verified.tools.witness import MAX_BODY_SIZE, SIZE_MEDIA_TYPE, Cosigned, Witness
from sop_verified.tools.witness_config import WitnessDir, load_witness_dir

__all__ = ["WitnessListener", "serve_witness", "witness_app"]

_log = logging.getLogger("sop.witness")


class _TooLargeError(Exception):
    pass


class _Server(uvicorn.Server):
    """A uvicorn server whose stop signals the loop handles (uvicorn would re-raise them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _body(request: HTTPRequest) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_SIZE:
        raise _TooLargeError
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_SIZE:
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def witness_routes(witness: Witness, about: str) -> list[Route]:
    """The witness's routes: ``POST /add-checkpoint`` and ``GET /``.

    Args:
        witness: The witness that decides.
        about: The text ``GET /`` answers.
    """

    async def add_checkpoint(request: HTTPRequest) -> Response:
        try:
            body = await _body(request)
        except _TooLargeError:
            return problem(413, "body_too_large", f"the body has more than {MAX_BODY_SIZE} bytes")
        try:
            answer = await run_in_threadpool(witness.add_checkpoint, body)
        except StorageError as exc:
            _log.error("witness state failed: %s", exc)
            return problem(503, "storage_failed", "the witness's state failed; nothing cosigned")
        if isinstance(answer, Cosigned):
            return PlainTextResponse(answer.lines)
        if answer.status == 409:
            # exactly the spec's media type: Starlette would add a charset to a `text/` one
            return Response(f"{answer.size}\n", 409, headers={"content-type": SIZE_MEDIA_TYPE})
        return problem(answer.status, answer.code, answer.message)

    async def who(_: HTTPRequest) -> Response:
        return PlainTextResponse(about)

    return [
        Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
        Route("/", who, methods=["GET"]),
    ]


def _about(loaded: WitnessDir) -> str:
    lines = [f"C2SP tlog-witness {loaded.signer.name}", f"vkey {loaded.vkey}"]
    lines += [f"log {log.origin}" for log in loaded.logs]
    return "\n".join(lines) + "\n"


def witness_app(loaded: WitnessDir) -> Starlette:
    """The witness's ASGI application for a loaded witness directory."""
    return plane(witness_routes(loaded.witness(), _about(loaded)))


@dataclass(frozen=True)
class WitnessListener:
    """Where a started witness listens, and its verifier key."""

    url: str
    vkey: str
    logs: tuple[str, ...]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def serve_witness(
    path: Path,
    host: str = "127.0.0.1",
    port: int = 7650,
    *,
    on_started: Callable[[WitnessListener], None] | None = None,
) -> int:
    """Serve the witness of directory ``path`` until SIGTERM or SIGINT; returns 0.

    Raises:
        ConfigError: ``path`` is not a witness directory.
        StorageError: the state cannot be opened.
        OSError: the address cannot be bound.
    """
    loaded = load_witness_dir(path)
    try:
        sock = _bind(host, port)
    except BaseException:
        loaded.close()
        raise
    config = uvicorn.Config(
        witness_app(loaded),
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    listener = WitnessListener(
        f"http://{shown}:{bound_port}", loaded.vkey, tuple(log.origin for log in loaded.logs)
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        task = loop.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started and on_started is not None:
            on_started(listener)
        await task

    try:
        uvloop.run(run())
    finally:
        sock.close()
        loaded.close()
    return 0

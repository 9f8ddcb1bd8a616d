"""``sop serve``: one process, SOP booted once, three listeners.

The bridge plane (mutual TLS, :mod:`.bridge`), the public read plane (the log
as C2SP tlog-tiles, receipts, health, metrics, :mod:`.public`) and the admin
plane (a 0600 Unix socket in the data directory, :mod:`.admin`) are uvicorn
servers on one asyncio loop sharing one :class:`~.state.ServerState`. A lock
file (``serve.lock``, held with ``flock`` while the server runs) tells the CLI
that a server owns the data directory.

Lifecycle: SIGTERM or SIGINT stops the listeners from accepting, lets
in-flight requests finish, drains the decision queue (every queued request is
decided and logged), then closes SOP: its writer commits its last batch and
signs its checkpoint. Exit status 0. A kill -9 loses nothing acknowledged:
an answer is sent only after its decision is durably logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from sop_verified.nexus.sop import SOP
from sop_verified.server.app import plane
from sop_verified.server.bench_echo import ECHO_WARNING, echo_routes
from sop_verified.server.bridge import bridge_routes
from sop_verified.server.decisions import DecisionQueue
from sop_verified.server.log_source import TailRefresh
from sop_verified.server.operations import operation_routes
from sop_verified.server.public import public_routes
from sop_verified.server.read_plane import log_routes, sop_source
from sop_verified.server.serve_lock import ServeLock
from sop_verified.server.state import ServerState
from sop_verified.server.telemetry import Metrics, decision_logger
from sop_verified.server.tls_protocol import TLSHttpToolsProtocol
from sop_verified.server.tls_refusals import count_refused_handshakes

__all__ = ["Listeners", "ServeSettings", "Server", "bridge_app", "serve"]

_log = logging.getLogger("sop.server")

REPLICA_KEYS_SECONDS = 0.1
"""On a shared log, how stale this replica's view of the others' idempotency keys may be
when a keyed call arrives (the log's tail is re-read first when it is older)."""


@dataclass(frozen=True)
class ServeSettings:
    """Where and how ``sop serve`` listens.

    Attributes:
        data_dir: the data directory.
        bridge: host and port of the bridge plane (port 0: any free port).
        read: host and port of the public read plane.
        unsafe_no_tls: plain HTTP on the bridge plane (loopback only; loud).
        queue_capacity: requests that may wait for a decision before 429.
        admin_socket: serve the admin plane on ``<data_dir>/admin.sock``.
        decision_log: where to write one JSON line per decision (``-``: standard error;
            None: nowhere).
        bench_echo: add the benchmark's echo route ``POST /bench/echo`` to the bridge
            plane (:mod:`.bench_echo`; off by default, warned about, not in OpenAPI).
        dsn: another address for the data directory's PostgreSQL database (a replica).
    """

    data_dir: Path
    bridge: tuple[str, int] = ("127.0.0.1", 7600)
    read: tuple[str, int] = ("127.0.0.1", 7601)
    unsafe_no_tls: bool = False
    queue_capacity: int = 4096
    admin_socket: bool = True
    bench_echo: bool = False
    decision_log: Path | None = None
    dsn: str | None = None


@dataclass
class Listeners:
    """Where a started server listens (the ports that port 0 became)."""

    bridge: tuple[str, int]
    read: tuple[str, int]
    admin: Path | None
    vkey: str
    warnings: list[str] = field(default_factory=list)


class _Quiet(uvicorn.Server):
    """A uvicorn server that leaves signals to :class:`Server` (three share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when proto says TCP
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _config(app: Any, **kw: Any) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        **kw,
    )
    config.load()
    return config


def bridge_app(state: ServerState, settings: ServeSettings) -> Starlette:
    """The bridge plane's application: its routes, and the echo route if ``bench_echo``.

    Args:
        state: the running server's shared parts.
        settings: how the server was started (``bench_echo`` adds ``POST /bench/echo``).

    Returns:
        The Starlette application of the bridge plane.
    """
    routes: list[BaseRoute] = [*bridge_routes(state), *operation_routes(state)]
    if settings.bench_echo:  # off by default: bench/bench_http.py's ceiling of the stack
        routes += echo_routes()
    return plane(routes)


class Server:
    """A running ``sop serve``: SOP, its state and the listeners."""

    def __init__(self, settings: ServeSettings, sop: SOP, lock: ServeLock) -> None:
        self.settings = settings
        self.sop = sop
        self.lock = lock
        metrics = Metrics()
        queue = DecisionQueue(
            sop.submit_batch, capacity=settings.queue_capacity, on_batch=metrics.observe_batch
        )
        self.state = ServerState(sop, queue, metrics=metrics, unsafe_no_tls=settings.unsafe_no_tls)
        self._servers: list[_Quiet] = []
        self._sockets: list[socket.socket] = []
        self.listeners: Listeners | None = None

    def _load_keys(self) -> None:
        """Read back the idempotency keys the log holds (a retry after a restart).

        On a log other replicas share, the keys their entries carry are read as
        this replica's log learns of them (each batch, and before a keyed call
        at most every 100 ms): a retry sent to this replica at least 100 ms
        after its first call was logged elsewhere is answered from the log, and
        one sent sooner is caught when its decision's batch is sequenced.
        """
        log, keys = self.sop.store.log, self.state.keys
        if self.sop.config.postgresql is not None:
            # A retry sent sooner, or while the first call still runs there, is caught when a
            # batch is sequenced: the other replica's entry carrying the key is read under the
            # head lock, the batch is decided again and the key's decision is not logged twice
            # (the kernel asks the keys before it logs one; the edge answers with the first).
            self.sop.services.replicas.watch(keys.needles(), keys.foreign)
            self.sop.kernel.follow_claims(keys.logged)
            self.state.replicas = TailRefresh(lambda: self.sop.log, every=REPLICA_KEYS_SECONDS)
        keys.load(log.log_entries_containing(0, log.log_size(), keys.needles()))

    def start(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[None]]:
        """Bind the listeners and start serving on ``loop``."""
        from sop_verified.server.certs import server_ssl_context  # noqa: PLC0415

        settings = self.settings
        if self.sop.health.name == "READY":
            self._load_keys()
        bridge_sock = _bind(*settings.bridge)
        read_sock = _bind(*settings.read)
        self._sockets = [bridge_sock, read_sock]
        bridge = _config(bridge_app(self.state, settings), http=TLSHttpToolsProtocol)
        warnings = [ECHO_WARNING] if settings.bench_echo else []
        if settings.unsafe_no_tls:
            warnings.append(
                "UNSAFE: the bridge plane runs WITHOUT TLS (--unsafe-no-tls): no client is"
                " authenticated; never use this outside a test on loopback"
            )
        else:
            bridge.ssl = server_ssl_context(settings.data_dir)
            refused = self.state.metrics.tls_refused
            if not count_refused_handshakes(bridge.ssl, lambda alert: refused.labels(alert).inc()):
                warnings.append("refused TLS handshakes are not counted on this interpreter")
        read = _config(plane(self._read_routes(), gzip=True))
        servers = [(bridge, bridge_sock), (read, read_sock)]
        admin_path = None
        if settings.admin_socket:
            from sop_verified.server.admin import (  # noqa: PLC0415
                AdminProtocol,
                admin_app,
                bind_admin_socket,
            )

            admin_path, admin_sock = bind_admin_socket(settings.data_dir)
            self._sockets.append(admin_sock)
            # AdminProtocol: a peer that is neither this uid nor root is closed (SO_PEERCRED)
            servers.append((_config(admin_app(self.state), http=AdminProtocol), admin_sock))
        tasks = []
        for config, sock in servers:
            server = _Quiet(config)
            self._servers.append(server)
            tasks.append(loop.create_task(server.serve(sockets=[sock])))
        self.listeners = Listeners(
            bridge=bridge_sock.getsockname()[:2],
            read=read_sock.getsockname()[:2],
            admin=admin_path,
            vkey=self._vkey(),
            warnings=warnings,
        )
        return tasks

    def _read_routes(self) -> list[Any]:
        return [*public_routes(self.state), *log_routes(sop_source(self.sop))]

    def _vkey(self) -> str:
        try:
            return str(self.sop.log.verifiers[0].vkey)
        except Exception:  # boot did not finish: no key to show
            return ""

    def started(self) -> bool:
        """Whether every listener listens."""
        return all(s.started for s in self._servers)

    def request_stop(self) -> None:
        """Stop accepting; in-flight requests finish (SIGTERM)."""
        self.state.stopping = True
        for server in self._servers:
            server.should_exit = True

    def close(self) -> None:
        """After the listeners stopped: drain the queue, close SOP, release the lock."""
        self.state.queue.close()
        self.sop.close()
        for sock in self._sockets:
            sock.close()
        if self.listeners is not None and self.listeners.admin is not None:
            self.listeners.admin.unlink(missing_ok=True)  # before the lock: it is still ours
        self.lock.release()


def _decision_lines(target: Path | None) -> None:
    """Send the ``sop.decisions`` logger's lines to ``target`` (a file, or ``-``: stderr)."""
    if target is None:
        return
    handler: logging.Handler
    if str(target) == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    decision_logger.addHandler(handler)
    decision_logger.setLevel(logging.INFO)
    decision_logger.propagate = False


def serve(
    settings: ServeSettings,
    *,
    on_started: Callable[[Listeners], None] | None = None,
    boot: Callable[..., SOP] = SOP.boot,
) -> int:
    """Run ``sop serve`` until SIGTERM or SIGINT; returns the exit status (0).

    Raises:
        SOPError: another server holds the data directory, or the TLS material is missing.
    """
    lock = ServeLock.acquire(settings.data_dir)
    _decision_lines(settings.decision_log)
    try:
        sop = (
            boot(settings.data_dir)
            if settings.dsn is None
            else boot(settings.data_dir, dsn=settings.dsn)
        )
    except BaseException:
        lock.release()
        raise
    server = Server(settings, sop, lock)
    # The loop thread and the deciding threads hand the GIL to each other on every request;
    # a 1 ms switch interval keeps the loop from waiting up to 5 ms (CPython's default) for
    # a deciding thread's slice (measured: ADR 0014).
    sys.setswitchinterval(0.001)
    # What boot loaded lives as long as the server: keep it out of every collection, and
    # collect the young generation less often (a request allocates a few hundred objects).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    try:
        return uvloop.run(_run(server, on_started))
    finally:
        server.close()


async def _run(server: Server, on_started: Callable[[Listeners], None] | None) -> int:
    loop = asyncio.get_running_loop()
    tasks = server.start(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    while not server.started():  # wait until every listener listens
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.01)
    if on_started is not None and server.listeners is not None:
        on_started(server.listeners)
    await asyncio.gather(*tasks)
    return 0

"""A pool of capped worker processes spoken to over pipes (mechanics only, no authority).

Each worker is ``python -m <module>`` in its own session. It caps its own
address space (``RLIMIT_AS``) and, before every call, its CPU time
(``RLIMIT_CPU``, raised to the time used so far plus the per-call budget), and
answers length-prefixed JSON frames on private copies of its standard streams
(the originals point at ``/dev/null`` so stray library output cannot corrupt
the protocol). The parent enforces a wall-clock deadline per call and kills a
worker that overruns, dies, or answers garbage, then starts a fresh one for
that slot on demand: one dead worker never breaks the pool (unlike a stock
``ProcessPoolExecutor``). Every failure comes back as a :class:`CallResult`
with a failure code, never as an exception, so callers can fail closed.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from sop_verified.tools.workerproc import FRAME_HEADER, MAX_FRAME_BYTES

__all__ = [
    "MAX_FRAME_BYTES",
    "CallResult",
    "PoolStats",
    "WorkerLimits",
    "WorkerPool",
]

_Z3_MEMOUT_EXIT = 101  # z3 calls exit(101) when an allocation fails outside a check


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """Resource caps of one worker and of one call.

    Attributes:
        memory_bytes: the worker's address-space cap (``RLIMIT_AS``).
        cpu_seconds: CPU seconds one call may use (``RLIMIT_CPU``, re-armed per call).
        wall_seconds: wall-clock seconds the parent waits for one answer, then kills.
        start_seconds: wall-clock seconds a new worker has to say hello.
        max_calls: calls a worker serves before it is replaced (bounds state that
            builds up inside a long-lived worker).
    """

    memory_bytes: int = 1 << 30
    cpu_seconds: int = 10
    wall_seconds: float = 10.0
    start_seconds: float = 30.0
    max_calls: int = 10_000

    def __post_init__(self) -> None:
        if self.memory_bytes < 64 << 20 or self.cpu_seconds < 1:
            raise ValueError("worker limits need at least 64 MiB and 1 CPU second")
        if self.wall_seconds <= 0 or self.start_seconds <= 0 or self.max_calls < 1:
            raise ValueError("worker deadlines must be positive")


@dataclass(frozen=True, slots=True)
class CallResult:
    """The answer of one call: a reply, or a failure code and detail.

    ``failure`` is ``""`` on success, else one of ``timeout``, ``memory``,
    ``cpu``, ``crash``, ``protocol``, ``start``, ``busy``, ``closed``. A reply
    carrying ``"_retire": true`` is returned as usual, but its worker is then
    replaced (the worker's state is no longer trusted, e.g. after memory exhaustion).
    """

    reply: dict[str, Any] = field(default_factory=dict)
    failure: str = ""
    detail: str = ""
    pid: int | None = None

    @property
    def ok(self) -> bool:
        """True when the worker answered."""
        return not self.failure


class _WorkerGoneError(Exception):
    def __init__(self, failure: str, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


def _describe_exit(code: int | None) -> tuple[str, str]:
    if code == _Z3_MEMOUT_EXIT:
        return "memory", "the worker ran out of memory (exit 101)"
    if code == -signal.SIGXCPU:
        return "cpu", "the worker exceeded its CPU limit (SIGXCPU)"
    if code is not None and code < 0:
        return "crash", f"the worker was killed by signal {-code}"
    return "crash", f"the worker exited with status {code}"


class _Worker:
    """One child process and its two pipe ends (non-blocking, parent side)."""

    def __init__(self, module: str) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter and our module
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            bufsize=0,
            start_new_session=True,
        )
        if (
            self.proc.stdin is None or self.proc.stdout is None
        ):  # pragma: no cover - Popen(PIPE) contract
            self.kill()
            raise OSError("the worker's pipes were not created")
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        os.set_blocking(self.rfd, False)
        self.hello: dict[str, Any] = {}
        self.calls = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_fd(self, fd: int, events: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, events)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _WorkerGoneError("timeout", "the worker did not answer in time")
            if poller.poll(min(remaining, 3600.0) * 1000.0):
                return

    def send(self, payload: dict[str, Any], deadline: float) -> None:
        body = orjson.dumps(payload)
        data = memoryview(FRAME_HEADER.pack(len(body)) + body)
        while data:
            self._wait_fd(self.wfd, select.POLLOUT, deadline)
            try:
                n = os.write(self.wfd, data)
            except BlockingIOError:
                continue
            except OSError:
                raise self._gone() from None
            data = data[n:]

    def _read_exact(self, n: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        while n:
            self._wait_fd(self.rfd, select.POLLIN, deadline)
            try:
                chunk = os.read(self.rfd, min(n, 1 << 20))
            except BlockingIOError:
                continue
            except OSError:
                raise self._gone() from None
            if not chunk:
                raise self._gone()
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def receive(self, deadline: float) -> dict[str, Any]:
        (size,) = FRAME_HEADER.unpack(self._read_exact(FRAME_HEADER.size, deadline))
        if size > MAX_FRAME_BYTES:
            raise _WorkerGoneError("protocol", f"the worker sent a {size}-byte frame")
        try:
            reply = orjson.loads(self._read_exact(size, deadline))
        except orjson.JSONDecodeError:
            raise _WorkerGoneError("protocol", "the worker sent a frame that is not JSON") from None
        if not isinstance(reply, dict):
            raise _WorkerGoneError("protocol", "the worker sent a frame that is not an object")
        return reply

    def _gone(self) -> _WorkerGoneError:
        try:
            code = self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        failure, detail = _describe_exit(code)
        return _WorkerGoneError(failure, detail)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.proc.wait(timeout=5.0)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def stop(self) -> None:
        """Ask the worker to exit (EOF on its input), then make sure it did."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2.0)
        self.kill()


def _kill_all(live: set[_Worker]) -> None:
    for worker in list(live):
        worker.kill()
    live.clear()


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A pool's counters: callers waiting for a worker, workers started in all."""

    waiting: int
    spawned: int


class WorkerPool:
    """A fixed number of worker slots; a dead or overrunning worker is replaced on demand.

    Thread-safe: any number of threads may :meth:`call` at once; each call
    holds one worker exclusively. :meth:`close` (or leaving the ``with``
    block) stops every worker; calls after that fail with ``closed``.
    """

    def __init__(
        self,
        module: str,
        *,
        size: int = 2,
        limits: WorkerLimits | None = None,
        init: dict[str, Any] | None = None,
        hello_check: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        """Create the pool (workers start lazily; see :meth:`warm`).

        Args:
            module: the worker's module, run as ``python -m module``; it must call :func:`serve`.
            size: the number of worker slots (at least 1).
            limits: resource caps (defaults: :class:`WorkerLimits`).
            init: JSON-ready parameters handed to the worker's handler factory.
            hello_check: returns ``""`` if a new worker's hello is acceptable, else why not.

        Raises:
            ValueError: ``size`` is below 1.
        """
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got `{size}`")
        self.module = module
        self.size = size
        self.limits = limits or WorkerLimits()
        self._init = dict(init or {})
        self._hello_check = hello_check
        self._cond = threading.Condition()
        self._idle: deque[_Worker] = deque()
        self._spawnable = size
        self._closed = False
        self._live: set[_Worker] = set()
        self._finalizer = weakref.finalize(self, _kill_all, self._live)
        self._waiting = 0  # callers waiting for a free worker
        self._spawned = 0  # workers started, replacements included

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def stats(self) -> PoolStats:
        """How many callers wait for a worker, and how many workers were started (metrics)."""
        with self._cond:
            return PoolStats(self._waiting, self._spawned)

    def pids(self) -> list[int]:
        """Process ids of the live workers (diagnostics and tests)."""
        with self._cond:
            return sorted(w.pid for w in self._live)

    def warm(self) -> None:
        """Start every idle slot's worker now instead of on first use."""
        started: list[_Worker] = []
        for _ in range(self.size):
            with self._cond:
                if self._closed or self._spawnable == 0:
                    break
                self._spawnable -= 1
            try:
                started.append(self._spawn())
            except _WorkerGoneError:
                with self._cond:
                    self._spawnable += 1
                break
        for worker in started:
            self._release(worker, healthy=True)

    def call(self, request: dict[str, Any], *, wall_seconds: float | None = None) -> CallResult:
        """Send ``request`` to one worker and wait for its reply.

        Args:
            request: a JSON-ready object.
            wall_seconds: this call's deadline (default: the pool's limit).

        Returns:
            The reply, or a failure code and detail; never raises for worker trouble.
        """
        wall = self.limits.wall_seconds if wall_seconds is None else wall_seconds
        try:
            worker = self._acquire(wall + self.limits.start_seconds)
        except _WorkerGoneError as gone:
            return CallResult(failure=gone.failure, detail=gone.detail)
        healthy = False
        try:
            deadline = time.monotonic() + wall
            worker.send(request, deadline)
            reply = worker.receive(deadline)
            failure = reply.pop("_failure", "")
            if failure:
                return CallResult(
                    failure=str(failure), detail=str(reply.get("detail", "")), pid=worker.pid
                )
            worker.calls += 1
            retire = reply.pop("_retire", False) or worker.calls >= self.limits.max_calls
            healthy = not retire
            return CallResult(reply=reply, pid=worker.pid)
        except _WorkerGoneError as gone:
            if gone.failure == "timeout":
                detail = f"no answer within {wall:g} s; the worker was killed"
                return CallResult(failure="timeout", detail=detail, pid=worker.pid)
            return CallResult(failure=gone.failure, detail=gone.detail, pid=worker.pid)
        finally:
            self._release(worker, healthy=healthy)

    def close(self) -> None:
        """Stop every worker; later calls fail with ``closed``. Idempotent."""
        with self._cond:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            self._cond.notify_all()
        for worker in idle:
            worker.stop()
            with self._cond:
                self._live.discard(worker)

    def _acquire(self, wait_seconds: float) -> _Worker:
        deadline = time.monotonic() + wait_seconds
        with self._cond:
            while True:
                if self._closed:
                    raise _WorkerGoneError("closed", "the worker pool is closed")
                if self._idle:
                    return self._idle.popleft()
                if self._spawnable:
                    self._spawnable -= 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _WorkerGoneError(
                        "busy", f"no worker became free within {wait_seconds:g} s"
                    )
                self._waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
        try:
            return self._spawn()
        except _WorkerGoneError:
            with self._cond:
                self._spawnable += 1
                self._cond.notify()
            raise

    def _spawn(self) -> _Worker:
        try:
            worker = _Worker(self.module)
        except OSError as exc:
            raise _WorkerGoneError("start", f"cannot start a worker: {exc}") from None
        with self._cond:
            self._live.add(worker)
            self._spawned += 1
        try:
            deadline = time.monotonic() + self.limits.start_seconds
            worker.send({"limits": asdict(self.limits), "init": self._init}, deadline)
            worker.hello = worker.receive(deadline)
            problem = self._hello_check(worker.hello) if self._hello_check else ""
        except _WorkerGoneError as gone:
            self._discard(worker)
            raise _WorkerGoneError(
                "start", f"a new worker failed to start: {gone.detail}"
            ) from None
        if problem:
            self._discard(worker)
            raise _WorkerGoneError("start", f"a new worker was refused: {problem}")
        return worker

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._cond:
            self._live.discard(worker)

    def _release(self, worker: _Worker, *, healthy: bool) -> None:
        with self._cond:
            if healthy and not self._closed:
                self._idle.append(worker)
                self._cond.notify()
                return
        self._discard(worker)
        with self._cond:
            if not self._closed:
                self._spawnable += 1
            self._cond.notify()

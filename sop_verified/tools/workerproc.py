"""The worker side of :mod:`sop_verified.tools.workerpool`: caps, hello, one reply per request.

A worker module calls :func:`serve` with a factory that builds its request
handler once the caps are in force. Frames are a 4-byte big-endian length and
a JSON object, on private copies of stdin/stdout (the originals are pointed
at ``/dev/null`` so that stray library output cannot corrupt the protocol).
"""

from __future__ import annotations

import os
import resource
import struct
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["FRAME_HEADER", "MAX_FRAME_BYTES", "Handler", "serve"]

MAX_FRAME_BYTES = 8 * 1024 * 1024
FRAME_HEADER = struct.Struct(">I")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _read_frame(fd: int) -> dict[str, Any] | None:
    header = _read_blocking(fd, FRAME_HEADER.size)
    if header is None:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        return None
    body = _read_blocking(fd, size)
    if body is None:
        return None
    value = orjson.loads(body)
    return value if isinstance(value, dict) else None


def _read_blocking(fd: int, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _write_frame(fd: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    data = memoryview(FRAME_HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data) :]


def _arm_cpu(budget: int) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime) + budget + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _apply_limits(limits: dict[str, Any]) -> int:
    memory = int(limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return int(limits["cpu_seconds"])


def serve(make_handler: Callable[[dict[str, Any]], tuple[Handler, dict[str, Any]]]) -> None:
    """Run the worker loop: caps, hello, then one reply per request until EOF.

    Args:
        make_handler: called once with the pool's ``init`` parameters after the
            caps are in force; returns the request handler and the hello object.
    """
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    first = _read_frame(rfd)
    if first is None:
        return
    budget = _apply_limits(first["limits"])
    handler, hello = make_handler(first.get("init", {}))
    _write_frame(wfd, {**hello, "pid": os.getpid()})
    while (request := _read_frame(rfd)) is not None:
        _arm_cpu(budget)
        try:
            reply = handler(request)
        except MemoryError:
            _write_frame(wfd, {"_failure": "memory", "detail": "the worker ran out of memory"})
            return
        except Exception as exc:  # any handler bug retires the worker, reported to the parent
            detail = f"the worker failed: {type(exc).__name__}"
            _write_frame(wfd, {"_failure": "crash", "detail": detail})
            return
        _write_frame(wfd, reply)

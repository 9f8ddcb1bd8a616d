"""An open-loop HTTP/1.1 load generator for ``bench_http.py`` (wrk is closed-loop only).

Request *k* is due at ``start + k / rate`` whatever happened to the ones before
it, and its latency is measured **from when it was due**, not from when it was
sent: a request that waited for a free connection behind a slow server counts
that wait, so a stall shows in the percentiles (no coordinated omission). It
keeps ``--connections`` persistent keep-alive connections, opened before the
clock starts; a due request takes the first idle one.

It runs in its own process (uvloop when installed) and prints one JSON object:
offered and achieved rates, the latency percentiles, the status codes, the
errors and its own CPU time. ``--cert``/``--key``/``--ca`` make it a mutual-TLS
client (wrk cannot present a client certificate).

Run: ``python3 bench/http_openloop.py --url http://127.0.0.1:7600/v1/decide --rate 1000
--seconds 10 --bodies bodies.json``; the bodies file is a JSON list of
``[prefix, suffix]`` pairs, joined around a request counter (a fresh
``request_id`` each time); without ``--bodies`` it sends GETs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["main", "run"]


class _Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status


def _request(method: str, host: str, path: str, body: bytes | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    return (
        head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


async def run(
    url: str,
    rate: float,
    seconds: float,
    *,
    bodies: list[list[str]] | None = None,
    connections: int = 32,
    tls: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """Offer ``rate`` requests a second to ``url`` for ``seconds``; the report.

    Args:
        url: ``http://`` or ``https://`` URL.
        rate: requests a second offered, on a fixed schedule.
        seconds: how long the schedule runs.
        bodies: ``[prefix, suffix]`` pairs for POST bodies (a counter between); None: GET.
        connections: keep-alive connections opened before the schedule starts.
        tls: the client's TLS context for an ``https`` URL.

    Returns:
        The offered and achieved rates, latency percentiles (ms), statuses, errors.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(_Connection(*await asyncio.open_connection(host, port, ssl=tls)))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    total = int(rate * seconds)
    tag = f"ol{int(time.time()) % 100000}-"
    method = "GET" if bodies is None else "POST"

    async def one(k: int, due: float) -> None:
        body = None if bodies is None else bodies[k % len(bodies)]
        payload = None if body is None else f"{body[0]}{tag}{k}{body[1]}".encode()
        conn = await idle.get()
        try:
            request = _request(method, parts.netloc, parts.path, payload)
            statuses[await conn.exchange(request)] += 1
            latencies.append(time.perf_counter() - due)
            idle.put_nowait(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] += 1
            idle.put_nowait(_Connection(*await asyncio.open_connection(host, port, ssl=tls)))

    tasks: set[asyncio.Task[None]] = set()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter() + 0.05
    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(k, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    scheduled_s = time.perf_counter() - start
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    ordered = sorted(latencies)
    return {
        "offered_per_s": rate,
        "scheduled": total,
        "completed": len(latencies),
        "achieved_per_s": round(len(latencies) / wall, 1) if wall else 0.0,
        "schedule_s": round(scheduled_s, 3),
        "wall_s": round(wall, 3),
        "p50_ms": round(_pct(ordered, 0.50) * 1e3, 3),
        "p99_ms": round(_pct(ordered, 0.99) * 1e3, 3),
        "max_ms": round(ordered[-1] * 1e3, 3) if ordered else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "cpu_s": round(cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime, 3),
    }


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.url.startswith("https"):
        return None
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.check_hostname = False  # the server's certificate names the host it was issued for
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def _loop_factory() -> Any:
    try:
        import uvloop  # noqa: PLC0415 - optional: a cheaper loop for the generator
    except ImportError:
        return None
    return uvloop.new_event_loop


def main() -> None:
    """Parse the options, run the schedule, print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests a second offered")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--bodies", type=Path, help="JSON list of [prefix, suffix] pairs (POST)")
    parser.add_argument("--cert", help="client certificate (PEM), for mutual TLS")
    parser.add_argument("--key", help="client key (PEM)")
    parser.add_argument("--ca", help="CA certificate that signed the server's (PEM)")
    args = parser.parse_args()
    bodies = json.loads(args.bodies.read_text()) if args.bodies else None
    schedule = run(
        args.url,
        args.rate,
        args.seconds,
        bodies=bodies,
        connections=args.connections,
        tls=_tls(args),
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        report = runner.run(schedule)
    print(json.dumps(report))


if __name__ == "__main__":
    main()

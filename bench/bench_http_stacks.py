"""Which HTTP stack for ``sop serve`` (ADR 0013): one echo app under each, wrk -c32 -t1.

Each stack serves the same route from ``http_stack_apps.py``: ``POST /echo``
with a 306-byte JSON object (a decision request's shape), parsed and
serialised again. One worker each, started in its own process on a free
loopback port, checked once (the answer must equal the body), then driven by
``wrk -c32 -t1`` for ``--seconds`` (10 by default) with a static body. It
reports req/s, p50, p99, wrk's CPU and the server's (its whole process tree:
granian runs its worker in a child process), and each rate against the first
stack's. The stacks alternate for ``--rounds`` rounds (2) and
each row is the stack's median run. Run:
``python3 bench/bench_http_stacks.py [--seconds 10] [--rounds 2] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
from http_load import wrk
from http_stack_apps import body

__all__ = ["STACKS", "main", "run", "run_stack"]

HERE = Path(__file__).resolve().parent
_TICK = os.sysconf("SC_CLK_TCK")

_UVICORN = [sys.executable, "-m", "uvicorn", "--workers", "1", "--no-access-log"]
_UVICORN += ["--log-level", "warning", "--http", "httptools"]
_GRANIAN = [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1"]
_GRANIAN += ["--no-ws", "--log-level", "warning", "--no-access-log"]

STACKS: list[tuple[str, list[str], str]] = [
    (
        "uvicorn + httptools + uvloop, Starlette, orjson",
        [*_UVICORN, "--loop", "uvloop"],
        "starlette_orjson",
    ),
    (
        "uvicorn + httptools + standard asyncio loop, Starlette, orjson",
        [*_UVICORN, "--loop", "asyncio"],
        "starlette_orjson",
    ),
    ("granian (ASGI), Starlette, orjson", [*_GRANIAN, "--loop", "uvloop"], "starlette_orjson"),
    ("granian (ASGI), Starlette, msgspec", [*_GRANIAN, "--loop", "uvloop"], "starlette_msgspec"),
    (
        "uvicorn + httptools + uvloop, FastAPI, pydantic (strict, extra=forbid)",
        [*_UVICORN, "--loop", "uvloop"],
        "fastapi_pydantic",
    ),
]
"""(name, server command without its address and app, app in ``http_stack_apps``)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and every descendant still running."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / _TICK
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _wait_ready(url: str, payload: bytes, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        url, data=payload, headers={"Content-Type": "application/json"}, method="POST"
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                got = answer.read()
            if orjson.loads(got) != orjson.loads(payload):
                raise RuntimeError(f"the echo answered `{got[:200]!r}`")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no server at `{url}` after {timeout} s") from None
            time.sleep(0.2)


def run_stack(name: str, command: list[str], app: str, seconds: float) -> dict[str, Any]:
    """Serve ``app`` with ``command`` and drive it with wrk; the measured row.

    Args:
        name: the stack's name in the report.
        command: the server's command line without its address and app.
        app: the application's name in ``http_stack_apps``.
        seconds: the wrk run's length.

    Returns:
        req/s, p50, p99, wrk's CPU and the server's.

    Raises:
        RuntimeError: the server did not start or answered wrongly.
    """
    port = _free_port()
    cmd = [*command, "--host", "127.0.0.1", "--port", str(port), f"http_stack_apps:{app}"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}/echo"
    payload = orjson.dumps(body())
    try:
        _wait_ready(url, payload)
        wrk(url, seconds=1, static=payload.decode())  # warm-up, not reported
        cpu0 = _tree_cpu_s(proc.pid)
        row = wrk(url, seconds=seconds, static=payload.decode())
        row["server_cpu_s"] = round(_tree_cpu_s(proc.pid) - cpu0, 3)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    row["stack"] = name
    return row


def run(seconds: float, rounds: int = 2) -> dict[str, Any]:
    """Every stack in turn, ``rounds`` times (alternating); each stack's median-rate run.

    Args:
        seconds: each wrk run's length.
        rounds: how many times each stack is run (the stacks alternate).

    Returns:
        One row per stack (its median run, with every round's rate), and the setup.
    """
    runs: list[list[dict[str, Any]]] = [[] for _ in STACKS]
    for _ in range(rounds):
        for k, (name, cmd, app) in enumerate(STACKS):
            runs[k].append(run_stack(name, cmd, app, seconds))
    rows = []
    for tried in runs:
        ordered = sorted(tried, key=lambda x: x["req_per_s"])
        row = ordered[(len(ordered) - 1) // 2]  # the median (the lower one of two)
        row["rounds_req_per_s"] = [x["req_per_s"] for x in tried]
        rows.append(row)
    base = rows[0]["req_per_s"]
    for row in rows:
        row["vs_first"] = round(row["req_per_s"] / base, 3) if base else None
    packages = ["uvicorn", "granian", "starlette", "fastapi", "pydantic", "orjson", "msgspec"]
    return {
        "rows": rows,
        "setup": {
            "seconds": seconds,
            "rounds": rounds,
            "body_bytes": len(orjson.dumps(body())),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "versions": {p: version(p) for p in [*packages, "httptools", "uvloop"]},
            "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
    }


def render(r: dict[str, Any]) -> str:
    """The table and the notes."""
    lines = [
        "| stack (one worker) | req/s (median) | every round | vs first | p50 ms | p99 ms "
        "| wrk CPU (of a core) "
        "| server CPU (of a core) | server CPU us/req | errors / non-2xx |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["rows"]:
        wall = x["wall_s"]
        lines.append(
            f"| {x['stack']} | {x['req_per_s']:,.0f} "
            f"| {', '.join(f'{v:,.0f}' for v in x['rounds_req_per_s'])} "
            f"| {x['vs_first']:.2f} | {x['p50_ms']} "
            f"| {x['p99_ms']} | {x['generator_cpu_s'] / wall:.0%} | {x['server_cpu_s'] / wall:.0%} "
            f"| {x['server_cpu_s'] / x['requests'] * 1e6:.1f} | {x['errors']} / {x['non2xx']} |"
        )
    s = r["setup"]
    versions = ", ".join(f"{k} {v}" for k, v in s["versions"].items())
    lines += [
        "",
        f"wrk -c32 -t1, {s['seconds']:g} s a run, {s['rounds']} rounds, "
        f"a {s['body_bytes']}-byte JSON body; Python "
        f"{s['python']}, {s['cpus']} CPUs, load average {s['load_average']}; {versions}; {s['at']}",
    ]
    return "\n".join(lines)


def main() -> None:
    """Parse the options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each stack, alternating")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = run(args.seconds, args.rounds)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()

"""The load generators of ``bench_http.py``: wrk (closed loop) and ``http_openloop.py`` (open loop).

:func:`wrk` writes a Lua script into a temporary directory, runs
``wrk -c<connections> -t<threads> -d<seconds>s`` against one URL and reads the
summary the script's ``done`` callback prints as one JSON line: requests,
duration, the latency percentiles wrk recorded, socket errors and non-2xx
answers. A POST target cycles over ``[prefix, suffix]`` body templates with a
counter between them (every request has its own ``request_id``). The load
generator's CPU time comes from ``getrusage(RUSAGE_CHILDREN)`` around the run.

:func:`open_loop` runs ``http_openloop.py`` in its own process the same way.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["WRK", "open_loop", "wrk", "wrk_available"]

WRK = shutil.which("wrk") or "/usr/bin/wrk"
_OPENLOOP = Path(__file__).resolve().parent / "http_openloop.py"

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"connect":%d,"read":%d,'
    .. '"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50.0), latency:percentile(99.0), latency.max, latency.mean))
end
"""


def _lua_string(text: str) -> str:
    level = "=" * 4
    if f"]{level}]" in text:
        raise ValueError("a body holds the Lua long-bracket terminator")
    return f"[{level}[{text}]{level}]"


def lua_script(path: str, bodies: list[list[str]] | None, static: str | None = None) -> str:
    """The Lua script for one target: POSTs cycling over ``bodies``, one static POST, or GETs."""
    if static is not None:
        return f"""
wrk.method = "POST"
wrk.body = {_lua_string(static)}
wrk.headers["Content-Type"] = "application/json"
{_DONE}"""
    if bodies is None:
        return _DONE
    rows = ",\n".join(f"  {{{_lua_string(p)}, {_lua_string(s)}}}" for p, s in bodies)
    return f"""
local bodies = {{
{rows}
}}
local headers = {{["Content-Type"] = "application/json"}}
local n = 0
request = function()
  n = n + 1
  local b = bodies[(n % #bodies) + 1]
  return wrk.format("POST", {_lua_string(path)}, headers, b[1] .. "wrk-" .. n .. b[2])
end
{_DONE}"""


def persist_script(path: str, headers: list[str], size: int) -> str:
    """POSTs of ``size`` bytes, each body unique (a counter), cycling over ``SOP-Request`` headers.

    The request in the header binds no digest: the server binds the body's (as
    ``SOP.persist`` does), so every request persists new contents under one of
    the headers' names.
    """
    rows = ",\n".join(f"  {_lua_string(h)}" for h in headers)
    return f"""
local requests = {{
{rows}
}}
local pad = string.rep("x", {size})
local n = 0
request = function()
  n = n + 1
  local body = string.sub(n .. "-" .. pad, 1, {size})
  local headers = {{["Content-Type"] = "application/octet-stream",
                   ["SOP-Request"] = requests[(n % #requests) + 1]}}
  return wrk.format("POST", {_lua_string(path)}, headers, body)
end
{_DONE}"""


def wrk_available() -> bool:
    """Whether wrk can be run here."""
    return Path(WRK).is_file()


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wrk(
    url: str,
    *,
    seconds: float,
    bodies: list[list[str]] | None = None,
    static: str | None = None,
    script: str | None = None,
    connections: int = 32,
    threads: int = 1,
) -> dict[str, Any]:
    """Run wrk, closed loop, against ``url``; its summary and its CPU time.

    Args:
        url: the target (scheme, host, port and path).
        seconds: the run's length (at least 1).
        bodies: ``[prefix, suffix]`` body templates for POSTs; None for GETs.
        static: one body sent as it is by every POST (instead of ``bodies``).
        script: a whole Lua script (instead of ``bodies`` and ``static``).
        connections: concurrent connections, each one request at a time.
        threads: wrk's threads.

    Returns:
        req/s, p50/p99/max in ms, errors, non-2xx answers, the generator's CPU.

    Raises:
        RuntimeError: wrk failed or printed no summary.
    """
    path = "/" + url.split("/", 3)[3]
    with tempfile.TemporaryDirectory(prefix="sop-wrk-") as tmp:
        lua = Path(tmp) / "target.lua"
        lua.write_text(script if script is not None else lua_script(path, bodies, static))
        cmd = [WRK, f"-c{connections}", f"-t{threads}", f"-d{max(1, round(seconds))}s"]
        cmd += ["--timeout", "10s", "-s", str(lua), url]
        cpu0 = _children_cpu()
        done = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=seconds + 60
        )
        cpu = _children_cpu() - cpu0
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-800:]} {done.stderr}")
    s = json.loads(line.removeprefix("WRKJSON "))
    wall = s["duration_us"] / 1e6
    return {
        "tool": f"wrk -c{connections} -t{threads}",
        "requests": s["requests"],
        "req_per_s": round(s["requests"] / wall, 1),
        "p50_ms": round(s["p50_us"] / 1e3, 3),
        "p99_ms": round(s["p99_us"] / 1e3, 3),
        "max_ms": round(s["max_us"] / 1e3, 3),
        "non2xx": s["non2xx"],
        "errors": s["connect"] + s["read"] + s["write"] + s["timeout"],
        "wall_s": round(wall, 3),
        "generator_cpu_s": round(cpu, 3),
    }


def open_loop(
    url: str,
    *,
    rate: float,
    seconds: float,
    bodies: list[list[str]] | None = None,
    connections: int = 32,
    tls_files: tuple[Path, Path, Path] | None = None,
) -> dict[str, Any]:
    """Run ``http_openloop.py`` in its own process; its report and its CPU time.

    Args:
        url: the target.
        rate: requests a second offered on a fixed schedule.
        seconds: the schedule's length.
        bodies: POST body templates; None for GETs.
        connections: keep-alive connections.
        tls_files: client certificate, key and CA certificate, for mutual TLS.

    Returns:
        The generator's report with ``req_per_s`` and ``generator_cpu_s`` added.

    Raises:
        RuntimeError: the generator failed.
    """
    with tempfile.TemporaryDirectory(prefix="sop-openloop-") as tmp:
        cmd = [sys.executable, str(_OPENLOOP), "--url", url, "--rate", str(rate)]
        cmd += ["--seconds", str(seconds), "--connections", str(connections)]
        if bodies is not None:
            (Path(tmp) / "bodies.json").write_text(json.dumps(bodies))
            cmd += ["--bodies", str(Path(tmp) / "bodies.json")]
        if tls_files is not None:
            cert, key, ca = tls_files
            cmd += ["--cert", str(cert), "--key", str(key), "--ca", str(ca)]
        cpu0 = _children_cpu()
        done = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=seconds + 120
        )
        cpu = _children_cpu() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"the open-loop generator failed: {done.stderr[-1500:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    report["tool"] = f"http_openloop.py {rate:,.0f}/s offered, {connections} connections"
    report["req_per_s"] = report["achieved_per_s"]
    report["non2xx"] = sum(v for k, v in report["statuses"].items() if not k.startswith("2"))
    report["generator_cpu_s"] = round(cpu, 3)
    return report

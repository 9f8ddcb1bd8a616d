"""``sop serve`` over HTTP against its own echo route (issue 14): a benchmark, not a test.

One run starts ``sop serve`` in a child process on a fresh data directory (the
demo's sound policies, a DRAC capability; ``--unsafe-no-tls --bench-echo``
on loopback) and drives it from other processes:

- **closed loop**, ``wrk -c32 -t1`` (Lua scripts generated into a temporary
  directory): the bridge plane's echo route ``POST /bench/echo`` (the stack's
  ceiling: strict JSON parse and orjson answer, no SOP), ``POST /v1/decide``
  (half ALLOW, half DENY, four reasons each way; every decision durably logged
  before its answer; every request with its own ``request_id``), a 4 KiB
  persist (when the server has an HTTP persist endpoint), and a tile GET on the
  read plane (``/log/tile/0/000``, or ``/health/live`` labelled as such when
  this build has no tiles);
- **open loop** at ``--rate`` requests a second offered (``http_openloop.py``:
  a fixed schedule, latency from the scheduled time, no coordinated omission);
- **mutual TLS** on the bridge plane (open loop, client certificate from
  ``sop_verified.server.certs``) when this build can issue certificates.

For each run it reports req/s, p50 and p99, the load generator's CPU and the
server's (``/proc/<pid>/stat``), checks the answers (no socket error, no
non-2xx; ``/v1/decide`` reached both effects and the log grew by at least one
entry per decision, read from the read plane's ``/metrics``) and prints
PASS/MISS for the targets of DESIGN.md section 9. It exits 2 when a check
fails. Run: ``python3 bench/bench_http.py [--seconds 10] [--rate 1000] [--json]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from http_load import open_loop, persist_script, wrk
from http_report import render, targets
from http_server import ServeProcess, get, post, prepare, scrape

from sop_verified.errors import SOPError

__all__ = ["ALLOW", "DENY", "bodies", "main", "run"]

ID = "@@ID@@"
ALLOW, DENY = "ALLOW", "DENY"


def _cases(token: str) -> list[tuple[str, dict[str, Any]]]:
    """Requests DRAC sends, with the effect each must get (demo policies; nexus/demo.py)."""

    def req(action: str, resource: str, **context: Any) -> dict[str, Any]:
        return {
            "request_id": ID,
            "principal": "drac",
            "action": action,
            "resource": resource,
            "capability": token,
            "context": {"session": "bench", **context},
        }

    obj = "artifacts/drac/bench/obj{}.bin".format
    return [
        (ALLOW, req("artifact.persist", obj(0), size_bytes=4096)),
        (DENY, req("artifact.persist", obj(0), size_bytes=4096, classification="secret")),
        (ALLOW, req("artifact.read", obj(1))),
        (DENY, req("artifact.persist", obj(1), size_bytes=50_000_000)),  # no permit
        (ALLOW, req("artifact.persist", obj(2), size_bytes=4096)),
        (DENY, req("policy.activate", "policies/mine")),  # admin through the bridge
        (ALLOW, req("artifact.read", obj(3))),
        (DENY, req("artifact.persist", "artifacts/emp/x.bin", size_bytes=10)),  # not its scope
    ]


def bodies(token: str) -> list[tuple[str, list[str]]]:
    """The ``/v1/decide`` bodies as ``(effect, [prefix, suffix])``: a counter goes between."""
    out = []
    for effect, request in _cases(token):
        prefix, suffix = json.dumps(request, separators=(",", ":")).split(f'"{ID}"')
        out.append((effect, [prefix + '"bench-', '"' + suffix]))
    return out


def _check_cases(bridge: str, cases: list[tuple[str, list[str]]]) -> list[str]:
    """Decide each body once (proving each path's obligation); the effects that differ."""
    wrong = []
    for k, (effect, (prefix, suffix)) in enumerate(cases):
        status, answer = post(bridge + "/v1/decide", f"{prefix}warm-{k}{suffix}".encode())
        got = json.loads(answer).get("effect") if status == 200 else f"HTTP {status}"
        if got != effect:
            wrong.append(f"case {k}: expected `{effect}`, got `{got}` ({answer[:300]!r})")
    status, answer = post(bridge + "/bench/echo", b'{"a":[1,2]}')
    if (status, answer) != (200, b'{"a":[1,2]}'):
        wrong.append(f"echo route: {status} {answer[:200]!r}")
    return wrong


def _measured(server: ServeProcess, load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    before = server.cpu_s()
    result = load()
    cpu = server.cpu_s() - before
    result["server_cpu_s"] = round(cpu, 3)
    result["server_cpu_us_per_req"] = (
        round(cpu / result["requests"] * 1e6, 1) if result.get("requests") else None
    )
    return result


def _tile_path(read: str) -> tuple[str, str]:
    status, _ = get(read + "/log/tile/0/000")
    if status == 200:
        return "/log/tile/0/000", "tile GET /log/tile/0/000"
    return "/health/live", "stand-in GET /health/live (no tiles in this build)"


def _persist_path(read: str) -> str | None:
    status, body = get(read + "/openapi.json")
    paths = json.loads(body).get("paths", {}) if status == 200 else {}
    return next((p for p in paths if "persist" in p), None)


def _tls_files(data_dir: Path, out: Path) -> tuple[Path, Path, Path] | str:
    """A client certificate for DRAC, or why the TLS bridge cannot be measured here."""
    try:
        from sop_verified.server import certs  # noqa: PLC0415
    except ImportError:
        return "not measured: this build has no sop_verified.server.certs"
    if not hasattr(certs, "issue_client"):
        return "not measured: this build cannot issue client certificates (sop certs issue)"
    with contextlib.suppress(SOPError):  # SOP.init makes it (since issue 14's certs)
        certs.create_authority(data_dir)
    issued = certs.issue_client(data_dir, "drac", out)
    return issued.cert_path, issued.key_path, issued.ca_path


def run(seconds: float, open_seconds: float, rate: float, *, tls: bool = True) -> dict[str, Any]:
    """One whole run: prepare, serve, drive every target, stop; the results.

    Args:
        seconds: the length of each closed-loop run.
        open_seconds: the length of each open-loop run.
        rate: requests a second offered in the open-loop runs.
        tls: also measure the mutual-TLS bridge (when certificates can be issued).

    Returns:
        The runs, the checks, the target verdicts and the setup.

    Raises:
        RuntimeError: the server did not start, or a request got the wrong effect.
    """
    with tempfile.TemporaryDirectory(prefix="sop-bench-http-") as tmp:
        data_dir, token = prepare(Path(tmp))
        cases = bodies(token)
        posts = [b for _, b in cases]
        server = ServeProcess(data_dir)
        runs: dict[str, Any] = {}
        try:
            wrong = _check_cases(server.bridge, cases)
            if wrong:
                raise RuntimeError("; ".join(wrong))
            echo, decide = server.bridge + "/bench/echo", server.bridge + "/v1/decide"
            wrk(decide, seconds=1, bodies=posts)  # warm-up, not reported
            wrk(echo, seconds=1, bodies=posts)
            runs["echo"] = _measured(server, lambda: wrk(echo, seconds=seconds, bodies=posts))
            runs["decide"] = _decide_run(server, lambda: wrk(decide, seconds=seconds, bodies=posts))
            persist = _persist_path(server.read)
            runs["persist"] = {"unavailable": "no persist endpoint in this build"}
            if persist is not None:
                runs["persist"] = _persist_run(server, server.bridge + persist, token, seconds)
            tile, tile_label = _tile_path(server.read)
            tile_url = server.read + tile
            runs["tile"] = _measured(server, lambda: wrk(tile_url, seconds=seconds))
            runs["tile"]["label"] = tile_label
            for name, url, b in (("echo", echo, posts), ("decide", decide, posts)):
                load = _open(url, rate, open_seconds, b)
                runs[f"open_{name}"] = (
                    _decide_run(server, load) if name == "decide" else _measured(server, load)
                )
            runs["open_tile"] = _measured(server, _open(tile_url, rate, open_seconds, None))
            runs["open_tile"]["label"] = tile_label
        finally:
            exit_status = server.stop()
        runs["tls"] = _tls_run(data_dir, Path(tmp) / "client", rate, open_seconds, posts, tls)
    return _result(runs, exit_status, seconds, open_seconds, rate)


PERSIST_BYTES = 4096


def _persist_headers(token: str) -> list[str]:
    """``SOP-Request`` headers: 8 names under DRAC's content-addressed scope, no digest bound."""
    out = []
    for k in range(8):
        request = {
            "request_id": f"bench-persist-{k}",
            "principal": "drac",
            "action": "artifact.persist",
            "resource": f"artifacts/drac/bench/persist{k}.bin",
            "capability": token,
            "context": {"session": "bench"},
        }
        raw = json.dumps(request, separators=(",", ":")).encode()
        out.append(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())
    return out


def _persist_run(server: ServeProcess, url: str, token: str, seconds: float) -> dict[str, Any]:
    """4 KiB persists, each new contents, each decided, logged and written (closed loop)."""
    headers = _persist_headers(token)
    status, answer = post(
        url,
        b"warm" * (PERSIST_BYTES // 4),
        {"SOP-Request": headers[0], "Content-Type": "application/octet-stream"},
    )
    write = json.loads(answer).get("write", {}) if status == 200 else {}
    if write.get("outcome") != "written":
        return {"unavailable": f"the warm-up persist was not written: {status} {answer[:300]!r}"}
    script = persist_script("/" + url.split("/", 3)[3], headers, PERSIST_BYTES)
    return _decide_run(server, lambda: wrk(url, seconds=seconds, script=script))


def _open(
    url: str,
    rate: float,
    seconds: float,
    b: list[list[str]] | None,
    tls_files: tuple[Path, Path, Path] | None = None,
) -> Callable[[], dict[str, Any]]:
    def load() -> dict[str, Any]:
        result = open_loop(url, rate=rate, seconds=seconds, bodies=b, tls_files=tls_files)
        result["requests"] = result["completed"]
        return result

    return load


def _decide_run(server: ServeProcess, load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    before = scrape(server.read)
    result = _measured(server, load)
    after = scrape(server.read)
    result["allow"] = int(after["ALLOW"] - before["ALLOW"])
    result["deny"] = int(after["DENY"] - before["DENY"])
    result["log_entries_added"] = int(after["log_size"] - before["log_size"])
    batches = after.get("batch_count", 0.0) - before.get("batch_count", 0.0)
    requests = after.get("batch_sum", 0.0) - before.get("batch_sum", 0.0)
    result["mean_batch"] = round(requests / batches, 1) if batches else None
    return result


def _tls_run(
    data_dir: Path, out: Path, rate: float, seconds: float, posts: list[list[str]], tls: bool
) -> dict[str, Any]:
    files = _tls_files(data_dir, out) if tls else "not measured: --no-tls"
    if isinstance(files, str):
        return {"unavailable": files}
    server = ServeProcess(data_dir, tls=True, echo=False)
    try:
        load = _open(server.bridge + "/v1/decide", rate, seconds, posts, files)
        result = _decide_run(server, load)
    finally:
        status = server.stop()
    result["server_exit_status"] = status
    return result


def _result(
    runs: dict[str, Any], exit_status: int, seconds: float, open_seconds: float, rate: float
) -> dict[str, Any]:
    import starlette  # noqa: PLC0415
    import uvicorn  # noqa: PLC0415

    result: dict[str, Any] = {
        "runs": runs,
        "server_exit_status": exit_status,
        "setup": {
            "seconds": seconds,
            "open_seconds": open_seconds,
            "rate": rate,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "uvicorn": uvicorn.__version__,
            "starlette": starlette.__version__,
            "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
    }
    result["targets"], result["problems"] = targets(runs, exit_status)
    return result


def main() -> None:
    """Parse the options, run, print; exit 2 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each closed-loop run")
    parser.add_argument("--open-seconds", type=float, default=10.0, help="each open-loop run")
    parser.add_argument("--rate", type=float, default=1000.0, help="open loop: req/s offered")
    parser.add_argument("--no-tls", action="store_true", help="skip the mutual-TLS run")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = run(args.seconds, args.open_seconds, args.rate, tls=not args.no_tls)
    print(json.dumps(result, indent=2) if args.json else render(result))
    if result["problems"]:
        sys.exit(2)


if __name__ == "__main__":
    main()

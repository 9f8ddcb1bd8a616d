"""`sop serve` starting and stopping: SIGTERM under load, the lock, --unsafe-no-tls."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import Prepared, Served, prepare, request

from sop_verified import SOP
from sop_verified.server.certs import client_ssl_context

# Real `sop serve` processes started, signalled and stopped: about 16 s of the README's test
# command; `.ci/run` runs them in its slow step.
pytestmark = pytest.mark.slow


def _serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`sop serve ARGS` as a user types it, for the runs that must refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "sop_verified.cli", "serve", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _load(server: Served, prepared: Prepared, stop: threading.Event, got: list[Any]) -> None:
    cert, key, ca = prepared.client()
    n = 0
    with httpx.Client(verify=client_ssl_context(cert, key, ca), timeout=30) as c:
        while not stop.is_set():
            n += 1
            body = request(prepared.token, n, allow=n % 2 == 0)
            body["request_id"] = f"{threading.get_ident()}-{n}"
            try:
                answer = c.post(f"{server.bridge}/v1/decide", json=body)
            except httpx.HTTPError:
                return  # the server stopped listening
            if answer.status_code == 200:
                got.append(answer.json())
            elif answer.status_code != 503:
                got.append({"unexpected": answer.status_code, "body": answer.text})


def test_sigterm_under_load_finishes_every_answer_and_exits_zero(tmp_path: Path) -> None:
    prepared = prepare(tmp_path)
    server = Served(prepared.data_dir, "--no-admin-socket")
    stop, got = threading.Event(), []
    clients = [threading.Thread(target=_load, args=(server, prepared, stop, got)) for _ in range(8)]
    for t in clients:
        t.start()
    while len(got) < 200:
        threading.Event().wait(0.05)
    assert server.stop() == 0, server.stderr()
    stop.set()
    for t in clients:
        t.join(60)
    assert not [g for g in got if "unexpected" in g]
    with SOP.boot(prepared.data_dir) as sop:
        log = sop.log
        assert log.checkpoint is not None and log.checkpoint.size <= log.size
        for answer in got:  # every acknowledged decision is in the log, as acknowledged
            payload = log.entry(answer["log_index"])
            leaf = hashlib.sha256(b"\x00" + payload).hexdigest()
            assert leaf == answer["receipt"]["leaf_hash"]


def test_a_second_server_on_the_same_directory_is_refused(
    served: Served, prepared: Prepared
) -> None:
    second = _serve_cli(
        "--data-dir",
        str(prepared.data_dir),
        "--bridge",
        "127.0.0.1:0",
        "--read",
        "127.0.0.1:0",
        "--no-admin-socket",
    )
    assert second.returncode == 2
    assert "already holds" in second.stderr


def test_unsafe_no_tls_warns_at_start_and_in_ready(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, principals=())
    server = Served(prepared.data_dir, "--no-admin-socket", "--unsafe-no-tls")
    try:
        assert server.bridge.startswith("http://")
        assert any("UNSAFE" in w for w in server.facts["warnings"])
        ready = httpx.get(f"{server.read}/health/ready").json()
        assert any("UNSAFE" in w for w in ready["warnings"])
        got = httpx.post(f"{server.bridge}/v1/decide", json=request(prepared.token, 1))
        assert got.json()["effect"] == "ALLOW"
    finally:
        assert server.stop() == 0
    assert "WARNING" in server.stderr()


def test_unsafe_no_tls_is_refused_off_loopback(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, principals=())
    refused = _serve_cli(
        "--data-dir",
        str(prepared.data_dir),
        "--bridge",
        "0.0.0.0:0",
        "--unsafe-no-tls",
        "--no-admin-socket",
    )
    assert refused.returncode == 2 and "loopback only" in refused.stderr


@pytest.mark.parametrize("flag", ["--bridge", "--read"])
def test_a_malformed_address_is_a_usage_error(tmp_path: Path, flag: str) -> None:
    refused = _serve_cli(
        "--data-dir",
        str(tmp_path),
        flag,
        "localhost",
    )
    assert refused.returncode == 2 and "HOST:PORT" in refused.stderr

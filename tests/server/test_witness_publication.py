"""SOP publishes through witnesses, real processes: `sop serve` and two `sop witness serve`.

The data directory names both witnesses with ``min = 2``. The read plane then serves
only checkpoints both cosigned (tiles included), receipts carry them and verify with
``sop receipt verify --witness A --witness B --min 2``; with one witness down the
published checkpoint stays where it was while decisions go on, and moves again once
the witness is back on its port; a second data directory with the same keys and
another history (a fork) is refused by the witnesses and raises its integrity alarm.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from served import Prepared, Served, prepare, request
from served_witness import ServedWitness
from tiles_client import TilesClient, verify_log
from typer.testing import CliRunner

from sop_verified import SOP
from sop_verified.cli import app
from sop_verified.client import Client
from sop_verified.core.request import Permission
from sop_verified.nexus.state_ops import accept_config
from sop_verified.tools.checkpoint import Checkpoint, open_checkpoint
from sop_verified.tools.cosignature import verify_cosignatures
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.witness_config import init_witness_dir

runner = CliRunner()


@dataclass
class World:
    prepared: Prepared
    server: Served
    witnesses: list[ServedWitness]
    fork_copy: Path  # the data directory as it was before any witness was configured
    log_vkey: str

    @property
    def read(self) -> str:
        return self.server.read if "://" in self.server.read else f"http://{self.server.read}"

    def client(self) -> Client:
        cert, key, ca = self.prepared.client()
        return Client(self.server.bridge, cert=cert, key=key, ca=ca, read_url=self.read)


def _table(witnesses: list[ServedWitness], minimum: int) -> str:
    lines = "".join(f'  {{ url = "{w.url}", vkey = "{w.vkey}" }},\n' for w in witnesses)
    return f"\n[witnesses]\nmin = {minimum}\nmax_backoff_seconds = 1\nwitness = [\n{lines}]\n"


def _configure(data_dir: Path, witnesses: list[ServedWitness], minimum: int) -> None:
    with (data_dir / "sop.toml").open("a", encoding="utf-8") as fh:
        fh.write(_table(witnesses, minimum))
    accept_config(data_dir)  # sop.toml is sealed once the log has entries (`sop config accept`)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("published")
    prepared = prepare(base)
    fork_copy = base / "fork"
    shutil.copytree(prepared.data_dir, fork_copy)  # same keys, same history so far
    log_vkey = (prepared.data_dir / "keys" / "checkpoint.vkey").read_text().strip()
    witnesses = []
    for i in (1, 2):
        init_witness_dir(base / f"w{i}", f"witness.example/w{i}", [(log_vkey, None)])
        witnesses.append(ServedWitness(base / f"w{i}"))
    _configure(prepared.data_dir, witnesses, 2)
    server = Served(prepared.data_dir, "--no-admin-socket")
    yield World(prepared, server, witnesses, fork_copy, log_vkey)
    assert server.stop() == 0, server.stderr()
    for w in witnesses:
        assert w.stop() == 0, w.stderr()


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _served(world: World) -> Checkpoint:
    note = httpx.get(world.read + "/log/checkpoint", timeout=10).text
    return open_checkpoint(note, [Verifier.from_string(world.log_vkey)], origin="sop.local/log")


def _decide(world: World, first: int, count: int) -> list[int]:
    indexes = []
    with world.client() as sop:
        for n in range(first, first + count):
            decision = sop.submit(request(world.prepared.token, n))
            assert decision.effect is Permission.ALLOW, decision
            assert decision.log_index is not None
            indexes.append(decision.log_index)
    return indexes


def _verify(
    world: World, bundle: str, tmp_path: Path, *extra: str
) -> tuple[int, dict[str, object]]:
    path = tmp_path / "receipt.tlog-proof"
    path.write_text(bundle)
    keys = [a for w in world.witnesses for a in ("--witness", w.vkey)]
    args = ["receipt", "verify", str(path), "--vkey", world.log_vkey, *keys, *extra, "--json"]
    result = runner.invoke(app, args)
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}


def test_the_read_plane_serves_checkpoints_both_witnesses_cosigned(
    world: World, tmp_path: Path
) -> None:
    indexes = _decide(world, 0, 3)
    _until(lambda: _served(world).size > indexes[-1])
    note = httpx.get(world.read + "/log/checkpoint", timeout=10).text
    cosigned = verify_cosignatures(note, [w.verifier for w in world.witnesses], minimum=2)
    assert sorted(c.vkey for c in cosigned) == sorted(w.vkey for w in world.witnesses)
    with httpx.Client(base_url=world.read, timeout=30) as http:  # the tiles of that very tree
        served = verify_log(TilesClient(http), world.log_vkey)
    assert served.size >= indexes[-1] + 1
    for index in indexes:
        bundle = httpx.get(f"{world.read}/v1/receipts/{index}", timeout=10)
        assert bundle.status_code == 200, bundle.text
        code, out = _verify(world, bundle.text, tmp_path, "--min", "2")
        assert code == 0, out
        assert len(out["cosignatures"]) == 2  # type: ignore[arg-type]
    prove = runner.invoke(  # the auditor's `sop log prove` takes the published checkpoint too
        app, ["log", "prove", str(indexes[0]), "--data-dir", str(world.prepared.data_dir)]
    )
    assert prove.exit_code == 0, prove.output
    code, out = _verify(world, prove.stdout, tmp_path, "--min", "2")
    assert code == 0, out


def test_with_one_witness_down_nothing_newer_is_published_and_decisions_go_on(
    world: World, tmp_path: Path
) -> None:
    _decide(world, 100, 1)
    _until(lambda: _served(world).size == _log_size(world))
    before = _served(world)
    down = world.witnesses[1]
    down.kill()
    indexes = _decide(world, 101, 3)  # decisions never wait for a witness
    _until(lambda: _unreachable(world) >= 2)  # the publisher tried, backed off, tried again
    assert _served(world) == before  # never a checkpoint only one witness cosigned
    missing = httpx.get(f"{world.read}/v1/receipts/{indexes[-1]}", timeout=10)
    assert missing.status_code == 503, missing.text
    assert missing.json()["code"] == "not_witnessed"
    assert missing.headers["retry-after"] == "1"
    assert httpx.get(world.read + "/health/ready", timeout=10).status_code == 200  # no alarm
    metrics = httpx.get(world.read + "/metrics", timeout=10).text
    assert f"sop_witnessed_size {float(before.size)}" in metrics
    world.witnesses[1] = ServedWitness(down.directory, listen=down.listen)  # back, same port
    _until(lambda: _served(world).size > indexes[-1])
    bundle = httpx.get(f"{world.read}/v1/receipts/{indexes[-1]}", timeout=10)
    code, out = _verify(world, bundle.text, tmp_path, "--min", "2")
    assert code == 0, out


def _unreachable(world: World) -> int:
    """``sop_witness_submissions_total`` of the second witness, outcome ``unreachable``."""
    metrics = httpx.get(world.read + "/metrics", timeout=10).text
    series = 'sop_witness_submissions_total{outcome="unreachable",witness="witness.example/w2"} '
    line = next((x for x in metrics.splitlines() if x.startswith(series)), None)
    return 0 if line is None else int(float(line.split()[-1]))


def _log_size(world: World) -> int:
    metrics = httpx.get(world.read + "/metrics", timeout=10).text
    line = next(x for x in metrics.splitlines() if x.startswith("sop_log_size "))
    return int(float(line.split()[1]))


def test_a_fork_with_the_same_keys_is_refused_and_raises_its_alarm(world: World) -> None:
    _decide(world, 200, 1)
    _until(lambda: _served(world).size == _log_size(world))
    held = _served(world).size  # what both witnesses cosigned of the real history
    fork = world.fork_copy
    with SOP.boot(fork) as sop:  # another history under the same keys, longer than `held`
        while sop.log.size <= held + 2:
            ask = {"principal": "drac", "action": "artifact.read", "resource": "artifacts/drac/f"}
            sop.submit({**ask, "request_id": f"f-{sop.log.size}"})
    _configure(fork, world.witnesses, 1)
    forked = Served(fork, "--no-admin-socket")
    try:
        read = forked.read if "://" in forked.read else f"http://{forked.read}"

        def alarmed() -> bool:
            return httpx.get(read + "/health/ready", timeout=10).status_code == 503

        _until(alarmed)
        ready = httpx.get(read + "/health/ready", timeout=10).json()
        assert ready["state"] == "DEGRADED"
        assert "witness `witness.example/w" in ready["detail"], ready
        assert "bad_proof" in ready["detail"], ready
        assert httpx.get(read + "/log/checkpoint", timeout=10).status_code == 404  # nothing
    finally:
        assert forked.stop() == 0, forked.stderr()
    for w in world.witnesses:  # neither witness cosigned the fork: each kept what it had
        shown = runner.invoke(app, ["witness", "show", "--dir", str(w.directory), "--json"])
        facts = json.loads(shown.stdout)
        assert facts["logs"][0]["cosigned_size"] >= held
        assert facts["evidence"] >= 1  # the refused checkpoint, kept as evidence
    assert httpx.get(world.read + "/health/ready", timeout=10).status_code == 200

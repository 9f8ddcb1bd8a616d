"""The crash test of issue 14: kill -9 `sop serve` under load, restart it, lose nothing.

The harness is :mod:`serve_crash` (run it by hand with ``--rounds``, ``--clients``,
``--seed``). Here: 20 kills at seeded random moments under 16 concurrent mutual-TLS
clients, deciding and (a third of the requests) persisting bytes; the seed is printed,
and ``SOP_CRASH_SEED`` replays it (``SOP_CRASH_ROUNDS`` changes the number of kills).
The counts print with ``-s``.

The fast tests check the harness's effect checks (:mod:`crash_effects`) on logs made
up for the purpose: each kind of broken log is found.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from crash_clients import Ack, Persisted
from crash_effects import LogRows, check_effects
from serve_crash import VERIFY_EVERY, format_report, run_crash

ROUNDS = int(os.environ.get("SOP_CRASH_ROUNDS", "20"))
CLIENTS = 16


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rounds", "persist_bytes"),
    [
        (ROUNDS, None),  # small persists: decision, effect and bytes in one commit
        # large ones too: written after their ALLOW is logged, so a kill can cut a write
        # short; boot repair aborts it and a retry is told so (a DENY naming the ALLOW)
        (max(1, ROUNDS // 2), (200, 200_000)),
    ],
    ids=["small-persists", "large-persists"],
)
def test_kill_9_under_load_loses_no_acknowledged_write_and_no_effect_lacks_its_allow(
    tmp_path: Path, rounds: int, persist_bytes: tuple[int, int] | None
) -> None:
    seed = int(os.environ.get("SOP_CRASH_SEED") or secrets.randbits(32))
    print(f"\nserve crash seed {seed} (replay with SOP_CRASH_SEED={seed})")
    sizes = {} if persist_bytes is None else {"persist_bytes": persist_bytes}
    report = run_crash(tmp_path, rounds=rounds, clients=CLIENTS, seed=seed, progress=print, **sizes)
    text = format_report(report)
    print(text)
    assert not report.failures, text
    assert report.rounds == rounds
    assert report.allowed > 0 and report.denied > 0, text
    # every key: one entry; a write refused after its logged ALLOW is answered as a DENY
    assert report.acknowledged + report.persists_refused == report.sent == report.entries, text
    if persist_bytes is None:
        assert report.persists_refused == 0, text  # small writes commit with their decision
    assert report.retried > 0, f"no kill caught a request in flight: {text}"
    assert report.resent > 0 and report.replayed >= report.resent, text
    assert report.receipts_verified >= report.acknowledged, text
    checks = rounds // VERIFY_EVERY + 1
    assert report.log_verifies == report.state_checks == checks, text
    assert report.effect_checks == rounds + 1, text  # after every kill, and at the end
    # the persists: every one answered, each ALLOW with exactly one written effect (a key:
    # one effect), the effects' receipts verified, a sample read back through a decision
    assert report.persists_acknowledged + report.persists_refused == report.persists_sent, text
    assert report.persists_sent > 0, text
    assert 0 < report.persists_allowed < report.persists_acknowledged, text  # DENY ones too
    assert report.effects_written == report.effect_keys == report.persists_allowed, text
    assert report.writes_verified >= report.persists_written > 0, text
    assert report.persists_retried > 0, f"no kill caught a persist in flight: {text}"
    assert report.read_back > 0, text


# ---- the effect checks themselves, on logs made up for the purpose ----------------------------
_DATA = b"persisted bytes"
_DIGEST = "sha256:" + hashlib.sha256(_DATA).hexdigest()


def _decision(key: str, effect: str = "ALLOW", digest: str = _DIGEST) -> dict[str, Any]:
    request = {
        "action": "artifact.persist",
        "resource": f"artifacts/drac/{key}.bin",
        "content_digest": digest,
    }
    transport = {"principal": "drac", "idempotency_key": key}
    return {"type": "decision", "effect": effect, "request": request, "transport": transport}


def _effect(decision: int, name: str, outcome: str = "written") -> dict[str, Any]:
    return {
        "type": "persist.effect",
        "op": "write",
        "outcome": outcome,
        "decision_index": decision,
        "scope": "drac-artifacts",
        "name": name,
        "stored": f"sha256/{name}",
        "digest": _DIGEST,
    }


def _ack(key: str, index: int, write: int | None, effect: str = "ALLOW") -> Ack:
    persisted = Persisted(f"artifacts/drac/{key}.bin", _DATA, write, None)
    return Ack(key, effect, index, "", 0, "", persisted)


def _sound() -> dict[int, dict[str, Any]]:
    return {0: _decision("k1"), 1: _effect(0, "k1.bin"), 2: _decision("k2", "DENY")}


def _failures(entries: dict[int, dict[str, Any]], acks: list[Ack], **kw: Any) -> list[str]:
    return check_effects(LogRows(entries, kw.pop("inline", (1,))), acks, **kw).failures


def test_effect_check_passes_a_sound_log() -> None:
    acks = [_ack("k1", 0, 1), _ack("k2", 2, None, "DENY")]
    files = {"drac-artifacts": ["sha256/k1.bin"]}
    assert _failures(_sound(), acks, files=files) == []


@pytest.mark.parametrize(
    ("entries", "found"),
    [
        ({**_sound(), 3: _effect(2, "k2.bin")}, "is not an ALLOW"),  # the DENY's effect
        ({**_sound(), 3: _effect(9, "k9.bin")}, "is not a lower log entry"),  # no decision
        ({3: _effect(4, "k4.bin"), 4: _decision("k4")}, "is not a lower log entry"),
        ({0: _decision("k1", digest="sha256:00"), 1: _effect(0, "k1.bin")}, "allowed"),
    ],
    ids=["allow-was-a-deny", "no-decision", "decision-after-effect", "other-bytes"],
)
def test_effect_without_its_logged_allow_is_found(
    entries: dict[int, dict[str, Any]], found: str
) -> None:
    assert any(found in f for f in _failures(entries, [], inline=()))


def test_key_with_two_effects_is_found() -> None:
    entries = {**_sound(), 3: _decision("k1"), 4: _effect(3, "k1.bin", "unchanged")}
    assert any("`k1` has 2 effects" in f for f in _failures(entries, []))
    twice = {**_sound(), 3: _effect(0, "k1.bin", "unchanged")}
    assert any("decision `0` has 2 effects" in f for f in _failures(twice, []))


def test_lost_acknowledged_write_and_unbacked_bytes_are_found() -> None:
    lost = _failures({0: _decision("k1")}, [_ack("k1", 0, None)], inline=())
    assert any("acknowledged ALLOW `0`" in f for f in lost)
    moved = _failures(_sound(), [_ack("k1", 0, 7)])  # acknowledged with another effect entry
    assert any("(write `7`)" in f for f in moved)
    blob = _failures(_sound(), [], inline=(1, 2))
    assert any("kept under `2`" in f for f in blob)
    files = {"drac-artifacts": ["sha256/k1.bin", "sha256/stray.bin"]}
    assert any("`sha256/stray.bin`" in f for f in _failures(_sound(), [], files=files))

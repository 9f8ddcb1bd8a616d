"""The log, not the database, says what is stored: attacks on the index, the journal, the scope.

The attacker here can write SOP's database (``sop.db``, or the PostgreSQL
schema) and where the scopes' bytes are (the data directory, or the schema's
rows), turning the storage triggers off first, as they would, but cannot read
the key files (``Env.attacker``, ``Env.plant``). Each
test makes one attack of issue 13's "Why" list and checks SOP's answer:

- a persisted object's index row and its bytes replaced by consistent
  attacker values: the read is refused (integrity), naming the log index and
  the expected and found values, and the integrity alarm is raised;
- the same, with the log entry's row rewritten too: the inclusion proof
  against the signed checkpoint refuses it;
- a forged pending-effects row (pointing at a DENY, or at the ALLOW of another
  request): boot repair does nothing for it, no ``written`` effect is logged,
  the alarm names the log index, SOP is not READY;
- a scope's directory renamed out of the root while a large write is in
  flight: the write is refused (integrity), nothing stays published under
  SOP's name outside the root, and the alarm is raised.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Env, large, regular_files

from sop_verified.core.health import Health
from sop_verified.core.persistence.entries import request_key
from sop_verified.core.request import Decision, Permission
from sop_verified.nexus.persistence import bind_content
from sop_verified.nexus.sop import SOP
from sop_verified.storage import blobs
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.tools.canonical import canonical_json


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def unsealed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the state seal (INV-11, the first layer at boot) away, to test this layer alone.

    With the seal in place a forged row fails boot in the ``state`` service before boot
    repair runs; these tests show boot repair refuses it by itself too (defence in depth,
    and the only layer for an attacker who also defeats the seal).
    """
    for backend in (SQLiteBackend, PostgresBackend):
        monkeypatch.setattr(backend, "verify_state", lambda self, *args, **kwargs: None)


def _refused_by_the_log(env: Env, r: Any, index: int, *fragments: str) -> str:
    """A read refused as an integrity failure that names ``index``; the alarm is raised."""
    assert r.data is None, "the attacker's bytes were returned"
    assert r.decision.effect is Permission.DENY
    why = r.decision.reasons[0]
    assert why.code == "integrity", why
    assert f"log index `{index}`" in why.message, why.message
    for fragment in fragments:
        assert fragment in why.message, why.message
    assert env.sop.persistence.alarms, "no integrity alarm"
    assert f"log index `{index}`" in env.sop.persistence.alarms[-1]
    assert env.sop.health is Health.DEGRADED  # every later decision is DENY
    entry = env.log()[r.decision.log_index]
    assert (entry["op"], entry["outcome"]) == ("read", "refused")  # the refusal is logged
    return str(why.message)


# ---- 1. reads check the bytes against the log's effect entry --------------------------
@pytest.mark.parametrize("where", ["same_path", "new_path"])
def test_replaced_index_row_and_file_are_refused_on_read(env: Env, where: str) -> None:
    data = large(b"genuine artifact ")
    d = env.persist("drac", "artifact.persist", "artifacts/drac/report", data)
    assert d.effect is Permission.ALLOW, d.reasons
    effect = d.write.index
    forged = large(b"attacker artifact ")
    hexd = hashlib.sha256(forged).hexdigest()
    stored = d.write.stored if where == "same_path" else f"sha256/{hexd[:2]}/{hexd}"
    env.plant("drac-artifacts", stored, forged)  # consistent with the row below
    db = env.attacker()
    db.execute(
        "UPDATE persist_effects SET stored = ?, digest = ?, size = ? WHERE effect_index = ?",
        (stored, _sha(forged), len(forged), effect),
    )
    db.close()

    r = env.read("drac", "artifacts/drac/report")

    field = "digest" if where == "same_path" else "stored"
    message = _refused_by_the_log(env, r, effect, f"`{field}` is")
    logged = _sha(data) if field == "digest" else d.write.stored
    assert f"`{logged}` in the log" in message  # what was expected (the log's) ...
    assert "in the row" in message  # ... and what was found (the row's)


def test_replaced_index_row_and_database_blob_are_refused_on_read(env: Env) -> None:
    d = env.persist("drac", "artifact.persist", "artifacts/drac/note", b"genuine note")
    assert d.effect is Permission.ALLOW, d.reasons
    assert env.db_blobs("drac-artifacts")  # a small blob: kept in the database
    forged = b"attacker note, longer"
    db = env.attacker()
    db.execute(
        "UPDATE persist_effects SET digest = ?, size = ? WHERE effect_index = ?",
        (_sha(forged), len(forged), d.write.index),
    )
    db.execute("UPDATE persist_inline SET data = ? WHERE effect_index = ?", (forged, d.write.index))
    db.close()

    r = env.read("drac", "artifacts/drac/note")

    message = _refused_by_the_log(env, r, d.write.index, "`digest` is")
    assert f"`{_sha(b'genuine note')}` in the log" in message
    assert f"`{_sha(forged)}` in the row" in message


def test_index_row_pointing_at_another_log_entry_is_refused(env: Env) -> None:
    genuine = env.persist("drac", "artifact.persist", "artifacts/drac/a", large(b"a"))
    other = env.persist("drac", "artifact.persist", "artifacts/drac/b", large(b"b"))
    assert genuine.allowed and other.allowed
    db = env.attacker()  # `a` now names b's (genuine, logged) effect entry and bytes
    db.execute("DELETE FROM persist_effects WHERE effect_index = ?", (other.write.index,))
    db.execute(
        "UPDATE persist_effects SET effect_index = ?, decision_index = ?, stored = ?, digest = ?,"
        " size = ? WHERE effect_index = ?",
        (
            other.write.index,
            other.log_index,
            other.write.stored,
            other.write.digest,
            other.write.size,
            genuine.write.index,
        ),
    )
    db.close()

    r = env.read("drac", "artifacts/drac/a")

    _refused_by_the_log(env, r, other.write.index, "`name` is `a` in the row, `b` in the log")


def test_index_row_pointing_at_a_decision_entry_is_refused(env: Env) -> None:
    d = env.persist("drac", "artifact.persist", "artifacts/drac/a", large(b"a"))
    assert d.allowed
    db = env.attacker()
    db.execute(
        "UPDATE persist_effects SET effect_index = ? WHERE effect_index = ?",
        (d.log_index, d.write.index),
    )
    db.close()

    r = env.read("drac", "artifacts/drac/a")

    _refused_by_the_log(env, r, d.log_index, "holds `decision/", "expected `persist.effect/write")


def test_rewritten_log_entry_is_refused_by_the_inclusion_proof(env: Env) -> None:
    data = large(b"genuine ")
    d = env.persist("drac", "artifact.persist", "artifacts/drac/report", data)
    assert d.effect is Permission.ALLOW, d.reasons
    forged = large(b"attacker ")
    env.plant("drac-artifacts", d.write.stored, forged)
    db = env.attacker()  # row, bytes and the log's own entry row all say `forged`
    db.execute(
        "UPDATE persist_effects SET digest = ?, size = ? WHERE effect_index = ?",
        (_sha(forged), len(forged), d.write.index),
    )
    (payload,) = db.execute(
        "SELECT payload FROM log_entries WHERE idx = ?", (d.write.index,)
    ).fetchone()
    entry = json.loads(payload)
    entry.update(digest=_sha(forged), size=len(forged))
    rewritten = canonical_json(entry)
    leaf = hashlib.sha256(b"\x00" + rewritten).digest()
    db.execute(
        "UPDATE log_entries SET payload = ?, leaf_hash = ? WHERE idx = ?",
        (rewritten, leaf, d.write.index),
    )
    db.close()

    r = env.read("drac", "artifacts/drac/report")

    message = _refused_by_the_log(env, r, d.write.index, "is not the entry the signed checkpoint")
    assert "root" in message


def test_untampered_reads_pass_the_log_check(env: Env) -> None:
    small, big = b"small", large(b"big")
    assert env.persist("drac", "artifact.persist", "artifacts/drac/s", small).allowed
    assert env.persist("drac", "artifact.persist", "artifacts/drac/l", big).allowed
    assert env.persist("csp", "state.persist", "state/csp/k", b"v1").allowed
    assert env.persist("csp", "state.persist", "state/csp/k", b"v2").allowed
    assert env.read("emp", "artifacts/drac/s").data == small
    assert env.read("emp", "artifacts/drac/l").data == big
    hexd = hashlib.sha256(big).hexdigest()
    assert env.read("emp", f"artifacts/drac/sha256/{hexd}").data == big
    assert env.read("csp", "state/csp/k").data == b"v2"
    assert env.read("csp", "state/csp/k@v1").data == b"v1"
    assert env.sop.persistence.alarms == []
    assert env.sop.health is Health.READY


# ---- 2. boot repair redoes an effect only for a logged ALLOW of the same request ------
def _logged(env: Env) -> list[dict[str, Any]]:
    with env.reader() as db:
        rows = db.execute("SELECT payload FROM log_entries ORDER BY idx").fetchall()
    return [json.loads(p) for (p,) in rows]


def _forge_pending(env: Env, decision_index: int, request: dict[str, Any]) -> None:
    env.sop.close()
    db = env.attacker()
    db.execute(
        "INSERT INTO persist_pending (decision_index, request) VALUES (?, ?)",
        (decision_index, request_key(request)),
    )
    db.close()


def test_forged_pending_row_fails_boot_with_the_seal_in_place(env: Env) -> None:
    """Both layers on: boot is not READY either way and nothing is done for the row."""
    index, request = _deny_of_a_persist(env, "verdicts/emp/sealed", b"attacker verdict")
    env.plant("emp-verdicts", "sealed", b"attacker verdict")
    _forge_pending(env, index, request)
    before = len(_logged(env))

    assert env.reboot() is not Health.READY
    assert env.sop.boot_report.failed in ("state", "persistence"), env.sop.boot_report
    assert [e for e in _logged(env)[before:] if e.get("decision_index") == index] == []


def _boot_refuses(env: Env, index: int, *fragments: str) -> None:
    """Boot is not READY, names ``index``, raised the alarm, and logged no effect for it."""
    before = len(_logged(env))
    clock = env.clock
    env.sop = SOP.boot(env.data, now=lambda: clock[0], proof_gate=env.gate)
    assert env.sop.health is not Health.READY
    report = env.sop.boot_report
    assert report.failed == "persistence", report
    assert f"log index `{index}`" in report.detail, report.detail
    for fragment in fragments:
        assert fragment in report.detail, report.detail
    alarms = env.sop.registry.get("persistence").alarms
    assert alarms and f"log index `{index}`" in alarms[0], alarms
    after = _logged(env)
    effects = [e for e in after[before:] if e.get("decision_index") == index]
    assert effects == [], effects  # no `written`, and no `aborted` either: nothing was done
    assert not any(
        e.get("type") == "persist.effect" and e.get("outcome") == "written" and e.get("repaired")
        for e in after
    )


def _deny_of_a_persist(env: Env, resource: str, data: bytes) -> tuple[int, dict[str, Any]]:
    request = env.request("emp", "verdict.record", resource)
    request["capability"] = "forged"
    d = env.sop.persist(request, data)
    assert d.effect is Permission.DENY and d.log_index is not None
    logged = env.log()[d.log_index]
    assert (logged["type"], logged["effect"]) == ("decision", "DENY")
    return d.log_index, logged["request"]


def test_forged_pending_row_pointing_at_a_deny_is_not_redone(env: Env, unsealed: None) -> None:
    planted = b"attacker verdict"
    index, request = _deny_of_a_persist(env, "verdicts/emp/claim", planted)
    env.plant("emp-verdicts", "claim", planted)  # the effect a redo would record as written
    _forge_pending(env, index, request)

    _boot_refuses(env, index, "expected an `ALLOW` decision", "effect `DENY`")


def test_forged_pending_row_pointing_at_a_deny_creates_no_file(env: Env, unsealed: None) -> None:
    index, request = _deny_of_a_persist(env, "verdicts/emp/other", b"never stored")
    before = env.stored("emp-verdicts")
    _forge_pending(env, index, request)

    _boot_refuses(env, index, "effect `DENY`")
    assert env.stored("emp-verdicts") == before


def test_forged_pending_row_past_the_log_is_not_taken_for_another_replicas(
    env: Env, unsealed: None
) -> None:
    """A row past the store's head is in no log: not a decision another replica just logged."""
    _, request = _deny_of_a_persist(env, "verdicts/emp/later", b"attacker verdict")
    beyond = len(env.log()) + 5
    _forge_pending(env, beyond, request)

    _boot_refuses(env, beyond, "the signed checkpoint covers")


def test_forged_pending_row_with_another_request_is_not_redone(env: Env, unsealed: None) -> None:
    genuine = env.persist("emp", "verdict.record", "verdicts/emp/genuine", b"PROVED")
    assert genuine.allowed
    index = genuine.log_index
    logged = env.log()[index]["request"]
    planted = b"attacker verdict"
    forged = dict(logged, resource="verdicts/emp/planted", content_digest=_sha(planted))
    forged["context"] = dict(logged["context"], size_bytes=len(planted))
    env.plant("emp-verdicts", "planted", planted)
    _forge_pending(env, index, forged)

    _boot_refuses(env, index, "carries request", "the log's ALLOW is for request")


def test_pending_row_of_a_logged_allow_is_still_repaired(env: Env) -> None:
    """The check lets a genuine crash repair through: the row matches its logged ALLOW."""
    data = b"complete before the crash"
    request = env.request("emp", "verdict.record", "verdicts/emp/crashed")
    bound = bind_content(request, data)
    d = env.sop.submit(bound)  # the decision is logged; the effect never is (a crash)
    assert d.allowed, d.reasons
    env.plant("emp-verdicts", "crashed", data)
    assert env.reboot() is Health.READY, env.sop.boot_report
    assert env.sop.recovery.redone == 1
    effects = [e for e in env.log() if e.get("decision_index") == d.log_index]
    assert [(e["outcome"], e.get("repaired")) for e in effects] == [("written", True)]
    assert env.sop.persistence.alarms == []


def test_forged_purge_row_deletes_nothing(env: Env, unsealed: None) -> None:
    """The purge queue is a database table too: boot removes a file only for a logged tombstone."""
    d = env.persist("drac", "artifact.persist", "artifacts/drac/keep", large(b"keep me"))
    assert d.allowed, d.reasons
    env.sop.close()
    db = env.attacker()
    db.execute(
        "INSERT INTO persist_purge (tombstone_index, scope, stored) VALUES (?, ?, ?)",
        (d.log_index, "drac-artifacts", d.write.stored),
    )
    db.close()

    _boot_refuses(env, d.log_index, "as the tombstone of", "the log holds type `decision`")
    assert d.write.stored in env.stored("drac-artifacts"), "deleted on a forged row's word"


# ---- 3. a scope directory moved while a write is in flight -----------------------------
def _move_during_write(
    env: Env, monkeypatch: pytest.MonkeyPatch, move: Callable[[], None]
) -> list[int]:
    """Make the next temporary file's write run ``move`` right after it (before the publish)."""
    real = blobs._write_temp
    calls: list[int] = []

    def write_then_move(dfd: int, tag: str, data: bytes, where: str) -> tuple[str, Any]:
        out = real(dfd, tag, data, where)
        if not calls:
            calls.append(1)
            move()
        return out

    monkeypatch.setattr(blobs, "_write_temp", write_then_move)
    return calls


def _refused_move(env: Env, d: Decision, resource: str) -> None:
    assert d.effect is Permission.DENY, "SOP reported the object as stored"
    assert d.write is None
    why = d.reasons[0]
    assert why.code == "integrity", why
    assert "moved" in why.message or "no longer below" in why.message, why.message
    assert "removed again" in why.message, why.message
    assert env.sop.persistence.alarms and resource in env.sop.persistence.alarms[-1]
    assert env.sop.health is Health.DEGRADED
    written = [e for e in env.log() if e.get("type") == "persist.effect"]
    assert all(e["outcome"] != "written" or e["name"] != resource.split("/", 2)[2] for e in written)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("what", ["root", "subdirectory"])
def test_scope_directory_moved_out_during_a_write_is_refused_and_undone(
    env: Env, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    data = large(b"in flight ")
    hexd = hashlib.sha256(data).hexdigest()
    root = env.scope_root("drac-artifacts")
    (root / "sha256" / hexd[:2]).mkdir(parents=True, exist_ok=True)
    moving = root if what == "root" else root / "sha256"
    moved = env.outside / f"moved-{what}"
    calls = _move_during_write(env, monkeypatch, lambda: moving.rename(moved))

    d = env.persist("drac", "artifact.persist", "artifacts/drac/flight", data)

    assert calls == [1]
    _refused_move(env, d, "artifacts/drac/flight")
    assert env.sop.persistence.lookup("drac-artifacts", "flight") is None
    assert regular_files(moved) == set(), "a file stays published outside the root"
    assert not moving.exists()


@pytest.mark.sqlite_only
def test_write_once_directory_moved_out_during_a_write_is_refused_and_undone(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = env.scope_root("emp-verdicts")
    (root / "subject").mkdir()
    moved = env.outside / "moved-subject"
    _move_during_write(env, monkeypatch, lambda: (root / "subject").rename(moved))

    d = env.persist("emp", "verdict.record", "verdicts/emp/subject/claim", b"PROVED")

    _refused_move(env, d, "verdicts/emp/subject/claim")
    assert env.sop.persistence.lookup("emp-verdicts", "subject/claim") is None
    assert regular_files(moved) == set()


@pytest.mark.sqlite_only
def test_directory_replaced_by_a_symlink_to_itself_is_refused(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moved out and a symlink left in its place: every name still resolves, but not in the root."""
    root = env.scope_root("emp-verdicts")
    (root / "subject").mkdir()
    moved = env.outside / "moved-subject"

    def move() -> None:
        (root / "subject").rename(moved)
        (root / "subject").symlink_to(moved)

    _move_during_write(env, monkeypatch, move)

    d = env.persist("emp", "verdict.record", "verdicts/emp/subject/claim", b"PROVED")

    _refused_move(env, d, "verdicts/emp/subject/claim")
    assert regular_files(moved) == set()


def test_writes_in_place_pass_the_directory_check(env: Env) -> None:
    for i in range(3):
        d = env.persist("drac", "artifact.persist", f"artifacts/drac/x/{i}", large(b"%d" % i))
        assert d.allowed, d.reasons
    d = env.persist("emp", "verdict.record", "verdicts/emp/a/b/c", b"PROVED")
    assert d.allowed, d.reasons
    assert env.sop.persistence.alarms == []


# ---- 4. a write-once answer comes from the log, not from the index row --------------------
def test_forged_row_cannot_make_a_write_once_write_answer_unchanged(env: Env) -> None:
    """A planted row naming the bytes about to be written would skip the write (no file)."""
    other = env.persist("emp", "verdict.record", "verdicts/emp/other", b"OTHER")
    assert other.allowed
    data = b"PROVED"
    db = env.attacker()  # `claim` "already holds" these bytes, pointing at other's entry
    db.execute(
        "INSERT INTO persist_effects (effect_index, decision_index, outcome, scope, name, stored,"
        " digest, size, time, version) VALUES (?, ?, 'written', 'emp-verdicts', 'claim',"
        " 'claim', ?, ?, 0, 1)",
        (other.write.index + 1000, other.log_index, _sha(data), len(data)),
    )
    db.close()

    d = env.persist("emp", "verdict.record", "verdicts/emp/claim", data)

    assert d.effect is Permission.DENY  # never `unchanged` on the row's word
    assert d.reasons[0].code == "integrity", d.reasons
    assert env.sop.persistence.alarms, "no integrity alarm"
    assert "claim" not in env.stored("emp-verdicts")

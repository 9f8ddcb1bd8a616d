"""The Persistence_Controller: effects only after a logged ALLOW (INV-9), in owned scopes (INV-4).

Also the three modes (content-addressed, write-once, versioned), digest
verification on every read, and the bad-input rules: unknown scope, another
protocol's scope, oversized blob, digest or size mismatch: each a DENY with a
reason, recorded in the log, with nothing written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from typing import Any

import psycopg
import pytest
from conftest import Env, large, outside_state

from sop_verified.core.health import Health
from sop_verified.core.persistence import index_entries
from sop_verified.core.request import Decision, Permission, Stage, parse_request
from sop_verified.errors import StorageError


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _refused(env: Env, d: Decision, code: str) -> dict[str, Any]:
    assert d.effect is Permission.DENY, d
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.PERSISTENCE, code), d.reasons
    assert d.log_index is not None, "a refusal is recorded"
    entry = env.log()[d.log_index]
    assert (entry["type"], entry["outcome"]) == ("persist.effect", "refused")
    assert entry["reasons"][0]["code"] == code
    return entry


def _allow(
    env: Env, principal: str, action: str, resource: str, data: bytes
) -> tuple[Any, Decision]:
    """A genuine logged ALLOW for persisting ``data`` (not yet carried out)."""
    raw = env.request(principal, action, resource)
    raw["content_digest"] = _sha(data)
    raw["context"] = {"size_bytes": len(data)}
    request = parse_request(raw)
    decision = env.sop.submit(request)
    assert decision.effect is Permission.ALLOW, decision.reasons
    return request, decision


# ---- INV-9: the effect follows its logged ALLOW -------------------------------------------
def _assert_written_after_allow(env: Env, d: Decision, data: bytes) -> dict[str, Any]:
    assert d.effect is Permission.ALLOW
    assert d.write is not None
    effect: dict[str, Any] = d.write.to_dict()
    assert d.log_index is not None and d.log_index < effect["index"]
    log = env.log()
    assert (log[d.log_index]["type"], log[d.log_index]["effect"]) == ("decision", "ALLOW")
    assert log[d.log_index]["request"]["content_digest"] == _sha(data)
    entry = log[effect["index"]]
    assert (entry["type"], entry["outcome"], entry["decision_index"]) == (
        "persist.effect",
        "written",
        d.log_index,
    )
    assert effect["receipt"]["index"] == effect["index"]
    return effect


def test_write_happens_after_its_allow_is_logged(env: Env) -> None:
    data = large(b"bytes")
    d = env.persist("drac", "artifact.persist", "artifacts/drac/s1/out.bin", data)
    effect = _assert_written_after_allow(env, d, data)
    assert env.stored("drac-artifacts") == {effect["stored"]: data}
    assert env.db_blobs("drac-artifacts") == {}
    assert d.receipt is not None and d.receipt.tree_size < effect["receipt"]["tree_size"]


def test_small_content_addressed_write_commits_with_its_allow(env: Env) -> None:
    d = env.persist("drac", "artifact.persist", "artifacts/drac/s1/out.bin", b"bytes")
    effect = _assert_written_after_allow(env, d, b"bytes")
    assert d.log_index is not None and effect["index"] == d.log_index + 1
    # one transaction: the decision's and the effect's receipts carry the same checkpoint
    assert d.receipt is not None and d.receipt.checkpoint == effect["receipt"]["checkpoint"]
    assert env.db_blobs("drac-artifacts") == {effect["stored"]: b"bytes"}
    assert env.stored("drac-artifacts") == {}
    assert env.read("drac", "artifacts/drac/s1/out.bin").data == b"bytes"


def test_linked_allow_the_log_could_not_link_is_carried_out_in_two_steps(env: Env) -> None:
    data = b"unlinked"
    request, decision = _allow(env, "drac", "artifact.persist", "artifacts/drac/u.bin", data)
    controller = env.sop.persistence
    assert controller is not None
    plan = controller.linked_plan(request, data)
    assert plan is not None  # small and content-addressed: it would have been linked
    # the log decided and recorded the ALLOW but gave no effect receipt: two steps now
    d = controller.finish_linked(decision, None, (request, data, plan))
    effect = _assert_written_after_allow(env, d, data)
    assert d.log_index == decision.log_index and effect["stored"] == plan.stored
    assert env.read("drac", "artifacts/drac/u.bin").data == data
    denied = Decision(Permission.DENY, decision.reasons, decision.request_id)
    assert controller.finish_linked(denied, None, (request, data, plan)) is denied


def test_small_write_refused_by_a_rule_is_logged_as_two_steps(env: Env) -> None:
    d = env.persist(
        "drac",
        "artifact.persist",
        "artifacts/drac/x",
        b"abc",
        content_digest=_sha(b"other"),
    )
    _refused(env, d, "digest_mismatch")
    assert env.db_blobs("drac-artifacts") == {}


def test_failed_linked_commit_records_neither_decision_nor_effect(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert env.sop.store is not None
    before = env.sop.store.log.log_size()

    def fail(*_a: Any, **_k: Any) -> Any:
        if env.schema is None:
            raise sqlite3.OperationalError("disk I/O error")
        raise psycopg.OperationalError("disk I/O error")

    backend = "sqlite" if env.schema is None else "postgres"
    monkeypatch.setattr(f"sop_verified.storage.{backend}_persist.apply_ops", fail)
    d = env.persist("drac", "artifact.persist", "artifacts/drac/s1/out.bin", b"bytes")
    monkeypatch.undo()
    assert d.effect is Permission.DENY and d.reasons[-1].code == "log_append_failed"
    assert env.sop.store.log.log_size() == before
    assert env.db_blobs("drac-artifacts") == {}
    assert env.read("drac", "artifacts/drac/s1/out.bin").data is None


def test_deny_is_returned_unchanged_and_writes_nothing(env: Env) -> None:
    raw = env.request("drac", "artifact.persist", "artifacts/drac/s1/x", capability="forged")
    d = env.sop.persist(raw, b"x")
    assert d.effect is Permission.DENY and d.reasons[0].stage is Stage.CAPABILITY
    assert env.stored_anywhere() == set()
    assert not [e for e in env.log() if e.get("type") == "persist.effect"]


def test_unrecorded_allow_authorises_nothing(env: Env) -> None:
    request, decision = _allow(env, "drac", "artifact.persist", "artifacts/drac/a", b"a")
    forged = dataclasses.replace(decision, log_index=None, receipt=None)
    assert env.sop.persistence is not None
    d = env.sop.persistence.execute(forged, request, b"a")
    assert d.reasons[0].code == "unrecorded"
    assert env.stored_anywhere() == set()


def test_dry_run_decision_authorises_nothing(env: Env) -> None:
    raw = env.request("drac", "artifact.persist", "artifacts/drac/a")
    raw.update(content_digest=_sha(b"a"), context={"size_bytes": 1})
    request = parse_request(raw)
    assert env.sop.kernel is not None and env.sop.persistence is not None
    dry = env.sop.kernel.dry_run(request)
    assert dry.effect is Permission.ALLOW
    d = env.sop.persistence.execute(dry, request, b"a")
    assert d.effect is Permission.DENY and d.reasons[0].code == "unrecorded"
    assert env.stored_anywhere() == set()


def test_forged_allow_pointing_at_another_log_entry_is_refused(env: Env) -> None:
    request, decision = _allow(env, "drac", "artifact.persist", "artifacts/drac/a", b"a")
    assert env.sop.persistence is not None
    assert decision.log_index is not None
    for index in (0, 1, decision.log_index + 1000):  # boot and admin entries, and beyond the end
        forged = dataclasses.replace(decision, log_index=index)
        d = env.sop.persistence.execute(forged, request, b"a")
        _refused(env, d, "not_pending")
    assert env.stored_anywhere() == set()


def test_allow_for_another_request_is_refused(env: Env) -> None:
    request, decision = _allow(env, "drac", "artifact.persist", "artifacts/drac/a", b"a")
    other = request.model_copy(update={"resource": "artifacts/drac/b"})
    assert env.sop.persistence is not None
    _refused(env, env.sop.persistence.execute(decision, other, b"a"), "decision_mismatch")
    renamed = request.model_copy(update={"request_id": "someone-else"})
    _refused(env, env.sop.persistence.execute(decision, renamed, b"a"), "decision_mismatch")
    assert env.stored_anywhere() == set()


def test_one_allow_authorises_one_effect(env: Env) -> None:
    request, decision = _allow(env, "csp", "state.persist", "state/csp/k", b"v1")
    assert env.sop.persistence is not None
    assert env.sop.persistence.execute(decision, request, b"v1").effect is Permission.ALLOW
    again = env.sop.persistence.execute(decision, request, b"v1")
    _refused(env, again, "not_pending")  # its effect entry closed it
    assert len(env.sop.persistence.objects("csp-state", "k")) == 1


def test_allow_being_carried_out_cannot_be_used_twice_at_once(env: Env) -> None:
    request, decision = _allow(env, "csp", "state.persist", "state/csp/k", b"v1")
    controller = env.sop.persistence
    assert controller is not None and decision.log_index is not None
    controller._claims.claim(decision.log_index)  # another thread is carrying it out
    _refused(env, controller.execute(decision, request, b"v1"), "decision_in_use")
    assert env.stored("csp-state") == {}
    controller._claims.release(decision.log_index)


def test_effect_needs_ready(env: Env) -> None:
    request, decision = _allow(env, "drac", "artifact.persist", "artifacts/drac/a", b"a")
    env.sop.registry.raise_alarm("persistence", "test alarm")
    assert env.sop.persistence is not None
    _refused(env, env.sop.persistence.execute(decision, request, b"a"), "not_ready")
    assert env.stored_anywhere() == set()


def _fail_effect_appends(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the store refuse every ``persist.effect`` append (decisions still go through)."""
    real = store.append_receipt

    def failing(payload: bytes) -> Any:
        if b'"persist.effect"' in payload:
            raise StorageError("disk gone")
        return real(payload)

    monkeypatch.setattr(store, "append_receipt", failing)


def test_effect_that_cannot_be_logged_is_denied_and_stays_pending(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = env.sop.store
    assert store is not None and env.sop.persistence is not None
    _fail_effect_appends(store.log, monkeypatch)
    d = env.persist("csp", "state.persist", "state/csp/k", b"v")
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.LOG, "effect_unrecorded")
    assert d.decision_index in [p.decision_index for p in store.persist.pending()]


def test_unrecorded_effect_is_never_retried_and_done_ones_are_not_remembered(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, controller = env.sop.store, env.sop.persistence
    assert store is not None and controller is not None
    done_request, done = _allow(env, "csp", "state.persist", "state/csp/ok", b"v")
    assert controller.execute(done, done_request, b"v").effect is Permission.ALLOW
    assert controller._claims.spent == set()  # closed by its effect entry: nothing to remember
    request, decision = _allow(env, "csp", "state.persist", "state/csp/k", b"v")
    _fail_effect_appends(store.log, monkeypatch)
    assert controller.execute(decision, request, b"v").effect is Permission.DENY
    monkeypatch.undo()
    assert controller._claims.spent == {decision.log_index}  # still pending: remembered
    _refused(env, controller.execute(decision, request, b"v"), "decision_in_use")


# ---- INV-4 and bad input ----------------------------------------------------------------
def test_another_protocols_scope_is_refused_even_when_the_kernel_allows(env: Env) -> None:
    before = outside_state(env)
    d = env.persist("drac", "artifact.persist", "state/csp/k", b"not yours")
    entry = _refused(env, d, "foreign_scope")
    assert env.log()[d.decision_index]["effect"] == "ALLOW"  # the kernel did allow
    assert entry["decision_index"] == d.decision_index  # the refusal closes it
    assert env.stored("csp-state") == {}
    assert outside_state(env) == before


def test_unknown_scope_is_refused(env: Env) -> None:
    d = env.persist("drac", "artifact.persist", "misc/x", b"x")
    _refused(env, d, "unknown_scope")
    assert env.stored_anywhere() == set()


def test_oversized_blob_is_refused_and_nothing_is_written(env: Env) -> None:
    d = env.persist("drac", "artifact.persist", "artifacts/drac/big", b"x" * 262145)
    _refused(env, d, "too_large")
    assert "262144" in d.reasons[0].message
    assert env.stored_anywhere() == set()
    assert env.db_blobs("drac-artifacts") == {}
    limit = env.persist("drac", "artifact.persist", "artifacts/drac/big", b"x" * 262144)
    assert limit.effect is Permission.ALLOW


def test_digest_mismatch_is_refused(env: Env) -> None:
    d = env.persist(
        "drac", "artifact.persist", "artifacts/drac/a", b"real", content_digest=_sha(b"x")
    )
    _refused(env, d, "digest_mismatch")
    assert env.stored_anywhere() == set()


def test_size_mismatch_is_refused(env: Env) -> None:
    d = env.persist(
        "drac", "artifact.persist", "artifacts/drac/a", b"real", context={"size_bytes": 1}
    )
    _refused(env, d, "size_mismatch")


def test_digest_name_must_name_the_content(env: Env) -> None:
    wrong = "0" * 64
    d = env.persist("drac", "artifact.persist", f"artifacts/drac/sha256/{wrong}", b"blob")
    _refused(env, d, "digest_mismatch")
    hexd = hashlib.sha256(b"blob").hexdigest()
    ok = env.persist("drac", "artifact.persist", f"artifacts/drac/sha256/{hexd}", b"blob")
    assert ok.effect is Permission.ALLOW
    r = env.read("emp", f"artifacts/drac/sha256/{hexd}")
    assert r.data == b"blob"


# ---- modes --------------------------------------------------------------------------------
def test_content_addressed_blobs_are_stored_once(env: Env) -> None:
    for same in (b"same", large(b"same")):
        a = env.persist("drac", "artifact.persist", "artifacts/drac/s1/a", same)
        b = env.persist("drac", "artifact.persist", "artifacts/drac/s2/b", same)
        assert a.write.stored == b.write.stored
        assert env.read("csp", "artifacts/drac/s1/a").data == same
        assert env.read("drac", "artifacts/drac/s2/b").data == same
    assert len(env.stored("drac-artifacts")) == 1  # the large one
    assert len(env.db_blobs("drac-artifacts")) == 1  # the small one


def test_tampered_blob_is_refused_on_read_and_repaired_by_a_rewrite(env: Env) -> None:
    data = large(b"original")
    d = env.persist("drac", "artifact.persist", "artifacts/drac/a", data)
    env.plant("drac-artifacts", d.write.stored, b"tampered")
    r = env.read("drac", "artifacts/drac/a")
    assert r.data is None and r.decision.reasons[0].code == "integrity"
    assert "expected `" + _sha(data) + "`" in r.decision.reasons[0].message
    entry = env.log()[r.decision.log_index or 0]
    assert (entry["op"], entry["outcome"]) == ("read", "refused")
    assert env.sop.health is Health.DEGRADED  # the integrity alarm: everything is denied
    assert (
        env.persist("drac", "artifact.persist", "artifacts/drac/a", data).effect is Permission.DENY
    )
    assert env.reboot() is Health.READY  # an operator's reboot clears the alarm
    alarms = [e for e in env.log() if e.get("type") == "alarm"]  # and the log says why
    assert [(a["service"], a["health"]) for a in alarms] == [("persistence", "DEGRADED")]
    assert _sha(data) in alarms[0]["reason"]
    again = env.persist("drac", "artifact.persist", "artifacts/drac/a", data)
    assert again.effect is Permission.ALLOW
    assert env.read("drac", "artifacts/drac/a").data == data


@pytest.mark.parametrize("tampered", [b"tampered", b"original+"])  # other bytes; grown
def test_tampered_database_blob_is_refused_on_read_and_fails_the_next_boot(
    env: Env, tampered: bytes
) -> None:
    d = env.persist("drac", "artifact.persist", "artifacts/drac/a", b"original")
    env.tamper_db_blob("drac-artifacts", d.write.stored, tampered)
    r = env.read("drac", "artifacts/drac/a")
    assert r.data is None and r.decision.reasons[0].code == "integrity"
    entry = env.log()[r.decision.log_index or 0]
    assert (entry["op"], entry["outcome"]) == ("read", "refused")
    assert env.sop.health is Health.DEGRADED
    assert env.reboot() is not Health.READY  # the state seal (INV-11) catches the row at boot


def test_grown_file_is_refused_on_read(env: Env) -> None:
    env.persist("emp", "verdict.record", "verdicts/emp/v", b"{}")
    env.plant("emp-verdicts", "v", b"{}appended")
    r = env.read("emp", "verdicts/emp/v")
    assert r.data is None and r.decision.reasons[0].code == "integrity"


def test_write_once_keeps_the_first_bytes(env: Env) -> None:
    first = env.persist("emp", "verdict.record", "verdicts/emp/subject/claim", b"PROVED")
    assert first.write.outcome == "written"
    same = env.persist("emp", "verdict.record", "verdicts/emp/subject/claim", b"PROVED")
    assert same.effect is Permission.ALLOW and same.write.outcome == "unchanged"
    other = env.persist("emp", "verdict.record", "verdicts/emp/subject/claim", b"REFUTED")
    _refused(env, other, "write_once_violation")
    assert env.stored("emp-verdicts") == {"subject/claim": b"PROVED"}
    assert env.read("drac", "verdicts/emp/subject/claim").data == b"PROVED"


def test_versioned_scope_keeps_versions_and_the_latest(env: Env) -> None:
    for i in (1, 2, 3):
        d = env.persist("csp", "state.persist", "state/csp/k", f"v{i}".encode())
        assert d.write.version == i
    assert env.read("csp", "state/csp/k").data == b"v3"
    assert env.read("csp", "state/csp/k@v1").data == b"v1"
    assert env.read("csp", "state/csp/k@v9").decision.reasons[0].code == "not_found"
    assert len(env.stored("csp-state")) == 3
    d = env.persist("csp", "state.persist", "state/csp/k@v2", b"x")
    _refused(env, d, "reserved_name")


def test_read_of_another_protocols_scope_is_refused(env: Env) -> None:
    env.persist("csp", "state.persist", "state/csp/k", b"private")
    r = env.read("drac", "state/csp/k")  # the policy permits the read; the scope does not
    assert r.data is None and r.decision.reasons[0].code == "foreign_scope"


def test_read_needs_a_logged_read_decision(env: Env) -> None:
    d = env.persist("drac", "artifact.persist", "artifacts/drac/a", b"a")
    request = parse_request(env.request("drac", "artifact.persist", "artifacts/drac/a"))
    assert env.sop.persistence is not None
    r = env.sop.persistence.read(d, request)
    assert r.data is None and r.decision.reasons[0].code == "decision_mismatch"


def test_read_of_nothing_is_refused(env: Env) -> None:
    r = env.read("drac", "artifacts/drac/none")
    assert r.data is None and r.decision.reasons[0].code == "not_found"


# ---- the index reads the log ---------------------------------------------------------------
def test_index_entries_ignores_what_it_cannot_read() -> None:
    ops = index_entries(
        [
            (0, b"not json"),
            (1, b'{"type":"persist.effect"}'),
            (2, b'["type","decision","effect","ALLOW"]'),
            (3, b'{"effect":"ALLOW","type":"decision","request":{"action":"artifact.read"}}'),
            (4, b'{"type":"persist.tombstone","effect_index":"x"}'),
        ]
    )
    assert not ops


def test_decision_closed_in_the_same_entries_opens_no_pending_row(env: Env) -> None:
    d = env.persist("drac", "artifact.persist", "artifacts/drac/a", large(b"a"))  # two steps
    assert env.sop.store is not None and d.log_index is not None
    effect_at = d.write.index
    rows = {i: p for i, _, p in env.sop.store.log.log_entries(d.log_index, effect_at + 1)}
    together = index_entries([(d.log_index, rows[d.log_index]), (effect_at, rows[effect_at])])
    assert together.pending == () and together.closed() == []
    assert [e.decision_index for e in together.effects] == [d.log_index]
    alone = index_entries([(effect_at, rows[effect_at])])
    assert alone.closed() == [d.log_index]
    opened = index_entries([(d.log_index, rows[d.log_index])])
    assert [p.decision_index for p in opened.pending] == [d.log_index]


def test_index_follows_the_log_exactly(env: Env) -> None:
    env.persist("drac", "artifact.persist", "artifacts/drac/a", b"a")
    store = env.sop.store
    assert store is not None
    rows = store._db.query("SELECT value FROM persist_state WHERE key = 'indexed_to'", ())
    assert rows[0][0] == store.log.log_size()
    assert store.persist.pending() == []

"""Stored bytes in PostgreSQL: what one replica persists, another reads (issue 15, item 1).

Two SOP replicas are booted in this process on two data directories sharing
one schema (``sop init --dsn``, then ``--replica-of``). Every scope mode
(content-addressed, write-once, versioned), small (the linked path keeps it
with its decision) and past 64 KiB (stored in its own transaction, then its
effect logged), is persisted through one replica and read through the other,
digest-verified against the log. A tampered row is refused on read (DENY with
an ``integrity`` reason) and raises the integrity alarm.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_server import DSN, connect, drop_schema, scratch_schema
from psycopg import sql

from sop_verified.core.health import Health
from sop_verified.core.persistence.writes import INLINE_MAX_BYTES
from sop_verified.core.request import Decision, Permission, parse_request
from sop_verified.errors import IntegrityError
from sop_verified.nexus.config import init_replica, load_config
from sop_verified.nexus.demo import run_demo
from sop_verified.nexus.sop import SOP
from sop_verified.storage.postgres_content import scope_lock

# PostgreSQL replicas in one process: about 20 s of the README's test command between
# these three modules; `.ci/run` runs them in its slow step.
pytestmark = pytest.mark.slow

POLICIES = """
[[policy]]
id = "drac-artifacts"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist", "artifact.read"]
resource = ["artifacts/drac/**"]
channel = "bridge"

[[policy]]
id = "emp-verdicts"
effect = "permit"
principal = ["emp"]
action = ["verdict.record", "artifact.read"]
resource = ["verdicts/emp/**"]
channel = "bridge"

[[policy]]
id = "csp-state"
effect = "permit"
principal = ["csp"]
action = ["state.persist", "artifact.read"]
resource = ["state/csp/**"]
channel = "bridge"
"""

GRANTS = {
    "drac": (["artifact.persist", "artifact.read"], ["artifacts/drac/**"]),
    "emp": (["verdict.record", "artifact.read"], ["verdicts/emp/**"]),
    "csp": (["state.persist", "artifact.read"], ["state/csp/**"]),
}

# (principal, persist action, resource prefix) per scope mode
MODES = {
    "content-addressed": ("drac", "artifact.persist", "artifacts/drac/out"),
    "write-once": ("emp", "verdict.record", "verdicts/emp/v"),
    "versioned": ("csp", "state.persist", "state/csp/s"),
}
SIZES = {"small": 4096, "large": INLINE_MAX_BYTES + 4096}
RETENTION = {
    "retention = { keep = 8, max_age_seconds = 2592000 }": "retention = { keep = 1 }",
    "retention = { keep = 16 }": "retention = { keep = 2 }",
}
"""drac-artifacts (content-addressed) keeps 1 version of a name, csp-state (versioned) 2."""


class Replicas:
    """Two booted replicas on one schema, and the tokens of every principal."""

    def __init__(self, a: SOP, b: SOP, schema: str, tokens: dict[str, str]) -> None:
        self.a, self.b, self.schema, self.tokens = a, b, schema, tokens
        self._n = 0

    def request(self, principal: str, action: str, resource: str) -> dict[str, object]:
        self._n += 1
        return {
            "request_id": f"r-{self._n}",
            "principal": principal,
            "action": action,
            "resource": resource,
            "capability": self.tokens[principal],
            "context": {"state_class": "working"},
        }


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    with scratch_schema() as schema:
        one, two = tmp_path / "one", tmp_path / "two"
        SOP.init(one, dsn=DSN, schema=schema)
        config = one / "sop.toml"  # tighter retention, accepted by the first boot
        text = config.read_text()
        for old, new in RETENTION.items():
            assert old in text
            text = text.replace(old, new)
        config.write_text(text)
        a = SOP.boot(one)
        try:
            assert a.health is Health.READY, a.boot_report
            policies = tmp_path / "policies"
            policies.mkdir()
            (policies / "policies.toml").write_text(POLICIES)
            a.activate_policy(policies)
            expires = int(time.time()) + 3600
            tokens = {p: a.admit(p, *grant, expires=expires)[1] for p, grant in GRANTS.items()}
            init_replica(two, one)
            b = SOP.boot(two)
            try:
                assert b.health is Health.READY, b.boot_report
                yield Replicas(a, b, schema, tokens)
            finally:
                b.close()
        finally:
            a.close()


def _payload(size: int, seed: str) -> bytes:
    block = (seed * 64).encode()[:64]
    return (block * (size // 64 + 1))[:size]


def _persist(r: Replicas, mode: str, size: int, name: str) -> tuple[Decision, bytes, str]:
    principal, action, prefix = MODES[mode]
    resource = f"{prefix}-{name}.bin"
    data = _payload(size, f"{mode}-{size}-{name}")
    decision = r.a.persist(r.request(principal, action, resource), data)
    assert decision.effect is Permission.ALLOW, decision.reasons
    assert decision.write is not None
    return decision, data, resource


@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES))
@pytest.mark.parametrize("mode", list(MODES))
def test_bytes_persisted_through_one_replica_are_read_through_the_other(
    replicas: Replicas, mode: str, size: str
) -> None:
    principal = MODES[mode][0]
    _, data, resource = _persist(replicas, mode, SIZES[size], "x")
    got = replicas.b.read(replicas.request(principal, "artifact.read", resource))
    assert got.decision.effect is Permission.ALLOW, got.decision.reasons
    assert got.data == data
    assert replicas.b.persistence.alarms == []
    assert replicas.b.health is Health.READY


def test_a_second_version_written_through_the_other_replica_is_read_back_by_version(
    replicas: Replicas,
) -> None:
    r = replicas
    first = _payload(SIZES["large"], "first")
    second = _payload(SIZES["large"], "second")
    for sop, data in ((r.a, first), (r.b, second)):
        d = sop.persist(r.request("csp", "state.persist", "state/csp/doc"), data)
        assert d.effect is Permission.ALLOW, d.reasons
    for sop in (r.a, r.b):
        v1 = sop.read(r.request("csp", "artifact.read", "state/csp/doc@v1"))
        latest = sop.read(r.request("csp", "artifact.read", "state/csp/doc"))
        assert (v1.data, latest.data) == (first, second), (v1.decision, latest.decision)


def test_a_write_once_name_taken_through_one_replica_is_refused_on_the_other(
    replicas: Replicas,
) -> None:
    r = replicas
    _, data, resource = _persist(r, "write-once", SIZES["large"], "once")
    again = r.b.persist(r.request("emp", "verdict.record", resource), data)
    assert again.effect is Permission.ALLOW and again.write is not None
    assert again.write.outcome == "unchanged"
    other = r.b.persist(r.request("emp", "verdict.record", resource), data[::-1])
    assert other.effect is Permission.DENY
    assert other.reasons[0].code == "write_once_violation", other.reasons


def _attacker(schema: str) -> psycopg.Connection[tuple[object, ...]]:
    """A session of someone who can write the database but holds none of SOP's keys."""
    conn = connect()
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    conn.execute("SET session_replication_role = replica")  # no trigger fires for him
    return conn


_FLIP = "set_byte(data, 0, get_byte(data, 0) # 1)"
_TAMPER = {
    "persist_inline": (
        f"UPDATE persist_inline SET data = {_FLIP} WHERE effect_index IN"
        " (SELECT effect_index FROM persist_effects WHERE scope = %s AND stored = %s)"
    ),
    "persist_content": (
        f"UPDATE persist_content SET data = {_FLIP} WHERE scope = %s AND stored = %s"
    ),
}


def _tamper(schema: str, scope: str, stored: str) -> str:
    """Flip the first stored byte of ``stored`` wherever the database keeps it; the table."""
    with _attacker(schema) as conn:
        for table, statement in _TAMPER.items():
            if conn.execute(statement, (scope, stored)).rowcount == 1:
                return table
    raise AssertionError(f"`{stored}` of scope `{scope}` is in no table")


@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES))
@pytest.mark.parametrize("mode", list(MODES))
def test_a_tampered_row_is_refused_on_read_and_raises_the_alarm(
    replicas: Replicas, mode: str, size: str
) -> None:
    r = replicas
    decision, _, resource = _persist(r, mode, SIZES[size], "t")
    assert decision.write is not None
    table = _tamper(r.schema, decision.write.scope, decision.write.stored)
    assert table == (
        "persist_inline" if (mode, size) == ("content-addressed", "small") else "persist_content"
    )
    got = r.b.read(r.request(MODES[mode][0], "artifact.read", resource))
    assert got.decision.effect is Permission.DENY and got.data is None
    assert got.decision.reasons[0].code == "integrity", got.decision.reasons
    assert got.decision.reasons[0].message.startswith(f"stored object `{decision.write.stored}`")
    assert r.b.persistence.alarms, "no integrity alarm"
    assert r.b.health is Health.DEGRADED  # every decision is DENY until an operator looks
    if table == "persist_inline":  # spec: INV-11 — a sealed row: the boot check names it too
        with pytest.raises(IntegrityError, match="`persist_inline` does not match its seal"):
            r.b.store.verify_state(r.b.store.log.log_size())


def _content_rows(schema: str, scope: str) -> dict[str, bytes]:
    with _attacker(schema) as conn:
        rows = conn.execute(
            "SELECT stored, data FROM persist_content WHERE scope = %s", (scope,)
        ).fetchall()
    return {str(k): bytes(v) for k, v in rows}


def test_retention_through_one_replica_removes_the_rows_every_replica_read(
    replicas: Replicas,
) -> None:
    r = replicas
    versions = [_payload(SIZES["large"], f"v{i}") for i in range(4)]
    stored = []
    for data in versions:
        d = r.a.persist(r.request("csp", "state.persist", "state/csp/doc"), data)
        assert d.effect is Permission.ALLOW and d.write is not None, d.reasons
        stored.append(d.write.stored)
    assert set(_content_rows(r.schema, "csp-state")) == set(stored)
    tombstones = r.b.apply_retention()  # on the other replica: it removes the shared rows
    assert len(tombstones) == 2
    assert set(_content_rows(r.schema, "csp-state")) == set(stored[2:])
    for sop in (r.a, r.b):
        old = sop.read(r.request("csp", "artifact.read", "state/csp/doc@v1"))
        assert old.decision.reasons[0].code == "not_found", old.decision.reasons
        assert sop.read(r.request("csp", "artifact.read", "state/csp/doc")).data == versions[3]
        assert sop.read(r.request("csp", "artifact.read", "state/csp/doc@v3")).data == versions[2]
    assert r.a.persistence.alarms == r.b.persistence.alarms == []


def test_a_shared_blob_is_removed_only_when_no_live_object_uses_it(replicas: Replicas) -> None:
    r = replicas
    shared, other = _payload(SIZES["large"], "shared"), _payload(SIZES["large"], "other")
    digest = hashlib.sha256(shared).hexdigest()
    blob = f"sha256/{digest[:2]}/{digest}"
    for resource, data in (("a.bin", shared), ("b.bin", shared), ("a.bin", other)):
        d = r.a.persist(r.request("drac", "artifact.persist", f"artifacts/drac/{resource}"), data)
        assert d.effect is Permission.ALLOW, d.reasons
    assert len(r.b.apply_retention()) == 1  # a.bin's first version: its blob b.bin still uses
    assert blob in _content_rows(r.schema, "drac-artifacts")
    assert r.b.read(r.request("drac", "artifact.read", "artifacts/drac/b.bin")).data == shared
    d = r.b.persist(r.request("drac", "artifact.persist", "artifacts/drac/b.bin"), other)
    assert d.effect is Permission.ALLOW, d.reasons
    assert len(r.a.apply_retention()) == 1  # now nothing uses it
    assert blob not in _content_rows(r.schema, "drac-artifacts")


def test_a_blob_a_pending_decision_is_bound_to_is_kept_by_another_replicas_purge(
    replicas: Replicas,
) -> None:
    """The cross-replica race, in order: B's decision is logged and B finds the blob stored
    (so it will not write it), then A's retention purges the blob's last object, then B
    logs its effect. The purge must leave the row: B's object is about to use it."""
    r = replicas
    shared, other = _payload(SIZES["large"], "shared"), _payload(SIZES["large"], "other")
    digest = hashlib.sha256(shared).hexdigest()
    blob = f"sha256/{digest[:2]}/{digest}"
    for data in (shared, other):
        d = r.a.persist(r.request("drac", "artifact.persist", "artifacts/drac/a.bin"), data)
        assert d.effect is Permission.ALLOW, d.reasons
    request = r.request("drac", "artifact.persist", "artifacts/drac/c.bin")
    request.update(content_digest=f"sha256:{digest}")
    request["context"] = {**request["context"], "size_bytes": len(shared)}  # type: ignore[dict-item]
    decision = r.b.submit(request)  # logged: pending until its effect
    assert decision.effect is Permission.ALLOW, decision.reasons
    assert len(r.a.apply_retention()) == 1  # a.bin's first version, the blob's only user
    assert blob in _content_rows(r.schema, "drac-artifacts")  # kept for the pending decision
    parsed = parse_request(request)
    done = r.b.persistence.execute(decision, parsed, shared)
    assert done.effect is Permission.ALLOW and done.write is not None, done.reasons
    got = r.a.read(r.request("drac", "artifact.read", "artifacts/drac/c.bin"))
    assert got.data == shared, got.decision.reasons


@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES))
def test_a_write_waits_while_another_replica_removes_bytes_of_its_scope(
    replicas: Replicas, size: str
) -> None:
    """A removal holds its scope's lock alone (see ``postgres_content``): a write of that
    scope, linked (small) or two-step (large), waits for it instead of reusing a row the
    removal is about to delete."""
    r = replicas
    answers: list[Decision] = []
    with _attacker(r.schema) as conn, conn.transaction():  # a removal in progress elsewhere
        conn.execute(f"SELECT pg_advisory_xact_lock({scope_lock()})", ("drac-artifacts",))
        writer = threading.Thread(
            target=lambda: answers.append(_persist(r, "content-addressed", SIZES[size], "w")[0])
        )
        writer.start()
        writer.join(1.0)
        assert writer.is_alive() and answers == []  # waiting on the lock
    writer.join(30)
    assert [d.effect for d in answers] == [Permission.ALLOW]


def test_the_demo_on_postgresql_refuses_a_blob_edited_in_the_database(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    try:
        result = run_demo(data, dsn=DSN)
    finally:
        config = load_config(data) if (data / "sop.toml").exists() else None
        if config is not None and config.postgresql is not None:
            drop_schema(config.postgresql.schema_name)
    rows = {(r["act"], r["label"]): r for r in result.session["rows"]}
    edited = rows[("CSP", "resume a snapshot whose stored blob was edited")]
    assert (edited["effect"], edited["code"]) == ("DENY", "blob_digest"), edited
    assert not (data / "scopes").exists()  # nothing a scope stores is on this machine

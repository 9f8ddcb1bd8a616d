"""Retention: only superseded versions go, each tombstoned in the log first; write-once never."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Env, large

from sop_verified.core.persistence import Retention
from sop_verified.core.request import Permission

DAY = 86_400


def _tombstones(env: Env) -> list[dict[str, object]]:
    return [e for e in env.log() if e.get("type") == "persist.tombstone"]


def test_keep_n_versions_tombstones_the_older_ones_first(env: Env) -> None:
    stored = []
    for i in range(4):
        env.clock[0] += 1
        d = env.persist("csp", "state.persist", "state/csp/k", f"v{i}".encode())
        stored.append(d.write.stored)
    assert env.sop.persistence is not None
    indexes = env.sop.persistence.apply_retention(env.clock[0])
    assert len(indexes) == 2
    log = env.log()
    assert sorted(str(log[i]["stored"]) for i in indexes) == sorted(stored[:2])
    assert {log[i]["rule"] for i in indexes} == {"keep"}
    assert set(env.stored("csp-state")) == set(stored[2:])
    versions = [o.version for o in env.sop.persistence.objects("csp-state", "k")]
    assert versions == [4, 3]
    assert env.read("csp", "state/csp/k").data == b"v3"
    assert env.read("csp", "state/csp/k@v1").decision.reasons[0].code == "not_found"


def test_max_age_drops_superseded_versions_but_never_the_latest(env: Env) -> None:
    env.persist("csp", "state.persist", "state/csp/old", b"only version")
    env.persist("csp", "state.persist", "state/csp/k", b"v1")
    env.clock[0] += 2000
    env.persist("csp", "state.persist", "state/csp/k", b"v2")
    assert env.sop.persistence is not None
    indexes = env.sop.persistence.apply_retention(env.clock[0])
    log = env.log()
    assert [(log[i]["name"], log[i]["version"], log[i]["rule"]) for i in indexes] == [
        ("k", 1, "max_age")
    ]
    assert env.read("csp", "state/csp/old").data == b"only version"  # older, but the latest
    assert env.read("csp", "state/csp/k").data == b"v2"


def test_write_once_scopes_are_never_deleted(env: Env) -> None:
    for i in range(3):
        env.persist("emp", "verdict.record", f"verdicts/emp/v{i}", b"PROVED")
    env.clock[0] += 10_000 * DAY
    assert env.sop.persistence is not None
    assert env.sop.persistence.apply_retention(env.clock[0]) == []
    assert len(env.stored("emp-verdicts")) == 3
    assert _tombstones(env) == []


SIZES = [pytest.param(bytes, id="small-in-database"), pytest.param(large, id="large-file")]


def _kept(env: Env) -> int:
    """Blobs kept for the DRAC artifacts scope: its content (files or rows) and small blobs."""
    return len(env.stored("drac-artifacts")) + len(env.db_blobs("drac-artifacts"))


@pytest.mark.parametrize("make", SIZES)
def test_shared_blob_stays_while_another_name_uses_it(
    env: Env, make: Callable[[bytes], bytes]
) -> None:
    env.persist("drac", "artifact.persist", "artifacts/drac/a", make(b"shared"))
    env.persist("drac", "artifact.persist", "artifacts/drac/a", make(b"newer"))
    env.persist("drac", "artifact.persist", "artifacts/drac/b", make(b"shared"))
    env.clock[0] += 31 * DAY
    assert env.sop.persistence is not None
    indexes = env.sop.persistence.apply_retention(env.clock[0])
    assert len(indexes) == 1  # `a` version 1 (superseded and older than 30 days)
    assert env.read("drac", "artifacts/drac/b").data == make(b"shared")
    assert env.read("drac", "artifacts/drac/a").data == make(b"newer")
    assert _kept(env) == 2


@pytest.mark.parametrize("make", SIZES)
def test_unused_blob_is_removed_after_its_tombstone(
    env: Env, make: Callable[[bytes], bytes]
) -> None:
    first = env.persist("drac", "artifact.persist", "artifacts/drac/a", make(b"gone soon"))
    env.persist("drac", "artifact.persist", "artifacts/drac/a", make(b"stays"))
    assert _kept(env) == 2
    env.clock[0] += 31 * DAY
    assert env.sop.persistence is not None
    [index] = env.sop.persistence.apply_retention(env.clock[0])
    stored = first.write.stored
    assert env.log()[index]["stored"] == stored
    assert stored not in env.stored("drac-artifacts")
    assert stored not in env.db_blobs("drac-artifacts")
    assert _kept(env) == 1


def test_sop_apply_retention_is_logged_as_an_admin_operation(env: Env) -> None:
    for i in range(3):
        env.persist("csp", "state.persist", "state/csp/k", f"v{i}".encode())
    before = len(env.log())
    tombstones = env.sop.apply_retention()
    admin = env.log()[before]
    assert (admin["type"], admin["op"]) == ("admin", "persistence.retention")
    assert tombstones and min(tombstones) > before


def test_retention_rule_never_expires_the_latest_version() -> None:
    rule = Retention(keep=1, max_age_seconds=1)
    assert not rule.expired(0, 10**9)
    assert rule.expired(1, 0)
    assert not Retention(keep=3).expired(2, 10**9)
    assert Retention(max_age_seconds=5).expired(7, 6)


def test_deny_leaves_retention_nothing_to_do(env: Env) -> None:
    d = env.persist("drac", "artifact.persist", "state/csp/k", b"x")
    assert d.effect is Permission.DENY
    assert env.sop.persistence is not None
    assert env.sop.persistence.apply_retention(env.clock[0]) == []

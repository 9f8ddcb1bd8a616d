"""PostgreSQL: a crash between decision and effect is repaired at boot, by any replica.

The bytes of a scope are rows of the shared schema (ADR 0015), written in a
transaction of their own after the decision is logged and before the effect
is (INV-9). A replica killed (SIGKILL, ``persistence_crash_child.py``) at
each point of a persist leaves the schema in a state another replica's boot
repairs as it would a data directory's files: the pending decision is closed
by a ``persist.effect`` entry marked ``repaired`` (``written`` when the row is
there with the bound digest, ``aborted`` otherwise), and nothing is ever
half-written: a row that was not committed does not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import DSN, connect, scratch_schema
from psycopg import sql

import sop_verified
from sop_verified.core.health import Health
from sop_verified.nexus.config import init_replica
from sop_verified.nexus.sop import SOP

# PostgreSQL replicas in one process: about 20 s of the README's test command between
# these three modules; `.ci/run` runs them in its slow step.
pytestmark = pytest.mark.slow

NOW = 1_800_000_000
CHILD = Path(__file__).with_name("persistence_crash_child.py")
SOURCE = Path(sop_verified.__file__).resolve().parents[1]
POLICY = """
[[policy]]
id = "all-protocols-persist"
effect = "permit"
principal = ["drac", "emp", "csp"]
action = ["artifact.persist", "verdict.record", "state.persist", "artifact.read"]
resource = ["artifacts/drac/**", "verdicts/emp/**", "state/csp/**"]
channel = "bridge"
"""
CASES = {
    "drac": ("artifact.persist", "artifacts/drac/s1/out.bin"),
    "emp": ("verdict.record", "verdicts/emp/subject/claim"),
    "csp": ("state.persist", "state/csp/k"),
}
PAYLOAD = "crash-test payload"


class Prepared:
    """A schema, the replica that crashes (``one``), the one that repairs (``two``), tokens."""

    def __init__(self, schema: str, one: Path, two: Path, tokens: dict[str, str]) -> None:
        self.schema, self.one, self.two, self.tokens = schema, one, two, tokens

    def rows(self) -> list[tuple[str, str, bytes]]:
        """Every row of ``persist_content``."""
        with connect() as conn:
            query = sql.SQL("SELECT scope, stored, data FROM {}.persist_content").format(
                sql.Identifier(self.schema)
            )
            return [(str(a), str(b), bytes(c)) for a, b, c in conn.execute(query).fetchall()]


@pytest.fixture
def prepared(tmp_path: Path) -> Iterator[Prepared]:
    with scratch_schema() as schema:
        one, two = tmp_path / "one", tmp_path / "two"
        SOP.init(one, dsn=DSN, schema=schema)
        sop = SOP.boot(one, now=lambda: NOW)
        assert sop.health is Health.READY, sop.boot_report
        (tmp_path / "pol").mkdir()
        (tmp_path / "pol" / "policy.toml").write_text(POLICY)
        sop.activate_policy(tmp_path / "pol")
        actions = ["artifact.persist", "verdict.record", "state.persist", "artifact.read"]
        resources = ["artifacts/drac/**", "verdicts/emp/**", "state/csp/**"]
        tokens = {p: sop.admit(p, actions, resources, expires=NOW + 3600)[1] for p in CASES}
        sop.close()
        init_replica(two, one)
        yield Prepared(schema, one, two, tokens)


def _crash(p: Prepared, point: str, principal: str) -> None:
    action, resource = CASES[principal]
    args = [str(p.one), p.tokens[principal], point, principal, action, resource, PAYLOAD]
    result = subprocess.run(
        [sys.executable, str(CHILD), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(SOURCE)},
    )
    assert result.returncode == -9, (result.returncode, result.stderr[-2000:])


def _effects(sop: SOP) -> list[dict[str, Any]]:
    entries = [json.loads(p) for _, _, p in sop.store.log.log_entries()]
    return [e for e in entries if e.get("type") == "persist.effect"]


def _read(sop: SOP, token: str, principal: str) -> bytes | None:
    request = {
        "request_id": "after-boot",
        "principal": principal,
        "action": "artifact.read",
        "resource": CASES[principal][1],
        "capability": token,
    }
    return sop.read(request).data


CRASHES = [
    pytest.param("after_decision", "csp", "aborted", id="after_decision-versioned"),
    pytest.param("pg_in_content_write", "emp", "aborted", id="in_content_write-write_once"),
    pytest.param("pg_in_content_write", "drac", "aborted", id="in_content_write-content_addressed"),
    pytest.param("after_publish", "csp", "written", id="after_content-versioned"),
    pytest.param("after_publish", "drac", "written", id="after_content-content_addressed"),
    pytest.param("after_effect", "emp", None, id="after_effect-write_once"),
]


@pytest.mark.parametrize(("point", "principal", "repaired"), CRASHES)
def test_a_crashed_replicas_persist_is_repaired_by_the_other_replicas_boot(
    prepared: Prepared, point: str, principal: str, repaired: str | None
) -> None:
    _crash(prepared, point, principal)
    left = prepared.rows()
    if point == "pg_in_content_write":
        assert left == []  # the INSERT ran; uncommitted, it never existed
    sop = SOP.boot(prepared.two, now=lambda: NOW + 10)
    try:
        assert sop.health is Health.READY, sop.boot_report
        assert sop.store.persist.pending() == []
        [effect] = _effects(sop)
        if repaired is None:
            assert "repaired" not in effect
            assert sop.recovery.redone == sop.recovery.aborted == 0
        else:
            assert (effect["outcome"], effect.get("repaired")) == (repaired, True)
        got = _read(sop, prepared.tokens[principal], principal)
        if (repaired or effect["outcome"]) == "aborted":
            assert effect["reasons"][0]["code"] == "effect_incomplete"
            assert got is None
            assert prepared.rows() == []
        else:
            expected = "sha256:" + hashlib.sha256(PAYLOAD.encode()).hexdigest()
            assert effect["digest"] == expected
            assert got == PAYLOAD.encode()
            [(_, stored, data)] = prepared.rows()
            assert (stored, data) == (effect["stored"], PAYLOAD.encode())
        sop.store.log.verify_tail()
        sop.store.verify_state(sop.store.log.log_size())
    finally:
        sop.close()


def test_a_crash_in_a_linked_write_leaves_all_or_nothing(prepared: Prepared) -> None:
    """A small content-addressed write commits decision, effect and bytes together."""
    _crash(prepared, "pg_linked_in_commit", "drac")
    sop = SOP.boot(prepared.two, now=lambda: NOW + 10)
    try:
        assert sop.health is Health.READY, sop.boot_report
        assert sop.recovery.redone == sop.recovery.aborted == 0
        entries = [json.loads(p) for _, _, p in sop.store.log.log_entries()]
        assert not [e for e in entries if e.get("request", {}).get("request_id") == "crash-1"]
        assert _effects(sop) == [] and prepared.rows() == []
        assert _read(sop, prepared.tokens["drac"], "drac") is None
    finally:
        sop.close()

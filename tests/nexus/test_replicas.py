"""Two SOP replicas on one PostgreSQL log (issue 15, items 2 and 3; ADR 0017).

Both replicas are booted in this process on two data directories sharing one
schema (``sop init --dsn``, then ``--replica-of``). What must hold:

- their decisions interleave in one gap-free log that ``sop log verify``
  accepts, each replica's batches rebuilt on the head the other moved;
- a revocation committed through one replica is in force on the other for
  the next decision it logs, though that replica loaded its capabilities
  before the revocation (it is reloaded when the log shows it);
- a policy activation through one replica is what the other decides by next,
  and every decision names the policy set it was decided by.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_server import DSN, scratch_schema
from starlette.exceptions import StarletteDeprecationWarning

from sop_verified.core.health import Health
from sop_verified.core.persistence.maintenance import Maintenance
from sop_verified.core.request import Permission, parse_request
from sop_verified.core.transport import Transport
from sop_verified.nexus.anchor import ANCHOR_NAME, write_anchor
from sop_verified.nexus.config import init_replica
from sop_verified.nexus.demo import SOUND_POLICIES
from sop_verified.nexus.keys import CHECKPOINT_KEY, CHECKPOINT_VKEY
from sop_verified.nexus.log_ops import audit_data_dir
from sop_verified.nexus.sop import SOP
from sop_verified.nexus.state_ops import accept_config
from sop_verified.server.app import plane
from sop_verified.server.read_plane import log_routes, sop_source
from sop_verified.server.serve import REPLICA_KEYS_SECONDS, Server, ServeSettings, bridge_app
from sop_verified.storage.persist_index import PendingDecision
from sop_verified.storage.postgres_persist import PostgresPersistIndex
from sop_verified.tools.checkpoint import sign_checkpoint
from sop_verified.tools.signed_note import Signer

# PostgreSQL replicas in one process: about 20 s of the README's test command between
# these three modules; `.ci/run` runs them in its slow step.
pytestmark = pytest.mark.slow

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what is installed
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

PERSIST = {
    "principal": "drac",
    "action": "artifact.persist",
    "resource": "artifacts/drac/s1/out.bin",
    "context": {"size_bytes": 10, "session": "s1"},
}


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[SOP, SOP, Path, str]]:
    with scratch_schema() as schema:
        one, two = tmp_path / "one", tmp_path / "two"
        SOP.init(one, dsn=DSN, schema=schema)
        a = SOP.boot(one)
        try:
            assert a.health is Health.READY, a.boot_report
            policies = tmp_path / "policies"
            policies.mkdir()
            (policies / "policies.toml").write_text(SOUND_POLICIES)
            a.activate_policy(policies)
            _, token = a.admit(
                "drac", ["artifact.persist"], ["artifacts/drac/**"], expires=int(time.time()) + 3600
            )
            init_replica(two, one)  # after `one` booted: it starts from one's anchor
            b = SOP.boot(two)
            try:
                assert b.health is Health.READY, b.boot_report
                yield a, b, one, token
            finally:
                b.close()
        finally:
            a.close()


def _wait_owner_sessions(schema: str, n: int) -> None:
    """Until ``schema`` has ``n`` owner sessions (a closed one ends a moment after it closed)."""
    deadline = time.monotonic() + 5
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    with psycopg.connect(DSN, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute(query, (f"sop:{schema}:owner",)).fetchone() == (n,):
                return
            time.sleep(0.01)
    raise AssertionError(f"PostgreSQL still holds more than {n} replicas' owner sessions")


def _ask(sop: SOP, token: str, n: int) -> Permission:
    return sop.submit({**PERSIST, "request_id": f"r-{n}", "capability": token}).effect


def _entry(sop: SOP, index: int) -> dict[str, object]:
    ((_, _, payload),) = sop.store.log.log_entries(index, index + 1)
    parsed: dict[str, object] = json.loads(payload)
    return parsed


def test_interleaved_decisions_make_one_gap_free_verified_log(
    replicas: tuple[SOP, SOP, Path, str],
) -> None:
    a, b, one, token = replicas
    indexes: list[int] = []
    lock = threading.Lock()

    def run(sop: SOP, base: int) -> None:
        for k in range(40):
            d = sop.submit({**PERSIST, "request_id": f"t{base}-{k}", "capability": token})
            assert d.effect is Permission.ALLOW, d.reasons
            with lock:
                indexes.append(d.log_index)  # type: ignore[arg-type]

    threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(indexes)) == 160  # no index given twice
    size = a.store.log.log_size()
    entries = a.store.log.log_entries(0, size)
    assert [i for i, _, _ in entries] == list(range(size))  # gap-free
    report, _ = audit_data_dir(one)
    assert report.ok, report.findings
    assert report.derived_state.startswith("verified"), report.derived_state


def test_a_revocation_through_one_replica_is_in_force_on_the_other(
    replicas: tuple[SOP, SOP, Path, str],
) -> None:
    a, b, _, token = replicas
    assert _ask(b, token, 1) is Permission.ALLOW  # b knows the capability
    (cap_id,) = [c for c, _, _ in a.store.capabilities.load_capabilities()]
    a.revoke(cap_id)
    d = b.submit({**PERSIST, "request_id": "after", "capability": token})
    assert d.effect is Permission.DENY
    assert d.reasons[0].code == "revoked", d.reasons
    assert _entry(b, d.log_index)["effect"] == "DENY"  # type: ignore[arg-type]


def test_a_policy_activation_through_one_replica_decides_the_next_on_the_other(
    replicas: tuple[SOP, SOP, Path, str], tmp_path: Path
) -> None:
    a, b, _, token = replicas
    before = b.submit({**PERSIST, "request_id": "before", "capability": token})
    old_digest = _entry(b, before.log_index)["policy_digest"]  # type: ignore[arg-type]
    stricter = tmp_path / "stricter"
    stricter.mkdir()
    (stricter / "policies.toml").write_text(
        SOUND_POLICIES.replace("context.size_bytes <= 1048576", "context.size_bytes <= 5")
    )
    a.activate_policy(stricter)
    after = b.submit({**PERSIST, "request_id": "after", "capability": token})
    new_digest = _entry(b, after.log_index)["policy_digest"]  # type: ignore[arg-type]
    assert new_digest != old_digest
    assert new_digest == a.policy.digest  # type: ignore[union-attr]
    assert after.effect is Permission.DENY, after.reasons  # 10 bytes > 5: the new set's answer


def test_a_changed_configuration_is_accepted_on_the_shared_database(
    replicas: tuple[SOP, SOP, Path, str], tmp_path: Path
) -> None:
    a, b, one, _ = replicas
    a.close()
    b.close()
    config = (one / "sop.toml").read_text()
    changed = config.replace("max_blob_bytes = 1048576", "max_blob_bytes = 1048575", 1)
    assert changed != config
    (one / "sop.toml").write_text(changed)
    refused = SOP.boot(one)
    assert refused.health is not Health.READY  # not accepted: refused (INV-11)
    refused.close()
    digest, index = accept_config(one)  # `sop config accept`, on the PostgreSQL log
    (tmp_path / "two" / "sop.toml").write_text(changed)  # the other replica's copy
    for data_dir in (one, tmp_path / "two"):
        again = SOP.boot(data_dir)
        try:
            assert again.health is Health.READY, again.boot_report.detail
            assert _entry(again, index)["config_digest"] == digest
        finally:
            again.close()


@pytest.mark.parametrize("when", ["before-it-reads", "while-it-repairs"])
def test_a_replica_boots_while_another_logs_decisions_awaiting_their_effect(
    replicas: tuple[SOP, SOP, Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    a, b, _, token = replicas
    before = a.submit({**PERSIST, "request_id": "before", "capability": token})
    assert before.effect is Permission.ALLOW  # a decision alone: pending until its effect
    left = b.submit({**PERSIST, "request_id": "left", "capability": token})
    assert left.effect is Permission.ALLOW
    b.close()  # `b` is gone: its pending decision is boot repair's, `a`'s stays `a`'s
    _wait_owner_sessions(a.store.schema, 1)  # type: ignore[attr-defined]  # the server ends b's owner session a moment after it closed
    meanwhile: list[int] = []

    def a_decides() -> None:
        if not meanwhile:  # `a` logs another one while `b` boots
            d = a.submit({**PERSIST, "request_id": "meanwhile", "capability": token})
            meanwhile.append(d.log_index)  # type: ignore[arg-type]

    if when == "before-it-reads":  # after `b`'s log read its tail, before its repair reads
        repairable = PostgresPersistIndex.repairable

        def read_pending(self: PostgresPersistIndex) -> list[PendingDecision]:
            a_decides()
            return repairable(self)

        monkeypatch.setattr(PostgresPersistIndex, "repairable", read_pending)
    else:
        repair_one = Maintenance._repair_one

        def repair(self: Maintenance, p: PendingDecision) -> tuple[bool, int, bytes]:
            a_decides()
            return repair_one(self, p)

        monkeypatch.setattr(Maintenance, "_repair_one", repair)
    again = SOP.boot(tmp_path / "two")
    try:
        assert again.health is Health.READY, again.boot_report.detail
        monkeypatch.undo()
        pending_now = {p.decision_index for p in again.store.persist.pending()}
        assert left.log_index not in pending_now  # its replica was gone: repaired
        assert before.log_index in pending_now  # `a` is alive: its decision is its to carry out
        assert meanwhile and meanwhile[0] in pending_now  # what `a` logged meanwhile: `a`'s
    finally:
        again.close()


def test_an_idle_replica_serves_the_entries_another_logged(
    replicas: tuple[SOP, SOP, Path, str],
) -> None:
    a, b, _, token = replicas
    logged = a.submit({**PERSIST, "request_id": "by-a", "capability": token}).log_index
    assert logged is not None and b.log.size <= logged  # b wrote nothing since: it has not read it
    with TestClient(plane(list(log_routes(sop_source(b))))) as http:
        served = http.get("/log/checkpoint").text  # the read plane re-reads the shared tail
    assert served.splitlines()[1] == str(a.log.size)
    assert b.log.prove(logged).index == logged  # and its receipts are b's to give too
    assert b.log.refresh() == a.log.size  # nothing new: one read of the head, no change


@pytest.fixture
def edges(replicas: tuple[SOP, SOP, Path, str], tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Each replica's bridge edge (idempotency keys, decision queue), without listeners."""
    servers = [Server(ServeSettings(tmp_path, unsafe_no_tls=True), s, None) for s in replicas[:2]]  # type: ignore[arg-type]
    for server in servers:
        server._load_keys()
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.state.queue.close()


def _decide(server: Server, body: dict[str, object], key: str) -> dict[str, object]:
    """``POST /v1/decide`` on ``server``'s bridge app with ``Idempotency-Key: key``."""
    with TestClient(bridge_app(server.state, server.settings)) as http:
        answer: dict[str, object] = http.post(
            "/v1/decide", json=body, headers={"Idempotency-Key": key}
        ).json()
    return answer


def test_a_retry_sent_to_another_replica_is_answered_from_the_log(
    replicas: tuple[SOP, SOP, Path, str], edges: tuple[Server, Server]
) -> None:
    a, b, _, token = replicas
    body = {**PERSIST, "request_id": "keyed", "capability": token}
    first = _decide(edges[0], body, "once-across-replicas")
    size = a.store.log.log_size()
    time.sleep(REPLICA_KEYS_SECONDS)  # the retry comes after the other replica's view aged
    again = _decide(edges[1], body, "once-across-replicas")
    assert first["effect"] == "ALLOW" and first["log_index"] is not None, first
    assert again.get("log_index") == first["log_index"] and again.get("replayed") is True, again
    assert b.store.log.log_size() == size  # decided once: no second decision entry


def _keyed_decisions(sop: SOP, key: str) -> list[int]:
    """The log indexes of the decisions that carry idempotency key ``key``."""
    out = []
    for index, _, payload in sop.store.log.log_entries():
        entry = json.loads(payload)
        transport = entry.get("transport") or {}
        if entry.get("type") == "decision" and transport.get("idempotency_key") == key:
            out.append(index)
    return out


def test_a_retry_sent_to_another_replica_at_once_is_caught_when_its_batch_is_sequenced(
    replicas: tuple[SOP, SOP, Path, str], edges: tuple[Server, Server]
) -> None:
    """Sooner than 100 ms: the other replica has not read the tail; its batch's rebuild has."""
    _, b, _, token = replicas
    replica_b = edges[1].state.replicas
    assert replica_b is not None
    replica_b.due = lambda: False  # type: ignore[method-assign]  # the retry comes within 100 ms
    body = {**PERSIST, "request_id": "keyed-now", "capability": token}
    first = _decide(edges[0], body, "at-once-across-replicas")
    again = _decide(edges[1], body, "at-once-across-replicas")
    assert first["effect"] == "ALLOW" and first["log_index"] is not None, first
    assert again.get("log_index") == first["log_index"] and again.get("replayed") is True, again
    assert _keyed_decisions(b, "at-once-across-replicas") == [first["log_index"]]  # one decision


def test_a_key_still_running_here_that_another_replica_logged_first_is_not_logged_again(
    replicas: tuple[SOP, SOP, Path, str], edges: tuple[Server, Server]
) -> None:
    """The first call still runs on B when A logs the key's decision: B's is never logged."""
    a, b, _, token = replicas
    keys = edges[1].state.keys
    assert keys.begin("-", "raced", "fingerprint") is None  # B's call runs with the key
    request = {**PERSIST, "request_id": "raced", "capability": token}
    said = Transport(None, idempotency_key="raced")
    first = a.submit(parse_request(request).via(said))  # A logs the key's decision first
    assert first.log_index is not None
    second = b.submit(parse_request(request).via(said))  # B's batch finds it when sequenced
    assert second.log_index is None and second.effect is Permission.DENY, second
    assert [r.code for r in second.reasons] == ["idempotency_key_decided"], second.reasons
    assert f"log index `{first.log_index}`" in second.reasons[0].message
    assert keys.logged("-", "raced") == first.log_index  # the edge answers with A's
    assert _keyed_decisions(b, "raced") == [first.log_index]


def test_a_checkpoint_key_rotated_through_one_replica_is_taken_up_by_the_other_given_the_key(
    replicas: tuple[SOP, SOP, Path, str], tmp_path: Path
) -> None:
    """The other replica refuses to sign with the retired key, saying what to do; given the
    new key it boots again on the anchor the retired key signed, and no further than that."""
    a, b, one, token = replicas
    two = tmp_path / "two"
    retired = (two / CHECKPOINT_KEY).read_bytes()
    rotation = a.rotate_checkpoint_key()
    assert a.submit({**PERSIST, "request_id": "after-rotation", "capability": token}).log_index
    refused = b.submit({**PERSIST, "request_id": "on-b", "capability": token})
    assert refused.log_index is None and refused.effect is Permission.DENY
    why = " ".join(r.message for r in refused.reasons)
    assert f"entry `{rotation.index}` announces a rotation" in why, why
    assert "copy `keys/checkpoint.key`" in why, why
    b.close()
    for name in (CHECKPOINT_KEY, CHECKPOINT_VKEY):
        (two / name).write_bytes((one / name).read_bytes())
    again = SOP.boot(two)  # its anchor is signed by the key the rotation retired
    try:
        assert again.health is Health.READY, again.boot_report
        decided = again.submit({**PERSIST, "request_id": "on-b-again", "capability": token})
        assert decided.effect is Permission.ALLOW and decided.log_index is not None, decided
    finally:
        again.close()
    report, _ = audit_data_dir(two)
    assert report.ok, report.findings
    # The retired key vouches for checkpoints up to its rotation's, never for a later one.
    old = Signer.from_string(retired.decode("ascii").strip())
    later = a.log.checkpoint
    assert later is not None and later.size > rotation.index + 1
    write_anchor(two / ANCHOR_NAME, sign_checkpoint(later, old))
    forged = SOP.boot(two)
    try:
        assert forged.health is not Health.READY
        assert "signed by the key retired at log index" in str(forged.status()), forged.status()
    finally:
        forged.close()

"""DRAC through ``sop.drac``: phases in order (proved by the gate), the catalog, its provenance."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from protocol_env import NOW, Env, make_env

from sop_verified.core.health import Health
from sop_verified.core.obligations import Verdict, VerdictResult
from sop_verified.core.request import Decision, Obligation, Permission, Stage
from sop_verified.nexus.config import DEFAULT_CONFIG
from sop_verified.nexus.demo import SOUND_POLICIES
from sop_verified.nexus.sop import SOP
from sop_verified.protocols.drac import PhaseMachine
from sop_verified.tools.attest import PREDICATE_ARTIFACT, verify_envelope
from sop_verified.tools.canonical import canonical_json

PHASES = ("SCAN", "RESOLVE", "ASSEMBLE", "VERIFY", "FREEZE")


def _codes(d: Decision) -> list[str]:
    return [r.code for r in d.reasons]


def test_a_session_walks_every_phase_in_order(env: Env) -> None:
    drac = env.sop.drac
    assert drac.phases == PHASES
    assert drac.open_session("walk", token=env.drac).allowed
    for i, phase in enumerate(PHASES):
        if i:
            assert drac.enter("walk", phase, token=env.drac).allowed, phase
        assert drac.status("walk") == (phase, "open")
        assert drac.complete("walk", phase, token=env.drac).allowed, phase
        assert drac.status("walk") == (phase, "completed")
    finished = drac.enter("walk", "FREEZE", token=env.drac)
    assert finished.effect is Permission.DENY
    assert "out_of_order" in _codes(finished)


def test_every_step_is_logged_after_its_allow(env: Env) -> None:
    start = env.log_size()
    step = env.sop.drac.open_session("logged", token=env.drac)
    assert step.allowed and step.log_index is not None
    record = step.record
    assert record.receipt.index > step.log_index  # spec: INV-9 — the decision first
    assert step.to_dict()["phase"]["receipt"] == record.receipt.to_dict()  # the JSON form
    entries = env.entries(start)
    kinds = [e.get("type") for e in entries]
    assert kinds.index("decision") < kinds.index("drac.phase")
    phase = next(e for e in entries if e.get("type") == "drac.phase")
    assert (phase["session"], phase["phase"], phase["event"]) == ("logged", "SCAN", "enter")
    assert phase["decision_index"] == step.log_index


def test_skipping_a_phase_is_denied_with_reason(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("skip", token=env.drac).allowed
    assert drac.complete("skip", "SCAN", token=env.drac).allowed
    skipped = drac.enter("skip", "ASSEMBLE", token=env.drac)
    assert skipped.effect is Permission.DENY
    first = skipped.reasons[0]
    assert (first.stage, first.code) == (Stage.PROTOCOL, "out_of_order")
    assert "`skip` is at `SCAN.done`" in first.message and "`enter RESOLVE`" in first.message
    refuted = [r for r in skipped.reasons if r.stage is Stage.OBLIGATION]
    assert refuted and refuted[0].obligation is not None
    assert refuted[0].obligation.startswith("phase:")  # the gate refuted the phase order
    assert skipped.log_index is not None  # the explanation is recorded too
    assert drac.status("skip") == ("SCAN", "completed")


def test_entering_the_next_phase_before_completing_this_one_is_denied(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("early", token=env.drac).allowed
    early = drac.enter("early", "RESOLVE", token=env.drac)
    assert early.effect is Permission.DENY
    assert _codes(early)[0] == "out_of_order"
    assert drac.status("early") == ("SCAN", "open")


def test_completing_a_phase_twice_or_another_phase_is_denied(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("twice", token=env.drac).allowed
    assert drac.complete("twice", "SCAN", token=env.drac).allowed
    assert _codes(drac.complete("twice", "SCAN", token=env.drac))[0] == "out_of_order"
    assert _codes(drac.complete("twice", "RESOLVE", token=env.drac))[0] == "out_of_order"


@pytest.mark.parametrize("op", ["enter", "complete", "catalog"])
def test_unknown_session_is_denied(env: Env, op: str) -> None:
    drac = env.sop.drac
    if op == "enter":
        d = drac.enter("ghost", "RESOLVE", token=env.drac)
    elif op == "complete":
        d = drac.complete("ghost", "SCAN", token=env.drac)
    else:
        d = drac.catalog("ghost", "SCAN", "a.json", b"{}", token=env.drac)
    assert d.effect is Permission.DENY
    assert d.reasons[0].code == "unknown_session"
    assert drac.status("ghost") is None


def test_opening_an_existing_session_is_denied(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("again", token=env.drac).allowed
    d = drac.open_session("again", token=env.drac)
    assert d.effect is Permission.DENY and _codes(d)[0] == "session_exists"


def test_unknown_phase_is_denied(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("phaseless", token=env.drac).allowed
    d = drac.complete("phaseless", "DEPLOY", token=env.drac)
    assert d.effect is Permission.DENY and _codes(d)[0] == "unknown_phase"


def test_a_raw_step_whose_context_disagrees_with_its_resource_is_refuted(env: Env) -> None:
    assert env.sop.drac.open_session("ctx", token=env.drac).allowed
    d = env.sop.submit(
        {
            "request_id": "ctx-1",
            "principal": "drac",
            "action": "phase.advance",
            "resource": "artifacts/drac/sessions/ctx/phases/SCAN/complete",
            "capability": env.drac,
            "context": {"session": "other", "phase": "SCAN"},
        }
    )
    assert d.effect is Permission.DENY
    assert d.reasons[0].code == "obligation_refuted"


class RefusingGate:
    """A gate that proves nothing."""

    def check(self, obligation: Obligation) -> VerdictResult:
        return VerdictResult(Verdict.UNKNOWN, "sha256:00", "refusing gate")

    def check_many(self, obligations: Sequence[Obligation]) -> list[VerdictResult]:
        return [self.check(ob) for ob in obligations]


def test_a_step_needs_the_gate_to_prove_the_phase_order(tmp_path: Path) -> None:
    SOP.init(tmp_path / "d")
    sop = SOP.boot(tmp_path / "d", now=lambda: NOW, proof_gate=RefusingGate())
    try:
        (tmp_path / "p").mkdir()
        (tmp_path / "p" / "policies.toml").write_text(SOUND_POLICIES)
        sop.activate_policy(tmp_path / "p")
        _, token = sop.admit("drac", ["phase.advance"], ["artifacts/drac/**"], expires=NOW + 60)
        d = sop.drac.open_session("s", token=token)
        assert d.effect is Permission.DENY
        assert any(
            r.code == "obligation_unknown" and (r.obligation or "").startswith("phase:")
            for r in d.reasons
        )
        assert sop.drac.status("s") is None
    finally:
        sop.close()


def test_the_phase_order_comes_from_the_configuration(tmp_path: Path) -> None:
    config = DEFAULT_CONFIG.replace(
        'phases = ["SCAN", "RESOLVE", "ASSEMBLE", "VERIFY", "FREEZE"]', 'phases = ["PLAN", "BUILD"]'
    )
    e = make_env(tmp_path, config_text=config)
    try:
        drac = e.sop.drac
        assert drac.phases == ("PLAN", "BUILD")
        assert drac.open_session("c", token=e.drac).allowed
        assert drac.status("c") == ("PLAN", "open")
        assert _codes(drac.enter("c", "SCAN", token=e.drac))[0] == "unknown_phase"
        assert drac.complete("c", "PLAN", token=e.drac).allowed
        assert drac.enter("c", "BUILD", token=e.drac).allowed
    finally:
        e.close()


def test_a_malformed_phase_order_does_not_boot(tmp_path: Path) -> None:
    from sop_verified.errors import ConfigError
    from sop_verified.nexus.config import init_data_dir

    config = DEFAULT_CONFIG.replace(
        'phases = ["SCAN", "RESOLVE", "ASSEMBLE", "VERIFY", "FREEZE"]', 'phases = ["A", "A"]'
    )
    with pytest.raises(ConfigError, match="phase order"):
        init_data_dir(tmp_path / "d", config_text=config)


def _attestation(env: Env, index: int) -> dict[str, Any]:
    store = env.sop.store
    key = env.sop.attestation_key
    assert store is not None and key is not None
    ((_, _, payload),) = store.log.log_entries(index, index + 1)
    entry = orjson.loads(payload)
    assert entry["type"] == "attestation"
    return verify_envelope(entry["envelope"], key.public_key())


def test_a_catalogued_artifact_has_a_provenance_attestation_linking_its_inputs(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("prov", token=env.drac).allowed
    first = drac.catalog("prov", "SCAN", "deps.json", b'{"deps": 3}', token=env.drac)
    assert first.allowed, first.reasons
    dep = first.record.digest
    outside = "sha256:" + "e" * 64
    made = drac.catalog("prov", "SCAN", "plan.json", b"plan", inputs=[dep, outside], token=env.drac)
    assert made.allowed, made.reasons
    record = made.record.to_dict()
    assert record["inputs"] == [dep, outside]
    assert record["effect_index"] == made.write.index
    statement = _attestation(env, record["attestation_index"])
    assert statement["predicateType"] == PREDICATE_ARTIFACT
    subject = statement["subject"][0]
    assert subject == {
        "name": "artifacts/drac/sessions/prov/SCAN/plan.json",
        "digest": {"sha256": record["digest"].removeprefix("sha256:")},
    }
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert deps == [
        {"digest": {"sha256": dep.removeprefix("sha256:")}, "name": "prov/SCAN/deps.json"},
        {"digest": {"sha256": "e" * 64}},
    ]
    assert record["attestation_index"] < record["log_index"]  # attested, then catalogued


def test_the_catalog_answers_by_session_phase_and_digest(env: Env) -> None:
    drac = env.sop.drac
    for s in ("qa", "qb"):
        assert drac.open_session(s, token=env.drac).allowed
        assert drac.catalog(s, "SCAN", "shared.bin", b"same bytes", token=env.drac).allowed
        assert drac.complete(s, "SCAN", token=env.drac).allowed
        assert drac.enter(s, "RESOLVE", token=env.drac).allowed
        assert drac.catalog(s, "RESOLVE", f"{s}.bin", s.encode(), token=env.drac).allowed
    by_session = drac.artifacts(token=env.drac, session="qa")
    assert by_session.allowed
    assert [(a.phase, a.name) for a in by_session.artifacts] == [
        ("SCAN", "shared.bin"),
        ("RESOLVE", "qa.bin"),
    ]
    by_phase = drac.artifacts(token=env.drac, session="qb", phase="RESOLVE").artifacts
    assert [a.name for a in by_phase] == ["qb.bin"]
    digest = by_session.artifacts[0].digest
    shared = drac.artifacts(token=env.drac, digest=digest).artifacts
    assert {a.session for a in shared} >= {"qa", "qb"}
    assert all(a.digest == digest for a in shared)


def test_a_catalog_query_needs_a_capability(env: Env) -> None:
    q = env.sop.drac.artifacts(token=env.emp, session="qa")
    assert not q.allowed and q.artifacts == ()
    assert q.decision.reasons[0].stage is Stage.CAPABILITY


def test_an_artifact_outside_the_open_phase_is_refused_and_nothing_written(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("closed", token=env.drac).allowed
    assert drac.complete("closed", "SCAN", token=env.drac).allowed
    late = drac.catalog("closed", "SCAN", "late.json", b"late", token=env.drac)
    assert late.effect is Permission.DENY
    assert late.reasons[0].code == "phase_not_open"
    persistence = env.sop.persistence
    assert persistence is not None
    assert persistence.objects("drac-artifacts", "sessions/closed/SCAN/late.json") == []


def test_malformed_inputs_are_refused_and_nothing_written(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("inputs", token=env.drac).allowed
    bad = drac.catalog("inputs", "SCAN", "x.json", b"x", inputs=["md5:abc"], token=env.drac)
    assert bad.effect is Permission.DENY and bad.reasons[0].code == "bad_inputs"
    persistence = env.sop.persistence
    assert persistence is not None
    assert persistence.objects("drac-artifacts", "sessions/inputs/SCAN/x.json") == []
    pending = persistence._index.pending()
    assert pending == []  # the refusal closed the logged ALLOW: nothing awaits an effect


def test_drac_cannot_catalogue_into_another_protocols_scope(env: Env) -> None:
    d = env.sop.drac.catalog("x", "SCAN", "a", b"a", token=env.drac)
    assert d.effect is Permission.DENY  # unknown session first; and CSP's scope below
    raw = env.sop.persist(
        {
            "request_id": "drac-into-csp",
            "principal": "drac",
            "action": "artifact.persist",
            "resource": "state/csp/agent/x",
            "capability": env.drac,
        },
        b"x",
    )
    assert raw.effect is Permission.DENY
    assert raw.reasons[0].stage is Stage.CAPABILITY


def test_phases_and_catalog_survive_a_reboot(own_env: Env) -> None:
    drac = own_env.sop.drac
    assert drac.open_session("durable", token=own_env.drac).allowed
    assert drac.catalog("durable", "SCAN", "a.bin", b"a", token=own_env.drac).allowed
    assert drac.complete("durable", "SCAN", token=own_env.drac).allowed
    sop = own_env.reboot()
    assert sop.drac.status("durable") == ("SCAN", "completed")
    assert [
        a.name for a in sop.drac.artifacts(token=own_env.drac, session="durable").artifacts
    ] == ["a.bin"]
    skipped = sop.drac.enter("durable", "ASSEMBLE", token=own_env.drac)
    assert skipped.reasons[0].code == "out_of_order"  # the order still holds after the reboot
    assert sop.drac.enter("durable", "RESOLVE", token=own_env.drac).allowed


def _crash(env: Env) -> None:
    """A record in the log the index never saw: what a crash between append and index leaves.

    On a clean stop SOP raises the index's mark to the log's end (every record it
    appends goes through the ledger); a crash, or an index write that failed (the
    ledger stale), leaves the mark where it was. The test appended behind the
    ledger's back, so it tells the ledger what a crash would have left it knowing.
    """
    env.sop.protocols.ledger._stale = True


def test_a_record_the_index_missed_is_found_at_boot(own_env: Env) -> None:
    drac = own_env.sop.drac
    assert drac.open_session("crash", token=own_env.drac).allowed
    store = own_env.sop.store
    assert store is not None
    entry = {  # as if SOP crashed between appending this record and indexing it
        "type": "drac.phase",
        "session": "crash",
        "phase": "SCAN",
        "event": "complete",
        "decision_index": 0,
        "request_id": "crash-1",
        "time": NOW,
    }
    store.log.append(canonical_json(entry))
    _crash(own_env)
    sop = own_env.reboot()
    assert sop.drac.status("crash") == ("SCAN", "completed")


def test_an_out_of_order_record_in_the_log_fails_the_boot(own_env: Env) -> None:
    store = own_env.sop.store
    assert store is not None
    entry = {
        "type": "drac.phase",
        "session": "forged",
        "phase": "VERIFY",
        "event": "enter",
        "decision_index": 0,
        "request_id": "forged-1",
        "time": NOW,
    }
    store.log.append(canonical_json(entry))
    _crash(own_env)
    own_env.sop.close()
    sop = SOP.boot(own_env.data_dir, now=own_env.clock)
    own_env.sop = sop
    assert sop.health is not Health.READY  # spec: INV-8 — a contradictory record stops the boot
    d = sop.submit(
        {"request_id": "r", "principal": "drac", "action": "artifact.read", "resource": "a"}
    )
    assert d.effect is Permission.DENY


def test_the_attestation_envelope_signature_is_standard_base64(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("b64", token=env.drac).allowed
    made = drac.catalog("b64", "SCAN", "a", b"a", token=env.drac)
    index = made.record.attestation_index
    store = env.sop.store
    assert store is not None
    ((_, _, payload),) = store.log.log_entries(index, index + 1)
    sig = orjson.loads(payload)["envelope"]["signatures"][0]["sig"]
    assert len(base64.b64decode(sig, validate=True)) == 64


def test_the_gate_alone_still_denies_a_skipped_phase(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    drac = env.sop.drac
    assert drac.open_session("depth", token=env.drac).allowed
    monkeypatch.setattr(PhaseMachine, "check_step", lambda self, step: None)  # plain check broken
    skipped = drac.enter("depth", "VERIFY", token=env.drac)
    assert skipped.effect is Permission.DENY
    assert skipped.reasons[0].code == "obligation_refuted"  # the phase_order obligation
    assert drac.status("depth") == ("SCAN", "open")


@pytest.mark.parametrize("session", ["a/b", "../x", "", "sp ace", "x" * 300])
def test_a_malformed_session_id_is_denied_not_raised(env: Env, session: str) -> None:
    drac = env.sop.drac
    for d in (
        drac.open_session(session, token=env.drac),
        drac.complete(session, "SCAN", token=env.drac),
        drac.catalog(session, "SCAN", "a", b"a", token=env.drac),
        drac.artifacts(token=env.drac, session=session).decision,
    ):
        assert d.effect is Permission.DENY


def test_racing_steps_of_one_session_move_it_once(env: Env) -> None:
    drac = env.sop.drac
    assert drac.open_session("race", token=env.drac).allowed
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: drac.complete("race", "SCAN", token=env.drac), range(8)))
    assert sum(d.allowed for d in results) == 1
    assert drac.status("race") == ("SCAN", "completed")
    records = [
        e for e in env.entries() if e.get("type") == "drac.phase" and e.get("session") == "race"
    ]
    assert [r["event"] for r in records] == ["enter", "complete"]

"""`sop demo`, second act: one whole session end to end through the protocol facades.

DRAC compiles through its phases and catalogs an artifact in each, EMP
records a signed verification of the plan, CSP seals a snapshot and
resumes it, a tampered snapshot and a traversal attempt are refused, and at
the end every receipt is verified offline (signature, inclusion, payload)
and the whole log is audited as `sop log verify` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.core.request import Decision
from sop_verified.errors import SOPError
from sop_verified.nexus.log_ops import audit_data_dir
from sop_verified.nexus.persistence import SCOPES_DIR
from sop_verified.nexus.sop import SOP
from sop_verified.protocols.csp.book import SealRecord
from sop_verified.protocols.drac.catalog import ArtifactRecord
from sop_verified.protocols.emp import sign_output
from sop_verified.tools.tlog_receipt import verify_bundle

__all__ = ["run_session"]

SESSION = "session-7"
BLOB_SCOPE = "csp-snapshot-blobs"


def _row(act: str, label: str, d: Decision, **extra: Any) -> dict[str, Any]:
    first = d.reasons[0] if d.reasons else None
    return {
        "act": act,
        "label": label,
        "effect": str(d.effect),
        "stage": str(first.stage) if first else "",
        "code": first.code if first else "",
        "reason": first.message if first else "",
        "log_index": d.log_index,
        **extra,
    }


def _drac(sop: SOP, token: str, rows: list[dict[str, Any]]) -> str:
    drac = sop.drac
    rows.append(_row("DRAC", f"open session `{SESSION}`", drac.open_session(SESSION, token=token)))
    previous: list[str] = []
    plan = ""
    for i, phase in enumerate(drac.phases):
        if i:
            rows.append(_row("DRAC", f"enter {phase}", drac.enter(SESSION, phase, token=token)))
        name = f"{phase.lower()}.json"
        made = drac.catalog(
            SESSION,
            phase,
            name,
            f'{{"phase": "{phase}"}}'.encode(),
            inputs=previous[-1:],
            token=token,
        )
        rows.append(_row("DRAC", f"catalog {name} (provenance attested)", made))
        artifact = made.record_as(ArtifactRecord)
        if made.allowed and artifact is not None:
            previous.append(artifact.digest)
            plan = plan or previous[-1]
        rows.append(_row("DRAC", f"complete {phase}", drac.complete(SESSION, phase, token=token)))
    back = drac.enter(SESSION, drac.phases[2], token=token)
    rows.append(_row("DRAC", f"go back to {drac.phases[2]} after FREEZE (out of order)", back))
    skipped = drac.enter("session-8", "VERIFY", token=token)
    rows.append(_row("DRAC", "enter VERIFY in a session never opened", skipped))
    return previous[-1] if previous else plan


def _emp(sop: SOP, token: str, subject: str, rows: list[dict[str, Any]]) -> None:
    key = Ed25519PrivateKey.generate()
    sop.register_emp_key(key.public_key())
    out = sign_output(
        subject=subject,
        claim="frozen-plan-verified",
        verdict="PASS",
        evidence={"checked_by": "emp", "obligations": 3},
        key=key,
    )
    rows.append(
        _row(
            "EMP",
            "record a signed verification of the frozen plan",
            sop.emp.record_output(out, token=token),
        )
    )
    other = sign_output(
        subject=subject,
        claim="frozen-plan-verified",
        verdict="FAIL",
        evidence={"checked_by": "emp"},
        key=key,
    )
    rows.append(
        _row(
            "EMP",
            "a second, different verdict for the same claim",
            sop.emp.record_output(other, token=token),
        )
    )


def _csp(sop: SOP, token: str, data_dir: Path, rows: list[dict[str, Any]]) -> None:
    csp = sop.csp
    entries = {}
    for key, value in (("working-memory", b"goal: ship the plan"), ("episode", b"step 5 of 5")):
        put = csp.put_blob(value, state_class="working", token=token)
        rows.append(_row("CSP", f"store blob `{key}`", put))
        entries[key] = put.write.digest if put.allowed and put.write is not None else ""
    sealed = csp.seal(SESSION, entries, parent=None, token=token)
    rows.append(_row("CSP", "seal the holding-cell snapshot (Merkle root, signed, logged)", sealed))
    seal = sealed.record_as(SealRecord)
    snapshot = seal.snapshot if sealed.allowed and seal is not None else ""
    resumed = csp.resume(SESSION, snapshot, token=token)
    rows.append(_row("CSP", "resume it (signature, blobs, inclusion, lineage)", resumed.decision))
    victim = csp.put_blob(b"trusted memory", state_class="working", token=token)
    if victim.write is None:
        raise SOPError(f"the demo's blob was not stored: `{victim.reasons}`")
    digest = victim.write.digest
    tampered = csp.seal("session-9", {"memory": digest}, parent=None, token=token)
    _plant(sop, data_dir, digest.removeprefix("sha256:"), b"planted memory")
    tampered_seal = tampered.record_as(SealRecord)
    if tampered_seal is None:
        raise SOPError(f"the demo's snapshot was not sealed: `{tampered.reasons}`")
    snap = tampered_seal.snapshot
    refused = csp.resume("session-9", snap, token=token)
    rows.append(_row("CSP", "resume a snapshot whose stored blob was edited", refused.decision))


def _plant(sop: SOP, data_dir: Path, hexd: str, data: bytes) -> None:
    """The attacker: he can write where a scope's bytes live (the data directory's files,
    or the PostgreSQL database), not SOP's keys; he replaces one stored blob, bypassing SOP."""
    scope = sop.persistence.scopes.get(BLOB_SCOPE)
    if scope is None:
        raise SOPError(f"the demo's configuration has no scope `{BLOB_SCOPE}`")
    content = sop.store.open_scope(scope.name, scope.root, data_dir / SCOPES_DIR)
    try:
        content.write(f"sha256/{hexd[:2]}/{hexd}", data, tag="attacker", exclusive=False)
    finally:
        content.close()


def run_session(sop: SOP, data_dir: Path, tokens: dict[str, str]) -> dict[str, Any]:
    """Run the session act on a booted demo SOP; return rows, receipts and the audit.

    Raises:
        SOPError: the log key is missing (the demo's data directory is broken).
    """
    rows: list[dict[str, Any]] = []
    plan = _drac(sop, tokens["drac"], rows)
    _emp(sop, tokens["emp"], plan, rows)
    _csp(sop, tokens["csp"], data_dir, rows)
    escape = {
        "request_id": "demo-escape",
        "principal": "drac",
        "action": "artifact.persist",
        "resource": "artifacts/drac/sessions/session-7/SCAN/..%2f..%2fkeys",
        "capability": tokens["drac"],
    }
    rows.append(_row("SOP", "persist through a traversal path", sop.persist(escape, b"x")))
    verifiers = list(sop.log.verifiers)
    checked = 0
    for row in rows:
        if row["log_index"] is not None:
            bundle = sop.log.prove(int(row["log_index"]))
            verify_bundle(bundle, verifiers)  # raises on any mismatch
            checked += 1
    report, _ = audit_data_dir(data_dir)  # what `sop log verify` does, from the files alone
    return {
        "rows": rows,
        "receipts_verified": checked,
        "log_verify": {
            "ok": report.ok,
            "entries": report.entries,
            "checkpoints": report.verified_checkpoints,
            "root": report.root,
        },
    }

"""`sop demo`: a guided run on a fresh data directory.

It boots SOP, admits capabilities for DRAC, EMP and CSP, shows a policy set
refused by analysis with its counterexample, activates a sound one, and
submits a dozen realistic requests: some allowed, the rest denied for
different reasons. The result is data; the CLI renders it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, assert_never

from sop_verified.core.request import Decision, Permission
from sop_verified.errors import PolicyError, SOPError
from sop_verified.nexus.backends import storage_where
from sop_verified.nexus.demo_policies import SOUND_POLICIES, SOUND_POLICY_TESTS, UNSOUND_POLICIES
from sop_verified.nexus.demo_session import run_session
from sop_verified.nexus.sop import SOP, PolicyRefusedError
from sop_verified.tools.private_fs import make_private_dir, write_private

__all__ = [
    "SOUND_POLICIES",
    "SOUND_POLICY_TESTS",
    "UNSOUND_POLICIES",
    "DemoClock",
    "DemoResult",
    "run_demo",
]

START = 1_800_000_000  # a fixed clock keeps the demo's log and manifest reproducible

# EMP's obligations: each holds iff its assertions are unsatisfiable (SMT-LIB convention).
OBLIGATIONS: list[tuple[str, dict[str, str]]] = [
    (
        "EMP obligation: a bounded counter stays in range (PROVED)",
        {
            "id": "emp-bounds",
            "format": "smt2",
            "source": (
                "(set-logic QF_LIA)\n(declare-const n Int)\n(assert (<= 0 n 9))\n"
                "(assert (not (< (+ n 1) 11)))\n(check-sat)\n"
            ),
        },
    ),
    (
        "EMP obligation: doubling never overflows 100 (REFUTED)",
        {
            "id": "emp-overflow",
            "format": "smt2",
            "source": (
                "(set-logic QF_LIA)\n(declare-const n Int)\n(assert (<= 0 n 60))\n"
                "(assert (not (<= (* 2 n) 100)))\n(check-sat)\n"
            ),
        },
    ),
    (
        "EMP obligation: 64-bit factoring, out of budget (UNKNOWN)",
        {
            "id": "emp-factor",
            "format": "smt2",
            "source": (
                "(set-logic QF_BV)\n(declare-const a (_ BitVec 64))\n"
                "(declare-const b (_ BitVec 64))\n(assert (= (bvmul a b) #x9e3779b97f4a7c15))\n"
                "(assert (bvugt a #x0000000000000001))\n"
                "(assert (bvugt b #x0000000000000001))\n(assert (bvult a #x00000000ffffffff))\n"
                "(assert (bvult b #x00000000ffffffff))\n(check-sat)\n"
            ),
        },
    ),
]


ALLOWED_STEPS = frozenset(
    {
        "DRAC persists a compiled artifact",
        "EMP records a verification verdict",
        "CSP persists working state",
        "DRAC reads an artifact",
    }
)
"""The demo's requests meant to be allowed; every other one shows a way SOP refuses."""


class DemoClock:
    """A clock the demo advances by hand."""

    def __init__(self, start: int) -> None:
        self.t = start

    def __call__(self) -> int:
        return self.t


@dataclass
class DemoResult:
    """Everything the demo did, for the table and for ``--json``."""

    data_dir: str
    boot_order: list[str]
    health: str
    refused: dict[str, Any]
    activated: str
    capabilities: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    session: dict[str, Any] = field(default_factory=dict)
    storage: str = ""
    """Where the state is: the SQLite file, or the PostgreSQL DSN (password hidden) and schema."""
    policies: str = ""
    """The sound policy set's directory (its policy tests in ``tests/`` under it)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "data_dir": self.data_dir,
            "storage": self.storage,
            "boot_order": self.boot_order,
            "health": self.health,
            "refused_policy_set": self.refused,
            "activated_policy_digest": self.activated,
            "policies": self.policies,
            "capabilities": self.capabilities,
            "requests": self.rows,
            **_tally(self.rows),
            "session": self.session,
        }


def _tally(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many rows were allowed and denied (every permission is counted somewhere), and
    how many were not what the demo meant them to be."""
    allowed = denied = 0
    for r in rows:
        permission = Permission(r["effect"])
        match permission:
            case Permission.ALLOW:
                allowed += 1
            case Permission.DENY:
                denied += 1
            case _:
                assert_never(permission)
    unexpected = sum(r["effect"] != r["expected"] for r in rows)
    return {"allowed": allowed, "denied": denied, "unexpected": unexpected}


def effect_colour(effect: str) -> str:
    """The colour ``sop demo`` shows a decision's ``effect`` (ALLOW or DENY) in."""
    permission = Permission(effect)
    match permission:
        case Permission.ALLOW:
            return "green"
        case Permission.DENY:
            return "red"
        case _:
            assert_never(permission)


def _row(label: str, req: dict[str, Any], d: Decision, expected: Permission) -> dict[str, Any]:
    first = d.reasons[0] if d.reasons else None
    return {
        "label": label,
        "expected": str(expected),
        "principal": req.get("principal"),
        "action": req.get("action"),
        "resource": req.get("resource"),
        "effect": str(d.effect),
        "stage": str(first.stage) if first else "",
        "code": first.code if first else "",
        "reason": first.message if first else "",
        "log_index": d.log_index,
    }


def _forge(token: str) -> str:
    """The token with one character of its MAC changed: what a forger can do without the key."""
    head, mac = token.rsplit(".", 1)
    return f"{head}.{mac[:5]}{'B' if mac[5] == 'A' else 'A'}{mac[6:]}"


def _write_set(base: Path, name: str, text: str, tests: str | None = None) -> Path:
    path = base / "policies" / name
    make_private_dir(path)
    write_private(path / "policies.toml", text.encode("utf-8"))
    if tests is not None:  # `sop policy test <path>/tests` runs them
        make_private_dir(path / "tests")
        write_private(path / "tests" / "demo.toml", tests.encode("utf-8"))
    return path


def run_demo(data_dir: Path, *, dsn: str | None = None) -> DemoResult:
    """Run the demo on a fresh ``data_dir`` (state in PostgreSQL at ``dsn``, if given).

    With ``dsn``, the state goes into a new schema ``sop_demo_<8 hex digits>``, so a
    demo never meets an earlier one's log.

    Raises:
        ConfigError: ``data_dir`` is already initialised.
        SOPError: the demo could not boot SOP to READY.
        StorageError: the database at ``dsn`` cannot be reached.
    """
    clock = DemoClock(START)
    if dsn is None:
        SOP.init(data_dir)
    else:
        SOP.init(data_dir, dsn=dsn, schema=f"sop_demo_{secrets.token_hex(4)}")
    sop = SOP.boot(data_dir, now=clock)
    try:
        return _scenario(sop, clock, data_dir)
    finally:
        sop.close()


def _scenario(sop: SOP, clock: DemoClock, data_dir: Path) -> DemoResult:
    if sop.boot_report is None or str(sop.health) != "READY":
        raise SOPError(f"the demo could not boot SOP: {sop.boot_report and sop.boot_report.detail}")
    refused: dict[str, Any] = {}
    try:
        sop.activate_policy(_write_set(data_dir, "unsound", UNSOUND_POLICIES))
    except PolicyRefusedError as exc:
        first = exc.report.errors[0]
        refused = {
            "expected": True,  # the demo shows the refusal: this set must not be activated
            "code": first.code,
            "message": first.message,
            "counterexample": first.counterexample,
        }
    if not refused:
        raise PolicyError("the demo's unsound policy set was not refused")
    sound = _write_set(data_dir, "sound", SOUND_POLICIES, SOUND_POLICY_TESTS)
    sop.activate_policy(sound)
    result = DemoResult(
        str(data_dir),
        list(sop.boot_report.order),
        str(sop.health),
        refused,
        sop.policy.digest if sop.policy else "",
        storage=storage_where(sop.config),
        policies=str(sound),
    )
    day = 86_400
    drac, drac_tok = sop.admit(
        "drac",
        ["artifact.persist", "artifact.read", "phase.advance"],
        ["artifacts/drac/**"],
        expires=clock.t + day,
    )
    emp, emp_tok = sop.admit(
        "emp", ["verdict.record", "obligation.submit"], ["verdicts/emp/**"], expires=clock.t + day
    )
    csp, csp_tok = sop.admit(
        "csp",
        ["state.persist", "snapshot.seal", "snapshot.resume"],
        ["state/csp/**", "snapshots/csp/**"],
        expires=clock.t + day,
    )
    session, session_tok = sop.attenuate(
        drac_tok,
        actions=["artifact.persist"],
        resources=["artifacts/drac/session-7/**"],
        expires=clock.t + 600,
    )
    short, short_tok = sop.admit("csp", ["state.persist"], ["state/csp/**"], expires=clock.t + 60)
    revoked, revoked_tok = sop.attenuate(
        emp_tok, actions=["verdict.record"], resources=["verdicts/emp/run-3/**"]
    )
    sop.revoke(revoked.id)
    for name, cap in [
        ("drac", drac),
        ("emp", emp),
        ("csp", csp),
        ("drac session (attenuated)", session),
        ("csp short-lived", short),
        ("emp run-3 (revoked)", revoked),
    ]:
        result.capabilities.append(
            {
                "holder": name,
                "id": cap.id,
                "actions": sorted(cap.actions),
                "resources": list(cap.resources),
                "expires": cap.expires,
            }
        )

    def req(
        n: int, principal: str, action: str, resource: str, token: str, **context: Any
    ) -> dict[str, Any]:
        return {
            "request_id": f"demo-{n:02d}",
            "principal": principal,
            "action": action,
            "resource": resource,
            "capability": token,
            "context": context,
        }

    steps: list[tuple[str, dict[str, Any]]] = [
        (
            "DRAC persists a compiled artifact",
            req(
                1,
                "drac",
                "artifact.persist",
                "artifacts/drac/session-7/plan.json",
                session_tok,
                size_bytes=4096,
                phase="ASSEMBLE",
            ),
        ),
        (
            "EMP records a verification verdict",
            req(2, "emp", "verdict.record", "verdicts/emp/run-9/v1.json", emp_tok),
        ),
        (
            "CSP persists working state",
            req(
                3,
                "csp",
                "state.persist",
                "state/csp/agent-1/wm.bin",
                csp_tok,
                state_class="working",
            ),
        ),
        (
            "DRAC reads an artifact",
            req(4, "drac", "artifact.read", "artifacts/drac/session-7/plan.json", drac_tok),
        ),
        (
            "attenuated token outside its narrower scope",
            req(
                5,
                "drac",
                "artifact.persist",
                "artifacts/drac/session-8/plan.json",
                session_tok,
                size_bytes=10,
            ),
        ),
        (
            "EMP presents DRAC's token",
            req(
                6,
                "emp",
                "artifact.persist",
                "artifacts/drac/session-7/x.json",
                drac_tok,
                size_bytes=10,
            ),
        ),
        (
            "secret artifact (forbid overrides permit)",
            req(
                7,
                "drac",
                "artifact.persist",
                "artifacts/drac/session-7/key.bin",
                session_tok,
                size_bytes=10,
                classification="secret",
            ),
        ),
        (
            "oversized artifact (no permit matches)",
            req(
                8,
                "drac",
                "artifact.persist",
                "artifacts/drac/a/big.bin",
                drac_tok,
                size_bytes=50_000_000,
            ),
        ),
        (
            "revoked capability",
            req(9, "emp", "verdict.record", "verdicts/emp/run-3/v.json", revoked_tok),
        ),
        (
            "forged token (MAC altered)",
            req(
                10,
                "csp",
                "state.persist",
                "state/csp/agent-1/x",
                _forge(csp_tok),
                state_class="working",
            ),
        ),
        (
            "path traversal attempt",
            req(
                11,
                "drac",
                "artifact.persist",
                "artifacts/drac/../../etc/passwd",
                drac_tok,
                size_bytes=1,
            ),
        ),
        (
            "admin action through the bridge",
            req(12, "drac", "policy.activate", "policies/mine", drac_tok),
        ),
    ]
    for label, r in steps:
        expected = Permission.ALLOW if label in ALLOWED_STEPS else Permission.DENY
        result.rows.append(_row(label, r, sop.submit(r), expected))
    for label, ob in OBLIGATIONS:
        outcome = sop.emp.submit_obligation(ob, token=emp_tok, request_id=f"demo-{ob['id']}")
        expected = Permission.ALLOW if "(PROVED)" in label else Permission.DENY
        asked = {"principal": "emp", "action": "obligation.submit"}
        row = _row(label, asked, outcome.decision, expected)
        if outcome.verdict is not None:
            row["verdict"] = str(outcome.verdict.verdict)
            row["verdict_reason"] = outcome.verdict.reason
            row["evidence"] = outcome.verdict.evidence
        result.rows.append(row)
    clock.t += 3600  # an hour later the short-lived capability has expired
    late = req(
        14, "csp", "state.persist", "state/csp/agent-1/wm.bin", short_tok, state_class="working"
    )
    expired = _row("expired capability (one hour later)", late, sop.submit(late), Permission.DENY)
    result.rows.append(expired)
    result.session = run_session(sop, data_dir, {"drac": drac_tok, "emp": emp_tok, "csp": csp_tok})
    return result

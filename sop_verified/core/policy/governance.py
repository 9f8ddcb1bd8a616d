"""The activation gate: governance checks of a policy set, proved with Z3.

Two properties must hold for every well-formed request before a set may be
activated (DESIGN section 6.4):

- ``persist_outside_scope``: no action of PERSIST_ACTIONS is allowed on a
  resource outside the approved scopes (INV-4);
- ``admin_via_bridge``: no action of ADMIN_ACTIONS is allowed with
  ``channel == "bridge"`` (INV-6).

Each violation is reported with a counterexample request and the permits that
allow it; up to :data:`MAX_COUNTEREXAMPLES` distinct culprits are listed per
check by blocking the permits already reported. A check Z3 cannot decide is a
failed check (fail-closed).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import z3

from sop_verified.core.contracts import ensure
from sop_verified.core.policy.analysis import (
    DEFAULT_TIMEOUT_MS,
    Replay,
    find_request,
    new_solver,
    replay_confirms,
)
from sop_verified.core.policy.encode import PolicyEncoding
from sop_verified.core.policy.evaluator import PolicySet
from sop_verified.core.request import ADMIN_ACTIONS, PERSIST_ACTIONS, Permission, parse_request
from sop_verified.errors import ConfigError, InputError, PolicyValidationError
from sop_verified.tools.paths import Glob

__all__ = [
    "MAX_COUNTEREXAMPLES",
    "Finding",
    "Severity",
    "approved_globs",
    "governance_check",
    "verify_governance",
]

MAX_COUNTEREXAMPLES: Final = 8


class Severity(enum.StrEnum):
    """How much a finding matters: only errors refuse activation."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One result of a check, with the evidence: policy ids and a counterexample request."""

    code: str
    severity: Severity
    message: str
    policy_ids: tuple[str, ...] = ()
    counterexample: dict[str, Any] | None = None
    confirmed: bool | None = None

    @ensure(lambda result: result["severity"] in ("error", "warning", "info"), "JSON-ready")
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form.

        Returns:
            ``{"code", "severity", "message", "policy_ids", "counterexample", "confirmed"}``.
        """
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "policy_ids": list(self.policy_ids),
            "counterexample": self.counterexample,
            "confirmed": self.confirmed,
        }


@ensure(lambda scopes, result: len(result) == len(scopes), "one glob per scope")
def approved_globs(scopes: Sequence[str]) -> tuple[Glob, ...]:
    """Check the approved scopes from configuration.

    Args:
        scopes: resource globs persist actions may write under.

    Returns:
        The compiled globs.

    Raises:
        ConfigError: a scope is not a well-formed glob.
    """
    out = []
    for i, pattern in enumerate(scopes):
        try:
            out.append(Glob(pattern, where=f"approved_scopes[{i}]"))
        except InputError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(out)


def _ids(ids: tuple[str, ...]) -> str:
    return ", ".join(f"`{i}`" for i in ids)


def _violations(
    s: PolicySet,
    *,
    enc: PolicyEncoding,
    code: str,
    violation: Any,
    replay: Replay,
    describe: Any,
    timeout_ms: int,
) -> list[Finding]:
    universe = s.document.string_literals()
    solver = new_solver(timeout_ms)
    solver.add(violation)
    permits = [p.id for p in s.document.policies if not p.is_forbid]
    findings: list[Finding] = []
    for i in range(MAX_COUNTEREXAMPLES):
        verdict, cex = find_request(solver, enc.vars, universe, first=i == 0)
        if verdict == z3.unsat:
            break
        if cex is None:
            findings.append(
                Finding(
                    "analysis_unknown",
                    Severity.ERROR,
                    f"`{code}` could not be decided ({solver.reason_unknown()}); "
                    "an undecided governance check fails",
                )
            )
            break
        model = solver.model()
        ids = tuple(
            p for p in permits if z3.is_true(model.eval(enc.matches[p], model_completion=True))
        )
        findings.append(
            Finding(
                code, Severity.ERROR, describe(ids, cex), ids, cex, replay_confirms(replay, cex)
            )
        )
        if not ids:
            break
        solver.add(z3.Not(z3.Or([enc.matches[p] for p in ids])))  # find other culprits
    return findings


@ensure(lambda result: all(f.severity is Severity.ERROR for f in result), "violations are errors")
def governance_check(
    s: PolicySet, approved_scopes: Sequence[str], *, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> list[Finding]:
    """Prove the governance properties of ``s``, or find counterexamples.

    Args:
        s: the policy set.
        approved_scopes: resource globs persist actions may write under.
        timeout_ms: the solver's backstop per check.

    Returns:
        The violations (empty when both properties hold), each with a
        counterexample request and the permits that allow it.

    Raises:
        ConfigError: an approved scope is not a well-formed glob.
    """
    scopes = approved_globs(approved_scopes)
    enc = PolicyEncoding(s.document)
    v = enc.vars
    scope_list = ", ".join(f"`{g.pattern}`" for g in scopes) or "(none)"

    def allowed(cex: dict[str, Any]) -> bool:
        return s.evaluate(parse_request(cex)).effect is Permission.ALLOW

    in_scope = (
        z3.Or([z3.InRe(v.resource, g.z3_regex()) for g in scopes]) if scopes else z3.BoolVal(False)
    )
    persist = z3.And(
        enc.allow,
        z3.Or([v.action == z3.StringVal(a) for a in sorted(PERSIST_ACTIONS)]),
        z3.Not(in_scope),
    )  # spec: INV-4
    admin = z3.And(
        enc.allow,
        z3.Or([v.action == z3.StringVal(a) for a in sorted(ADMIN_ACTIONS)]),
        v.channel == z3.StringVal("bridge"),
    )  # spec: INV-6
    findings = _violations(
        s,
        enc=enc,
        code="persist_outside_scope",
        violation=persist,
        replay=lambda c: (
            allowed(c)
            and c["action"] in PERSIST_ACTIONS
            and not any(g.matches(c["resource"]) for g in scopes)
        ),
        describe=lambda ids, c: (
            f"{_ids(ids)} allow `{c['action']}` on `{c['resource']}`, outside the "
            f"approved scopes {scope_list}"
        ),
        timeout_ms=timeout_ms,
    )
    findings += _violations(
        s,
        enc=enc,
        code="admin_via_bridge",
        violation=admin,
        replay=lambda c: allowed(c) and c["action"] in ADMIN_ACTIONS and c["channel"] == "bridge",
        describe=lambda ids, c: (
            f"{_ids(ids)} allow the admin action `{c['action']}` through the bridge "
            "(no remediation via the bridge)"
        ),
        timeout_ms=timeout_ms,
    )
    return findings


def verify_governance(
    s: PolicySet, approved_scopes: Sequence[str], *, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> None:
    """The activation gate: return only if every governance property is proved.

    Args:
        s: the policy set to activate.
        approved_scopes: resource globs persist actions may write under.
        timeout_ms: the solver's backstop per check.

    Raises:
        PolicyValidationError: a property fails or cannot be decided; the message
            carries the first counterexample request as JSON.
        ConfigError: an approved scope is not a well-formed glob.
    """
    findings = governance_check(s, approved_scopes, timeout_ms=timeout_ms)
    if findings:
        first = findings[0]
        evidence = json.dumps(first.counterexample, sort_keys=True) if first.counterexample else ""
        raise PolicyValidationError(
            f"policy set `{s.digest}` fails governance ({len(findings)} finding(s)): "
            f"{first.message}" + (f"; counterexample {evidence}" if evidence else ""),
            where=first.code,
            accepted="no persist outside the approved scopes, no admin action via the bridge",
        )

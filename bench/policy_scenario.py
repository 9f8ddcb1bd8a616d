"""The benchmark's policy scenario, written once and rendered for SOP, Cedar and casbin.

An RBAC+ABAC set for the runtime's three protocols (DRAC, EMP, CSP) plus
readers, CI, operators and a secure vault: permits per protocol scope with
conditions on size, phase, trust level, classification and tenant, and
forbids for the emergency freeze, secrets outside the vault, oversize writes,
night-time windows, cross-tenant access and a revoked principal.

Conditions are a tiny neutral syntax tree (:class:`Cmp`, :class:`OneOf`,
:class:`Label`, :class:`All`, :class:`AnyOf`, :class:`Not`) so the three
engines get the same logic; :mod:`policy_render` turns it into each engine's
text. Resources are either exact paths or ``prefix/**`` globs, the only glob
shape whose meaning agrees in the three engines on well-formed paths:
SOP ``p/**`` (one or more segments below ``p``), Cedar ``like "p/*"`` and
casbin ``keyMatch(path, "p/*")`` (anything after ``p/``).

This module is pure data: it imports nothing from sop_verified, so the
contracts-off run can switch contracts off before SOP's modules load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "ADMIN_ACTIONS",
    "PERSIST_ACTIONS",
    "PRINCIPALS",
    "ROLES",
    "RULES",
    "All",
    "AnyOf",
    "Cmp",
    "Cond",
    "Label",
    "Not",
    "OneOf",
    "Rule",
    "glob_prefix",
]


@dataclass(frozen=True, slots=True)
class Cmp:
    """``context.<attr> <op> <value>`` with op one of ``== != < <= > >=``."""

    attr: str
    op: str
    value: int | str | bool


@dataclass(frozen=True, slots=True)
class OneOf:
    """``context.<attr>`` is one of the strings ``values``."""

    attr: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Label:
    """``context.labels`` contains ``value``."""

    value: str


@dataclass(frozen=True, slots=True)
class All:
    """Every part holds (``&&``)."""

    parts: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Some part holds (``||``)."""

    parts: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The part does not hold."""

    part: Cond


Cond = Cmp | OneOf | Label | All | AnyOf | Not


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy, engine-neutral. ``None`` means any (SOP's ``"*"``)."""

    id: str
    effect: str  # "permit" or "forbid"
    principals: tuple[str, ...] | None  # principal ids or "role:<name>"
    actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None  # exact paths or "prefix/**"
    channel: str | None
    when: Cond | None
    description: str


def glob_prefix(pattern: str) -> str | None:
    """The literal prefix of a ``prefix/**`` glob (with its slash), or None for an exact path.

    Args:
        pattern: a resource pattern of the scenario.

    Returns:
        ``"prefix/"`` for ``"prefix/**"``; None for an exact path.

    Raises:
        ValueError: the pattern has a wildcard elsewhere (the engines would disagree on it).
    """
    if pattern.endswith("/**") and "*" not in pattern[:-3]:
        return pattern[:-2]
    if "*" in pattern or "?" in pattern:
        raise ValueError(f"pattern `{pattern}` is neither an exact path nor `prefix/**`")
    return None


ROLES: Final[dict[str, tuple[str, ...]]] = {
    "drac": ("drac", "drac_catalog"),
    "emp": ("emp", "emp_auditor"),
    "csp": ("csp", "csp_holding"),
    "protocol": ("csp", "csp_holding", "drac", "drac_catalog", "emp", "emp_auditor"),
    "reader": ("auditor", "ci", "emp_auditor", "reader_bot"),
    "operator": ("operator", "sre_oncall"),
}

PRINCIPALS: Final[tuple[str, ...]] = (
    *sorted({m for members in ROLES.values() for m in members}),
    "intruder",
    "revoked_bot",
)

PERSIST_ACTIONS: Final = ("artifact.persist", "verdict.record", "state.persist", "snapshot.seal")
ADMIN_ACTIONS: Final = (
    "capability.admit",
    "capability.attenuate",
    "capability.revoke",
    "policy.activate",
    "key.rotate",
    "scope.define",
)
_FROZEN_ADMIN: Final = tuple(a for a in ADMIN_ACTIONS if a != "capability.revoke")
_MIB: Final = 1024 * 1024

# The rule table is laid out by hand, one policy per block, for reading side by side.
# fmt: off

def _permits_protocols() -> list[Rule]:
    return [
        Rule("drac-artifact-persist", "permit", ("role:drac",), ("artifact.persist",),
             ("drac/artifacts/**",), "bridge",
             All((Cmp("size_bytes", "<=", _MIB), OneOf("phase", ("compile", "link", "package")),
                  Cmp("trust_level", ">=", 2))),
             "DRAC persists build artifacts of its compilation phases"),
        Rule("drac-catalog-persist", "permit", ("drac_catalog",), ("artifact.persist",),
             ("drac/catalog/**", "drac/index.json"), "bridge",
             All((Cmp("size_bytes", "<=", 65536),
                  OneOf("classification", ("public", "internal")))),
             "the catalog writer keeps the artifact catalog small and unclassified"),
        Rule("drac-manifest", "permit", ("role:drac",), ("artifact.persist",),
             ("drac/manifest.json",), "bridge", Cmp("size_bytes", "<=", 65536),
             "the session manifest, one exact path"),
        Rule("drac-phase-advance", "permit", ("role:drac",), ("phase.advance",),
             ("drac/phases/**",), "bridge",
             All((Cmp("trust_level", ">=", 3),
                  OneOf("phase", ("compile", "link", "verify", "package")))),
             "DRAC advances compilation phases"),
        Rule("drac-read", "permit", ("role:drac",), ("artifact.read",), ("drac/**",), "bridge",
             Cmp("trust_level", ">=", 1), "DRAC reads its own scope"),
        Rule("drac-obligation-submit", "permit", ("role:drac",), ("obligation.submit",),
             ("emp/obligations/drac/**",), "bridge", Cmp("size_bytes", "<=", 32768),
             "DRAC attaches obligations under its own EMP folder"),
        Rule("emp-verdict-record", "permit", ("role:emp",), ("verdict.record",),
             ("emp/verdicts/**",), "bridge",
             All((Cmp("trust_level", ">=", 3), Cmp("size_bytes", "<=", 262144))),
             "EMP records verification verdicts"),
        Rule("emp-obligation-submit", "permit", ("role:emp",), ("obligation.submit",),
             ("emp/obligations/**",), "bridge", Cmp("size_bytes", "<=", 32768),
             "EMP submits proof obligations"),
        Rule("emp-read", "permit", ("role:emp",), ("artifact.read",),
             ("drac/artifacts/**", "emp/**"), "bridge", Cmp("trust_level", ">=", 1),
             "EMP reads the artifacts it monitors and its own scope"),
        Rule("csp-state-persist", "permit", ("role:csp",), ("state.persist",),
             ("csp/state/**",), "bridge",
             All((OneOf("state_class", ("working", "episodic", "semantic")),
                  Cmp("size_bytes", "<=", 4 * _MIB), Cmp("trust_level", ">=", 2))),
             "CSP persists eligible cognitive state"),
        Rule("csp-holding-persist", "permit", ("csp_holding",), ("state.persist",),
             ("csp/holding/**",), "bridge", Cmp("state_class", "==", "quarantined"),
             "the holding cell takes quarantined state only"),
        Rule("csp-snapshot-seal", "permit", ("role:csp",), ("snapshot.seal",),
             ("csp/snapshots/**",), "bridge",
             All((Cmp("trust_level", ">=", 3), Cmp("state_class", "!=", "volatile"))),
             "CSP seals snapshots of non-volatile state"),
        Rule("csp-snapshot-resume", "permit", ("role:csp",), ("snapshot.resume",),
             ("csp/snapshots/**",), "bridge",
             All((Cmp("trust_level", ">=", 3), Cmp("phase", "==", "resume"))),
             "CSP resumes snapshots in the resume phase"),
        Rule("csp-read", "permit", ("role:csp",), ("artifact.read",), ("csp/**",), "bridge",
             None, "CSP reads its own scope"),
    ]


def _permits_shared() -> list[Rule]:
    return [
        Rule("tenant-acme-persist", "permit", ("role:protocol",), ("artifact.persist",),
             ("shared/acme/**",), "bridge",
             All((Cmp("tenant", "==", "acme"), Cmp("size_bytes", "<=", _MIB))),
             "protocols write the acme tenant's shared area for acme only"),
        Rule("tenant-globex-persist", "permit", ("role:protocol",), ("artifact.persist",),
             ("shared/globex/**",), "bridge",
             All((Cmp("tenant", "==", "globex"), Cmp("size_bytes", "<=", _MIB))),
             "protocols write the globex tenant's shared area for globex only"),
        Rule("protocol-shared-read", "permit", ("role:protocol",), ("artifact.read",),
             ("shared/**",), "bridge", None, "protocols read the shared area"),
        Rule("reader-read", "permit", ("role:reader",), ("artifact.read",),
             ("drac/artifacts/**", "emp/verdicts/**", "shared/**", "public/**"), None,
             OneOf("classification", ("public", "internal")),
             "readers read unclassified artifacts and verdicts"),
        Rule("auditor-read-all", "permit", ("auditor",), ("artifact.read",), None, None,
             All((Cmp("trust_level", ">=", 4), Label("audit"))),
             "the auditor reads anything during an audit"),
        Rule("ci-obligation-submit", "permit", ("ci",), ("obligation.submit",),
             ("emp/obligations/ci/**",), "bridge",
             All((Cmp("phase", "==", "verify"), Cmp("size_bytes", "<=", 32768))),
             "CI submits obligations in the verify phase"),
        Rule("vault-persist", "permit", ("drac", "csp"), ("artifact.persist", "state.persist"),
             ("vault/**",), "bridge",
             All((Cmp("classification", "==", "secret"), Cmp("trust_level", ">=", 4))),
             "secrets go to the vault, from trusted protocol principals"),
        Rule("vault-read", "permit", ("drac", "csp", "auditor"), ("artifact.read",),
             ("vault/**",), "bridge", Cmp("trust_level", ">=", 4), "trusted vault reads"),
        Rule("public-read", "permit", None, ("artifact.read",), ("public/**",), None, None,
             "anyone reads the public area"),
    ]


def _permits_admin() -> list[Rule]:
    return [
        Rule("operator-capabilities", "permit", ("role:operator",),
             ("capability.admit", "capability.attenuate", "capability.revoke"),
             ("admin/capabilities/**",), "admin", Cmp("trust_level", ">=", 4),
             "operators manage capabilities on the admin plane"),
        Rule("operator-policy-activate", "permit", ("operator",), ("policy.activate",),
             ("admin/policies/**",), "admin", Cmp("trust_level", ">=", 5),
             "the operator activates policy sets"),
        Rule("operator-key-rotate", "permit", ("operator",), ("key.rotate",),
             ("admin/keys/**",), "admin",
             All((Cmp("trust_level", ">=", 5), Cmp("hour", ">=", 9), Cmp("hour", "<", 17))),
             "keys rotate in office hours"),
        Rule("operator-scope-define", "permit", ("operator",), ("scope.define",),
             ("admin/scopes/**",), "admin", Cmp("trust_level", ">=", 5),
             "the operator defines scopes"),
    ]


_SECRET = AnyOf((Cmp("classification", "==", "secret"), Label("secret")))
_WRITES_AND_PHASES = (*PERSIST_ACTIONS, "phase.advance", "snapshot.resume")


def _forbids() -> list[Rule]:
    return [
        Rule("freeze-emergency-writes", "forbid", None, _WRITES_AND_PHASES, None, None,
             Cmp("emergency", "==", True), "the emergency freeze stops every write"),
        Rule("freeze-emergency-admin", "forbid", None, _FROZEN_ADMIN, None, None,
             Cmp("emergency", "==", True), "the freeze stops admin changes except revocation"),
        Rule("secret-outside-vault", "forbid", None, PERSIST_ACTIONS,
             ("drac/**", "emp/**", "csp/**", "shared/**", "public/**"), None, _SECRET,
             "secrets are written to the vault only"),
        Rule("oversize-write", "forbid", None, PERSIST_ACTIONS, None, None,
             Cmp("size_bytes", ">", 8 * _MIB), "no write above 8 MiB"),
        Rule("night-phase-advance", "forbid", None, ("phase.advance",), None, None,
             AnyOf((Cmp("hour", "<", 6), Cmp("hour", ">=", 22))),
             "no phase advance between 22:00 and 06:00"),
        Rule("night-admin", "forbid", None,
             ("capability.admit", "capability.attenuate", "policy.activate", "scope.define"),
             None, "admin", AnyOf((Cmp("hour", "<", 7), Cmp("hour", ">=", 20))),
             "no admin change between 20:00 and 07:00"),
        Rule("bridge-no-admin", "forbid", None, ADMIN_ACTIONS, None, "bridge", None,
             "no admin action through the bridge (INV-6)"),
        Rule("low-trust-write", "forbid", None, (*PERSIST_ACTIONS, "phase.advance"), None,
             None, Cmp("trust_level", "<", 1), "untrusted callers write nothing"),
        Rule("quarantined-no-resume", "forbid", None, ("snapshot.resume",), None, None,
             Label("quarantined"), "quarantined snapshots never resume"),
        Rule("cross-tenant-acme", "forbid", None, ("artifact.read", "artifact.persist"),
             ("shared/acme/**",), None, Cmp("tenant", "!=", "acme"),
             "the acme area is acme's only"),
        Rule("cross-tenant-globex", "forbid", None, ("artifact.read", "artifact.persist"),
             ("shared/globex/**",), None, Cmp("tenant", "!=", "globex"),
             "the globex area is globex's only"),
        Rule("revoked-principal", "forbid", ("revoked_bot",), None, None, None, None,
             "a revoked principal gets nothing"),
        Rule("pii-not-public", "forbid", None, ("artifact.persist",),
             ("shared/**", "public/**"), None,
             All((Label("pii"), Cmp("classification", "==", "public"))),
             "personal data is never published"),
        Rule("unverified-package", "forbid", ("role:drac",), ("phase.advance",),
             ("drac/phases/**",), None,
             All((Cmp("phase", "==", "package"), Not(Label("verified")))),
             "no packaging before verification"),
        Rule("reader-no-secret", "forbid", ("role:reader",), ("artifact.read",), None, None,
             All((Cmp("classification", "==", "secret"),
                  Not(All((Label("audit"), Cmp("trust_level", ">=", 5)))))),
             "readers see secrets only in a high-trust audit"),
        Rule("holding-cell-sealed", "forbid", ("role:reader",), ("artifact.read",),
             ("csp/holding/**",), None, None, "readers never see the holding cell"),
        Rule("draft-no-seal", "forbid", None, ("snapshot.seal",), None, None, Label("draft"),
             "drafts are not sealed"),
    ]


# fmt: on

RULES: Final[tuple[Rule, ...]] = (
    *_permits_protocols(),
    *_permits_shared(),
    *_permits_admin(),
    *_forbids(),
)

"""An executable reference model of SOP's decision path, for the stateful test.

Written straight from DESIGN.md section 2 (INV-1, INV-2, INV-6, INV-10) and
section 4 (the decision path), and independently of sop_verified: nothing
here imports the package. It is deliberately naive: capabilities are a dict,
revocation is a set walked through every ancestor, policies are evaluated by
visiting all of them, and glob matching is done by splitting paths into
segments. It only understands the small menus the stateful test generates
from (principals, actions, globs, paths, conditions), and it says so (a
``ValueError``) when handed anything else.

Decision path (section 4), in order, first failure wins:

1. schema: unknown field, action or context attribute, ill-typed value or
   malformed path -> DENY ``schema/bad_request``;
2. a body naming the ``admin`` channel -> DENY ``schema/admin_channel_via_bridge``
   (every request decided here arrived through the bridge), then an admin
   action -> DENY ``schema/admin_via_bridge`` (INV-6);
3. capability: token structure, MAC, revoked (itself or an ancestor),
   not yet valid, expired, other principal, action, resource (INV-1, INV-10);
4. no active policy set -> DENY ``policy/no_policy`` (empty means deny);
5. policies: an evaluation error in an applying policy denies, then a
   matching forbid, then a matching permit allows, else default deny;
6. obligations, SOP's own (a persist target inside an approved scope) then
   the attached ones: the first that is not PROVED denies;
7. else ALLOW (health is READY throughout the test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

__all__ = [
    "ADMIN_ACTIONS",
    "ALL_ACTIONS",
    "APPROVED_SCOPES",
    "CONDITIONS",
    "CONTEXT_TYPES",
    "GLOBS",
    "OBLIGATIONS",
    "OTHER_PRINCIPAL",
    "PATHS",
    "PERSIST_ACTIONS",
    "PRINCIPALS",
    "PROVABLE",
    "REFUTABLE",
    "ROLES",
    "Expected",
    "ModelCap",
    "ModelEvalError",
    "ModelPolicy",
    "ReferenceModel",
    "glob_matches",
    "glob_within",
    "governance_violations",
    "obligation_verdicts",
    "render_policy_set",
    "signature",
]

# ---- the vocabulary (DESIGN section 1 and spec: the operation kinds) ---------------------

PRINCIPALS = ("drac", "emp", "csp")
OTHER_PRINCIPAL = "zed"  # a principal no policy names: stands for every other identity
ROLES: Mapping[str, tuple[str, ...]] = {"writers": ("csp", "drac")}

PERSIST_ACTIONS = frozenset(
    {"artifact.persist", "verdict.record", "state.persist", "snapshot.seal"}
)
BRIDGE_ONLY_ACTIONS = frozenset(
    {"artifact.read", "phase.advance", "obligation.submit", "snapshot.resume"}
)
ADMIN_ACTIONS = frozenset({
    "capability.admit", "capability.attenuate", "capability.revoke", "policy.activate",
    "key.rotate", "scope.define",
})  # fmt: skip
ALL_ACTIONS = PERSIST_ACTIONS | BRIDGE_ONLY_ACTIONS | ADMIN_ACTIONS

# The default approved scopes of sop.toml.
APPROVED_SCOPES = ("artifacts/drac/**", "verdicts/emp/**", "state/csp/**", "snapshots/csp/**")

# The globs the test uses, of three shapes only: `L/**`, `L/*`, an exact path, and `**`.
GLOBS = (
    "artifacts/drac/**", "artifacts/drac/s1/*", "artifacts/drac/s1/out.bin", "artifacts/**",
    "verdicts/emp/**", "state/csp/**", "snapshots/csp/**", "scratch/**", "policies/*", "**",
)  # fmt: skip

# Resource paths: one or more per region of the partition the globs above cut
# (tests/test_stateful.py checks that every region has a representative), so
# "some path" questions about these globs are answered exactly by trying these.
PATHS = (
    "artifacts/drac/s1/out.bin", "artifacts/drac/s1/log.txt", "artifacts/drac/s1",
    "artifacts/drac/s2/x/y", "artifacts/drac/s1/out.bin/z", "artifacts/drac", "artifacts/emp/x",
    "artifacts", "verdicts/emp/v1", "verdicts/emp", "state/csp/st", "snapshots/csp/s1/m",
    "scratch/tmp", "policies/main", "policies/main/x", "other",
)  # fmt: skip

# The request context schema (name -> Python type) the test may send.
CONTEXT_TYPES: Mapping[str, type] = {
    "size_bytes": int, "hour": int, "trust_level": int, "session": str, "phase": str,
    "state_class": str, "classification": str, "tenant": str, "emergency": bool, "labels": list,
}  # fmt: skip
# Context values covering every outcome of the conditions below (thresholds 100 and 4096).
SIZE_SAMPLES = (None, 50, 1000, 10_000)
CLASSIFICATION_SAMPLES = (None, "secret", "public")


# Attached obligations (SMT-LIB 2 text; an obligation holds iff its assertions are
# unsatisfiable) and their verdicts: `x > x` is impossible, `x > 0` is not.
_SMT_HEAD = "(set-logic QF_LIA)\n(declare-const x Int)\n"
PROVABLE = _SMT_HEAD + "(assert (> x x))\n"
REFUTABLE = _SMT_HEAD + "(assert (> x 0))\n"
OBLIGATIONS: Mapping[str, str] = {PROVABLE: "PROVED", REFUTABLE: "REFUTED"}


class ModelEvalError(Exception):
    """A condition read an absent context attribute (the policy language's evaluation error)."""


def _ctx(context: Mapping[str, Any], name: str) -> Any:
    if name not in context:
        raise ModelEvalError(f"`context.{name}` is absent")
    return context[name]


# name -> (policy-language text, evaluation). Reading an absent attribute without
# `has` is an error; `&&` short-circuits, so `has x && x ...` never errors.
CONDITIONS: Mapping[str, tuple[str | None, Callable[[Mapping[str, Any]], bool]]] = {
    "none": (None, lambda c: True),
    "size_le_4096": ("context.size_bytes <= 4096", lambda c: _ctx(c, "size_bytes") <= 4096),
    "has_size_le_100": (
        "has context.size_bytes && context.size_bytes <= 100",
        lambda c: "size_bytes" in c and c["size_bytes"] <= 100,
    ),
    "secret": (
        'has context.classification && context.classification == "secret"',
        lambda c: "classification" in c and c["classification"] == "secret",
    ),
    "bare_secret": (
        'context.classification == "secret"',
        lambda c: _ctx(c, "classification") == "secret",
    ),
}


# ---- globs ----------------------------------------------------------------------------


def glob_matches(glob: str, path: str) -> bool:
    """Whether ``path`` is in the language of ``glob`` (the restricted shapes only).

    ``**`` alone is any path; ``L/**`` is ``L`` followed by one or more
    segments; ``L/*`` is ``L`` followed by exactly one segment; anything else
    is an exact path.
    """
    if glob == "**":
        return True
    g, p = glob.split("/"), path.split("/")
    if "*" in glob and g[-1] not in ("*", "**"):
        raise ValueError(f"the model does not know the glob shape `{glob}`")
    if g[-1] == "**":
        return len(p) > len(g) - 1 and p[: len(g) - 1] == g[:-1]
    if g[-1] == "*":
        return len(p) == len(g) and p[:-1] == g[:-1]
    return glob == path


def glob_within(child: str, parents: Iterable[str]) -> bool:
    """Whether every path of ``child`` is a path of some parent glob (by the representatives)."""
    ps = tuple(parents)
    return all(any(glob_matches(g, p) for g in ps) for p in PATHS if glob_matches(child, p))


def signature(path: str) -> frozenset[str]:
    """The globs of :data:`GLOBS` and :data:`APPROVED_SCOPES` that match ``path`` (its region)."""
    return frozenset(g for g in (*GLOBS, *APPROVED_SCOPES) if glob_matches(g, path))


def _path_ok(path: object) -> bool:
    if not isinstance(path, str) or not path or len(path) > 1024:
        return False
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~@+=,-")
    segs = path.split("/")
    return len(segs) <= 32 and all(
        s and s not in (".", "..") and len(s) <= 128 and set(s) <= allowed for s in segs
    )


# ---- policies -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPolicy:
    """One policy of the menu; ``None`` in a scope field means any (``"*"``)."""

    id: str
    effect: str  # "permit" | "forbid"
    principals: tuple[str, ...] | None
    actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    channel: str | None
    condition: str = "none"

    def applies(self, principal: str, action: str, resource: str, channel: str) -> bool:
        """Whether the scope (principal, action, resource, channel) matches."""
        if self.principals is not None:
            names: set[str] = set()
            for entry in self.principals:
                names.update(ROLES[entry[5:]] if entry.startswith("role:") else (entry,))
            if principal not in names:
                return False
        if self.actions is not None and action not in self.actions:
            return False
        if self.resources is not None and not any(
            glob_matches(g, resource) for g in self.resources
        ):
            return False
        return self.channel is None or self.channel == channel

    def render(self) -> str:
        """This policy as a TOML ``[[policy]]`` table of the policy language."""

        def listing(values: tuple[str, ...] | None) -> str:
            return '"*"' if values is None else "[" + ", ".join(f'"{v}"' for v in values) + "]"

        lines = [
            "[[policy]]",
            f'id = "{self.id}"',
            f'effect = "{self.effect}"',
            f"principal = {listing(self.principals)}",
            f"action = {listing(self.actions)}",
            f"resource = {listing(self.resources)}",
            f'channel = "{self.channel or "*"}"',
        ]
        text = CONDITIONS[self.condition][0]
        if text is not None:
            lines.append(f"when = '{text}'")
        return "\n".join(lines) + "\n"


def render_policy_set(policies: Iterable[ModelPolicy]) -> str:
    """A whole policy file: the role table and every policy."""
    roles = "".join(
        f"{name} = [" + ", ".join(f'"{m}"' for m in members) + "]\n"
        for name, members in ROLES.items()
    )
    return "[roles]\n" + roles + "\n" + "\n".join(p.render() for p in policies)


@dataclass(frozen=True)
class PolicyVerdict:
    """The policies that matched, errored, by effect."""

    permits: frozenset[str]
    forbids: frozenset[str]
    errors: frozenset[str]

    @property
    def allows(self) -> bool:
        """Errors deny, forbid overrides permit, default deny."""
        return not self.errors and not self.forbids and bool(self.permits)


def evaluate_policies(
    policies: Iterable[ModelPolicy],
    principal: str,
    action: str,
    resource: str,
    channel: str,
    context: Mapping[str, Any],
) -> PolicyVerdict:
    """Evaluate every policy against one request."""
    permits: set[str] = set()
    forbids: set[str] = set()
    errors: set[str] = set()
    for p in policies:
        if not p.applies(principal, action, resource, channel):
            continue
        try:
            holds = CONDITIONS[p.condition][1](context)
        except ModelEvalError:
            errors.add(p.id)
            continue
        if holds:
            (forbids if p.effect == "forbid" else permits).add(p.id)
    return PolicyVerdict(frozenset(permits), frozenset(forbids), frozenset(errors))


def _sample_contexts() -> Iterator[dict[str, Any]]:
    for size, cls in product(SIZE_SAMPLES, CLASSIFICATION_SAMPLES):
        ctx: dict[str, Any] = {}
        if size is not None:
            ctx["size_bytes"] = size
        if cls is not None:
            ctx["classification"] = cls
        yield ctx


def governance_violations(
    policies: tuple[ModelPolicy, ...], scopes: tuple[str, ...] = APPROVED_SCOPES
) -> frozenset[str]:
    """Which activation checks the set fails: ``persist_outside_scope``, ``admin_via_bridge``.

    Exhaustive over representatives: every principal class, every action, both
    channels, a path of every glob region and every condition outcome.
    """
    found: set[str] = set()
    contexts = list(_sample_contexts())
    for principal in (*PRINCIPALS, OTHER_PRINCIPAL):
        for action, channel, resource in product(sorted(ALL_ACTIONS), ("bridge", "admin"), PATHS):
            persist_out = action in PERSIST_ACTIONS and not any(
                glob_matches(s, resource) for s in scopes
            )
            admin_bridge = action in ADMIN_ACTIONS and channel == "bridge"
            if not (persist_out or admin_bridge):
                continue
            if any(
                evaluate_policies(policies, principal, action, resource, channel, c).allows
                for c in contexts
            ):
                found.add("persist_outside_scope" if persist_out else "admin_via_bridge")
    return frozenset(found)


# ---- capabilities -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCap:
    """A capability as the model knows it; ``id`` and ``token`` come from the real registry."""

    key: int
    id: str
    token: str
    parent: int | None
    principal: str
    actions: frozenset[str]
    globs: tuple[str, ...]
    not_before: int
    expires: int


@dataclass(frozen=True)
class Expected:
    """The model's decision for one request, with the facts INV-1 is about."""

    effect: str
    stage: str
    code: str
    cap_id: str | None = None
    policy_ids: frozenset[str] = frozenset()
    cap_valid: bool = False
    verdict: PolicyVerdict | None = None
    obligations_proved: bool = False


_REQUEST_KEYS = frozenset(
    {"request_id", "principal", "action", "resource", "capability", "channel", "context"}
    | {"obligations"}
)


def _schema_ok(raw: Mapping[str, Any]) -> bool:
    if not set(raw) <= _REQUEST_KEYS or raw.get("action") not in ALL_ACTIONS:
        return False
    if raw.get("channel", "bridge") not in ("bridge", "admin") or not _path_ok(raw.get("resource")):
        return False
    context = raw.get("context", {})
    for name, value in context.items():
        kind = CONTEXT_TYPES.get(name)
        if kind is None or type(value) is not kind:
            return False
    return True


class ReferenceModel:
    """The model's state: clock, capabilities, revocations, the active policy set."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.caps: dict[int, ModelCap] = {}
        self.revoked: set[int] = set()
        self.policies: tuple[ModelPolicy, ...] | None = None

    # -- capabilities ----------------------------------------------------------------
    def chain(self, key: int) -> list[int]:
        """The capability and all its ancestors."""
        out = [key]
        while self.caps[out[-1]].parent is not None:
            parent = self.caps[out[-1]].parent
            assert parent is not None
            out.append(parent)
        return out

    def is_dead(self, key: int) -> bool:
        """Revoked itself, or any ancestor revoked (INV-10)."""
        return any(k in self.revoked for k in self.chain(key))

    def descendants(self, key: int) -> set[int]:
        """Every capability derived from ``key``, transitively."""
        return {k for k in self.caps if k != key and key in self.chain(k)}

    def revoke(self, key: int) -> set[int]:
        """Revoke ``key`` and every descendant; return the keys marked."""
        marked = {key} | self.descendants(key)
        self.revoked |= marked
        return marked

    def liveness(self, cap: ModelCap) -> str | None:
        """The error code of a dead or out-of-window capability, else None."""
        if self.is_dead(cap.key):
            return "revoked"
        if self.now < cap.not_before:
            return "not_yet_valid"
        if self.now >= cap.expires:
            return "expired"
        return None

    def admit_outcome(self, not_before: int, expires: int) -> str | None:
        """The error code an admission should fail with, or None."""
        return "malformed" if not 0 <= not_before < expires else None

    def attenuate_outcome(
        self,
        parent: ModelCap,
        actions: frozenset[str],
        globs: tuple[str, ...],
        not_before: int,
        expires: int,
    ) -> frozenset[str]:
        """Every reason an attenuation must be refused for (INV-10); empty if it may succeed.

        A dead or out-of-window parent refuses by itself; otherwise each wider
        dimension is a reason, and so is an empty window. Which one the kernel
        names first when several hold is its choice: the test accepts any of them.
        """
        dead = self.liveness(parent)
        if dead is not None:
            return frozenset({dead})
        reasons = set()
        if not actions <= parent.actions:
            reasons.add("actions_wider")
        if not (parent.not_before <= not_before and expires <= parent.expires):
            reasons.add("window_wider")
        if not all(glob_within(g, parent.globs) for g in globs):
            reasons.add("resources_wider")
        if not_before >= expires:
            reasons.add("malformed")
        return frozenset(reasons)

    def check_capability(
        self, cap: ModelCap, principal: str, action: str, resource: str
    ) -> str | None:
        """The capability-stage error code for a genuine token, or None when it covers."""
        dead = self.liveness(cap)
        if dead is not None:
            return dead
        if principal != cap.principal:
            return "wrong_principal"
        if action not in cap.actions:
            return "action_not_covered"
        if not any(glob_matches(g, resource) for g in cap.globs):
            return "resource_not_covered"
        return None

    # -- the decision path -------------------------------------------------------------
    def decide(self, raw: Mapping[str, Any], token: tuple[str, ModelCap | None]) -> Expected:
        """Decide one bridge request; ``token`` is (kind, capability) with kind one of
        ``genuine``, ``absent``, ``garbage``, ``forged``, ``foreign_key``."""
        if not _schema_ok(raw):
            return Expected("DENY", "schema", "bad_request")
        channel = raw.get("channel", "bridge")
        action, principal, resource = raw["action"], raw["principal"], raw["resource"]
        if channel != "bridge":  # INV-6: every request here came through the bridge
            return Expected("DENY", "schema", "admin_channel_via_bridge")
        if action in ADMIN_ACTIONS:  # INV-6
            return Expected("DENY", "schema", "admin_via_bridge")
        kind, cap = token
        if kind in ("absent", "garbage"):
            return Expected("DENY", "capability", "malformed")
        if kind in ("forged", "foreign_key"):
            return Expected("DENY", "capability", "forged")
        if kind != "genuine" or cap is None:
            raise ValueError(f"the model does not know the token kind `{kind}`")
        code = self.check_capability(cap, principal, action, resource)
        if code is not None:
            return Expected("DENY", "capability", code, cap.id)
        if self.policies is None:
            return Expected("DENY", "policy", "no_policy", cap.id, cap_valid=True)
        context = raw.get("context", {})
        v = evaluate_policies(self.policies, principal, action, resource, channel, context)
        return _policy_stage(cap.id, v, obligation_verdicts(raw))


def obligation_verdicts(raw: Mapping[str, Any]) -> list[str]:
    """The verdicts of a request's obligations in the order they are checked.

    SOP's own first: a persist action's target must lie in an approved scope
    (INV-4); then the attached ones, from the menu of :data:`OBLIGATIONS`.
    """
    out = []
    if raw["action"] in PERSIST_ACTIONS:
        inside = any(glob_matches(s, raw["resource"]) for s in APPROVED_SCOPES)
        out.append("PROVED" if inside else "REFUTED")
    for ob in raw.get("obligations", []):
        if ob.get("format") != "smt2" or ob.get("source") not in OBLIGATIONS:
            raise ValueError(f"the model does not know the obligation `{ob}`")
        out.append(OBLIGATIONS[ob["source"]])
    return out


def _policy_stage(cap_id: str, v: PolicyVerdict, verdicts: list[str]) -> Expected:
    """Stages 5 to 7 for a request whose capability covers it."""
    failed = [x for x in verdicts if x != "PROVED"]
    if v.errors:
        effect, stage, code, ids = "DENY", "policy", "evaluation_error", v.errors
    elif v.forbids:
        effect, stage, code, ids = "DENY", "policy", "forbidden", v.forbids
    elif not v.permits:
        effect, stage, code, ids = "DENY", "policy", "no_permit", frozenset()
    elif failed:
        effect, stage, code, ids = (
            "DENY",
            "obligation",
            f"obligation_{failed[0].lower()}",
            v.permits,
        )
    else:
        effect, stage, code, ids = "ALLOW", "policy", "permitted", v.permits
    return Expected(effect, stage, code, cap_id, ids, True, v, not failed)

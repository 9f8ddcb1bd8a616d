"""A deterministic request corpus for the policy benchmark (seeded, engine-neutral).

Most requests aim at a policy's scope (a principal it names, an action it
lists, a path under one of its patterns, its channel) so the corpus holds
allows as well as each kind of deny; the rest are random. Context values
cluster around the scenario's thresholds (sizes, hours, trust levels), and
every request carries every context attribute, so no condition ever reads an
absent one (SOP denies on such an error while Cedar skips the policy: the
engines would differ by design, not by bug). Paths are well-formed SOP
resource paths, on which the three engines' patterns agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Final

from policy_scenario import PRINCIPALS, ROLES, RULES, Rule, glob_prefix

__all__ = ["ACTIONS", "Case", "generate_cases"]

ACTIONS: Final = (
    "artifact.persist",
    "artifact.read",
    "phase.advance",
    "verdict.record",
    "obligation.submit",
    "state.persist",
    "snapshot.seal",
    "snapshot.resume",
    "capability.admit",
    "capability.attenuate",
    "capability.revoke",
    "policy.activate",
    "key.rotate",
    "scope.define",
)
_ROOTS: Final = (
    "drac",
    "drac/artifacts",
    "drac/catalog",
    "drac/phases",
    "emp/verdicts",
    "emp/obligations",
    "emp/obligations/ci",
    "csp/state",
    "csp/holding",
    "csp/snapshots",
    "shared/acme",
    "shared/globex",
    "shared/misc",
    "public",
    "vault",
    "admin/capabilities",
    "admin/policies",
    "admin/keys",
    "admin/scopes",
    "tmp",
)
_SEGMENTS: Final = ("a1", "b2", "build-7", "report.json", "x@1", "v=2", "snap_01", "idx~3", "obj")
_MIB: Final = 1024 * 1024
_THRESHOLDS: Final = (32768, 32769, 65536, 262144, _MIB, 4 * _MIB, 8 * _MIB, 8 * _MIB + 1)
_LABELS: Final = (
    ("pii", 0.1),
    ("secret", 0.05),
    ("audit", 0.2),
    ("verified", 0.6),
    ("quarantined", 0.05),
    ("draft", 0.1),
)


@dataclass(frozen=True, slots=True)
class Case:
    """One request, engine-neutral; each engine builds its own request form from it."""

    request_id: str
    principal: str
    action: str
    resource: str
    channel: str
    context: dict[str, Any]


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(_THRESHOLDS)
    if roll < 0.6:
        return rng.randint(0, 32768)
    if roll < 0.85:
        return rng.randint(32769, _MIB)
    if roll < 0.95:
        return rng.randint(_MIB + 1, 8 * _MIB)
    return rng.randint(8 * _MIB + 1, 16 * _MIB)


def _context(rng: random.Random) -> dict[str, Any]:
    labels = sorted(name for name, p in _LABELS if rng.random() < p)
    return {
        "size_bytes": _size(rng),
        "hour": rng.randrange(24),
        "trust_level": rng.choices(range(6), weights=(1, 2, 3, 5, 5, 4))[0],
        "session": f"s-{rng.randrange(1000):03d}",
        "phase": rng.choice(("compile", "link", "verify", "package", "resume")),
        "state_class": rng.choice(("working", "episodic", "semantic", "volatile", "quarantined")),
        "classification": rng.choices(
            ("public", "internal", "confidential", "secret"), weights=(4, 4, 1, 1)
        )[0],
        "tenant": rng.choice(("acme", "globex", "initech")),
        "emergency": rng.random() < 0.03,
        "labels": labels,
    }


def _path_under(rng: random.Random, pattern: str) -> str:
    prefix = glob_prefix(pattern)
    if prefix is None:
        return pattern
    depth = rng.choices((1, 2, 3), weights=(5, 3, 1))[0]
    return prefix + "/".join(rng.choice(_SEGMENTS) for _ in range(depth))


def _random_path(rng: random.Random) -> str:
    root = rng.choice(_ROOTS)
    if rng.random() < 0.05:
        return root  # a scope root itself: no `root/**` pattern matches it
    return _path_under(rng, root + "/**")


def _principal(rng: random.Random, rule: Rule) -> str:
    if rule.principals is None or rng.random() < 0.1:
        return rng.choice(PRINCIPALS)
    entry = rng.choice(rule.principals)
    if entry.startswith("role:"):
        return rng.choice(ROLES[entry.removeprefix("role:")])
    return entry


def _aimed(rng: random.Random, rule: Rule) -> tuple[str, str, str, str]:
    action = rng.choice(rule.actions or ACTIONS)
    if rule.resources is None:
        resource = _random_path(rng)
    else:
        resource = _path_under(rng, rng.choice(rule.resources))
    channel = rule.channel or rng.choice(("bridge", "admin"))
    if rng.random() < 0.05:
        channel = "admin" if channel == "bridge" else "bridge"
    return _principal(rng, rule), action, resource, channel


def _benign(rng: random.Random, context: dict[str, Any]) -> None:
    """Pull a context toward passing: small, office hours, trusted, no alarming label."""
    context["size_bytes"] = rng.randint(0, 32768)
    context["hour"] = rng.randint(9, 16)
    context["trust_level"] = rng.randint(4, 5)
    context["emergency"] = False
    alarming = ("secret", "quarantined", "draft", "pii")
    context["labels"] = [x for x in context["labels"] if x not in alarming]


def generate_cases(n: int, seed: int = 20261126) -> list[Case]:
    """The first ``n`` requests of the corpus for ``seed`` (same seed, same requests).

    Args:
        n: how many requests.
        seed: the random seed.

    Returns:
        The cases, ids ``bench-000000`` onwards.
    """
    rng = random.Random(seed)
    permits = [r for r in RULES if r.effect == "permit"]
    forbids = [r for r in RULES if r.effect == "forbid"]
    cases = []
    for i in range(n):
        roll = rng.random()
        context = _context(rng)
        if roll < 0.8:
            rule = rng.choice(permits if roll < 0.55 else forbids)
            principal, action, resource, channel = _aimed(rng, rule)
            if roll < 0.3:
                _benign(rng, context)
        else:
            principal, action = rng.choice(PRINCIPALS), rng.choice(ACTIONS)
            resource, channel = _random_path(rng), rng.choice(("bridge", "admin"))
        cases.append(Case(f"bench-{i:06d}", principal, action, resource, channel, context))
    return cases

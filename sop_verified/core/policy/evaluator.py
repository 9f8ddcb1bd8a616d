"""The fast policy evaluator: :class:`PolicySet` and its :class:`PolicyResult`.

A document is compiled once: policies are indexed by (action, channel), then
by principal with roles expanded, so a decision visits only the policies whose
scope can apply; resource globs are precompiled and conditions are closures.
Semantics (spec/POLICY_LANGUAGE.md section 5): a policy *applies* when
principal, action, resource and channel match; an applying policy *matches*
when its condition is true. Any evaluation error in an applying policy makes
the decision DENY (unlike Cedar, which skips the erroring policy); else any
matching forbid makes it DENY; else a matching permit makes it ALLOW; else
DENY (default deny, an empty set denies everything).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sop_verified.core.contracts import ensure, invariant
from sop_verified.core.policy.compiler import Condition, compile_condition
from sop_verified.core.policy.loader import load_canonical, load_path
from sop_verified.core.policy.model import Policy, PolicyDocument
from sop_verified.core.policy.typecheck import CHANNELS
from sop_verified.core.request import ACTIONS, Permission, Reason, Request, Stage
from sop_verified.errors import PolicyEvaluationError
from sop_verified.tools.paths import Glob

__all__ = ["PolicyReason", "PolicyResult", "PolicySet"]


class PolicyReason(enum.StrEnum):
    """Why the policy stage answered what it did."""

    PERMITTED = "permitted"
    FORBIDDEN = "forbidden"
    NO_PERMIT = "no_permit"
    EVALUATION_ERROR = "evaluation_error"


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """The policy stage's answer.

    ``policy_ids`` are the determining policies: the matching permits on
    ALLOW, the matching forbids on a forbid DENY, the erroring policies on an
    evaluation-error DENY, none on a default DENY.
    """

    effect: Permission
    reason: PolicyReason
    policy_ids: tuple[str, ...] = ()
    message: str = ""

    def __post_init__(self) -> None:
        if self.effect is Permission.ALLOW and (
            self.reason is not PolicyReason.PERMITTED or not self.policy_ids
        ):  # spec: INV-1 (an ALLOW names the permits that matched; plain code, kept by -O)
            raise PolicyEvaluationError(
                f"an ALLOW must name its matching permits, got reason `{self.reason}`"
                f" and policies `{self.policy_ids}`"
            )

    @property
    def allowed(self) -> bool:
        """True only for ALLOW."""
        return self.effect is Permission.ALLOW

    @ensure(lambda result: result.stage is Stage.POLICY, "a policy-stage reason", helper=True)
    def to_reason(self) -> Reason:
        """This result as a decision reason of the policy stage.

        Returns:
            A :class:`~sop_verified.core.request.Reason` with the code and policy ids.
        """
        return Reason(Stage.POLICY, str(self.reason), self.describe(), policy_ids=self.policy_ids)

    @ensure(lambda result: len(result) > 0, "a message", helper=True)
    def describe(self) -> str:
        """A one-line human explanation.

        Returns:
            The message, derived from the reason and ids when none was stored.
        """
        if self.message:
            return self.message
        ids = ", ".join(f"`{i}`" for i in self.policy_ids)
        return {
            PolicyReason.PERMITTED: f"permitted by {ids}",
            PolicyReason.FORBIDDEN: f"forbidden by {ids}",
            PolicyReason.NO_PERMIT: "no permit matches the request (default deny)",
            PolicyReason.EVALUATION_ERROR: f"evaluation error in {ids} (any error denies)",
        }[self.reason]

    @ensure(lambda result: result["effect"] in ("ALLOW", "DENY"), "a JSON-ready result")
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form.

        Returns:
            ``{"effect", "reason", "policy_ids", "message"}``.
        """
        return {
            "effect": str(self.effect),
            "reason": str(self.reason),
            "policy_ids": list(self.policy_ids),
            "message": self.describe(),
        }


_NO_PERMIT: Final = PolicyResult(Permission.DENY, PolicyReason.NO_PERMIT)
_NOT_A_REQUEST: Final = PolicyResult(
    Permission.DENY,
    PolicyReason.EVALUATION_ERROR,
    (),
    "not a parsed Request (any evaluation error denies)",
)
_Entry = tuple[str, bool, Callable[[str], bool] | None, Condition | None]
"""A compiled policy: (id, is_forbid, resource matcher or None for any, condition or None)."""
_ByHead = tuple[dict[str, tuple[_Entry, ...]], tuple[_Entry, ...]]
"""First path segment -> entries whose globs can match it, and the entries for any other segment."""
_Bucket = tuple[dict[str, _ByHead], _ByHead]
"""Per (action, channel): principal -> its entries by head, and the same for any other principal."""


def _literal_prefix(pattern: str) -> str:
    """The text before the first wildcard: every path the glob matches starts with it."""
    cut = [i for i in (pattern.find("*"), pattern.find("?")) if i >= 0]
    return pattern[: min(cut)] if cut else pattern


def _glob_matcher(pattern: str) -> Callable[[str], bool]:
    glob = Glob(pattern)
    prefix = _literal_prefix(pattern)
    if prefix == pattern:  # no wildcard: the glob's language is this one path
        return pattern.__eq__
    if not prefix:
        return glob.matches
    matches = glob.matches
    return lambda resource: resource.startswith(prefix) and matches(resource)


def _resource_matcher(patterns: tuple[str, ...] | None) -> Callable[[str], bool] | None:
    if patterns is None:
        return None
    matchers = tuple(_glob_matcher(p) for p in patterns)
    if len(matchers) == 1:
        return matchers[0]
    prefixes = tuple(_literal_prefix(p) for p in patterns)

    def any_glob(resource: str) -> bool:
        return resource.startswith(prefixes) and any(m(resource) for m in matchers)

    return any_glob


def _heads(patterns: tuple[str, ...] | None) -> frozenset[str] | None:
    """The literal first segments of the globs (a cheap filter); None if one is a wildcard."""
    if patterns is None:
        return None
    heads = {p.partition("/")[0] for p in patterns}
    if any("*" in h or "?" in h for h in heads):
        return None
    return frozenset(heads)


def _compile_entry(p: Policy) -> _Entry:
    cond = None if p.when is None else compile_condition(p.when)
    return (p.id, p.is_forbid, _resource_matcher(p.resources), cond)


_Staged = list[tuple[frozenset[str] | None, frozenset[str] | None, _Entry]]
"""(expanded principals or None, literal heads or None, entry), in policy order."""


def _by_head(items: _Staged) -> _ByHead:
    named = set().union(*(hs for _, hs, _ in items if hs is not None))
    by_head = {h: tuple(e for _, hs, e in items if hs is None or h in hs) for h in sorted(named)}
    return by_head, tuple(e for _, hs, e in items if hs is None)


def _bucket(items: _Staged) -> _Bucket:
    named = set().union(*(ps for ps, _, _ in items if ps is not None))
    by_principal = {
        name: _by_head([it for it in items if it[0] is None or name in it[0]])
        for name in sorted(named)
    }
    return by_principal, _by_head([it for it in items if it[0] is None])


def _build_index(doc: PolicyDocument) -> dict[tuple[str, str], _Bucket]:
    staged: dict[tuple[str, str], _Staged] = {}
    for p in doc.policies:
        item = (doc.principals_of(p), _heads(p.resources), _compile_entry(p))
        for action in sorted(p.actions or ACTIONS):
            for channel in sorted(CHANNELS if p.channel is None else {p.channel}):
                staged.setdefault((action, channel), []).append(item)
    return {key: _bucket(items) for key, items in staged.items()}


def _decide(index: dict[tuple[str, str], _Bucket], request: Request) -> PolicyResult:
    bucket = index.get((request.action, request.channel))
    if bucket is None:
        return _NO_PERMIT  # spec: INV-1 (nothing can apply: default deny)
    resource = request.resource
    by_head, any_head = bucket[0].get(request.principal, bucket[1])
    permits: list[str] = []
    forbids: list[str] = []
    errors: list[tuple[str, str]] = []
    for pid, is_forbid, matches, cond in by_head.get(resource.partition("/")[0], any_head):
        if matches is not None and not matches(resource):
            continue
        if cond is not None:
            try:
                if cond(request) is not True:
                    continue
            except PolicyEvaluationError as exc:
                errors.append((pid, str(exc)))
                continue
        (forbids if is_forbid else permits).append(pid)
    if errors:  # spec: INV-2 (an error in any applying policy denies; Cedar would skip it)
        ids = tuple(pid for pid, _ in errors)
        return PolicyResult(
            Permission.DENY,
            PolicyReason.EVALUATION_ERROR,
            ids,
            f"policy `{errors[0][0]}`: {errors[0][1]} (any evaluation error denies)",
        )
    if forbids:  # forbid overrides permit
        return PolicyResult(Permission.DENY, PolicyReason.FORBIDDEN, tuple(forbids))
    if permits:
        return PolicyResult(Permission.ALLOW, PolicyReason.PERMITTED, tuple(permits))
    return _NO_PERMIT  # spec: INV-1 (no matching permit: default deny)


def _decide_safely(index: dict[tuple[str, str], _Bucket], request: object) -> PolicyResult:
    if not isinstance(request, Request):
        return _NOT_A_REQUEST
    try:
        return _decide(index, request)
    except Exception as exc:  # spec: INV-2 (anything unexpected on the decision path is DENY)
        return PolicyResult(
            Permission.DENY,
            PolicyReason.EVALUATION_ERROR,
            (),
            f"evaluation failed: {type(exc).__name__} (any evaluation error denies)",
        )


@invariant(
    lambda self: self._digest.startswith("sha256:"),
    "compiled from a digested document",
    immutable=True,
)
class PolicySet:
    """A compiled, immutable policy set: the policy stage of the decision path."""

    __slots__ = ("_digest", "_document", "_index")

    def __init__(self, document: PolicyDocument) -> None:
        """Compile ``document``.

        Args:
            document: a checked policy document.

        Raises:
            TypeError: ``document`` is not a :class:`PolicyDocument`.
        """
        if not isinstance(document, PolicyDocument):
            raise TypeError(f"expected a PolicyDocument, got `{type(document).__name__}`")
        self._document = document
        self._digest = document.digest
        self._index = _build_index(document)

    def __repr__(self) -> str:
        return f"PolicySet({len(self.document)} policies, {self._digest})"

    @classmethod
    def from_path(cls, path: str | Path) -> PolicySet:
        """Load and compile a policy file or directory.

        Args:
            path: a ``*.toml`` / ``*.json`` file or a directory of them.

        Returns:
            The compiled set.

        Raises:
            PolicyParseError: unreadable, oversized or malformed input.
            PolicyValidationError: an invalid policy, named by file, id and field.
        """
        return cls(load_path(path))

    @classmethod
    @ensure(lambda data, result: result.document.canonical_bytes() == data, "round-trips")
    def from_canonical(cls, data: bytes) -> PolicySet:
        """Compile a set stored in canonical form (as the policy store keeps it).

        Args:
            data: canonical bytes from :meth:`PolicyDocument.canonical_bytes`.

        Returns:
            The compiled set.

        Raises:
            PolicyParseError: not a JSON policy document.
            PolicyValidationError: invalid or not canonical.
        """
        return cls(load_canonical(data))

    @property
    def document(self) -> PolicyDocument:
        """The checked document this set was compiled from."""
        return self._document

    @property
    def digest(self) -> str:
        """The policy digest, ``sha256:<hex>`` of the canonical document."""
        return self._digest

    @ensure(
        lambda result: (
            result.effect is Permission.DENY
            or (result.reason is PolicyReason.PERMITTED and len(result.policy_ids) > 0)
        ),
        "INV-1: ALLOW only with a matching permit",
        helper=True,
    )
    def evaluate(self, request: Request) -> PolicyResult:
        """Decide the policy stage for ``request``; never raises.

        Args:
            request: a validated request.

        Returns:
            ALLOW with the matching permits, or DENY with the reason (forbidden,
            no_permit, evaluation_error) and the determining policies. Anything
            but a :class:`Request` is DENY (evaluation_error). This is the hot
            path, so both checks are plain code: the precondition here, INV-1 in
            :class:`PolicyResult`'s constructor (an ALLOW without its permits is
            an evaluation error, hence DENY). The INV-1 postcondition restates
            that check in the helper tier (on in the tests), and the kernel's
            boundary postcondition checks every ALLOW again (ADR 0007).
        """
        return _decide_safely(self._index, request)

    @ensure(lambda requests, result: len(result) == len(requests), "one answer per request")
    @ensure(
        lambda result: all(
            r.effect is Permission.DENY
            or (r.reason is PolicyReason.PERMITTED and len(r.policy_ids) > 0)
            for r in result
        ),
        "INV-1: ALLOW only with a matching permit",
    )
    def evaluate_many(self, requests: Sequence[Request]) -> list[PolicyResult]:
        """:meth:`evaluate` for each request; the contract is checked once, on every answer.

        Args:
            requests: validated requests.

        Returns:
            Per request, in order, what :meth:`evaluate` returns for it; never raises.
        """
        return [_decide_safely(self._index, r) for r in requests]

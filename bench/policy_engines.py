"""The three engines behind one small interface: SOP, cedarpy and casbin.

Each engine compiles the scenario once, turns every :class:`~policy_corpus.Case`
into its own request form once (outside any timed loop), and exposes:

- ``timed``: the single call a decision costs, as the engine's users make it;
- ``verdict(item)``: the decision with the determining policy ids when the
  engine reports them (the agreement check compares both);
- ``batch(items)``: the engine's batched form (cedarpy's ``is_authorized_batch``,
  a plain loop for the others).

Import :mod:`contract_switch` before this module: it imports SOP's policy package.
"""

from __future__ import annotations

import functools
import json
import logging
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import casbin
import cedarpy
from policy_corpus import Case
from policy_render import (
    CASBIN_MODEL,
    action_match,
    casbin_rows,
    cedar_entities,
    cedar_text,
    object_match,
    sop_toml,
)
from policy_scenario import ROLES, Rule

from sop_verified.core.policy import PolicyReason, PolicySet
from sop_verified.core.policy.loader import document_from_fragments, parse_bytes
from sop_verified.core.request import Request

__all__ = ["CasbinEngine", "CedarEngine", "SopEngine", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One engine's answer: decision, determining policy ids (None if not reported), reason."""

    allowed: bool
    policy_ids: frozenset[str] | None
    reason: str


class SopEngine:
    """SOP's :class:`PolicySet`, compiled from the scenario's TOML rendering."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        """Parse and compile the scenario.

        Args:
            rules: the neutral rules.
        """
        text = sop_toml(rules, ROLES).encode()
        fragment = parse_bytes(text, source="scenario.toml", fmt="toml")
        self.policy_set = PolicySet(document_from_fragments([fragment]))
        self.timed: Callable[[Any], object] = self.policy_set.evaluate

    def prepare(self, cases: list[Case]) -> list[Request]:
        """Validated requests, built once.

        Args:
            cases: the corpus.

        Returns:
            One :class:`Request` per case.
        """
        return [
            Request.model_validate(
                {
                    "request_id": c.request_id,
                    "principal": c.principal,
                    "action": c.action,
                    "resource": c.resource,
                    "channel": c.channel,
                    "context": dict(c.context),
                }
            )
            for c in cases
        ]

    def verdict(self, item: Request) -> Verdict:
        """SOP's decision and its determining policies.

        Args:
            item: a prepared request.

        Returns:
            The verdict; an evaluation error is reported as its reason.
        """
        result = self.policy_set.evaluate(item)
        return Verdict(result.allowed, frozenset(result.policy_ids), str(result.reason))

    def batch(self, items: list[Request]) -> object:
        """Decide every item in a loop.

        Args:
            items: prepared requests.

        Returns:
            The results.
        """
        evaluate = self.policy_set.evaluate
        return [evaluate(r) for r in items]

    @staticmethod
    def is_error(v: Verdict) -> bool:
        """Whether a verdict came from an evaluation error (never expected in this corpus).

        Args:
            v: a verdict of this engine.

        Returns:
            True for SOP's ``evaluation_error`` reason.
        """
        return v.reason == str(PolicyReason.EVALUATION_ERROR)


class CedarEngine:
    """cedarpy on its fast path: pre-parsed ``PolicySet`` and ``Entities`` handles, dict ids."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        """Parse the Cedar rendering and the entity graph once.

        Args:
            rules: the neutral rules.
        """
        self.text = cedar_text(rules)
        self.policies = cedarpy.PolicySet.from_str(self.text)
        self.entities = cedarpy.Entities.from_json_str(json.dumps(cedar_entities(ROLES)))
        self.timed: Callable[[Any], object] = functools.partial(
            cedarpy.is_authorized, policies=self.policies, entities=self.entities
        )

    def prepare(self, cases: list[Case]) -> list[dict[str, Any]]:
        """Cedar requests with ``{"type", "id"}`` entity ids and the context as JSON text.

        The context is serialised here, once, the way SOP's request is validated
        once: ``is_authorized`` would otherwise ``json.dumps`` a dict context per call.

        Args:
            cases: the corpus.

        Returns:
            One request dict per case.
        """
        return [
            {
                "principal": {"type": "Principal", "id": c.principal},
                "action": {"type": "Action", "id": c.action},
                "resource": {"type": "Resource", "id": c.resource},
                "context": json.dumps({**c.context, "path": c.resource, "channel": c.channel}),
            }
            for c in cases
        ]

    def verdict(self, item: dict[str, Any]) -> Verdict:
        """Cedar's decision and the ``@id`` of its determining policies.

        Args:
            item: a prepared request.

        Returns:
            The verdict.

        Raises:
            RuntimeError: Cedar reported an evaluation error (it would skip that
                policy where SOP denies, so the corpus must never cause one).
        """
        result = cedarpy.is_authorized(item, self.policies, self.entities)
        if result.diagnostics.errors:
            raise RuntimeError(f"cedar evaluation error: {result.diagnostics.errors}")
        ids = frozenset(result.diagnostics.id_annotations_by_reason.values())
        return Verdict(result.allowed, ids, "allow" if result.allowed else "deny")

    def batch(self, items: list[dict[str, Any]]) -> object:
        """One ``is_authorized_batch`` call over every item.

        Args:
            items: prepared requests.

        Returns:
            The results.
        """
        return cedarpy.is_authorized_batch(items, self.policies, self.entities)


_CASBIN_FUNCTIONS: Final = {"actionMatch": action_match, "objectMatch": object_match}


class CasbinEngine:
    """casbin with an ABAC model: ``eval()`` of each row's rule, allow and deny effects."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        """Build the enforcer from the model text, the rows and the role links.

        Args:
            rules: the neutral rules.
        """
        logging.getLogger("casbin").setLevel(logging.CRITICAL)  # it logs every decision
        self.rows = casbin_rows(rules)
        enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=CASBIN_MODEL))
        for name, fn in _CASBIN_FUNCTIONS.items():
            enforcer.add_function(name, fn)
        enforcer.add_policies(self.rows)
        for role, members in ROLES.items():
            for m in members:
                enforcer.add_grouping_policy(m, f"role:{role}")
        self.enforcer = enforcer
        self.timed: Callable[[Any], object] = lambda item: enforcer.enforce(*item)

    def prepare(self, cases: list[Case]) -> list[tuple[Any, ...]]:
        """casbin request values ``(sub, act, obj, chan, ctx)``; ``ctx`` has attributes.

        Args:
            cases: the corpus.

        Returns:
            One tuple per case.
        """
        out = []
        for c in cases:
            ctx = types.SimpleNamespace(**{**c.context, "labels": frozenset(c.context["labels"])})
            out.append((c.principal, c.action, c.resource, c.channel, ctx))
        return out

    def verdict(self, item: tuple[Any, ...]) -> Verdict:
        """casbin's decision (it reports one matching row, not all, so no ids).

        Args:
            item: a prepared request.

        Returns:
            The verdict, without policy ids.
        """
        allowed = bool(self.enforcer.enforce(*item))
        return Verdict(allowed, None, "allow" if allowed else "deny")

    def batch(self, items: list[tuple[Any, ...]]) -> object:
        """Decide every item in a loop.

        Args:
            items: prepared requests.

        Returns:
            The decisions.
        """
        enforce = self.enforcer.enforce
        return [enforce(*it) for it in items]

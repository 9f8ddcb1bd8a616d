"""Rendering the neutral scenario (:mod:`policy_scenario`) as SOP TOML, Cedar, and casbin.

Each renderer is written from its engine's documented syntax, independently
of the others, so the agreement check in :mod:`bench_policy` is a real
differential test: a rendering mistake shows up as a disagreement.

- SOP: a TOML policy document (spec/POLICY_LANGUAGE.md), conditions over ``context.*``.
- Cedar: one policy per rule with an ``@id`` annotation; roles are parent
  entities; the resource path and the channel travel in the context
  (``context.path like "p/*"``, ``context.channel``) because ``like`` applies to strings.
- casbin: an ABAC model with ``eval(p.rule)``, allow and deny effects, roles as
  ``g`` links, and two helper functions for action lists and resource patterns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

import casbin
from policy_scenario import (
    PRINCIPALS,
    All,
    AnyOf,
    Cmp,
    Cond,
    Label,
    OneOf,
    Rule,
    glob_prefix,
)

__all__ = [
    "CASBIN_MODEL",
    "action_match",
    "casbin_rows",
    "cedar_entities",
    "cedar_text",
    "cond_casbin",
    "cond_cedar",
    "cond_sop",
    "object_match",
    "sop_toml",
]

_ROLE: Final = "role:"


def _lit(value: int | str | bool, true: str, false: str) -> str:
    if isinstance(value, bool):
        return true if value else false
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


# --- SOP -------------------------------------------------------------------------------


def cond_sop(c: Cond) -> str:
    """A condition in SOP's `when` syntax.

    Args:
        c: a neutral condition.

    Returns:
        The SOP condition text, fully parenthesised.
    """
    if isinstance(c, Cmp):
        return f"context.{c.attr} {c.op} {_lit(c.value, 'true', 'false')}"
    if isinstance(c, OneOf):
        return f"context.{c.attr} in [{', '.join(json.dumps(v) for v in c.values)}]"
    if isinstance(c, Label):
        return f"context.labels.contains({json.dumps(c.value)})"
    if isinstance(c, All | AnyOf):
        op = " && " if isinstance(c, All) else " || "
        return "(" + op.join(cond_sop(p) for p in c.parts) + ")"
    return f"!({cond_sop(c.part)})"


def _toml_list(values: tuple[str, ...] | None) -> str:
    return '"*"' if values is None else "[" + ", ".join(json.dumps(v) for v in values) + "]"


def sop_toml(rules: Iterable[Rule], roles: dict[str, tuple[str, ...]]) -> str:
    """The scenario as one SOP TOML policy document.

    Args:
        rules: the neutral rules.
        roles: role name to principal ids.

    Returns:
        TOML text with a ``[roles]`` table and one ``[[policy]]`` per rule.
    """
    out = ["[roles]"]
    out += [f"{name} = {_toml_list(members)}" for name, members in roles.items()]
    for r in rules:
        out += ["", "[[policy]]", f"id = {json.dumps(r.id)}", f"effect = {json.dumps(r.effect)}"]
        out.append(f"principal = {_toml_list(r.principals)}")
        out.append(f"action = {_toml_list(r.actions)}")
        out.append(f"resource = {_toml_list(r.resources)}")
        out.append(f"channel = {json.dumps(r.channel or '*')}")
        if r.when is not None:
            out.append(f"when = '{cond_sop(r.when)}'")  # conditions hold no single quote
        out.append(f"description = {json.dumps(r.description)}")
    return "\n".join(out) + "\n"


# --- Cedar -----------------------------------------------------------------------------


def cond_cedar(c: Cond) -> str:
    """A condition as a Cedar expression over ``context``.

    Args:
        c: a neutral condition.

    Returns:
        The Cedar expression, fully parenthesised.
    """
    if isinstance(c, Cmp):
        return f"context.{c.attr} {c.op} {_lit(c.value, 'true', 'false')}"
    if isinstance(c, OneOf):
        return f"[{', '.join(json.dumps(v) for v in c.values)}].contains(context.{c.attr})"
    if isinstance(c, Label):
        return f"context.labels.contains({json.dumps(c.value)})"
    if isinstance(c, All | AnyOf):
        op = " && " if isinstance(c, All) else " || "
        return "(" + op.join(cond_cedar(p) for p in c.parts) + ")"
    return f"!({cond_cedar(c.part)})"


def _cedar_principal(entry: str) -> str:
    if entry.startswith(_ROLE):
        return f'Role::"{entry.removeprefix(_ROLE)}"'
    return f'Principal::"{entry}"'


def _cedar_path(pattern: str) -> str:
    prefix = glob_prefix(pattern)
    if prefix is None:
        return f"context.path == {json.dumps(pattern)}"
    return f"context.path like {json.dumps(prefix + '*')}"


def _cedar_scope(r: Rule) -> tuple[str, list[str]]:
    """The policy head and the extra `when` clauses its scope needs."""
    clauses: list[str] = []
    principal = "principal"
    if r.principals is not None and len(r.principals) == 1:
        only = r.principals[0]
        principal += (" in " if only.startswith(_ROLE) else " == ") + _cedar_principal(only)
    elif r.principals is not None:
        clauses.append(f"principal in [{', '.join(map(_cedar_principal, r.principals))}]")
    action = "action"
    if r.actions is not None:
        action += f" in [{', '.join(f'Action::{json.dumps(a)}' for a in r.actions)}]"
    if r.channel is not None:
        clauses.append(f"context.channel == {json.dumps(r.channel)}")
    if r.resources is not None:
        clauses.append(" || ".join(_cedar_path(p) for p in r.resources))
    return f"{r.effect} (\n  {principal},\n  {action},\n  resource\n)", clauses


def cedar_text(rules: Iterable[Rule]) -> str:
    """The scenario as Cedar policy text.

    Args:
        rules: the neutral rules.

    Returns:
        One policy per rule, annotated ``@id("<rule id>")``.
    """
    out = []
    for r in rules:
        head, clauses = _cedar_scope(r)
        if r.when is not None:
            clauses.append(cond_cedar(r.when))
        body = "".join(f"\nwhen {{ {c} }}" for c in clauses)
        out.append(f"// {r.description}\n@id({json.dumps(r.id)})\n{head}{body};\n")
    return "\n".join(out)


def cedar_entities(roles: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """Cedar entities: a ``Role`` per role, a ``Principal`` per principal with its roles as parents.

    Args:
        roles: role name to principal ids.

    Returns:
        The entity list in Cedar's JSON entity format.
    """
    entities: list[dict[str, Any]] = [
        {"uid": {"type": "Role", "id": name}, "attrs": {}, "parents": []} for name in roles
    ]
    for p in PRINCIPALS:
        parents = [{"type": "Role", "id": n} for n, members in roles.items() if p in members]
        entities.append({"uid": {"type": "Principal", "id": p}, "attrs": {}, "parents": parents})
    return entities


# --- casbin ----------------------------------------------------------------------------

CASBIN_MODEL: Final = """\
[request_definition]
r = sub, act, obj, chan, ctx

[policy_definition]
p = sub, act, obj, chan, rule, eft, pid

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (p.sub == "*" || g(r.sub, p.sub)) && actionMatch(r.act, p.act) \
&& (p.chan == "*" || r.chan == p.chan) && objectMatch(r.obj, p.obj) && eval(p.rule)
"""
"""The casbin model: RBAC through ``g``, ABAC through ``eval`` of each row's rule."""


def cond_casbin(c: Cond) -> str:
    """A condition as a casbin ``eval`` rule (a Python-like expression over ``r.ctx``).

    Args:
        c: a neutral condition.

    Returns:
        The rule text, fully parenthesised.
    """
    if isinstance(c, Cmp):
        return f"r.ctx.{c.attr} {c.op} {_lit(c.value, 'True', 'False')}"
    if isinstance(c, OneOf):
        return f"r.ctx.{c.attr} in [{', '.join(json.dumps(v) for v in c.values)}]"
    if isinstance(c, Label):
        return f"{json.dumps(c.value)} in r.ctx.labels"
    if isinstance(c, All | AnyOf):
        op = " and " if isinstance(c, All) else " or "
        return "(" + op.join(cond_casbin(p) for p in c.parts) + ")"
    return f"not ({cond_casbin(c.part)})"


def _casbin_object(pattern: str) -> str:
    prefix = glob_prefix(pattern)
    return pattern if prefix is None else prefix + "*"


def casbin_rows(rules: Iterable[Rule]) -> list[list[str]]:
    """Policy rows ``[sub, act, obj, chan, rule, eft, pid]``, one per principal entry of a rule.

    Args:
        rules: the neutral rules.

    Returns:
        The rows; actions and resource patterns are space-separated lists or ``*``.
    """
    rows = []
    for r in rules:
        act = "*" if r.actions is None else " ".join(r.actions)
        obj = "*" if r.resources is None else " ".join(map(_casbin_object, r.resources))
        rule = "True" if r.when is None else cond_casbin(r.when)
        eft = "allow" if r.effect == "permit" else "deny"
        for sub in r.principals or ("*",):
            rows.append([sub, act, obj, r.channel or "*", rule, eft, r.id])
    return rows


def action_match(action: str, listed: str) -> bool:
    """casbin function ``actionMatch``: ``listed`` is ``*`` or a space-separated action list.

    Args:
        action: the request's action.
        listed: the row's actions.

    Returns:
        Whether the action is listed.
    """
    return listed == "*" or action in listed.split(" ")


def object_match(path: str, listed: str) -> bool:
    """casbin function ``objectMatch``: ``keyMatch`` against any of the row's patterns.

    Args:
        path: the request's resource path.
        listed: ``*`` or space-separated patterns (exact paths or ``prefix/*``).

    Returns:
        Whether some pattern matches, by casbin's own ``key_match``.
    """
    return listed == "*" or any(casbin.util.key_match(path, p) for p in listed.split(" "))

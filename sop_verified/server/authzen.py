"""The AuthZEN Authorization API 1.0 evaluation shape, mapped onto SOP's request.

``POST /access/v1/evaluation`` takes ``{subject, action, resource, context}``
and answers ``{decision, context}``; ``POST /access/v1/evaluations`` takes the
same four as defaults plus ``evaluations`` (each entry may replace any of
them) and ``options.evaluations_semantic`` (``execute_all``, the default,
``deny_on_first_deny`` or ``permit_on_first_permit``), and answers
``{evaluations: [{decision, context}, ...]}``.

The mapping (docs/HTTP_API.md):

- ``subject.id`` is SOP's ``principal``; ``subject.type`` is free (``"agent"``);
  the capability token travels in ``subject.properties.capability``: it is what
  the subject holds.
- ``action.name`` is SOP's ``action``; ``resource.id`` its ``resource`` path
  (``resource.type`` is free); ``resource.properties.content_digest`` binds the
  bytes of a persist.
- ``context`` is SOP's request ``context`` (the attributes of the context
  schema) except ``request_id``, which becomes the request's id (when
  absent: `authzen-` and a digest of the body, so a retry is the same request).
- The answer's ``decision`` is true only for SOP's ALLOW; its ``context.sop``
  holds the whole decision (reasons, log index, receipt).

Every evaluation is an ordinary SOP decision: decided, logged, receipted.
"""

from __future__ import annotations

from typing import Any

from sop_verified.core.request import Decision
from sop_verified.errors import InputError

__all__ = [
    "SEMANTICS",
    "answer",
    "answer_from_json",
    "evaluations",
    "stops_after_json",
    "to_request",
]

SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")
_TOP = ("subject", "action", "resource", "context")
MAX_EVALUATIONS = 64


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"`{where}` must be an object", where=where, accepted="a JSON object")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"`{where}` must be a non-empty string", where=where)
    return value


def to_request(body: dict[str, Any], where: str = "", *, default_id: str) -> dict[str, Any]:
    """SOP's request (as a JSON object) for one AuthZEN evaluation request.

    Args:
        body: the evaluation request.
        where: where it is in the body, for messages.
        default_id: the request id when ``context.request_id`` names none (derived from the
            body, so a retry of the same body is the same request).

    Raises:
        InputError: a member is missing or has the wrong type (``where`` says which).
    """
    at = f"{where}." if where else ""
    subject = _object(body.get("subject"), f"{at}subject")
    action = _object(body.get("action"), f"{at}action")
    resource = _object(body.get("resource"), f"{at}resource")
    context = dict(_object(body.get("context", {}), f"{at}context"))
    request_id = context.pop("request_id", None) or default_id
    subject_props = _object(subject.get("properties", {}), f"{at}subject.properties")
    resource_props = _object(resource.get("properties", {}), f"{at}resource.properties")
    request: dict[str, Any] = {
        "request_id": request_id,
        "principal": _string(subject.get("id"), f"{at}subject.id"),
        "action": _string(action.get("name"), f"{at}action.name"),
        "resource": _string(resource.get("id"), f"{at}resource.id"),
        "context": context,
    }
    token = subject_props.get("capability")
    if token is not None:
        request["capability"] = token
    digest = resource_props.get("content_digest")
    if digest is not None:
        request["content_digest"] = digest
    return request


def evaluations(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The evaluation requests of an ``evaluations`` body (defaults applied) and the semantic.

    Raises:
        InputError: the body is malformed (``where`` says which member).
    """
    items = body.get("evaluations")
    options = _object(body.get("options", {}), "options")
    semantic = options.get("evaluations_semantic", "execute_all")
    if semantic not in SEMANTICS:
        raise InputError(
            f"unknown evaluations_semantic `{str(semantic)[:40]}`",
            where="options.evaluations_semantic",
            accepted=", ".join(SEMANTICS),
        )
    defaults = {k: body[k] for k in _TOP if k in body}
    if items is None:  # AuthZEN: no evaluations array means one evaluation of the defaults
        return [defaults], semantic
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_EVALUATIONS:
        raise InputError(
            "`evaluations` must be an array of 1 to 64 objects",
            where="evaluations",
            accepted=f"1 to {MAX_EVALUATIONS} evaluation objects",
        )
    merged = []
    for i, item in enumerate(items):
        entry = _object(item, f"evaluations[{i}]")
        merged.append({**defaults, **{k: entry[k] for k in _TOP if k in entry}})
    return merged, semantic


def answer(decision: Decision) -> dict[str, Any]:
    """The AuthZEN evaluation response for one SOP decision."""
    return {"decision": decision.allowed, "context": {"sop": decision.to_dict()}}


def answer_from_json(decision: dict[str, Any]) -> dict[str, Any]:
    """The AuthZEN evaluation response for a decision in its JSON form."""
    return {"decision": decision.get("effect") == "ALLOW", "context": {"sop": decision}}


def stops_after_json(decision: dict[str, Any], semantic: str) -> bool:
    """Whether the semantic stops evaluating after ``decision`` (its JSON form)."""
    allowed = decision.get("effect") == "ALLOW"
    if semantic == "deny_on_first_deny":
        return not allowed
    if semantic == "permit_on_first_permit":
        return allowed
    return False

"""RFC 9457 problem details: every error the HTTP planes answer, in one shape.

A problem is ``application/problem+json`` with ``type`` (a ``tag:`` URI per
code, listed in docs/HTTP_API.md), ``title``, ``status``, ``detail`` and
SOP's extension members: ``code`` (the machine-readable code, the same as a
decision reason's), ``stage`` (where on the decision path, when it applies)
and, when a decision was taken and logged, ``decision`` (its JSON form, with
its log index and receipt).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["PROBLEM_MEDIA_TYPE", "TYPE_PREFIX", "problem", "problem_body"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "tag:sop-verified,2026:problem/"
"""``type`` is this prefix and the code: a URI that names the problem and is never fetched."""

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def problem_body(
    status: int, code: str, detail: str, *, stage: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The problem object for ``status`` and ``code`` (extension members from ``extra``)."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if stage is not None:
        body["stage"] = stage
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    stage: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An ``application/problem+json`` response (RFC 9457).

    Args:
        status: the HTTP status.
        code: SOP's machine-readable code (``bad_request``, ``not_ready``, ...).
        detail: what went wrong for this request, and what to do.
        stage: the decision stage, when the problem is a decision's.
        headers: extra headers (``Retry-After``).
        **extra: extension members (``decision``, ``errors``); None values are left out.

    Returns:
        The response.
    """
    body = problem_body(status, code, detail, stage=stage, **extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )

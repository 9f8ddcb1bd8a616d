"""Building bridge requests for the protocol facades (the facades decide nothing).

A facade called for a remote client (``sop serve``'s bridge plane) passes the
transport that delivered the call; the request then carries it (see
:mod:`sop_verified.core.transport`), so the kernel refuses a call whose
certificate names another principal than the protocol's
(``principal_mismatch``) and logs the transport in the decision's entry.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sop_verified.core.request import Request, parse_request
from sop_verified.core.transport import Transport
from sop_verified.errors import InputError
from sop_verified.protocols.bridge import new_request_id

__all__ = ["bridge_request", "delivered"]


def bridge_request(
    principal: str,
    action: str,
    resource: str,
    *,
    token: str,
    request_id: str | None = None,
    context: dict[str, Any] | None = None,
    data: bytes | None = None,
) -> dict[str, Any]:
    """A bridge request as JSON data; with ``data``, its digest and size are bound.

    Args:
        principal: the protocol's principal id.
        action: the operation.
        resource: the resource path.
        token: the capability token.
        request_id: the request's id; a fresh one by default.
        context: context attributes (``None`` values are left out).
        data: the bytes a persist action will write.

    Returns:
        The request (the kernel validates it strictly).
    """
    ctx = {k: v for k, v in (context or {}).items() if v is not None}
    out: dict[str, Any] = {
        "request_id": request_id or new_request_id(principal),
        "principal": principal,
        "action": action,
        "resource": resource,
        "capability": token,
        "channel": "bridge",
        "context": ctx,
    }
    if data is not None:
        out["content_digest"] = "sha256:" + hashlib.sha256(data).hexdigest()
        out["context"] = {"size_bytes": len(data), **ctx}
    return out


def delivered(request: dict[str, Any], transport: Transport | None) -> Request | dict[str, Any]:
    """``request`` as ``transport`` delivered it (unchanged without a transport).

    Args:
        request: the request the facade built.
        transport: what the transport said (None: an in-process call).

    Returns:
        The parsed request carrying ``transport``; a malformed one stays JSON
        data, which the kernel records and denies.
    """
    if transport is None:
        return request
    try:
        return parse_request(request).via(transport)
    except InputError:
        return request

"""Building bridge requests for the protocol facades (the facades decide nothing)."""

from __future__ import annotations

import hashlib
from typing import Any

from sop_verified.protocols.bridge import new_request_id

__all__ = ["bridge_request"]


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

"""How a request reached SOP, as the transport says it and not the request's body.

A request that comes over the network carries three facts its body cannot
vouch for: the principal the transport authenticated (the client
certificate's, for the bridge plane's mutual TLS), the caller's idempotency
key and its W3C trace context. The server attaches them with
:meth:`~sop_verified.core.request.Request.via`; the kernel refuses a request
whose body names another principal than the authenticated one
(``principal_mismatch``) and records the three in the decision's log entry
(``transport``), so a retry after a crash finds its first decision in the log
and a caller can correlate its trace with the entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sop_verified.core.contracts import ensure

__all__ = ["IDEMPOTENCY_KEY_PATTERN", "TRACEPARENT_PATTERN", "Transport"]

IDEMPOTENCY_KEY_PATTERN = r"[\x21-\x7e]{1,255}"
"""An idempotency key: 1 to 255 visible ASCII characters (no spaces, no controls)."""

TRACEPARENT_PATTERN = r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"
"""A W3C Trace Context ``traceparent`` header value (version, trace id, parent id, flags)."""

_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_TRACE = re.compile(TRACEPARENT_PATTERN)


@dataclass(frozen=True, slots=True)
class Transport:
    """What the transport says about one request.

    Attributes:
        principal: the principal the transport authenticated (None: it authenticates
            nobody, as in-process calls and ``--unsafe-no-tls`` do).
        idempotency_key: the caller's key for this state-changing call, or None.
        traceparent: the caller's W3C ``traceparent``, or None.
    """

    principal: str | None
    idempotency_key: str | None = None
    traceparent: str | None = None

    def __post_init__(self) -> None:
        key = self.idempotency_key
        if key is not None and not _KEY.fullmatch(key):
            raise ValueError(f"idempotency key `{key[:40]}` does not match `{_KEY.pattern}`")
        trace = self.traceparent
        if trace is not None and not _TRACE.fullmatch(trace):
            raise ValueError(f"traceparent `{trace[:60]}` does not match `{_TRACE.pattern}`")

    @staticmethod
    def trace_or_none(header: str | None) -> str | None:
        """A ``traceparent`` header value when it is well formed, else None (W3C: restart)."""
        if header is None:
            return None
        value = header.strip().lower()
        return value if _TRACE.fullmatch(value) and not value.startswith("ff") else None

    @ensure(
        lambda self, result: result.get("principal") == self.principal or self.principal is None,
        "the authenticated principal is recorded as it was authenticated",
    )
    def to_dict(self) -> dict[str, str]:
        """The log entry's ``transport`` object: only the facts that are present."""
        out: dict[str, str] = {}
        if self.principal is not None:
            out["principal"] = self.principal
        if self.idempotency_key is not None:
            out["idempotency_key"] = self.idempotency_key
        if self.traceparent is not None:
            out["traceparent"] = self.traceparent
        return out

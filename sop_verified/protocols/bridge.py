"""What a protocol facade needs of SOP: the bridge entry and the proof gate's answers."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from sop_verified.core.obligations import VerdictResult
from sop_verified.core.request import Decision, Obligation, Request

__all__ = ["Bridge", "new_request_id"]


class Bridge(Protocol):
    """The Runtime Bridge as the facades see it."""

    def submit(self, request: Request | dict[str, Any]) -> Decision:
        """Decide one request (the channel is always ``bridge``)."""

    def recorded_verdict(self, obligation: Obligation) -> VerdictResult | None:
        """The verdict the gate recorded for ``obligation``, if it was ever decided."""


def new_request_id(prefix: str) -> str:
    """A fresh request id, ``<prefix>-<16 hex>``."""
    return f"{prefix}-{secrets.token_hex(8)}"

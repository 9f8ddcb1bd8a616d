"""Health states. Only READY admits anything (INV-1, INV-8)."""

from __future__ import annotations

import enum

__all__ = ["Health"]


class Health(enum.StrEnum):
    """The four states of SOP and of each service."""

    BOOTING = "BOOTING"
    READY = "READY"
    DEGRADED = "DEGRADED"
    FAILED = "FAILED"

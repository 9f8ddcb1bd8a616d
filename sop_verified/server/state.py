"""What every handler of a running server shares: SOP, the queue, the keys, the metrics."""

from __future__ import annotations

import functools
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from sop_verified.core.health import Health
from sop_verified.nexus.sop import SOP
from sop_verified.server.certs import principal_of
from sop_verified.server.decisions import DecisionQueue
from sop_verified.server.idempotency import IdempotencyKeys
from sop_verified.server.log_source import TailRefresh
from sop_verified.server.telemetry import Metrics

__all__ = ["ServerState", "authenticated_principal"]


@dataclass
class ServerState:
    """The running server's shared parts.

    Attributes:
        sop: the booted SOP (READY or denying everything).
        queue: the decision queue feeding the log's group commit.
        keys: the idempotency keys.
        metrics: the Prometheus metrics.
        unsafe_no_tls: the bridge plane runs without TLS (loopback only, loud).
        stopping: SIGTERM arrived: new requests are refused with 503.
    """

    sop: SOP
    queue: DecisionQueue
    keys: IdempotencyKeys = field(default_factory=IdempotencyKeys)
    metrics: Metrics = field(default_factory=Metrics)
    unsafe_no_tls: bool = False
    stopping: bool = False
    last_size: int = -1
    last_signed: float | None = None
    replicas: TailRefresh | None = None
    """On a log other replicas share: re-reads its tail (and the idempotency keys the
    others' entries carry) before a keyed call, at most every 100 ms; None: one writer."""

    def ready(self) -> tuple[bool, str]:
        """Whether the server takes decisions now, and why not."""
        if self.stopping:
            return False, "the server is stopping (SIGTERM): it takes no new requests"
        health = self.sop.health
        if health is not Health.READY:
            return False, f"SOP is `{health}`: {self.sop.boot_report.detail or self._why()}"
        return True, "SOP is `READY`"

    def _why(self) -> str:
        """The first service that is not READY and why (an integrity alarm's reason)."""
        for service in self.sop.registry.services():
            if service.health is not Health.READY and service.detail:
                return f"service `{service.name}` is `{service.health}`: {service.detail}"
        return "see sop status"


@functools.lru_cache(maxsize=4096)
def _principal_of_pem(pem: str) -> str:
    from cryptography import x509  # noqa: PLC0415 - parsed once per certificate (cached)
    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

    return principal_of(x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER))


def authenticated_principal(scope: MutableMapping[str, Any]) -> str | None:
    """The principal of the connection's client certificate (ASGI TLS extension), or None.

    Raises:
        SOPError: the connection has a certificate but it names no principal.
    """
    tls = (scope.get("extensions") or {}).get("tls")
    chain = tls.get("client_cert_chain") if tls else None
    if not chain:
        return None
    return _principal_of_pem(chain[0])

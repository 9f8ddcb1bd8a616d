"""Deterministic boot (INV-8) and the boot manifest.

Services start in :func:`~sop_verified.nexus.graph.boot_order`; each one's
self-test must pass before the next starts. The first failure stops the boot
and leaves SOP not READY, so every request is denied. The manifest is
canonical JSON: two boots with the same configuration, keys, policy set and
clock write byte-identical manifests.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import z3

from sop_verified import __version__
from sop_verified.core.health import Health
from sop_verified.core.ports import Clock
from sop_verified.errors import SOPError
from sop_verified.nexus.graph import boot_order
from sop_verified.nexus.registry import ServiceRegistry
from sop_verified.tools.canonical import canonical_json

__all__ = ["BootReport", "boot", "versions"]

MANIFEST_FORMAT = "sop-boot-manifest/v1"


def versions() -> dict[str, str]:
    """The versions that decide behaviour, z3's full version string included."""
    return dict(_loaded_versions())


@functools.cache
def _loaded_versions() -> dict[str, str]:
    """Read once a process: the code a process runs is what it imported (the package
    metadata costs 8 ms a read, about a quarter of a boot's CPU)."""
    out = {"sop": __version__, "python": platform.python_version(), "z3": z3.get_full_version()}
    for dist in ("pydantic", "cryptography", "icontract", "rfc8785"):
        out[dist] = metadata.version(dist)
    return out


@dataclass(frozen=True)
class BootReport:
    """What boot did: the order, each service's state, the manifest bytes."""

    order: tuple[str, ...]
    health: Health
    failed: str | None
    detail: str
    manifest: bytes
    error: BaseException | None = None
    """The error that stopped boot (None when none did): its class says what kind of failure
    it was, e.g. for the CLI's exit status (a bad configuration, or an integrity alarm)."""

    def manifest_dict(self) -> dict[str, Any]:
        """The manifest as data."""
        import json  # noqa: PLC0415 - only for reports

        data: dict[str, Any] = json.loads(self.manifest)
        return data


def boot(
    registry: ServiceRegistry, *, now: Clock, facts: Callable[[], dict[str, Any]]
) -> BootReport:
    """Boot every service in the deterministic order and write the manifest.

    Args:
        registry: the declared services.
        now: the injected clock (the manifest records its reading).
        facts: called after the services started: config digest, policy digest, key ids.

    Returns:
        The boot report; its health is READY only if every service started and
        passed its self-test.
    """
    failed: str | None = None
    detail = ""
    error: BaseException | None = None
    try:
        order = boot_order(registry.graph())  # spec: INV-8 — a pure function of the graph
    except SOPError as exc:
        order, failed, detail, error = [], "<graph>", str(exc), exc
        for svc in registry.services():
            registry.set_health(svc.name, Health.FAILED, detail)
    for name in order:
        svc = registry.get(name)
        try:
            svc.start()
            svc.self_test()
        except Exception as exc:  # spec: INV-8 — any boot failure leaves SOP not READY
            failed, detail, error = name, f"{type(exc).__name__}: {exc}", exc
            registry.set_health(name, Health.FAILED, detail)
            break
        registry.set_health(name, Health.READY)
    registry.mark_booted()
    health = registry.health()
    manifest = {
        "format": MANIFEST_FORMAT,
        "versions": versions(),
        "boot_order": order,
        "booted_at": now(),
        "health": str(health),
        "failed_service": failed,
        "services": {s.name: str(s.health) for s in registry.services()},
        **facts(),
    }
    return BootReport(tuple(order), health, failed, detail, canonical_json(manifest), error)

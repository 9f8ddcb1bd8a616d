"""The service registry: each service's health, and SOP's as a whole."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sop_verified.core.health import Health

__all__ = ["Service", "ServiceRegistry"]


@dataclass
class Service:
    """One bootable service: its dependencies, how to start it, how to test itself.

    ``start`` and ``self_test`` raise on failure; a failed service leaves SOP
    not READY (INV-8).
    """

    name: str
    depends_on: tuple[str, ...]
    start: Callable[[], None]
    self_test: Callable[[], None]
    health: Health = Health.BOOTING
    detail: str = ""
    alarms: list[str] = field(default_factory=list)


class ServiceRegistry:
    """Holds the services and computes SOP's health from theirs."""

    def __init__(self) -> None:
        self._services: dict[str, Service] = {}
        self._lock = threading.Lock()
        self._booted = False
        self._alarm_listeners: list[Callable[[str, str], None]] = []

    def register(self, service: Service) -> None:
        """Declare a service; names are unique."""
        if service.name in self._services:
            raise ValueError(f"service `{service.name}` is already registered")
        self._services[service.name] = service

    def graph(self) -> dict[str, tuple[str, ...]]:
        """The declared graph, service -> dependencies."""
        return {s.name: s.depends_on for s in self._services.values()}

    def get(self, name: str) -> Service:
        """The service called ``name``."""
        return self._services[name]

    def services(self) -> list[Service]:
        """All services, in registration order."""
        return list(self._services.values())

    def mark_booted(self) -> None:
        """Boot finished (successfully or not); health is now computed from the services."""
        self._booted = True

    def set_health(self, name: str, health: Health, detail: str = "") -> None:
        """Set one service's health; an alarm raised before it was READY keeps it DEGRADED."""
        with self._lock:
            svc = self._services[name]
            if health is Health.READY and svc.alarms:  # e.g. raised by a thread during boot
                health, detail = Health.DEGRADED, svc.alarms[0]
            svc.health = health
            svc.detail = detail

    def raise_alarm(self, name: str, reason: str) -> None:
        """An integrity alarm: the service, and so SOP, becomes DEGRADED (everything denied).

        The listeners (:meth:`on_alarm`) are told after the service's health changed, never
        under the registry's lock; one that fails is ignored (the alarm stands).
        """
        with self._lock:
            svc = self._services[name]
            svc.alarms.append(reason)
            if svc.health is Health.READY:
                svc.health = Health.DEGRADED
                svc.detail = reason
            listeners = list(self._alarm_listeners)
        for listener in listeners:
            with contextlib.suppress(Exception):
                listener(name, reason)

    def on_alarm(self, listener: Callable[[str, str], None]) -> list[tuple[str, str]]:
        """Tell ``listener(service, reason)`` each alarm from now on; return those raised so far."""
        with self._lock:
            self._alarm_listeners.append(listener)
            return [(s.name, reason) for s in self._services.values() for reason in s.alarms]

    def health(self) -> Health:
        """READY only when boot finished and every service is READY (INV-8)."""
        if not self._booted or not self._services:
            return Health.BOOTING if not self._booted else Health.FAILED
        states = {s.health for s in self._services.values()}
        if Health.FAILED in states:
            return Health.FAILED
        if Health.BOOTING in states:
            return Health.FAILED  # boot ended with a service never started: not READY
        if Health.DEGRADED in states:
            return Health.DEGRADED
        return Health.READY

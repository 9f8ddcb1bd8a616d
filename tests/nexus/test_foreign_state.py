"""ForeignState: what a replica does with the entries another replica appended (ADR 0017)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from sop_verified.errors import StateMovedError
from sop_verified.nexus.replicas import ForeignState


class _Registry:
    def __init__(self) -> None:
        self.reloads = 0

    def reload(self) -> None:
        self.reloads += 1


def _entry(index: int, body: dict[str, Any]) -> tuple[int, bytes, bytes]:
    return index, b"leaf", json.dumps(body, separators=(",", ":")).encode()


def _state(registry: _Registry) -> ForeignState:
    return ForeignState(None, registry, lambda _policy: None)  # type: ignore[arg-type]


def test_a_watcher_giving_the_batch_back_does_not_skip_the_reload() -> None:
    """The entries are told once: a revocation among them is reloaded whatever a watcher says."""
    registry = _Registry()
    state = _state(registry)
    seen: list[Sequence[tuple[int, bytes, bytes]]] = []

    def watcher(entries: Sequence[tuple[int, bytes, bytes]]) -> None:
        seen.append(entries)
        raise StateMovedError("a key a call here runs with")

    state.watch([b'"idempotency_key"'], watcher)
    entries = [
        _entry(7, {"type": "decision", "transport": {"idempotency_key": "k"}}),
        _entry(8, {"type": "admin", "op": "capability.revoked", "capability_id": "c"}),
    ]
    with pytest.raises(StateMovedError, match="a key a call here runs with") as raised:
        state(7, 9, entries)
    assert registry.reloads == 1  # the revocation is in force for the batch decided again
    assert "changed capabilities" in str(raised.value)
    assert [e[0] for e in seen[0]] == [7]


def test_entries_that_change_nothing_give_nothing_back() -> None:
    registry = _Registry()
    state = _state(registry)
    state.watch([b'"idempotency_key"'], lambda _entries: None)
    state(3, 4, [_entry(3, {"type": "decision", "transport": {"idempotency_key": "k"}})])
    assert registry.reloads == 0

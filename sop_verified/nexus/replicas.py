"""What a replica does when another replica of the same PostgreSQL log wrote first.

Every batch is sequenced on the log's head row (ADR 0017). A replica whose
batch was built on a stale head learns, before anything of it is written, which
entries the others appended (``TransparencyLog``'s ``on_foreign``). If one of
them changed what decisions depend on, this replica reloads that state from
the store and gives the batch back (:class:`~sop_verified.errors.StateMovedError`),
and the kernel decides it again on the state now in force. So a revocation or
a policy activation committed through one replica is in force, on every
replica, for every decision logged after it: the state a decision was taken on
is never older than the log position it is written at.

The entries that change state are the ones logged *after* the change is stored
(``capability.admitted``, ``capability.attenuated``, ``capability.revoked``,
``policy.activated``): by then the rows they announce are committed, so a
reload finds them. A checkpoint-key rotation by another replica needs the new
private key, which the log never holds: until this replica is started again
with it, its log refuses the new key's checkpoints and takes no more entries
(fail-closed), its refusal naming the rotation and what to copy
(ADR 0017).

Others may watch the same entries (:meth:`ForeignState.watch`): the server
learns the idempotency keys the other replicas' decisions carry, from the same
read, which runs under the head row's lock and is kept to one query.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence

from sop_verified.core.capability import CapabilityRegistry
from sop_verified.core.policy import PolicySet
from sop_verified.errors import IntegrityError, StateMovedError
from sop_verified.storage.ports import StorageBackend
from sop_verified.tools.tlog import ForeignEntries

__all__ = ["CAPABILITY_OPS", "POLICY_OPS", "ForeignState", "Watcher"]

CAPABILITY_OPS = frozenset({"capability.admitted", "capability.attenuated", "capability.revoked"})
"""Admin entries after which the capability registry is reloaded."""

POLICY_OPS = frozenset({"policy.activated"})
"""Admin entries after which the active policy set is reloaded."""

_log = logging.getLogger(__name__)

_ADMIN = b'"type":"admin"'

Watcher = Callable[[Sequence[tuple[int, bytes, bytes]]], object]
"""Told another replica's entries ``(index, leaf hash, payload)`` that hold its needle."""


class ForeignState:
    """The log's ``on_foreign`` hook: reload what other replicas changed, then stop the batch."""

    def __init__(
        self,
        store: StorageBackend,
        capabilities: CapabilityRegistry,
        activate: Callable[[PolicySet], None],
    ) -> None:
        """Read entries from ``store``; reload ``capabilities``; put a new set in force.

        Args:
            store: the shared backend.
            capabilities: the registry to reload.
            activate: puts a policy set in force (``ActivePolicy.activate``).
        """
        self._store = store
        self._watchers: list[tuple[tuple[bytes, ...], Watcher]] = []
        self._capabilities = capabilities
        self._activate = activate

    def watch(self, needles: Sequence[bytes], watcher: Watcher) -> None:
        """Tell ``watcher`` of other replicas' entries holding one of ``needles``, from now on.

        Errors it raises fail the batch that found the entries (nothing of it is written);
        a :class:`StateMovedError` gives the batch back to be decided again, once the
        state the entries changed is reloaded.
        """
        self._watchers.append((tuple(needles), watcher))

    def __call__(self, start: int, end: int, entries: ForeignEntries | None = None) -> None:
        """Entries ``[start, end)`` were appended by other replicas.

        Args:
            start: the first of them.
            end: one past the last.
            entries: the entries, when the log read them (checked against the signed
                tree); None: they are read here, those holding a needle only.

        Raises:
            StateMovedError: one of them changed the state; it is reloaded, decide again.
            IntegrityError: the stored state does not match what the log announced.
            StorageError: the entries could not be read.
        """
        needles = [_ADMIN, *(n for watched, _ in self._watchers for n in watched)]
        if entries is None:
            entries = self._store.log.log_entries_containing(start, end, needles)  # one read
        moved: list[str] = []
        for watched, watcher in self._watchers:
            try:
                watcher([e for e in entries if any(n in e[2] for n in watched)])
            except StateMovedError as exc:  # the state below is reloaded all the same: these
                moved.append(str(exc))  # entries are not told again
        ops = self._ops(e for e in entries if _ADMIN in e[2])
        changed = []
        if ops & CAPABILITY_OPS:
            self._capabilities.reload()
            changed.append("capabilities")
        if ops & POLICY_OPS:
            self._reload_policy()
            changed.append("the policy set")
        if changed:
            moved.append(
                f"entries [{start}, {end}) of another replica changed {' and '.join(changed)}"
            )
        if moved:
            why = "; ".join(moved)
            _log.info("%s: reloaded, deciding the batch again", why)
            raise StateMovedError(why)

    def reload(self) -> None:
        """Reload everything (once, when the hook is installed: nothing before it is missed)."""
        self._capabilities.reload()
        self._reload_policy()

    @staticmethod
    def _ops(admin: Iterable[tuple[int, bytes, bytes]]) -> set[str]:
        ops: set[str] = set()
        for _, _, payload in admin:  # decisions, effects, boots change nothing to reload
            entry = json.loads(payload)
            if entry.get("type") == "admin":
                ops.add(str(entry.get("op")))
        return ops

    def _reload_policy(self) -> None:
        stored = self._store.policies.load_active_policy_set()
        if stored is None:
            return
        digest, document = stored
        policy = PolicySet.from_canonical(document)
        if policy.digest != digest:  # spec: INV-11 — never put an unauthenticated set in force
            raise IntegrityError(f"stored policy set digest `{digest}` does not match its document")
        self._activate(policy)

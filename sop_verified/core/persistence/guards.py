"""What the controller's collaborators share: the scopes' locks and the decisions in use.

:class:`ScopeLocks` lets writes share a scope while retention holds it alone,
so a blob is never purged mid-write. :class:`Claims` holds the decisions
being carried out, so one logged ALLOW has at most one effect (INV-9) even
when two threads present it at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.persistence.ports import PersistIndex
from sop_verified.errors import PersistenceError

__all__ = ["Claims", "ScopeLocks"]


class _ScopeLock:
    """Writes share a scope; retention holds it alone (a blob is never purged mid-write)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._alone = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._alone)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._alone and not self._shared)
            self._alone = True
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()


@invariant(lambda self: set(self._locks) == self.names, "one lock per scope", helper=True)
class ScopeLocks:
    """One shared/exclusive lock per declared scope, by scope name."""

    def __init__(self, names: Iterable[str]) -> None:
        """Make one lock for each scope name.

        Args:
            names: the declared scopes' names.
        """
        self.names = frozenset(names)
        self._locks = {name: _ScopeLock() for name in self.names}

    @require(lambda self, name: name in self.names, "a declared scope", helper=True)
    @contextmanager
    def shared(self, name: str) -> Iterator[None]:
        """Hold scope ``name`` with other writers (waits while retention holds it)."""
        with self._locks[name].shared():
            yield

    @require(lambda self, name: name in self.names, "a declared scope", helper=True)
    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold scope ``name`` alone (waits until no write holds it)."""
        with self._locks[name].exclusive():
            yield


@invariant(lambda self: self._disjoint(), "in use or spent, never both", helper=True)
class Claims:
    """The decisions being carried out, and those that failed still pending (INV-9)."""

    def __init__(self, index: PersistIndex) -> None:
        """Start with no decision in use.

        Args:
            index: the persistence index, which says whether a decision is still pending.
        """
        self._index = index
        self._mutex = threading.Lock()
        self._inflight: set[int] = set()
        self._spent: set[int] = set()

    @property
    def idle(self) -> bool:
        """True when no decision is being carried out."""
        with self._mutex:
            return not self._inflight

    @property
    def spent(self) -> frozenset[int]:
        """The decisions whose effect failed while still pending (boot repair closes them)."""
        with self._mutex:
            return frozenset(self._spent)

    @require(lambda index: index >= 0, "a log index")
    @ensure(lambda self, index: self._holds(index), "claimed", helper=True)
    def claim(self, index: int) -> None:
        """Mark the decision logged at ``index`` as being carried out.

        Raises:
            PersistenceError: it is already being carried out, or it failed
                earlier and awaits boot repair (``decision_in_use``).
        """
        self._claim(index)

    @ensure(lambda self, index: not self._holds(index), "released", helper=True)
    def release(self, index: int) -> None:
        """End the claim on ``index``; remember it if it is still pending (never retried)."""
        self._release(index)

    def _claim(self, index: int) -> None:
        with self._mutex:
            if index in self._inflight or index in self._spent:
                raise PersistenceError(
                    f"decision `{index}` is already being carried out", code="decision_in_use"
                )
            self._inflight.add(index)

    def _release(self, index: int) -> None:
        # spec: INV-9 — one ALLOW, one effect: a logged effect (or refusal) closed the pending
        # row, which refuses any retry; only a decision still pending must be remembered here,
        # so the set holds the rare failures until boot repair closes them, not every write
        try:
            still_pending = self._index.pending_decision(index) is not None
        except Exception:  # spec: INV-2 — unsure: remember it
            still_pending = True
        with self._mutex:
            self._inflight.discard(index)
            if still_pending:
                self._spent.add(index)

    def _holds(self, index: int) -> bool:
        with self._mutex:
            return index in self._inflight

    def _disjoint(self) -> bool:
        with self._mutex:
            return not (self._inflight & self._spent)

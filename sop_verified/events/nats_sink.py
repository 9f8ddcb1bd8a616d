"""The NATS JetStream sink: SOP's events in a stream, exactly once and in log order, beside SOP.

- **Beside SOP, never in its way.** The sink runs an asyncio loop in a thread
  of its own. It reads events from an
  :class:`~sop_verified.events.model.EventSource` (the log, projected) and
  nothing on the decision path waits for it: a decision is answered once it is
  in the log, whether the broker is up, slow or gone.
- **The log is the buffer.** Nothing is queued in memory for the broker: the
  sink holds at most ``max_in_flight`` events awaiting an acknowledgement and
  one read of the log. While the broker is down the events stay where they
  already are, in the log, and the sink resumes from there.
- **Exactly once, in order.** Each session asks the stream where it is (its
  last message's event id) and publishes from the event after it, each with
  ``Nats-Msg-Id`` = its id and ``Nats-Expected-Last-Sequence`` = the previous
  event's stream sequence (:mod:`sop_verified.events.nats_session`): the broker
  neither stores an event twice nor one past a missing one.
- **A durable cursor** (:mod:`sop_verified.events.nats_cursor`): the count of
  acknowledged events, written at most every ``cursor_interval_ms`` (never once
  per event), read at start for the lag, and used to resume only when the
  stream's last message is gone (purged or expired).
- **Failures.** An unreachable or failing broker is retried with exponential
  backoff up to ``max_backoff_seconds``; each outage logs one warning (never a
  password: URLs are redacted and credentials scrubbed) and one line when it
  ends. It never makes SOP less than READY: the stream is a projection of the
  log, not the source of truth. ``stats()`` gives the lag for ``sop status`` and
  ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sop_verified.events.model import EventSource
from sop_verified.events.nats_config import NatsSinkConfig
from sop_verified.events.nats_cursor import read_cursor, write_cursor
from sop_verified.events.nats_pipeline import Publish, ResyncNeededError, publish
from sop_verified.events.nats_session import Session

__all__ = ["FIRST_BACKOFF", "NatsSink", "NatsSinkControl", "NatsSinkStats"]

FIRST_BACKOFF = 0.1
"""Seconds before a failing broker is first tried again (doubling up to the configured cap)."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NatsSinkStats:
    """What the sink has done, for ``sop status`` and ``/metrics`` (no secret in it)."""

    stream: str
    servers: tuple[str, ...]
    """The server URLs with any password or token replaced by ``***``."""
    size: int
    """Events that exist (the log's entries and checkpoints, up to its latest checkpoint)."""
    acked: int
    """Events ``[0, acked)`` are in the stream, acknowledged (the cursor once written)."""
    connected: bool
    outages: int
    down_seconds: float | None
    """How long the current outage has lasted (None: publishing)."""
    last_error: str | None
    published: int
    duplicates: int
    """Acknowledgements that said the stream already held the event (never stored twice)."""
    resyncs: int
    restarts: int = 0
    """Times the sink's own process died and was started again (0 for a sink in SOP's)."""

    @property
    def lag(self) -> int:
        """Events not yet acknowledged by the broker (events that exist minus the cursor)."""
        return max(0, self.size - self.acked)


class NatsSinkControl(Protocol):
    """What SOP holds of its sink: this thread (:class:`NatsSink`) or a process of its own
    (:class:`~sop_verified.nexus.nats_process.NatsSinkProcess`, the default)."""

    def start(self) -> None:
        """Start publishing."""
        ...

    def close(self) -> None:
        """Stop, writing the cursor."""
        ...

    def wake(self) -> None:
        """New entries committed (never blocks)."""
        ...

    def stats(self) -> NatsSinkStats:
        """The counters now."""
        ...

    @property
    def cursor(self) -> int:
        """Events acknowledged as far as SOP knows."""
        ...


class NatsSink:
    """Publishes the events of an :class:`EventSource` to a JetStream stream, from a thread."""

    def __init__(
        self,
        source: EventSource,
        config: NatsSinkConfig,
        cursor_path: Path,
        *,
        publish: Publish = publish,
        on_acked: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Publish ``source``'s events as ``config`` says; keep the cursor at ``cursor_path``.

        Args:
            source: The events (the log, projected): entries and checkpoints, in log order.
            config: The ``[events.nats]`` table.
            cursor_path: The durable cursor's file (in the data directory).
            publish: How one message is sent (tests inject faults).
            on_acked: Told the new count of acknowledged events, in the sink's thread.
            clock: A monotonic clock (the cursor's pace, the outage's length).
        """
        self.source = source
        self.config = config
        self.publish = publish
        self._path = cursor_path
        self._on_acked = on_acked
        self._clock = clock
        self._saved = self._acked = read_cursor(cursor_path, config.stream)
        self._saved_at = self._burst_at = clock()
        self._size = 0
        self._stopping = False
        self._down_since: float | None = None
        self._connected = False
        self._outages = self._published = self._duplicates = self._resyncs = 0
        self._last_error: str | None = None
        self._warned: set[str] = set()
        self._backoff = FIRST_BACKOFF
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._session: asyncio.Future[None] | None = None
        self._listening = False  # waiting for entries: only then does wake() wake the loop
        self._thread = threading.Thread(target=self._run, name="sop-events-nats", daemon=True)

    # ---- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start publishing, in the sink's own thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop now: publishes in flight are abandoned (the next session reads the stream and
        finds them, or not), a connection attempt is cut short, the cursor is written."""
        self._stopping = True
        loop, task = self._loop, self._session
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closing
                loop.call_soon_threadsafe(task.cancel)
        self.wake()
        if self._thread.is_alive():
            self._thread.join(self.config.ack_timeout_seconds + 5)

    def wake(self) -> None:
        """New entries committed: look at the log now (never blocks; polling covers a miss).

        Only a sink waiting for entries is woken: one publishing, or pacing its bursts,
        reads the log's size when it comes back anyway, and waking its loop would cost a
        hand-over of the interpreter lock per commit for nothing.
        """
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None or not self._listening:
            return
        try:
            loop.call_soon_threadsafe(wakeup.set)
        except RuntimeError:  # the loop is closing: nothing left to wake
            return

    @property
    def stopping(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._stopping

    @property
    def cursor(self) -> int:
        """Events acknowledged as far as the sink knows (the durable cursor at start)."""
        return self._acked

    def stats(self) -> NatsSinkStats:
        """The sink's counters now, with the log's current size."""
        try:
            size = self.source.size()
        except Exception:  # the log is closing: the last size seen
            size = self._size
        down = self._down_since
        return NatsSinkStats(
            stream=self.config.stream,
            servers=self.config.shown_servers,
            size=size,
            acked=self._acked,
            connected=self._connected,
            outages=self._outages,
            down_seconds=None if down is None else max(0.0, self._clock() - down),
            last_error=self._last_error,
            published=self._published,
            duplicates=self._duplicates,
            resyncs=self._resyncs,
        )

    # ---- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # never silent, never a crash of SOP's process
            _log.exception("the NATS sink stopped")
        finally:
            self._connected = False
            self._save(force=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        while not self._stopping:
            self._session = asyncio.ensure_future(Session(self).run())
            try:
                await self._session
            except asyncio.CancelledError:  # close(): stop where it stands
                break
            except ResyncNeededError as exc:
                self._resyncs += 1
                _log.debug("NATS sink: reading the stream again: %s", exc)
            except Exception as exc:
                self._failed(exc)
                await self.idle(self._backoff)
                self._backoff = min(self._backoff * 2, float(self.config.max_backoff_seconds))
            self._connected = False

    async def idle(self, seconds: float) -> None:
        """Pace the bursts, then wait up to ``seconds`` for new entries; keep the cursor.

        A sink that has caught up publishes what the log gained at most every
        ``batch_interval_ms``, in one burst, not once per commit: each burst costs the
        sink a few hand-overs of the interpreter lock, each of which stalls one of SOP's
        deciding threads. So it first waits out the rest of the interval since the last
        burst began; if the log grew meanwhile it returns at once, otherwise it waits
        for :meth:`wake`, :meth:`close` or ``seconds`` (the poll).
        """
        wakeup = self._wakeup
        self._save()
        if wakeup is None or self._stopping:
            return
        rest = self.config.batch_interval_ms / 1000 - (self._clock() - self._burst_at)
        if rest > 0:
            await asyncio.sleep(rest)
        due = self.config.cursor_interval_ms / 1000 - (self._clock() - self._saved_at)
        if self._acked != self._saved:  # come back in time to write the cursor
            seconds = min(seconds, max(0.0, due))
        self._listening = True
        try:
            if self.source.size() == self._size and not self._stopping:  # nothing new yet
                with contextlib.suppress(TimeoutError):  # no task per wait: fewer loop turns
                    async with asyncio.timeout(seconds):
                        await wakeup.wait()
        finally:
            self._listening = False
        wakeup.clear()
        self._burst_at = self._clock()

    # ---- what sessions report ----------------------------------------------------------
    def resynced(self, acked: int, how: str) -> None:
        """The stream holds ``[0, acked)`` (``how``: learned from what); publishing resumes."""
        if acked < self._acked:
            self.warn_once(
                f"behind:{acked}",
                f"NATS sink: stream `{self.config.stream}` holds `{acked}` events, the cursor"
                f" said `{self._acked}` ({how}); publishing again from `{acked}`",
            )
        self._acked = acked
        self._up()

    def acked(self, acked: int, *, stored: int, duplicates: int) -> None:
        """Events up to ``acked - 1`` are in the stream; the cursor follows (batched)."""
        self._acked = acked
        self._published += stored
        self._duplicates += duplicates
        if self._on_acked is not None:
            self._on_acked(acked)
        self._save()

    def saw_size(self, size: int) -> None:
        """The log's size, as the session last read it."""
        self._size = size

    def warn_once(self, key: str, message: str) -> None:
        """Log ``message`` (credentials scrubbed) as a warning the first time ``key`` is seen."""
        if key not in self._warned:
            self._warned.add(key)
            _log.warning("%s", self._scrub(message))

    def _up(self) -> None:
        self._connected = True
        self._backoff = FIRST_BACKOFF
        self._last_error = None
        if self._down_since is not None:
            _log.info(
                "NATS sink: publishing to stream `%s` again after %.1f s (%d behind)",
                self.config.stream,
                self._clock() - self._down_since,
                max(0, self._size - self._acked),
            )
            self._down_since = None

    def _failed(self, exc: BaseException) -> None:
        why = self._scrub(f"{type(exc).__name__}: {exc}")[:500]
        self._last_error = why
        if self._down_since is not None:  # the same outage: one warning is enough
            _log.debug("NATS sink: still failing: %s", why)
            return
        self._down_since = self._clock()
        self._outages += 1
        _log.warning(
            "NATS sink: cannot publish to stream `%s` at %s: %s; decisions go on and events"
            " wait in the log (%d behind); retrying with backoff up to %d s",
            self.config.stream,
            ", ".join(self.config.shown_servers),
            why,
            max(0, self._size - self._acked),
            self.config.max_backoff_seconds,
        )

    def _scrub(self, text: str) -> str:
        for secret in self.config.secrets:
            text = text.replace(secret, "***")
        return text

    def _save(self, *, force: bool = False) -> None:
        """Write the cursor if it moved and the interval passed (or ``force``)."""
        acked = self._acked
        if acked == self._saved:
            return
        now = self._clock()
        if not force and now - self._saved_at < self.config.cursor_interval_ms / 1000:
            return
        try:
            write_cursor(self._path, self.config.stream, acked)
        except OSError as exc:  # a hint only: the stream says where it is at the next session
            self.warn_once("cursor", f"NATS sink: cannot write its cursor `{self._path}`: {exc}")
            return
        self._saved, self._saved_at = acked, now

"""One connection of the NATS sink: find where the stream is, then publish from there in order.

A session connects (no automatic reconnection: a connection that drops ends
the session, and the sink starts a new one, which resynchronises first), makes
sure the stream exists and is SOP's own, reads the stream's last message to
learn the next event to publish (its position among the log's events: entries
and checkpoints), and hands over to the
:class:`~sop_verified.events.nats_pipeline.Pipeline`, which publishes every
event from there on, in order. Each publish carries two headers:

- ``Nats-Msg-Id`` = the event id (``<origin>/<index>``, or
  ``<origin>/checkpoint/<size>``): the broker drops a
  second copy within the stream's duplicate window (a publish stored late, after
  a new session read the stream);
- ``Nats-Expected-Last-Sequence`` = the stream sequence the previous event got:
  the broker refuses an event unless the one before it is the stream's last
  message, so a publish lost in flight can never leave a gap behind a later
  one, and nothing the stream already holds is stored again, however old.

A refusal for the second header (another writer of the stream, or a stale
publish that landed late) ends the session with
:class:`~sop_verified.events.nats_pipeline.ResyncNeededError`; the next session
reads the stream again. Nothing here decides anything: events are read from
the :class:`~sop_verified.events.model.EventSource` (the log) and only
acknowledged events move the cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Protocol

import nats
from nats.js.api import Header, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import APIError, NotFoundError

from sop_verified.events.nats_pipeline import Pipeline, PipelineSink, SinkError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

__all__ = ["STREAM_IN_USE", "Session", "SinkState"]

STREAM_IN_USE = 10058
"""JetStream's error code when a stream of that name was created meanwhile."""

CONNECT_TIMEOUT = 2
"""Seconds to wait for the broker to accept a connection."""


class SinkState(PipelineSink, Protocol):
    """What a session reads from and reports to the sink that runs it."""

    @property
    def cursor(self) -> int:
        """The durable cursor: events acknowledged as far as the sink knows."""
        ...

    def resynced(self, acked: int, how: str) -> None:
        """The stream holds events ``[0, acked)``; ``how`` says how that was learned."""
        ...

    def warn_once(self, key: str, message: str) -> None:
        """Log ``message`` as a warning, once for ``key``."""
        ...


class Session:
    """One connection: ensure the stream, resynchronise, publish until it fails or stops."""

    def __init__(self, sink: SinkState) -> None:
        """A session of ``sink`` (nothing happens before :meth:`run`)."""
        self._sink = sink
        self._config = sink.config
        self._closed = asyncio.Event()

    async def run(self) -> None:
        """Connect, resynchronise and publish; return when the sink stops.

        Raises:
            ResyncNeededError: the stream moved under the session (reconnect and read it again).
            SinkError: the stream or an event cannot be published as configured.
            Exception: the broker is unreachable or failed (nats-py's errors, timeouts).
        """
        nc = await nats.connect(
            servers=list(self._config.servers),
            name="sop-events-nats",
            allow_reconnect=False,  # a new session resynchronises; no client-side replay
            connect_timeout=CONNECT_TIMEOUT,
            max_reconnect_attempts=1,  # each server tried twice, then the sink's own backoff
            reconnect_time_wait=0,
            error_cb=self._on_error,
            disconnected_cb=self._on_closed,
            closed_cb=self._on_closed,
        )
        try:
            js = nc.jetstream(timeout=self._config.ack_timeout_seconds)
            info = await self._stream(js)
            start, last_seq = await self._resync(js, info)
            await Pipeline(nc, self._sink, start, last_seq, self._closed).run()
        finally:
            await _close(nc)

    async def _on_error(self, exc: Exception) -> None:
        """nats-py's error callback: the failure surfaces through the call that meets it."""

    async def _on_closed(self) -> None:
        self._closed.set()

    # ---- the stream ------------------------------------------------------------------
    async def _stream(self, js: JetStreamContext) -> StreamInfo:
        """The stream's info, created when missing and allowed; refuses a stream not SOP's own."""
        cfg = self._config
        try:
            info = await js.stream_info(cfg.stream)
        except NotFoundError:
            if not cfg.create_stream:
                raise SinkError(
                    f"stream `{cfg.stream}` does not exist and `create_stream = false`;"
                    f" create it capturing `{cfg.wildcard}`, or set `create_stream = true`"
                ) from None
            info = await self._create(js)
        subjects = list(info.config.subjects or ())
        if subjects != [cfg.wildcard]:
            raise SinkError(
                f"stream `{cfg.stream}` captures `{', '.join(subjects)}`; the sink needs a stream"
                f" of its own capturing exactly `{cfg.wildcard}` (its sequence guards the order)"
            )
        window = info.config.duplicate_window or 0.0
        needed = 2 * (cfg.cursor_interval_ms / 1000 + cfg.ack_timeout_seconds)
        if window <= needed:
            self._sink.warn_once(
                f"window:{cfg.stream}",
                f"stream `{cfg.stream}` drops duplicates for `{window:g}` s only; a resent"
                f" event is caught by its sequence, but keep the window above `{needed:g}` s",
            )
        return info

    async def _create(self, js: JetStreamContext) -> StreamInfo:
        cfg = self._config
        wanted = StreamConfig(
            name=cfg.stream,
            description="SOP's operations events, one per log entry (sop_verified.events)",
            subjects=[cfg.wildcard],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=float(cfg.duplicate_window_seconds),
        )
        try:
            return await js.add_stream(wanted)
        except APIError as exc:
            if exc.err_code != STREAM_IN_USE:  # another replica created it meanwhile: read it
                raise
        return await js.stream_info(cfg.stream)

    async def _resync(self, js: JetStreamContext, info: StreamInfo) -> tuple[int, int]:
        """``(next event position, stream's last sequence)``: where publication resumes."""
        last_seq = info.state.last_seq
        if last_seq == 0:  # a stream that never held anything: the whole log goes in
            self._sink.resynced(0, "the stream is new")
            return 0, 0
        try:
            msg = await js.get_msg(self._config.stream, seq=last_seq)
        except NotFoundError:  # purged or expired: only the cursor can tell
            start = self._sink.cursor
            self._sink.resynced(start, f"the stream's last message `{last_seq}` is gone")
            return start, last_seq
        start = self._index_of(msg.headers or {}, last_seq) + 1
        self._sink.resynced(start, "the stream's last message")
        return start, last_seq

    def _index_of(self, headers: dict[str, Any], seq: int) -> int:
        """The position of the stream's last message among the log's events, checked."""
        stream = self._config.stream
        msg_id = headers.get(Header.MSG_ID.value)
        source = self._sink.source
        position = source.position_of(msg_id) if isinstance(msg_id, str) else None
        if position is None:
            raise SinkError(
                f"stream `{stream}`'s last message `{seq}` carries no event id of this log"
                f" (`Nats-Msg-Id` = `{str(msg_id)[:80]}`): another publisher writes into it,"
                " or it belongs to another log"
            )
        size = source.size()
        mine = source.read(position, position + 1) if position < size else []
        if len(mine) != 1 or mine[0].id != msg_id:
            raise SinkError(
                f"stream `{stream}` ends with event `{msg_id}`, which this log (`{size}` events)"
                " does not hold: the stream belongs to another log, or this log was cut back"
            )
        return position


async def _close(nc: Client) -> None:
    with contextlib.suppress(Exception):  # the session is over either way; its failure is known
        await asyncio.wait_for(nc.close(), 2.0)

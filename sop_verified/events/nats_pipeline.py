"""The NATS sink's publishing pipeline: events in order, a bounded number unacknowledged.

The pipeline reads a run of events from the log and publishes them in one
burst. Every event carries ``Nats-Expected-Last-Sequence``, so the broker
stores event *i* only right behind event *i* - 1: the stream is always a gap-free
prefix of the log, whoever writes it. Hence one acknowledgement confirms a
whole burst, and only the burst's last event asks for one (a reply subject
``<inbox>.<index>`` on the session's own inbox; the others are sent without a
reply, so the broker sends nothing back for them). If an event of the burst is
not stored (lost in flight, refused), every later one is refused for its
expected sequence, the last one's answer says so, and the next session reads
the stream again and resumes at the first missing event — whose answer it
asks for on its own, so that a refusal for any other reason (an event too
large, say) is reported as what it is.

An ack per burst, not per event: nats-py spends more CPU handling an answer
than sending a publish, and that CPU is taken from the interpreter lock SOP's
deciding threads share (ADR 0019 has the figures).

The pipeline publishes while fewer than ``max_in_flight`` events are
unacknowledged, refilling when half the window is free. The first refusal,
timeout or lost connection ends it (the sink starts a new session); what was in
flight is abandoned, never resent by this pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import orjson
from nats.js.api import Header

from sop_verified.errors import SOPError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from sop_verified.events.model import Event, EventSource
    from sop_verified.events.nats_config import NatsSinkConfig

__all__ = [
    "WRONG_LAST_SEQUENCE",
    "Pipeline",
    "Publish",
    "ResyncNeededError",
    "SinkError",
    "publish",
]

WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code for a ``Nats-Expected-Last-Sequence`` that does not hold."""

_SUBJECT_TYPE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")

Publish = Callable[["Client", str, str, bytes, dict[str, str]], Awaitable[None]]
"""Sends one message ``(connection, subject, reply subject, body, headers)`` (tests inject
faults)."""


async def publish(
    nc: Client, subject: str, reply: str, body: bytes, headers: dict[str, str]
) -> None:
    """nats-py's publish with a reply subject (the default :data:`Publish`)."""
    await nc.publish(subject, body, reply=reply, headers=headers)


class SinkError(SOPError):
    """The sink cannot go on from here (the stream is not SOP's, an event does not fit)."""


class ResyncNeededError(SOPError):
    """The stream is not where the session thought: read it again (not an outage)."""


class PipelineSink(Protocol):
    """What the pipeline reads from and reports to the sink."""

    source: EventSource
    config: NatsSinkConfig
    publish: Publish

    @property
    def stopping(self) -> bool:
        """Whether the sink is closing."""
        ...

    def acked(self, acked: int, *, stored: int, duplicates: int) -> None:
        """Events up to ``acked - 1`` are acknowledged: ``stored`` new ones were stored by
        this call's batch, ``duplicates`` were in the stream already."""
        ...

    def saw_size(self, size: int) -> None:
        """The log holds ``size`` entries."""
        ...

    async def idle(self, seconds: float) -> None:
        """Wait up to ``seconds`` for new entries (woken early when one commits)."""
        ...


_Ack = tuple[str, int, bool]
"""``(stream, sequence, duplicate)`` of an acknowledgement."""


@dataclass(frozen=True, slots=True)
class _Sent:
    """A published event whose acknowledgement was asked for: it confirms ``[first, index]``."""

    first: int
    index: int
    seq: int  # the stream sequence the event gets when stored after its predecessor
    due: float  # monotonic time by which its ack must have come


class Pipeline:
    """Publishes from ``start`` on, in order, until the sink stops or something fails."""

    def __init__(
        self, nc: Client, sink: PipelineSink, start: int, last_seq: int, closed: asyncio.Event
    ) -> None:
        """A pipeline on ``nc`` for ``sink``'s events from ``start`` (the stream at ``last_seq``).

        Args:
            nc: The open connection.
            sink: The sink (its source, config, publish function and reports).
            start: The position of the next event to publish.
            last_seq: The stream's last sequence (the first event expects it).
            closed: Set when the connection closes.
        """
        self._nc = nc
        self._sink = sink
        self._config = sink.config
        self._next = start
        self._confirmed = start  # events [0, confirmed) are acknowledged
        self._unasked = start  # the first event no acknowledgement was asked for yet
        self._probing = True  # the session's first event asks for its own acknowledgement
        self._seq = last_seq
        self._closed = closed
        self._inbox = nc.new_inbox()
        self._acks: dict[int, _Ack | BaseException] = {}
        self._arrived = asyncio.Event()
        self._awaited = -1  # the event whose ack the pump waits for (only it wakes the pump)
        self._subjects: dict[str, str] = {}

    async def run(self) -> None:
        """Publish until the sink stops.

        Raises:
            ResyncNeededError: the broker refused an event's expected sequence.
            SinkError: an event cannot be published as configured, or the stream is not ours.
            TimeoutError: an event was not acknowledged in time.
            ConnectionError: the connection closed.
            Exception: nats-py's errors.
        """
        sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        try:
            await self._pump()
        finally:
            if not self._nc.is_closed:
                await sub.unsubscribe()

    async def _on_ack(self, msg: Msg) -> None:
        """One acknowledgement (or refusal), filed under the event index its subject names."""
        try:
            index = int(msg.subject.rsplit(".", 1)[1])
        except (IndexError, ValueError):
            return  # not one of ours
        self._acks[index] = _parse_ack(index, msg)
        if index == self._awaited:
            self._arrived.set()

    async def _pump(self) -> None:
        sink, cfg = self._sink, self._config
        pending: deque[_Sent] = deque()
        while not sink.stopping:
            self._settle(pending)
            size = sink.source.size()
            sink.saw_size(size)
            room = cfg.max_in_flight - (self._next - self._confirmed)
            # Refill when half the window is free: one read of the log, one burst of
            # publishes and one acknowledgement for many events.
            if self._next < size and (not pending or 2 * room >= cfg.max_in_flight):
                await self._send(pending, self._read(self._next, min(size, self._next + room)))
            elif pending:
                await self._await_head(pending[0])
            else:
                await sink.idle(cfg.poll_interval_ms / 1000)
            if self._closed.is_set() or not self._nc.is_connected:
                raise ConnectionError("the connection to the broker closed")

    async def _send(self, pending: deque[_Sent], events: list[Event]) -> None:
        due = time.monotonic() + self._config.ack_timeout_seconds
        last = events[-1].position
        for event in events:
            headers = {
                Header.MSG_ID.value: event.id,  # the broker drops a second copy
                Header.EXPECTED_LAST_SEQUENCE.value: str(self._seq),  # no gap, no re-store
            }
            # The burst's last event, and a session's first on its own (its refusal says why)
            asked = event.position == last or self._probing
            reply = f"{self._inbox}.{event.position}" if asked else ""
            await self._sink.publish(self._nc, self._subject(event), reply, event.body, headers)
            self._seq += 1
            self._next = event.position + 1
            if asked:
                pending.append(_Sent(self._unasked, event.position, self._seq, due))
                self._unasked = event.position + 1
                self._probing = False

    async def _await_head(self, head: _Sent) -> None:
        self._awaited = head.index
        while head.index not in self._acks:
            remaining = head.due - time.monotonic()
            if self._closed.is_set():
                raise ConnectionError("the connection to the broker closed")
            if remaining <= 0:
                raise TimeoutError(
                    f"event `{head.index}` not acknowledged within"
                    f" `{self._config.ack_timeout_seconds}` s"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):  # no task per wait: fewer loop turns
                async with asyncio.timeout(min(remaining, 0.25)):
                    await self._arrived.wait()

    def _settle(self, pending: deque[_Sent]) -> None:
        """Take the acknowledged head of ``pending``, in order; raise at the first failure.

        What was acknowledged before the failure is reported first.
        """
        acks, stream = self._acks, self._config.stream
        acked = stored = duplicates = 0
        try:
            while pending and pending[0].index in acks:
                sent = pending.popleft()
                ack = acks.pop(sent.index)
                if isinstance(ack, BaseException):
                    raise ack
                if ack[0] != stream:
                    raise SinkError(f"event `{sent.index}` went to stream `{ack[0]}`, not ours")
                # The stream is a gap-free prefix of the log: holding event i, it holds all
                # before it, so the acknowledgement confirms the whole burst.
                acked = self._confirmed = sent.index + 1
                if ack[2]:
                    duplicates += sent.index + 1 - sent.first
                else:
                    stored += sent.index + 1 - sent.first
                if ack[1] != sent.seq:  # the broker had it elsewhere: later expectations are off
                    raise ResyncNeededError(
                        f"event `{sent.index}` is at sequence `{ack[1]}`, not `{sent.seq}`"
                    )
        finally:
            if acked:
                self._sink.acked(acked, stored=stored, duplicates=duplicates)

    def _subject(self, event: Event) -> str:
        subject = self._subjects.get(event.type)
        if subject is None:
            if _SUBJECT_TYPE.fullmatch(event.type) is None:
                raise SinkError(f"event `{event.id}` has type `{event.type[:80]}`, not a subject")
            subject = self._subjects[event.type] = self._config.subject(event.type)
        return subject

    def _read(self, start: int, end: int) -> list[Event]:
        events = self._sink.source.read(start, end)
        if len(events) != end - start or any(e.position != start + k for k, e in enumerate(events)):
            got = [e.position for e in events[:3]]
            raise SinkError(f"the log's events `[{start}, {end})` came back as `{got}`...")
        return events


def _parse_ack(index: int, msg: Msg) -> _Ack | BaseException:
    """JetStream's answer to event ``index``: ``{"stream", "seq"[, "duplicate"]}`` or an error."""
    if not msg.data:  # a status message: no stream captures the subject (503), or the like
        status = (msg.headers or {}).get("Status", "?")
        return SinkError(f"no stream stored event `{index}` (status `{status}`)")
    try:
        body = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return SinkError(f"the broker's answer to event `{index}` is not JSON")
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        why = f"event `{index}` was refused: {str(error.get('description'))[:200]}"
        if error.get("err_code") == WRONG_LAST_SEQUENCE:
            return ResyncNeededError(why)
        return SinkError(why)
    stream, seq = body.get("stream"), body.get("seq")
    if not isinstance(stream, str) or type(seq) is not int:
        return SinkError(f"the broker's answer to event `{index}` names no stream sequence")
    return (stream, seq, body.get("duplicate") is True)

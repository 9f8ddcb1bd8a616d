"""A private `nats-server -js` for the sink's tests, and a consumer that checks the stream.

Each broker listens on an ephemeral port of 127.0.0.1 with its store in a temporary
directory, so a test may stop, kill and restart it (same port, same store) without
touching the machine's broker at 127.0.0.1:4222. :func:`stream_report` reads the
stream back through JetStream itself (its state, then an ephemeral consumer that
receives every message), so the exactly-once checks never take the sink's word.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

__all__ = ["Broker", "StreamReport", "free_port", "stream_report"]


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """`nats-server -js -a 127.0.0.1 -p PORT -sd STORE`, started and stopped by the test."""

    def __init__(self, store: Path, port: int | None = None) -> None:
        binary = shutil.which("nats-server")
        if binary is None:  # a failure, not a skip: the exactly-once tests must run in CI
            raise RuntimeError("`nats-server` is not on PATH; the NATS sink's tests need it")
        self.binary = binary
        self.store = store
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        """Start it and wait until it accepts connections (10 s at most)."""
        self.store.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)]
        log = (self.store.parent / f"nats-{self.port}.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with `{self.process.returncode}`")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on `{self.port}` within 10 s")

    def stop(self) -> None:
        """Stop it (SIGTERM; SIGKILL after 10 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class StreamReport:
    """What JetStream says the stream holds, and what a consumer received from it."""

    messages: int
    first_seq: int
    last_seq: int
    received: list[tuple[int, str, str]]
    """``(stream sequence, Nats-Msg-Id, subject)`` of every message, in delivery order."""

    def check_exactly_once(self, origin: str, size: int, checkpoints: Sequence[int] = ()) -> None:
        """Each index of ``[0, size)`` is in the stream exactly once, in order, and each
        checkpoint of ``checkpoints`` (sizes) right after the last entry it covers; nothing
        else is."""
        ids = [msg_id for _, msg_id, _ in self.received]
        expected = expected_ids(origin, size, checkpoints)
        dups = len(ids) - len(set(ids))
        assert dups == 0, f"{dups} duplicate events in the stream"
        missing = sorted(set(expected) - set(ids))
        assert not missing, f"{len(missing)} events missing, first {missing[:3]}"
        assert ids == expected, "events out of order"
        count = len(expected)
        assert self.messages == count, (self.messages, count)
        assert (self.first_seq, self.last_seq) == (1, count), (self.first_seq, self.last_seq)
        assert [seq for seq, _, _ in self.received] == list(range(1, count + 1))


def expected_ids(origin: str, size: int, checkpoints: Sequence[int] = ()) -> list[str]:
    """The event ids of a log of ``size`` entries signed at ``checkpoints``, in log order."""
    signed = set(checkpoints)
    out = []
    for index in range(size + 1):
        if index in signed:
            out.append(f"{origin}/checkpoint/{index}")
        if index < size:
            out.append(f"{origin}/{index}")
    return out


async def _report(url: str, stream: str, subjects: str, timeout: float) -> StreamReport:
    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
        sub = await js.pull_subscribe(subjects, stream=stream, config=config)
        received: list[tuple[int, str, str]] = []
        deadline = time.monotonic() + timeout
        while len(received) < state.messages and time.monotonic() < deadline:
            try:
                batch = await sub.fetch(min(1000, state.messages - len(received)), timeout=2)
            except nats.errors.TimeoutError:
                continue
            for msg in batch:
                headers = msg.headers or {}
                seq = msg.metadata.sequence.stream
                received.append((seq, headers.get("Nats-Msg-Id", ""), msg.subject))
        await sub.unsubscribe()
        return StreamReport(state.messages, state.first_seq, state.last_seq, received)
    finally:
        await nc.close()


def stream_report(
    url: str, stream: str = "SOP_EVENTS", subjects: str = "sop.events.>", timeout: float = 60
) -> StreamReport:
    """Read ``stream`` back: its state, then every message through an ephemeral consumer."""
    return asyncio.run(_report(url, stream, subjects, timeout))

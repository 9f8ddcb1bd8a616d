"""The witness publisher against in-process witnesses: quorum, coalescing, retry, alarms, backoff.

The witnesses are this package's C2SP tlog-witness (:class:`~sop_verified.tools.witness.Witness`,
each with its own SQLite state), called through a stand-in for ``submit_checkpoint`` that
answers as the HTTP client does; the log is a real :class:`TransparencyLog` in memory, its
checkpoints handed to the publisher by the anchor writer's hook as SOP wires it.
The real processes are in ``tests/server/test_witness_publication.py``.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from sop_verified.errors import IntegrityError, NotWitnessedError
from sop_verified.nexus.anchor import AnchorWriter
from sop_verified.nexus.witness_publisher import WITNESSED_NAME, WitnessPublisher, load_published
from sop_verified.nexus.witnesses_config import WitnessesConfig
from sop_verified.storage.memory_backend import MemoryBackend
from sop_verified.tools.checkpoint import Checkpoint
from sop_verified.tools.cosignature import CosignatureVerifier, verify_cosignatures
from sop_verified.tools.signed_note import Signer, Verifier, generate
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_receipt import verify_bundle
from sop_verified.tools.witness import Cosigned, Witness, format_add_checkpoint
from sop_verified.tools.witness_client import WitnessRefusal
from sop_verified.tools.witness_config import WitnessDir, init_witness_dir, load_witness_dir

ORIGIN = "sop.test/log"


def _size(note: str) -> int:
    return Checkpoint.from_text(note[: note.find("\n\n") + 1]).size


class Witnesses:
    """In-process witnesses behind ``submit_checkpoint``'s signature, with faults to inject."""

    def __init__(self, base: Path, log_vkey: str, count: int) -> None:
        self.dirs: dict[str, WitnessDir] = {}
        for i in range(1, count + 1):
            init_witness_dir(base / f"w{i}", f"witness.test/w{i}", [(log_vkey, None)])
            self.dirs[f"http://w{i}.test"] = load_witness_dir(base / f"w{i}")
        self.calls: list[tuple[str, int, int]] = []  # (url, old size, checkpoint size)
        self.times: dict[str, list[float]] = {url: [] for url in self.dirs}
        self.down: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def url(self, i: int) -> str:
        return f"http://w{i}.test"

    def witness(self, i: int) -> Witness:
        return self.dirs[self.url(i)].witness()

    def vkey(self, i: int) -> str:
        return self.dirs[self.url(i)].vkey

    def config(self, minimum: int | None = None) -> WitnessesConfig:
        return WitnessesConfig.model_validate(
            {
                "witness": tuple({"url": url, "vkey": d.vkey} for url, d in self.dirs.items()),
                "min": minimum,
                "max_backoff_seconds": 1,
            }
        )

    def submit(
        self,
        url: str,
        old: int,
        proof: Sequence[bytes],
        note: str,
        *,
        witness: CosignatureVerifier,
        **_: Any,
    ) -> str | WitnessRefusal:
        with self.lock:
            self.calls.append((url, old, _size(note)))
            self.times[url].append(time.monotonic())
        self.entered.set()
        self.gate.wait(10)
        if url in self.down:
            return WitnessRefusal(None, "unreachable", f"`{url}`: ConnectError")
        answer = self.dirs[url].witness().add_checkpoint(format_add_checkpoint(old, proof, note))
        if isinstance(answer, Cosigned):
            assert verify_cosignatures(note + answer.lines, [witness], minimum=1)
            return answer.lines
        code = answer.code
        if answer.status == 409:
            code = "fork" if answer.size == old else "old_size_mismatch"
        return WitnessRefusal(answer.status, code, answer.message, answer.size)

    def calls_to(self, i: int) -> list[tuple[int, int]]:
        with self.lock:
            return [(old, size) for url, old, size in self.calls if url == self.url(i)]

    def close(self) -> None:
        for d in self.dirs.values():
            d.close()


class Setup:
    """A signed log in memory, its anchor hook, and ``count`` witnesses."""

    def __init__(self, base: Path, count: int, *, signer: Signer | None = None) -> None:
        self.base = base
        self.signer = signer or Signer.from_string(generate(ORIGIN)[0])
        self.store = MemoryBackend().log_store
        self.publishers: list[WitnessPublisher] = []
        self.hook = _Hook()
        writer = AnchorWriter(base / "checkpoint.anchor", then=self.hook)
        self.log = TransparencyLog(
            self.store, origin=ORIGIN, signer=self.signer, on_checkpoint=writer
        )
        self.witnesses = Witnesses(base, self.signer.verifier().vkey, count)
        self.alarms: list[str] = []
        self.path = base / WITNESSED_NAME

    def append(self, n: int = 1, tag: str = "") -> None:
        for i in range(n):
            self.log.append(f"{tag}entry-{self.log.size}-{i}".encode())

    def publisher(self, minimum: int | None = None, **kw: Any) -> WitnessPublisher:
        publisher = WitnessPublisher(
            self.log,
            self.witnesses.config(minimum),
            self.path,
            on_alarm=self.alarms.append,
            submit=kw.pop("submit", self.witnesses.submit),
            **kw,
        )
        self.hook.target = publisher.notify
        self.publishers.append(publisher)
        publisher.start()
        return publisher


class _Hook:
    def __init__(self) -> None:
        self.target: Callable[[int, str], None] | None = None

    def __call__(self, size: int, note: str) -> None:
        if self.target is not None:
            self.target(size, note)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path, 3)
    yield made
    made.witnesses.gate.set()
    for publisher in made.publishers:
        publisher.close()
    made.witnesses.close()


def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _published_size(publisher: WitnessPublisher) -> int:
    published = publisher.published
    return 0 if published is None else published.size


def test_published_only_once_min_witnesses_cosigned(setup: Setup) -> None:
    w = setup.witnesses
    w.down |= {w.url(2), w.url(3)}
    setup.append(3)
    publisher = setup.publisher(minimum=2)
    _until(lambda: len(w.calls_to(2)) >= 2)  # tried, failed, tried again
    assert publisher.published is None  # one cosignature of the two required: nothing
    assert not setup.path.exists()
    w.down.discard(w.url(2))
    _until(lambda: _published_size(publisher) == setup.log.size)
    published = publisher.published
    assert published is not None
    cosigned = verify_cosignatures(
        published.note, [CosignatureVerifier.from_string(w.vkey(i)) for i in (1, 2, 3)], minimum=2
    )
    assert sorted(c.vkey for c in cosigned) == sorted([w.vkey(1), w.vkey(2)])
    assert setup.path.read_text() == published.note  # durable before it is served
    assert stat.S_IMODE(os.stat(setup.path).st_mode) == 0o600
    assert setup.alarms == []  # an unreachable witness is never an alarm


def test_checkpoints_made_during_a_submission_are_coalesced(setup: Setup) -> None:
    w = setup.witnesses
    setup.append(1)
    w.gate.clear()
    publisher = setup.publisher(minimum=3)
    _until(w.entered.is_set)  # the first submission is under way, held at the witness
    first = setup.log.size
    started = time.monotonic()
    setup.append(5)  # five batches, five checkpoints: none of them waits for the witness
    assert time.monotonic() - started < 2.0
    w.gate.set()
    _until(lambda: _published_size(publisher) == setup.log.size)
    for i in (1, 2, 3):  # one submission of the first checkpoint, then only the latest
        assert w.calls_to(i) == [(0, first), (first, setup.log.size)]


def test_decisions_never_wait_for_a_witness_that_hangs(setup: Setup) -> None:
    setup.witnesses.gate.clear()  # every witness holds its answer
    setup.append(1)
    publisher = setup.publisher(minimum=1)
    _until(setup.witnesses.entered.is_set)
    started = time.monotonic()
    setup.append(20)
    assert time.monotonic() - started < 2.0
    assert publisher.published is None


def test_a_witness_that_cosigned_more_is_sent_again_from_its_size(setup: Setup) -> None:
    w = setup.witnesses
    setup.append(4)
    note = setup.log.checkpoint_note
    assert note is not None
    answer = w.witness(1).add_checkpoint(format_add_checkpoint(0, [], note))  # an earlier life
    assert isinstance(answer, Cosigned)
    setup.append(3)
    publisher = setup.publisher(minimum=3)
    _until(lambda: _published_size(publisher) == setup.log.size)
    assert w.calls_to(1) == [(0, 7), (4, 7)]  # 409 with its size, then once from it
    assert w.calls_to(2) == [(0, 7)]
    assert setup.alarms == []


def _fork(setup: Setup, size: int) -> None:
    """A log with the same key and another history, cosigned by witness 1 at ``size``."""
    other = TransparencyLog(MemoryBackend().log_store, origin=ORIGIN, signer=setup.signer)
    for i in range(size):
        other.append(f"forked-{i}".encode())
    note = other.checkpoint_note
    assert note is not None
    w1 = setup.witnesses.witness(1)
    assert isinstance(w1.add_checkpoint(format_add_checkpoint(0, [], note)), Cosigned)


@pytest.mark.parametrize(
    ("forked", "code"),
    [(6, "fork"), (3, "bad_proof"), (9, "cosigned size `9`, the log holds `6`")],
    ids=["same-size-other-root", "smaller-tree-not-a-prefix", "larger-than-the-log"],
)
def test_a_fork_or_rollback_refused_by_a_witness_raises_the_alarm(
    setup: Setup, forked: int, code: str
) -> None:
    _fork(setup, forked)
    setup.append(6)
    publisher = setup.publisher(minimum=1)
    _until(lambda: len(setup.alarms) == 1)
    assert "witness.test/w1" in setup.alarms[0] and code in setup.alarms[0]
    assert "http://w1.test" in setup.alarms[0]
    _until(lambda: _published_size(publisher) == 6)  # the two honest witnesses publish it
    setup.append(1)
    _until(lambda: _published_size(publisher) == 7)
    calls = len(setup.witnesses.calls_to(1))
    assert calls == (1 if forked > 6 else 2)  # never asked again once it refused
    _, stats = publisher.stats()
    assert stats[0].alarm == setup.alarms[0] and stats[1].alarm is None


def test_a_witness_ahead_of_this_replica_but_not_of_the_shared_log_is_no_alarm(
    setup: Setup,
) -> None:
    w = setup.witnesses
    other = TransparencyLog(setup.store, origin=ORIGIN, signer=setup.signer)  # another replica
    w.gate.clear()
    setup.append(2)
    publisher = setup.publisher(minimum=3)
    _until(w.entered.is_set)  # this replica's submission of size 2 waits at the witnesses
    other.append(b"other-2")
    other.append(b"other-3")
    note = other.checkpoint_note
    assert note is not None
    for i in (1, 2, 3):  # the other replica's checkpoint 4 reached the witnesses first
        answer = w.witness(i).add_checkpoint(format_add_checkpoint(0, [], note))
        assert isinstance(answer, Cosigned)
    assert setup.log.size == 2  # this replica has not read the shared tail yet
    w.gate.set()
    # 4 is beyond this replica's view, not beyond the log: no alarm, and with no decision
    # of its own to come, this replica reads the shared tail and publishes checkpoint 4
    _until(lambda: _published_size(publisher) == 4)
    assert setup.log.size == 4 and setup.alarms == []
    assert w.calls_to(1) == [(0, 2), (4, 4)]
    setup.append(1)  # built on the shared head: checkpoint 5
    _until(lambda: _published_size(publisher) == 5)
    assert w.calls_to(1)[-1] == (4, 5) and setup.alarms == []


def test_a_witness_moved_on_by_another_replica_during_the_retry_is_no_alarm(
    setup: Setup,
) -> None:
    w = setup.witnesses
    other = TransparencyLog(setup.store, origin=ORIGIN, signer=setup.signer)  # another replica
    other.append_many([b"other-0", b"other-1"])
    first = other.checkpoint_note
    assert first is not None
    assert isinstance(w.witness(1).add_checkpoint(format_add_checkpoint(0, [], first)), Cosigned)
    setup.append(1)  # on the shared head: 3
    raced = threading.Event()

    def racing(url: str, old: int, proof: Sequence[bytes], note: str, **kw: Any) -> Any:
        answer = w.submit(url, old, proof, note, **kw)
        if url == w.url(1) and not raced.is_set():  # between its 409 and the retry
            raced.set()
            other.append_many([b"other-3", b"other-4"])
            later = other.checkpoint_note
            assert later is not None
            moved = format_add_checkpoint(2, other.consistency_proof(2, 5), later)
            assert isinstance(w.witness(1).add_checkpoint(moved), Cosigned)
        return answer

    publisher = setup.publisher(minimum=3, submit=racing)
    _until(lambda: _published_size(publisher) == 5)  # the other replica's 5, read and sent
    assert w.calls_to(1) == [(0, 3), (2, 3), (5, 5)] and setup.alarms == []
    setup.append(1)  # 6
    _until(lambda: _published_size(publisher) == 6)
    assert w.calls_to(1)[-1] == (5, 6) and setup.alarms == []


def test_a_size_mismatch_that_persists_after_the_retry_raises_the_alarm(setup: Setup) -> None:
    sent: list[int] = []

    def always_409(url: str, old: int, proof: Sequence[bytes], note: str, **_: Any) -> Any:
        sent.append(old)
        return WitnessRefusal(409, "old_size_mismatch", "latest is 1", 1)

    setup.append(5)
    setup.publisher(minimum=1, submit=always_409)
    _until(lambda: len(setup.alarms) == 3)  # one per witness
    assert sorted(sent) == [0, 0, 0, 1, 1, 1]  # each: once from 0, once from its size, no more
    assert all("old_size_mismatch" in a for a in setup.alarms)


def test_an_unreachable_witness_is_tried_again_with_backoff(setup: Setup) -> None:
    w = setup.witnesses
    w.down.add(w.url(3))
    setup.append(2)
    publisher = setup.publisher(minimum=3)
    _until(lambda: len(w.calls_to(3)) >= 3)
    first, second, third = w.times[w.url(3)][:3]
    assert second - first >= 0.2 and third - second >= 0.45  # 0.25 s, then 0.5 s: no busy loop
    assert publisher.published is None and setup.alarms == []
    w.down.clear()
    _until(lambda: _published_size(publisher) == setup.log.size)
    _, stats = publisher.stats()
    assert stats[2].outcomes["unreachable"] == len(w.calls_to(3)) - 1
    assert stats[2].outcomes["cosigned"] == 1 and setup.alarms == []


def test_with_a_quorum_a_down_witness_waits_for_the_next_checkpoint(setup: Setup) -> None:
    w = setup.witnesses
    w.down.add(w.url(3))
    setup.append(2)
    publisher = setup.publisher(minimum=2)
    _until(lambda: _published_size(publisher) == 2)
    time.sleep(0.4)  # past its first backoff (0.25 s)
    assert w.calls_to(3) == [(0, 2)]  # published: nothing more to ask it for now
    w.down.clear()
    setup.append(1)
    _until(lambda: w.calls_to(3)[-1] == (0, 3))


def test_the_receipt_carries_the_published_checkpoint_or_says_not_yet(setup: Setup) -> None:
    setup.append(3)
    publisher = setup.publisher(minimum=3)
    _until(lambda: _published_size(publisher) == 3)
    setup.witnesses.gate.clear()
    setup.append(2)
    bundle = publisher.prove(2)
    keys = [CosignatureVerifier.from_string(setup.witnesses.vkey(i)) for i in (1, 2, 3)]
    log_key = [Verifier.from_string(setup.signer.verifier().vkey)]
    verified = verify_bundle(bundle, log_key, origin=ORIGIN, witnesses=keys)
    assert verified.checkpoint.size == 3 and len(verified.cosignatures) == 3
    with pytest.raises(NotWitnessedError, match=r"entry `3` is in the log but not yet witnessed"):
        publisher.prove(3)


def test_the_published_checkpoint_is_read_back_and_must_be_extended(setup: Setup) -> None:
    setup.append(4)
    publisher = setup.publisher(minimum=3)
    _until(lambda: _published_size(publisher) == 4)
    publisher.close()
    again = setup.publisher(minimum=3)
    assert again.published is not None and again.published.size == 4  # served at once
    setup.append(1)
    _until(lambda: _published_size(again) == 5)
    assert setup.witnesses.calls_to(1) == [(0, 4), (4, 5)]  # no 409: its size was known
    (setup.base / "fork").mkdir()
    forked = Setup(setup.base / "fork", 0, signer=setup.signer)
    forked.witnesses = setup.witnesses
    forked.path = setup.path
    forked.append(5, tag="other")  # same key, same size, another tree than the one published
    with pytest.raises(IntegrityError, match="fork"):
        forked.publisher(minimum=3)


def test_a_published_file_that_does_not_verify_is_not_served(setup: Setup) -> None:
    setup.append(2)
    publisher = setup.publisher(minimum=3)
    _until(lambda: _published_size(publisher) == 2)
    publisher.close()
    text = setup.path.read_text()
    tampered = text.replace("— witness.test/w2 ", "— witness.test/w2 AAAA")
    setup.path.write_text(tampered)
    assert load_published(setup.path, setup.log, setup.witnesses.config(3)) == (None, ())
    again = setup.publisher(minimum=3)  # publishes afresh, never the tampered note
    _until(lambda: _published_size(again) == 2)
    assert again.published is not None and again.published.note != tampered
    assert setup.path.read_text() == again.published.note


def test_close_stops_the_thread_and_nothing_is_submitted_after(setup: Setup) -> None:
    setup.append(1)
    publisher = setup.publisher(minimum=3)
    _until(lambda: _published_size(publisher) == 1)
    publisher.close()
    calls = len(setup.witnesses.calls)
    setup.append(2)
    time.sleep(0.1)
    assert len(setup.witnesses.calls) == calls
    assert not any(t.name == "sop-witness-publisher" for t in threading.enumerate())

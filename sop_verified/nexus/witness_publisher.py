"""Publishing SOP's checkpoints through witnesses (C2SP tlog-witness), off the decision path.

With ``[witnesses]`` in ``sop.toml`` a checkpoint is *published* only once at
least ``min`` distinct witnesses cosigned it; the published note (SOP's
signature lines, then the cosignature lines) is what the read plane serves and
what its receipts carry. Decisions never wait for it: they are answered with
SOP's own signed checkpoint, as without witnesses.

- **When.** The log's ``on_checkpoint`` hook (after the batch committed and the
  rollback anchor was written) hands each checkpoint to :meth:`notify`, which
  only remembers it and wakes the publisher's thread. The thread submits the
  latest checkpoint it knows of: checkpoints made while a submission ran are
  coalesced into the next one.
- **How.** Each witness gets ``add-checkpoint`` with the size it last cosigned
  (remembered per witness; 0 after a restart unless the published note carries
  its cosignature) and the RFC 9162 consistency proof from it, in parallel. A
  409 with the witness's size is retried once, from that size, with a fresh
  proof. A witness that another replica of a shared log moved past this
  replica's checkpoint makes this replica read the shared tail and submit the
  stored checkpoint next, so an idle replica's publication still reaches the
  log's head.
- **Publication.** Once ``min`` witnesses cosigned one checkpoint, the
  cosigned note is written to ``witnessed.checkpoint`` in the data directory
  (0600; temporary file, fsync, rename, fsync of the directory) and only then
  served. At boot the file is read back and the log must extend it (INV-5).
- **Refusals.** A witness that answers ``fork`` (it cosigned another tree at
  that size), ``bad_proof`` (SOP's own consistency proof fails against what it
  cosigned), a size mismatch that persists after the retry, or a size larger
  than the whole log (a rollback) raises the integrity alarm through
  ``on_alarm``: SOP becomes DEGRADED and denies everything (INV-5). That
  witness is not asked again until SOP restarts.
- **Failures.** An unreachable witness, or any other refusal (an unknown log
  or key, a malformed or invalid answer), is logged, counted and tried again
  after an exponential backoff capped at ``max_backoff_seconds``; it is never
  an alarm, and the published checkpoint just does not advance past what
  ``min`` witnesses cosigned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sop_verified.errors import InputError, IntegrityError, NotWitnessedError, VerificationError
from sop_verified.nexus.anchor import read_anchor
from sop_verified.nexus.witnesses_config import WitnessesConfig
from sop_verified.tools.checkpoint import Checkpoint
from sop_verified.tools.cosignature import CosignatureVerifier, verify_cosignatures
from sop_verified.tools.private_fs import write_private
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_receipt import ProofBundle
from sop_verified.tools.witness_client import WitnessRefusal, submit_checkpoint

__all__ = [
    "ALARM_CODES",
    "WITNESSED_NAME",
    "Published",
    "WitnessPublisher",
    "WitnessStats",
    "load_published",
    "prove_published",
    "published_checkpoint",
]

WITNESSED_NAME = "witnessed.checkpoint"
"""The published (cosigned) checkpoint's file name in the data directory."""

ALARM_CODES = frozenset({"fork", "bad_proof", "old_size_mismatch"})
"""Refusals that mean the witness holds a history this log is not (the last one only when
it persists after the retry)."""

SUBMIT_TIMEOUT = 5.0
"""Seconds to wait for one witness's answer."""

FIRST_BACKOFF = 0.25
"""Seconds before a failing witness is first tried again (doubling up to the configured cap)."""

Submit = Callable[..., "str | WitnessRefusal"]
""":func:`~sop_verified.tools.witness_client.submit_checkpoint`'s signature."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Published:
    """The published checkpoint: its tree size and its note with the cosignature lines."""

    size: int
    note: str


@dataclass(frozen=True, slots=True)
class WitnessStats:
    """One witness's counters, for the metrics: ``outcomes`` by ``cosigned`` or refusal code."""

    name: str
    url: str
    cosigned_size: int
    outcomes: dict[str, int]
    alarm: str | None


@dataclass
class _Witness:
    """What the publisher knows of one witness (touched by one submission at a time)."""

    name: str
    url: str
    verifier: CosignatureVerifier
    http: httpx.Client
    cosigned: int = 0  # the size it last cosigned for this log, as far as SOP knows
    lines: tuple[int, str] | None = None  # its cosignature lines on the checkpoint of that size
    due: float = 0.0  # monotonic time before which it is not tried again
    failures: int = 0
    alarm: str | None = None  # an integrity refusal: never asked again (the alarm was raised)
    outcomes: Counter[str] = field(default_factory=Counter)

    def has(self, size: int) -> bool:
        return self.lines is not None and self.lines[0] == size

    def wants(self, size: int) -> bool:
        """Whether this witness still has to cosign the checkpoint of ``size``."""
        return self.alarm is None and not self.has(size) and self.cosigned <= size


def load_published(
    path: Path, log: TransparencyLog, config: WitnessesConfig
) -> tuple[Published | None, tuple[str, ...]]:
    """Read back the published checkpoint and check that the log extends it.

    A note that no longer verifies (another witness set or quorum, a rotated log
    key) is not served again: publication starts afresh, and nothing unwitnessed
    is served meanwhile.

    Args:
        path: ``witnessed.checkpoint`` in the data directory.
        log: The opened log.
        config: The configured witnesses.

    Returns:
        The published checkpoint (None if absent or no longer valid), and the
        verifier keys of the witnesses whose cosignatures it carries.

    Raises:
        IntegrityError: the log is smaller than the published checkpoint or not
            consistent with it (a rollback or a fork behind the witnesses' back).
    """
    note = read_anchor(path)
    if note is None:
        return None, ()
    witnesses = [w.verifier() for w in config.witness]
    try:
        cosigned = verify_cosignatures(note, witnesses, minimum=config.minimum)
        kept = log.check_extends(note)  # spec: INV-5 — the log never goes behind what was published
    except (InputError, VerificationError) as exc:
        _log.warning("not serving the published checkpoint `%s` again: %s", path, exc)
        return None, ()
    except IntegrityError as exc:
        raise IntegrityError(
            f"the published checkpoint `{path}`, which witnesses cosigned, is not in this log:"
            f" {exc}; the log was cut back or replaced behind the witnesses' back: restore the"
            " database that extends it (the witnesses will refuse anything else)"
        ) from exc
    return Published(kept.size, note), tuple(c.vkey for c in cosigned)


class WitnessPublisher:
    """Submits the latest checkpoint to the witnesses in a thread; publishes a cosigned one."""

    def __init__(
        self,
        log: TransparencyLog,
        config: WitnessesConfig,
        path: Path,
        *,
        on_alarm: Callable[[str], None],
        submit: Submit = submit_checkpoint,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Publish ``log``'s checkpoints through the witnesses of ``config`` into ``path``.

        Args:
            log: The opened, signed log (it builds the consistency proofs).
            config: The ``[witnesses]`` table.
            path: Where the published note is kept (``witnessed.checkpoint``).
            on_alarm: Told why when a witness refuses for integrity (the alarm).
            submit: The tlog-witness client (tests inject failures).
            clock: A monotonic clock, for the backoff.

        Raises:
            IntegrityError: the log does not extend the published checkpoint kept in ``path``.
        """
        self._published, cosigners = load_published(path, log, config)  # first: it may refuse
        self._log = log
        self._path = path
        self._minimum = config.minimum
        self._max_backoff = float(config.max_backoff_seconds)
        self._on_alarm = on_alarm
        self._submit = submit
        self._clock = clock
        self._witnesses = [
            _Witness(w.verifier().name, w.url, w.verifier(), httpx.Client(timeout=SUBMIT_TIMEOUT))
            for w in config.witness
        ]
        self._verifiers = [w.verifier for w in self._witnesses]
        for w in self._witnesses:
            if self._published is not None and w.verifier.vkey in cosigners:
                w.cosigned = self._published.size
        note, checkpoint = log.checkpoint_note, log.checkpoint  # boot: nothing appends meanwhile
        self._latest = None if note is None or checkpoint is None else (checkpoint.size, note)
        self._cond = threading.Condition()
        self._stopping = False
        self._pool = ThreadPoolExecutor(len(self._witnesses), thread_name_prefix="sop-witness")
        self._thread = threading.Thread(target=self._run, name="sop-witness-publisher", daemon=True)

    # ---- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start the publishing thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop: the submission under way finishes (within its timeout), nothing new starts."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(SUBMIT_TIMEOUT * 2)
        self._pool.shutdown(wait=True)
        for w in self._witnesses:
            w.http.close()

    def notify(self, size: int, note: str) -> None:
        """The log's hook: checkpoint ``size`` is durable. Never blocks on a witness."""
        with self._cond:
            if self._latest is None or size > self._latest[0]:
                self._latest = (size, note)
                self._cond.notify_all()

    # ---- what is published -----------------------------------------------------------
    @property
    def published(self) -> Published | None:
        """The latest checkpoint ``min`` witnesses cosigned (None until one was)."""
        return self._published

    def prove(self, index: int) -> ProofBundle:
        """The receipt of entry ``index`` against the published checkpoint.

        Raises:
            NotWitnessedError: the entry is in the log, past the published checkpoint.
            InputError: ``index`` is not an entry of the log.
            StorageError: the database failed.
        """
        published = self._published
        size = 0 if published is None else published.size
        if type(index) is int and 0 <= index < size and published is not None:
            proof = self._log.inclusion_proof(index, size)
            return ProofBundle(index, tuple(proof), published.note, self._log.entry(index))
        if type(index) is int and size <= index < self._log.size:
            raise NotWitnessedError(index, size)
        raise InputError(
            f"entry index `{index!r}` is not in the log",
            accepted=f"an integer in `[0, {self._log.size})`",
        )

    def stats(self) -> tuple[int, list[WitnessStats]]:
        """The published size (0: none) and each witness's counters."""
        published = self._published
        return (0 if published is None else published.size), [
            WitnessStats(w.name, w.url, w.cosigned, dict(w.outcomes), w.alarm)
            for w in self._witnesses
        ]

    # ---- the thread ------------------------------------------------------------------
    def _pending(self, size: int) -> list[_Witness]:
        now = self._clock()
        return [w for w in self._witnesses if w.wants(size) and w.due <= now]

    def _next_wake(self, size: int) -> float | None:
        dues = [w.due for w in self._witnesses if w.wants(size)]
        return None if not dues else max(0.0, min(dues) - self._clock())

    def _run(self) -> None:
        while True:
            with self._cond:
                target = self._wait_for_work()
                if target is None:
                    return
            try:
                self._round(*target)
            except Exception:  # a storage failure, a closed log: log it, back off, go on
                _log.exception("witness publication failed")
                for w in self._witnesses:
                    w.due = max(w.due, self._clock() + self._max_backoff)

    def _wait_for_work(self) -> tuple[int, str] | None:
        """Under the condition: the checkpoint to submit now, or None to stop."""
        while not self._stopping:
            latest, published = self._latest, self._published
            behind = latest is not None and (published is None or latest[0] > published.size)
            if latest is not None and behind and self._pending(latest[0]):
                return latest
            self._cond.wait(self._next_wake(latest[0]) if latest is not None and behind else None)
        return None

    def _round(self, size: int, note: str) -> None:
        pending = self._pending(size)
        list(self._pool.map(lambda w: self._ask(w, size, note), pending))
        lines = [w.lines[1] for w in self._witnesses if w.has(size) and w.lines is not None]
        if len(lines) >= self._minimum:
            self._publish(size, note + "".join(lines))

    def _publish(self, size: int, text: str) -> None:
        verify_cosignatures(text, self._verifiers, minimum=self._minimum)  # what is served checks
        write_private(self._path, text.encode("utf-8"))  # durable before it is served
        self._published = Published(size, text)

    # ---- one witness -----------------------------------------------------------------
    def _send(self, w: _Witness, old: int, size: int, note: str) -> str | WitnessRefusal:
        proof = self._log.consistency_proof(old, size) if 0 < old < size else []
        answer = self._submit(
            w.url, old, proof, note, witness=w.verifier, timeout=SUBMIT_TIMEOUT, client=w.http
        )
        w.outcomes[answer.code if isinstance(answer, WitnessRefusal) else "cosigned"] += 1
        return answer

    def _ask(self, w: _Witness, size: int, note: str) -> None:
        answer = self._send(w, w.cosigned, size, note)
        if isinstance(answer, WitnessRefusal) and answer.code == "old_size_mismatch":
            held = answer.size if answer.size is not None else 0
            stored = self._log.size if held <= self._log.size else self._log.stored_size()
            if held > stored:  # spec: INV-5 — it cosigned more of this log than there is
                self._alarm(w, size, f"it cosigned size `{held}`, the log holds `{stored}`")
                return
            w.cosigned = held
            if held > size:  # another writer of a shared log checkpointed more: send that next
                self._catch_up(held)
                return
            answer = self._send(w, held, size, note)  # once, from its size, with a fresh proof
            if isinstance(answer, WitnessRefusal) and answer.code == "old_size_mismatch":
                moved = answer.size if answer.size is not None else 0
                if held < moved <= self._log.stored_size():  # another writer of a shared log
                    w.cosigned = moved  # moved it on meanwhile: the next round sends from there
                    self._catch_up(moved)
                    return
        self._settle(w, size, answer)  # a mismatch that persists otherwise is an alarm

    def _catch_up(self, size: int) -> None:
        """A witness cosigned ``size`` of the shared log, beyond this replica's checkpoint.

        This replica may append nothing more for a long time, and its own checkpoints
        are all behind the witness now: it reads the shared tail (verified to extend its
        tree, INV-5) and takes the stored checkpoint, signed with the same key, as the
        next to submit, so its published checkpoint reaches the log's head without
        waiting for a decision of its own.
        """
        if self._log.size < size:
            self._log.refresh()
        note = self._log.checkpoint_note
        if note is not None:
            self.notify(Checkpoint.from_note(note).size, note)

    def _settle(self, w: _Witness, size: int, answer: str | WitnessRefusal) -> None:
        if not isinstance(answer, WitnessRefusal):
            w.cosigned, w.lines, w.failures, w.due = size, (size, answer), 0, 0.0
            return
        if answer.code in ALARM_CODES:  # spec: INV-5 — a fork or a rollback, seen from outside
            self._alarm(w, size, f"`{answer.code}`: {answer.detail}")
            return
        w.failures += 1
        w.due = self._clock() + min(self._max_backoff, FIRST_BACKOFF * 2 ** (w.failures - 1))
        _log.warning(
            "witness `%s` at `%s` did not cosign checkpoint `%d` (`%s`: %s); trying again later",
            w.name,
            w.url,
            size,
            answer.code,
            answer.detail,
        )

    def _alarm(self, w: _Witness, size: int, why: str) -> None:
        reason = f"witness `{w.name}` at `{w.url}` refused checkpoint `{size}` of this log: {why}"
        w.alarm = reason
        _log.error(reason)
        self._on_alarm(reason)


def published_checkpoint(
    log: TransparencyLog, publisher: WitnessPublisher | None
) -> Published | None:
    """The checkpoint SOP publishes: the latest witnessed one, or without witnesses its latest.

    Args:
        log: The log.
        publisher: The witness publisher, None when no witness is configured.

    Returns:
        The size and the note to serve, or None when there is none yet.
    """
    if publisher is not None:
        return publisher.published
    note = log.checkpoint_note  # one read: the size comes from this note's own body
    if note is None:
        return None
    return Published(Checkpoint.from_note(note).size, note)


def prove_published(
    log: TransparencyLog, publisher: WitnessPublisher | None, index: int
) -> ProofBundle:
    """The receipt of entry ``index`` against the checkpoint SOP publishes.

    Raises:
        NotWitnessedError: witnesses are configured and have not cosigned a
            checkpoint covering the entry yet.
        InputError: ``index`` is not in the log.
        StorageError: the database failed.
    """
    return log.prove(index) if publisher is None else publisher.prove(index)

"""Measuring helpers of ``bench_e2e.py``: stage probes and a py-spy sampling summary.

:class:`Probes` times the real decision path stage by stage: for the length
of a ``with`` block it replaces a few methods *on their classes* (capability
check, policy evaluation, proof-gate check, log append, the scope write, the
index reads, the kernel and controller entries) by wrappers that record
``perf_counter_ns`` around the original call, and puts the originals back on
exit. Nothing in ``sop_verified`` is edited; the probes cost well under a
microsecond each, and the throughput runs are made without them.

:func:`pyspy_profile` attaches ``py-spy`` (``pip install py-spy``) to this
very process while a workload runs, and sorts the samples of the submitter
threads into categories (canonical JSON, contracts, pydantic, signing, SQLite,
file writes, waiting for a group commit, ...).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Probes", "categorize", "pyspy_available", "pyspy_profile"]

Classify = Callable[[tuple[Any, ...]], str | None]


class Probes:
    """Per-stage timings (ns) collected from wrapped methods while active."""

    def __init__(self) -> None:
        """Start with no samples and nothing wrapped."""
        self.samples: defaultdict[str, list[int]] = defaultdict(list)
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, stage: str | Classify) -> None:
        """Time every call of ``owner.attr`` (a class or module attribute) under ``stage``.

        Args:
            owner: the class (or module) the attribute is looked up on at call time.
            attr: the attribute's name; it must be defined on ``owner`` itself.
            stage: the stage name, or a function of the call's arguments giving
                it (None: the call is not counted).
        """
        original = vars(owner)[attr]
        samples = self.samples
        clock = time.perf_counter_ns

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return original(*args, **kwargs)
            finally:
                name = stage if isinstance(stage, str) else stage(args)
                if name is not None:
                    samples[name].append(clock() - t0)

        timed.__doc__ = getattr(original, "__doc__", None)
        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        """Put every wrapped method back (last wrapped first)."""
        while self._undo:
            owner, attr, original = self._undo.pop()
            setattr(owner, attr, original)

    @contextmanager
    def active(self, targets: list[tuple[Any, str, str | Classify]]) -> Iterator[Probes]:
        """Wrap ``targets`` for the block, then restore them."""
        try:
            for cls, attr, stage in targets:
                self.wrap(cls, attr, stage)
            yield self
        finally:
            self.restore()


# ---- py-spy -------------------------------------------------------------------------------
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")

# (label, file or function fragment) tried from the innermost frame outwards: the first
# frame that matches names the sample's category.
_CPU_RULES: list[tuple[str, str]] = [
    ("canonical JSON (rfc8785, pure Python)", "rfc8785/"),
    ("contracts (icontract wrappers, inspect)", "icontract/"),
    ("contracts (icontract wrappers, inspect)", "inspect.py"),
    ("request/Decision models (pydantic)", "pydantic"),
    ("Ed25519 checkpoint signing", "note_keys.py"),
    ("Ed25519 checkpoint signing", "signed_note.py"),
    ("SQLite statements (sqlite3 calls)", "storage/sqlite"),
    ("4 KiB write: open/write/fsync/rename (blobs.py)", "storage/blobs.py"),
    ("Merkle tree: hashing, tiles, consistency proof", "tlog_tiles.py"),
    ("Merkle tree: hashing, tiles, consistency proof", "tools/merkle"),
    ("Merkle tree: hashing, tiles, consistency proof", "tile_proofs.py"),
    ("locks and wake-ups (threading.py)", "threading.py"),
    ("log append (tlog.py, group_commit.py)", "tools/tlog.py"),
    ("log append (tlog.py, group_commit.py)", "group_commit.py"),
]


def _parse_frame(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    return (match["func"], match["file"]) if match else (frame, "")


def categorize(frames: list[str]) -> str:
    """The category of one sampled stack (outermost frame first)."""
    func, file = _parse_frame(frames[-1])
    if file.endswith("threading.py") and func.startswith("Condition.wait"):
        if any("GroupCommit.submit" in f for f in frames):
            return "waiting for its group commit (a leader's batch)"
        if any("_ScopeLock" in f for f in frames):
            return "waiting for the scope lock"
    if func.endswith("_read_query"):
        return "persistence index read (reader lock wait + query)"
    for f in reversed(frames):
        fn, fl = _parse_frame(f)
        for label, fragment in _CPU_RULES:
            if fragment in fl or fragment in fn:
                return label
        if fl.startswith("sop_verified/"):
            parts = fl.split("/")
            return "SOP code: " + "/".join(parts[1:3] if len(parts) > 3 else parts[1:])
    return "other (interpreter, stdlib)"


def pyspy_available() -> bool:
    """Whether the ``py-spy`` command is on the PATH."""
    return shutil.which("py-spy") is not None


def pyspy_profile(
    workload: Callable[[], Any], *, thread_marker: str, gil: bool, rate: int = 200
) -> dict[str, Any]:
    """Sample this process with py-spy while ``workload`` runs; summarise the samples.

    Args:
        workload: the code to profile (runs in this process).
        thread_marker: only stacks containing this text count (the submitter loop).
        gil: sample only the thread holding the GIL (CPU attribution); otherwise
            every thread, idle ones included (where wall time goes).
        rate: samples per second.

    Returns:
        ``{"samples", "seconds", "sampled_seconds", "categories": [[label,
        share], ...], "top_frames": [[frame, share], ...]}`` (shares in percent;
        ``sampled_seconds`` is samples / rate: with ``gil`` the time the GIL
        was held by the submitter threads).

    Raises:
        RuntimeError: py-spy is missing or failed.
    """
    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory(prefix="sop-bench-pyspy-") as tmp:
        out = Path(tmp) / "samples.txt"
        args = [exe, "record", "--pid", str(os.getpid()), "--rate", str(rate)]
        args += ["--format", "raw", "--output", str(out), "--nonblocking"]
        args += ["--gil"] if gil else ["--idle"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.5)  # let py-spy attach before the workload starts
        t0 = time.perf_counter()
        try:
            workload()
        finally:
            seconds = time.perf_counter() - t0
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no samples: {err.decode(errors='replace')[-500:]}")
        return _summarise(out.read_text(), thread_marker, seconds, rate)


def _summarise(raw: str, marker: str, seconds: float, rate: int) -> dict[str, Any]:
    cats: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or marker not in stack:
            continue
        frames, n = stack.split(";"), int(count)
        total += n
        cats[categorize(frames)] += n
        leaves[frames[-1]] += n
    share = 100.0 / total if total else 0.0
    return {
        "samples": total,
        "seconds": round(seconds, 2),
        "sampled_seconds": round(total / rate, 2),
        "categories": [[k, round(v * share, 1)] for k, v in cats.most_common()],
        "top_frames": [[k, round(v * share, 1)] for k, v in leaves.most_common(12)],
    }

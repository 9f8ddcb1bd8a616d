"""SOP killed (`kill -9`) while its NATS sink publishes, then restarted: still exactly once.

A child process boots SOP with ``[events.nats]`` and decides without pause;
the test kills it at a moment when the sink is behind the log (events in
flight or waiting), restarts it, and at the end lets a last run drain the lag.
The stream is then read back through JetStream: every log index once, in
order, each checkpoint right after the last entry it covers, and nothing else.
The slow variant also kills the broker (SIGKILL, its store kept) between SOP's
deaths.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nats_broker import Broker, stream_report
from nats_sop import checkpoint_sizes, nats_data_dir

CHILD = Path(__file__).with_name("nats_child.py")
ORIGIN = "sop.local/log"  # DEFAULT_CONFIG's


def _spawn(data: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(CHILD.parent), *sys.path]))
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(data), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _kill_mid_publish(
    data: Path, rng: random.Random, most: float, *, crash: bool = False
) -> tuple[int, int]:
    """Run the child until its sink has published 50 events in this run and is behind, a
    little more, then SIGKILL it; ``(size, acked)``. ``crash``: the sink's process is
    killed with it (a machine that dies), else it must stop on its own."""
    child = _spawn(data, "run")
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    behind = None
    sink_pid = 0
    first_acked: int | None = None
    wait_until: float | None = None
    try:
        for line in child.stdout:
            assert time.monotonic() < deadline, "the child made no progress"
            if not line.startswith("progress "):
                continue
            size, acked, sink_pid = (int(x) for x in line.split()[1:])
            first_acked = acked if first_acked is None else first_acked  # the cursor at start
            if wait_until is None and acked > first_acked + 50:  # publishing: die soon
                wait_until = time.monotonic() + rng.uniform(0.0, most)
            if wait_until is not None and time.monotonic() >= wait_until and size > acked:
                behind = (size, acked)
                break
    finally:
        child.send_signal(signal.SIGKILL)
        if crash and sink_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(sink_pid, signal.SIGKILL)
        try:  # the sink's process shares SOP's standard error: it ends with SOP, or this fails
            output = child.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            output = "the output pipe stayed open 30 s after SOP died"
    assert behind is not None, f"the child never fell behind: {output[-2000:]}"
    assert sink_pid, "the sink runs in a process of its own"
    gone_by = time.monotonic() + 20  # SOP's death ends its pipe: the sink's process stops
    while not _gone(sink_pid):
        assert time.monotonic() < gone_by, "the sink's process outlived SOP's"
        time.sleep(0.05)
    return behind


def _gone(pid: int) -> bool:
    """The process has exited (it may wait as a zombie for a parent that is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def _drain(data: Path) -> int:
    child = _spawn(data, "drain", "100")
    output = child.communicate(timeout=120)[0]
    assert child.returncode == 0, output[-3000:]
    done = [line for line in output.splitlines() if line.startswith("done ")][-1]
    size, acked, lag, events = (int(x) for x in done.split()[1:])
    assert (acked, lag) == (events, 0), done  # every event: the entries' and checkpoints'
    return size


def kill_and_restart(
    tmp_path: Path, *, kills: int, broker_kills: int, seed: int, most: float = 0.5
) -> tuple[int, list[int]]:
    """The whole scenario: ``(events checked in the stream, events unacknowledged at each kill)``.

    Each SOP run dies between 0 and ``most`` seconds after its sink has published 50 events.
    """
    rng = random.Random(seed)
    broker = Broker(tmp_path / "nats").start()
    try:
        data = nats_data_dir(tmp_path / "d", broker.url, max_backoff_seconds=1)
        broken = set(rng.sample(range(kills), broker_kills))
        behind = []
        for k in range(kills):
            size, acked = _kill_mid_publish(data, rng, most, crash=k % 2 == 1)
            assert size > acked  # it died with events not yet acknowledged
            behind.append(size - acked)
            if k in broken:  # the broker dies too; its store is kept
                assert broker.process is not None
                broker.process.send_signal(signal.SIGKILL)
                broker.process.wait()
                broker.start()
        size = _drain(data)
        checkpoints = [s for s in checkpoint_sizes(data) if s <= size]
        stream_report(broker.url).check_exactly_once(ORIGIN, size, checkpoints)
        return size + len(checkpoints), behind
    finally:
        broker.stop()


@pytest.mark.slow  # SOP and its sink's process killed once: 5 s; the next test kills 8 times
def test_sop_killed_mid_publish_and_restarted_keeps_exactly_once(tmp_path: Path) -> None:
    checked, _ = kill_and_restart(tmp_path, kills=1, broker_kills=0, seed=1)
    assert checked > 150


@pytest.mark.slow
def test_sop_killed_mid_publish_many_times_with_broker_kills_keeps_exactly_once(
    tmp_path: Path,
) -> None:
    checked, behind = kill_and_restart(tmp_path, kills=8, broker_kills=3, seed=16, most=1.5)
    print(
        f"exactly once over {checked} events after 8 SOP kills (unacknowledged at each: {behind})"
        " and 3 broker kills"
    )

"""The crash tests' checks of a data directory's log, shared by :mod:`serve_crash` and
:mod:`replicas_crash`: ``sop log verify``, ``sop state check``, and each idempotency key's
decision entry against what its client was told.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from crash_clients import Ack
from crash_effects import LogRows

__all__ = ["Checked", "check_keys", "log_verify", "state_check"]


class Checked(Protocol):
    """What these checks count, and where they put what they find."""

    rounds: int
    entries: int
    log_verifies: int
    state_checks: int
    failures: list[str]


def log_verify(data_dir: Path, vkey: str, acks: Sequence[Ack], report: Checked) -> None:
    """``sop log verify`` under the first key, against the largest checkpoint a client holds."""
    cmd = [sys.executable, "-m", "sop_verified.cli", "log", "verify"]
    cmd += ["--data-dir", str(data_dir), "--vkey", vkey, "--json"]
    if acks:
        kept = max(acks, key=lambda a: a.tree_size)
        path = data_dir.parent / f"kept-checkpoint-{kept.tree_size}"
        path.write_text(kept.checkpoint)
        cmd += ["--checkpoint", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    report.log_verifies += 1
    if done.returncode != 0:
        report.failures.append(
            f"`sop log verify` exited `{done.returncode}` after round {report.rounds}:"
            f" {done.stdout[-600:]} {done.stderr[-600:]}"
        )


def state_check(data_dir: Path, vkey: str, report: Checked) -> None:
    """``sop state check``: every derived row (the persistence index too) projects the log."""
    cmd = [sys.executable, "-m", "sop_verified.cli", "state", "check"]
    cmd += ["--data-dir", str(data_dir), "--vkey", vkey, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    report.state_checks += 1
    if done.returncode != 0:
        report.failures.append(
            f"`sop state check` exited `{done.returncode}` after round {report.rounds}:"
            f" {done.stdout[-600:]} {done.stderr[-600:]}"
        )


def check_keys(
    rows: LogRows,
    acks: Sequence[Ack],
    report: Checked,
    *,
    final: bool,
    refused: Sequence[tuple[str, int, int]] = (),
) -> None:
    """Each key: at most one decision entry, at the index its client was acknowledged with.

    A refused write's key has its ALLOW at the decision index it was told, and the
    refusal it was told is that decision's aborted or refused ``persist.effect``.
    """
    by_key: dict[str, list[int]] = {}
    for index, entry in rows.entries.items():
        key = (entry.get("transport") or {}).get("idempotency_key")
        if entry.get("type") == "decision" and key is not None:
            by_key.setdefault(key, []).append(index)
    report.entries = sum(len(v) for v in by_key.values())
    for key, indexes in by_key.items():
        if len(indexes) > 1:
            report.failures.append(
                f"after round {report.rounds}: idempotency key `{key}` has {len(indexes)} entries:"
                f" {indexes}"
            )
    for ack in acks:
        if by_key.get(ack.key, [])[:1] != [ack.log_index]:
            report.failures.append(
                f"key `{ack.key}` was acknowledged at `{ack.log_index}`;"
                f" the log has it at `{by_key.get(ack.key)}`"
            )
    for key, decision, refusal in refused:
        effect = rows.entries.get(refusal) or {}
        said = (effect.get("type"), effect.get("decision_index"), effect.get("outcome"))
        if (
            by_key.get(key, [])[:1] != [decision]
            or said[:2] != ("persist.effect", decision)
            or (said[2] not in ("aborted", "refused"))
        ):
            report.failures.append(
                f"key `{key}` was told its write of ALLOW `{decision}` was refused at"
                f" `{refusal}`; the log has the key at `{by_key.get(key)}` and {said} there"
            )
    unanswered = by_key.keys() - {a.key for a in acks} - {key for key, _, _ in refused}
    if final and unanswered:  # before: a request in flight at the kill, retried after the restart
        report.failures.append(f"logged keys no client was answered for: {sorted(unanswered)[:5]}")

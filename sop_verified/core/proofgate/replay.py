"""Replay: re-check recorded verdicts and report disagreements (``sop proofs replay``).

A replay never writes: the store keeps every record as it was (INV-3). A
re-check that lands on another verdict (the other definitive answer, or a
refusal by today's filter), or a record that does not belong to its digest,
is a disagreement and raises the integrity alarm; a re-check that ends
UNKNOWN (rlimit, timeout, crash, memory) is only inconclusive. A record that
carries a cross-check is re-checked by both solvers. The sample is chosen by
key, so the same percentage picks the same records every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never

from sop_verified.core.contracts import ensure, require
from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate.gate import Z3ProofGate
from sop_verified.core.proofgate.store import VerdictRecord
from sop_verified.errors import IntegrityError, SOPError

__all__ = ["Disagreement", "ReplayReport", "in_sample", "replay"]


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A record that a re-check contradicts (or that is not about its digest)."""

    digest: str
    recorded: str
    rechecked: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay found."""

    total: int
    checked: int
    agreed: int
    disagreements: tuple[Disagreement, ...] = ()
    inconclusive: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when no record was contradicted."""
        return not self.disagreements


@require(lambda sample_pct: 0.0 <= sample_pct <= 100.0)
def in_sample(digest: str, sample_pct: float) -> bool:
    """Whether ``digest`` falls in a ``sample_pct`` percent sample (deterministic)."""
    hexpart = digest.removeprefix("sha256:")[:8]
    try:
        bucket = int(hexpart, 16) / 0x1_0000_0000 * 100.0
    except ValueError:
        return True
    return bucket < sample_pct


def _contradicts(verdict: Verdict) -> bool:
    """Only a definitive answer (or a refusal) can contradict a record; UNKNOWN is inconclusive."""
    match verdict:
        case Verdict.PROVED | Verdict.REFUTED | Verdict.REJECTED:
            return True
        case Verdict.UNKNOWN:
            return False
        case _:
            assert_never(verdict)


@require(lambda sample_pct: 0.0 <= sample_pct <= 100.0)
@ensure(
    lambda result: (
        result.checked == result.agreed + len(result.disagreements) + len(result.inconclusive)
    )
)
def replay(gate: Z3ProofGate, sample_pct: float = 100.0) -> ReplayReport:
    """Re-check a deterministic sample of the recorded verdicts.

    Args:
        gate: the gate whose store and solver configuration to use.
        sample_pct: the percentage of records to re-check (0-100).

    Returns:
        The report; every disagreement has also raised the gate's integrity alarm.
    """
    digests = gate.store.digests()
    sample = [d for d in digests if in_sample(d, sample_pct)]
    agreed = 0
    disagreements: list[Disagreement] = []
    inconclusive: list[str] = []
    for digest in sample:
        found = _replay_one(gate, digest)
        if found is None:
            agreed += 1
        elif isinstance(found, Disagreement):
            disagreements.append(found)
            gate.raise_alarm(f"replay: {found.reason}")
        else:
            inconclusive.append(found)
    return ReplayReport(
        len(digests), len(sample), agreed, tuple(disagreements), tuple(inconclusive)
    )


def _replay_one(gate: Z3ProofGate, digest: str) -> Disagreement | str | None:
    try:
        raw = gate.store.get(digest)
    except SOPError as exc:  # an altered or unreadable record is a finding, not a crash
        return Disagreement(digest, "record", "unreadable", str(exc))
    if raw is None:
        return Disagreement(digest, "record", "missing", f"the record under `{digest}` disappeared")
    try:
        record = VerdictRecord.from_bytes(raw, digest=digest)
    except IntegrityError as exc:
        return Disagreement(digest, "record", "unreadable", str(exc))
    now = gate.recheck(record.format, record.source, cross_check=record.cross_check is not None)
    if now.verdict is record.verdict:
        return None
    if not _contradicts(now.verdict):
        return f"{digest}: {now.reason}"
    reason = (
        f"recorded {record.verdict} for `{digest}`, the re-check gave {now.verdict} ({now.reason})"
    )
    return Disagreement(digest, str(record.verdict), str(now.verdict), reason)

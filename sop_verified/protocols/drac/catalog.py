"""DRAC's artifact catalog and its provenance: what each session produced, from what.

An :class:`ArtifactRecord` (name, digest, session, phase, input digests, and
the log indexes of the decision, the write and the attestation) is added by
a ``drac.artifact`` log record, appended only after the artifact's bytes are
stored and a SLSA provenance attestation linking its inputs to it is logged.
:class:`DracState` is DRAC's whole state (the phase machine and the catalog),
rebuilt from the log at boot by applying the same records in the same order.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.request import CONTENT_DIGEST_PATTERN
from sop_verified.errors import IntegrityError, ProtocolError
from sop_verified.protocols.drac.phases import PhaseMachine
from sop_verified.tools.tlog_store import Receipt

__all__ = [
    "BUILDER_ID",
    "BUILD_TYPE",
    "MAX_INPUTS",
    "ArtifactRecord",
    "DracState",
    "check_inputs",
    "provenance",
]

BUILDER_ID = "https://sop.local/drac"
BUILD_TYPE = "https://sop.local/drac/phase-artifact/v1"
MAX_INPUTS = 64
_DIGEST_RE = re.compile(CONTENT_DIGEST_PATTERN)


@require(lambda inputs: not isinstance(inputs, str), "a sequence of digests, not one string")
@ensure(lambda result: len(result) == len(set(result)) <= MAX_INPUTS)
def check_inputs(inputs: Sequence[str]) -> tuple[str, ...]:
    """Validate an artifact's input digests (``sha256:<64 hex>``, distinct, at most 64).

    Raises:
        ProtocolError: ``bad_inputs``.
    """
    accepted = f"at most {MAX_INPUTS} distinct `sha256:<64 lowercase hex>` digests"
    if len(inputs) > MAX_INPUTS or len(set(inputs)) != len(inputs):
        raise ProtocolError(f"{len(inputs)} inputs given", code="bad_inputs", accepted=accepted)
    for i, d in enumerate(inputs):
        if not isinstance(d, str) or _DIGEST_RE.fullmatch(d) is None:
            raise ProtocolError(
                f"input `{str(d)[:80]}` is not a digest",
                code="bad_inputs",
                where=f"inputs[{i}]",
                accepted=accepted,
            )
    return tuple(inputs)


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """One catalogued artifact."""

    name: str
    digest: str
    session: str
    phase: str
    inputs: tuple[str, ...]
    size: int
    resource: str
    log_index: int
    decision_index: int
    effect_index: int
    attestation_index: int
    time: int

    @ensure(lambda self, result: result["digest"] == self.digest)
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "digest": self.digest,
            "session": self.session,
            "phase": self.phase,
            "inputs": list(self.inputs),
            "size": self.size,
            "resource": self.resource,
            "log_index": self.log_index,
            "decision_index": self.decision_index,
            "effect_index": self.effect_index,
            "attestation_index": self.attestation_index,
            "time": self.time,
        }

    @ensure(lambda self, result: result["artifact"]["digest"] == self.digest)
    def json_fields(self) -> dict[str, Any]:
        """What this record adds to its ALLOW's JSON form: ``artifact``."""
        return {"artifact": self.to_dict()}


def _rfc3339(t: int) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@require(lambda inputs: all(_DIGEST_RE.fullmatch(d) for d in inputs))
@ensure(lambda result: result["runDetails"]["builder"]["id"] == BUILDER_ID)
def provenance(
    *,
    session: str,
    phase: str,
    name: str,
    inputs: Sequence[str],
    known: Mapping[str, str],
    request_id: str,
    decision_index: int,
    time: int,
) -> dict[str, Any]:
    """The SLSA provenance v1 predicate linking an artifact to its inputs.

    Args:
        session: the DRAC session.
        phase: the phase that produced it.
        name: the artifact's name.
        inputs: the input digests (``sha256:<hex>``).
        known: names of inputs that are catalogued artifacts, by digest.
        request_id: the request that catalogued it.
        decision_index: the log index of the ALLOW decision.
        time: the clock reading.

    Returns:
        The predicate (``buildDefinition`` and ``runDetails``).
    """
    deps = []
    for d in inputs:
        dep: dict[str, Any] = {"digest": {"sha256": d.removeprefix("sha256:")}}
        if d in known:
            dep["name"] = known[d]
        deps.append(dep)
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"session": session, "phase": phase, "name": name},
            "internalParameters": {"decision_index": decision_index},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID},
            "metadata": {"invocationId": request_id, "finishedOn": _rfc3339(time)},
        },
    }


def _record(index: int, entry: Mapping[str, Any]) -> ArtifactRecord:
    try:
        record = ArtifactRecord(
            name=str(entry["name"]),
            digest=str(entry["digest"]),
            session=str(entry["session"]),
            phase=str(entry["phase"]),
            inputs=tuple(str(d) for d in entry["inputs"]),
            size=int(entry["size"]),
            resource=str(entry["resource"]),
            log_index=index,
            decision_index=int(entry["decision_index"]),
            effect_index=int(entry["effect_index"]),
            attestation_index=int(entry["attestation_index"]),
            time=int(entry["time"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"a `drac.artifact` record is malformed: {exc}") from None
    if _DIGEST_RE.fullmatch(record.digest) is None:
        raise IntegrityError(f"a `drac.artifact` record has digest `{record.digest[:80]}`")
    return record


@invariant(lambda self: len(self._artifacts) >= len(self._by_digest))
class DracState:
    """DRAC's state: the sessions' phase machine and the artifact catalog."""

    def __init__(self, phases: Sequence[str]) -> None:
        """Empty state for the configured phase order.

        Raises:
            ConfigError: the phase order is malformed.
        """
        self.machine = PhaseMachine(phases)
        self._artifacts: list[ArtifactRecord] = []
        self._by_digest: dict[str, list[ArtifactRecord]] = {}

    @require(lambda entry: entry.get("type") in ("drac.phase", "drac.artifact"))
    def check(self, entry: Mapping[str, Any]) -> None:
        """Raise IntegrityError unless the record fits the state now."""
        if entry["type"] == "drac.phase":
            self.machine.check(entry)
            return
        record = _record(0, entry)
        try:
            self.machine.check_open(record.session, record.phase)
        except ProtocolError as exc:
            raise IntegrityError(f"a `drac.artifact` record does not fit: {exc}") from None

    @require(lambda index: index >= 0)
    def apply(self, index: int, entry: Mapping[str, Any], payload: bytes, receipt: Receipt) -> None:
        """Apply one logged ``drac.*`` record (checked again first)."""
        self.check(entry)
        if entry["type"] == "drac.phase":
            self.machine.apply(entry)
            return
        record = _record(index, entry)
        self._artifacts.append(record)
        self._by_digest.setdefault(record.digest, []).append(record)

    @ensure(
        lambda session, phase, digest, result: all(
            (session is None or r.session == session)
            and (phase is None or r.phase == phase)
            and (digest is None or r.digest == digest)
            for r in result
        ),
        "every artifact matches every filter",
    )
    def query(
        self, *, session: str | None = None, phase: str | None = None, digest: str | None = None
    ) -> list[ArtifactRecord]:
        """Catalogued artifacts matching every given filter, in log order."""
        rows = self._by_digest.get(digest, []) if digest is not None else self._artifacts
        return [
            r
            for r in rows
            if (session is None or r.session == session) and (phase is None or r.phase == phase)
        ]

    @ensure(lambda digests, result: set(result) <= set(digests))
    def names(self, digests: Sequence[str]) -> dict[str, str]:
        """The catalogued name (``session/phase/name``) of each digest that is in the catalog."""
        out = {}
        for d in digests:
            rows = self._by_digest.get(d)
            if rows:
                r = rows[0]
                out[d] = f"{r.session}/{r.phase}/{r.name}"
        return out

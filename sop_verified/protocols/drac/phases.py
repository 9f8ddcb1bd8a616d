"""DRAC's per-session phase machine (default SCAN, RESOLVE, ASSEMBLE, VERIFY, FREEZE).

A session moves along one line of states: ``NEW`` (unknown), then for each
phase ``P`` the state ``P`` (entered, open) and ``P.done`` (completed). Every
operation is exactly one step forward on that line:

- ``enter P``: from the previous phase's ``.done`` (or ``NEW`` for the first
  phase, which opens the session) to ``P``;
- ``complete P``: from ``P`` to ``P.done``.

So a phase is entered only after the previous one completed, and that
completion is a logged record (``drac.phase``). The kernel derives the same
rule as a :func:`~sop_verified.core.proofgate.derive.phase_order` obligation
over the state line, proved by the gate before any ALLOW; the controller
checks it again in plain code before it logs the step.

Resources: ``artifacts/drac/sessions/<session>/phases/<PHASE>/<enter|complete>``
for steps, ``artifacts/drac/sessions/<session>/<PHASE>/<name>`` for artifacts.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.proofgate.derive import phase_order
from sop_verified.core.request import Obligation
from sop_verified.errors import ConfigError, IntegrityError, ProtocolError

__all__ = [
    "DEFAULT_PHASES",
    "PHASE_PATTERN",
    "SESSIONS_ROOT",
    "SESSION_PATTERN",
    "PhaseEvent",
    "PhaseMachine",
    "Step",
    "artifact_resource",
    "check_phases",
    "parse_artifact",
    "parse_step",
    "step_resource",
]

DEFAULT_PHASES: tuple[str, ...] = ("SCAN", "RESOLVE", "ASSEMBLE", "VERIFY", "FREEZE")
PHASE_PATTERN = r"[A-Z][A-Z0-9_]{0,31}"
SESSION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
SESSIONS_ROOT = "artifacts/drac/sessions"
MAX_PHASES = 16
_NEW = "NEW"
_DONE = ".done"
_STEP_RE = re.compile(
    rf"{SESSIONS_ROOT}/({SESSION_PATTERN})/phases/({PHASE_PATTERN})/(enter|complete)"
)
_ARTIFACT_RE = re.compile(rf"{SESSIONS_ROOT}/({SESSION_PATTERN})/({PHASE_PATTERN})/(.+)")


class PhaseEvent(enum.StrEnum):
    """The two steps of a phase."""

    ENTER = "enter"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Step:
    """One requested step: ``event`` of ``phase`` in ``session``."""

    session: str
    phase: str
    event: PhaseEvent


@ensure(lambda result: 1 <= len(result) <= MAX_PHASES)
def check_phases(phases: Sequence[str]) -> tuple[str, ...]:
    """Validate a configured phase order.

    Raises:
        ConfigError: empty, too long, a malformed name, or a name twice.
    """
    names = tuple(phases)
    accepted = f"1 to {MAX_PHASES} distinct names matching `{PHASE_PATTERN}`"
    if not 1 <= len(names) <= MAX_PHASES or len(set(names)) != len(names):
        raise ConfigError(f"phase order `{list(names)}` is not accepted", accepted=accepted)
    bad = [p for p in names if not isinstance(p, str) or not re.fullmatch(PHASE_PATTERN, p)]
    if bad:
        raise ConfigError(f"phase name `{bad[0]!s}` is malformed", accepted=accepted)
    return names


@ensure(lambda resource, result: result is None or resource.startswith(SESSIONS_ROOT))
def parse_step(resource: str) -> Step | None:
    """The step a ``phase.advance`` resource names, or None when it names none."""
    m = _STEP_RE.fullmatch(resource)
    return None if m is None else Step(m.group(1), m.group(2), PhaseEvent(m.group(3)))


@ensure(lambda step, result: parse_step(result) == step)
def step_resource(step: Step) -> str:
    """The ``phase.advance`` resource of ``step``."""
    return f"{SESSIONS_ROOT}/{step.session}/phases/{step.phase}/{step.event}"


@ensure(lambda result: result is None or len(result) == 3)
def parse_artifact(resource: str) -> tuple[str, str, str] | None:
    """``(session, phase, name)`` of a catalogued artifact's resource, or None."""
    if parse_step(resource) is not None:
        return None
    m = _ARTIFACT_RE.fullmatch(resource)
    return None if m is None else (m.group(1), m.group(2), m.group(3))


@require(lambda session: re.fullmatch(SESSION_PATTERN, session) is not None)
@require(lambda phase: re.fullmatch(PHASE_PATTERN, phase) is not None)
@ensure(lambda session, phase, result: parse_artifact(result) is not None)
def artifact_resource(session: str, phase: str, name: str) -> str:
    """The resource an artifact ``name`` of ``session`` made in ``phase`` is stored under."""
    return f"{SESSIONS_ROOT}/{session}/{phase}/{name}"


def _line(phases: tuple[str, ...]) -> tuple[str, ...]:
    out = [_NEW]
    for p in phases:
        out += [p, p + _DONE]
    return tuple(out)


@invariant(lambda self: all(0 < v < len(self._line) for v in self._position.values()))
class PhaseMachine:
    """Where each session stands on the line of phase states."""

    def __init__(self, phases: Sequence[str]) -> None:
        """Start with no session.

        Raises:
            ConfigError: the phase order is malformed.
        """
        self._phases = check_phases(phases)
        self._line = _line(self._phases)
        self._index = {name: i for i, name in enumerate(self._line)}
        self._position: dict[str, int] = {}

    @property
    def phases(self) -> tuple[str, ...]:
        """The configured phase order."""
        return self._phases

    @ensure(lambda result: result is None or result[1] in ("open", "completed"))
    def status(self, session: str) -> tuple[str, str] | None:
        """``(phase, "open" | "completed")`` of a known session, or None."""
        pos = self._position.get(session)
        if pos is None:
            return None
        name = self._line[pos]
        return (name.removesuffix(_DONE), "completed" if name.endswith(_DONE) else "open")

    @ensure(lambda result: result == sorted(result))
    def sessions(self) -> list[str]:
        """Every known session, sorted."""
        return sorted(self._position)

    @ensure(lambda result: result.id.startswith("phase:"))
    def step_obligation(self, step: Step) -> Obligation:
        """The gate's obligation for ``step``: its target state directly follows the current one."""
        return phase_order(self._line, self._current(step.session), self._target(step))

    @ensure(lambda result: result.id.startswith("phase:"))
    def open_obligation(self, session: str, phase: str) -> Obligation:
        """The gate's obligation "``session`` is in ``phase``, not completed" (catalog writes)."""
        k = self._index.get(phase, -1) if phase in self._phases else -1
        before = self._line[k - 1] if k > 0 else ""
        return phase_order(self._line, before, self._current(session))

    @ensure(
        lambda self, step: (
            self._index.get(self._target(step), -1) == self._position.get(step.session, 0) + 1
        ),
        "exactly one step forward on the line",
    )
    def check_step(self, step: Step) -> None:
        """Raise unless ``step`` is the next one of its session.

        Raises:
            ProtocolError: ``unknown_phase``, ``unknown_session``, ``session_exists`` or
                ``out_of_order`` (the message says where the session stands).
        """
        target = self._index.get(self._target(step), -1)
        current = self._position.get(step.session, 0)
        if target != current + 1:  # DRAC rule: exactly one step forward on the line
            raise _step_error(self, step, current)

    @ensure(lambda self, session, phase: self.status(session) == (phase, "open"), "open")
    def check_open(self, session: str, phase: str) -> None:
        """Raise unless ``session`` is in ``phase`` and has not completed it.

        Raises:
            ProtocolError: ``unknown_phase``, ``unknown_session`` or ``phase_not_open``.
        """
        if phase not in self._phases:
            raise _unknown_phase(self, phase)
        pos = self._position.get(session)
        if pos is None:
            raise ProtocolError(f"no DRAC session `{session}`", code="unknown_session")
        if self._line[pos] != phase:
            raise ProtocolError(
                f"session `{session}` is at `{self._line[pos]}`, not in open phase `{phase}`",
                code="phase_not_open",
                accepted=f"artifacts of the open phase `{self._line[pos]}` only",
            )

    @require(lambda entry: entry.get("type") == "drac.phase")
    def check(self, entry: Mapping[str, Any]) -> None:
        """Raise IntegrityError unless a ``drac.phase`` record is the session's next step."""
        try:
            self.check_step(_step_of(entry))
        except ProtocolError as exc:
            raise IntegrityError(f"a `drac.phase` record is out of order: {exc}") from None

    @require(lambda entry: entry.get("type") == "drac.phase")
    @ensure(lambda self, entry: self.status(str(entry["session"])) is not None)
    def apply(self, entry: Mapping[str, Any]) -> None:
        """Move the session one step (the record is logged; it was checked first)."""
        self.check(entry)
        step = _step_of(entry)
        self._position[step.session] = self._index[self._target(step)]

    def _current(self, session: str) -> str:
        return self._line[self._position.get(session, 0)]

    def _target(self, step: Step) -> str:
        if step.phase not in self._phases:
            return ""
        return step.phase if step.event is PhaseEvent.ENTER else step.phase + _DONE


def _step_of(entry: Mapping[str, Any]) -> Step:
    try:
        return Step(str(entry["session"]), str(entry["phase"]), PhaseEvent(entry["event"]))
    except (KeyError, ValueError) as exc:
        raise IntegrityError(f"a `drac.phase` record is malformed: {exc}") from None


def _unknown_phase(m: PhaseMachine, phase: str) -> ProtocolError:
    return ProtocolError(
        f"unknown phase `{phase}`",
        code="unknown_phase",
        accepted=", ".join(f"`{p}`" for p in m.phases),
    )


def _step_error(m: PhaseMachine, step: Step, current: int) -> ProtocolError:
    if step.phase not in m.phases:
        return _unknown_phase(m, step.phase)
    first = step.phase == m.phases[0] and step.event is PhaseEvent.ENTER
    if current == 0 and not first:
        return ProtocolError(
            f"no DRAC session `{step.session}`",
            code="unknown_session",
            accepted=f"open it first by entering `{m.phases[0]}`",
        )
    if current != 0 and first:
        return ProtocolError(f"session `{step.session}` already exists", code="session_exists")
    line = _line(m.phases)
    at = line[current]
    want = line[current + 1] if current + 1 < len(line) else None
    nxt = (
        "none: the session is finished"
        if want is None
        else f"`{'complete' if want.endswith(_DONE) else 'enter'} {want.removesuffix(_DONE)}`"
    )
    return ProtocolError(
        f"`{step.event} {step.phase}` is out of order: session `{step.session}` is at `{at}`",
        code="out_of_order",
        accepted=nxt,
    )

"""The protocol facades' methods as HTTP calls: one strict JSON body and one answer each.

Each :class:`Call` names a facade method of ``sop.drac``, ``sop.emp`` or
``sop.csp``, the body that mirrors its parameters (pydantic, strict, unknown
keys refused; bytes as standard base64 strings), how to invoke it with the
transport of the HTTP request, and how its answer becomes JSON. The answer
of a method that returns a :class:`~sop_verified.core.request.Decision` is
``Decision.to_dict()``; the others wrap it (``{"decision": ..., ...}``).
:mod:`sop_verified.client_protocols` is the other end.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from sop_verified.core.request import Decision
from sop_verified.core.transport import Transport
from sop_verified.nexus.sop import SOP
from sop_verified.protocols.emp.outputs import VerificationOutput

__all__ = ["CALLS", "Call"]


def _b64(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # strict bytes validation refuses it with its type
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("`data` is not standard base64") from None


B64 = Annotated[
    bytes,
    BeforeValidator(_b64),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
_Name = Annotated[str, Field(max_length=1024)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    token: str = Field(max_length=8192)
    request_id: str | None = Field(default=None, max_length=128)


class OpenSession(_Body):
    """``sop.drac.open_session``."""

    session: _Name


class PhaseStep(_Body):
    """``sop.drac.enter`` and ``sop.drac.complete``."""

    session: _Name
    phase: _Name


class Catalog(_Body):
    """``sop.drac.catalog``."""

    session: _Name
    phase: _Name
    name: _Name
    data: B64
    inputs: list[_Name] = Field(default_factory=list, max_length=1024)


class Artifacts(_Body):
    """``sop.drac.artifacts``."""

    session: _Name | None = None
    phase: _Name | None = None
    digest: _Name | None = None


class RecordOutput(_Body):
    """``sop.emp.record_output`` (the signed output as JSON)."""

    output: dict[str, Any]


class SubmitObligation(_Body):
    """``sop.emp.submit_obligation``."""

    obligation: dict[str, Any]


class PersistState(_Body):
    """``sop.csp.persist_state``."""

    key: _Name
    data: B64
    state_class: _Name
    session: _Name | None = None


class PutBlob(_Body):
    """``sop.csp.put_blob``."""

    data: B64
    state_class: _Name


class Seal(_Body):
    """``sop.csp.seal``."""

    session: _Name
    entries: dict[_Name, _Name] = Field(max_length=4096)
    parent: _Name | None
    state_class: _Name = "working"


class Resume(_Body):
    """``sop.csp.resume``."""

    session: _Name
    snapshot: _Name
    state_class: _Name = "working"


Invoke = Callable[[SOP, Any, Transport], tuple[dict[str, Any], Decision]]
"""Calls the facade with a parsed body and the transport: the JSON answer and its decision."""


@dataclass(frozen=True)
class Call:
    """One facade method served over HTTP.

    Attributes:
        protocol: ``drac``, ``emp`` or ``csp`` (the facade's principal).
        method: the facade method's name.
        body: the strict model of its JSON body.
        invoke: calls it.
        changes_state: whether it honours ``Idempotency-Key`` (reads do not need it).
        summary: one line for the OpenAPI document.
    """

    protocol: str
    method: str
    body: type[_Body]
    invoke: Invoke
    changes_state: bool
    summary: str

    @property
    def path(self) -> str:
        """``/v1/<protocol>/<method with hyphens>``."""
        return f"/v1/{self.protocol}/{self.method.replace('_', '-')}"


def _decision(d: Decision) -> tuple[dict[str, Any], Decision]:
    return d.to_dict(), d


def _ids(b: _Body, t: Transport) -> dict[str, Any]:
    return {"token": b.token, "request_id": b.request_id, "transport": t}


def _open(sop: SOP, b: OpenSession, t: Transport) -> tuple[dict[str, Any], Decision]:
    return _decision(sop.drac.open_session(b.session, **_ids(b, t)))


def _enter(sop: SOP, b: PhaseStep, t: Transport) -> tuple[dict[str, Any], Decision]:
    return _decision(sop.drac.enter(b.session, b.phase, **_ids(b, t)))


def _complete(sop: SOP, b: PhaseStep, t: Transport) -> tuple[dict[str, Any], Decision]:
    return _decision(sop.drac.complete(b.session, b.phase, **_ids(b, t)))


def _catalog(sop: SOP, b: Catalog, t: Transport) -> tuple[dict[str, Any], Decision]:
    d = sop.drac.catalog(b.session, b.phase, b.name, b.data, inputs=b.inputs, **_ids(b, t))
    return _decision(d)


def _artifacts(sop: SOP, b: Artifacts, t: Transport) -> tuple[dict[str, Any], Decision]:
    q = sop.drac.artifacts(session=b.session, phase=b.phase, digest=b.digest, **_ids(b, t))
    found = [a.to_dict() for a in q.artifacts]
    return {"decision": q.decision.to_dict(), "artifacts": found}, q.decision


def _record_output(sop: SOP, b: RecordOutput, t: Transport) -> tuple[dict[str, Any], Decision]:
    output = VerificationOutput.parse(b.output)  # ProtocolError: answered 400, nothing decided
    return _decision(sop.emp.record_output(output, **_ids(b, t)))


def _submit(sop: SOP, b: SubmitObligation, t: Transport) -> tuple[dict[str, Any], Decision]:
    outcome = sop.emp.submit_obligation(b.obligation, **_ids(b, t))
    return outcome.to_dict(), outcome.decision


def _persist_state(sop: SOP, b: PersistState, t: Transport) -> tuple[dict[str, Any], Decision]:
    d = sop.csp.persist_state(
        b.key, b.data, state_class=b.state_class, session=b.session, **_ids(b, t)
    )
    return _decision(d)


def _put_blob(sop: SOP, b: PutBlob, t: Transport) -> tuple[dict[str, Any], Decision]:
    return _decision(sop.csp.put_blob(b.data, state_class=b.state_class, **_ids(b, t)))


def _seal(sop: SOP, b: Seal, t: Transport) -> tuple[dict[str, Any], Decision]:
    d = sop.csp.seal(b.session, b.entries, parent=b.parent, state_class=b.state_class, **_ids(b, t))
    return _decision(d)


def _resume(sop: SOP, b: Resume, t: Transport) -> tuple[dict[str, Any], Decision]:
    r = sop.csp.resume(b.session, b.snapshot, state_class=b.state_class, **_ids(b, t))
    state = None
    if r.allowed and r.state is not None:
        state = {k: base64.b64encode(v).decode() for k, v in r.state.items()}
    manifest = None if r.manifest is None else r.manifest.model_dump()
    return {"decision": r.decision.to_dict(), "state": state, "manifest": manifest}, r.decision


CALLS: tuple[Call, ...] = (
    Call("drac", "open_session", OpenSession, _open, True, "Open a DRAC session"),
    Call("drac", "enter", PhaseStep, _enter, True, "Enter a DRAC phase"),
    Call("drac", "complete", PhaseStep, _complete, True, "Complete a DRAC phase"),
    Call("drac", "catalog", Catalog, _catalog, True, "Store and catalogue a DRAC artifact"),
    Call("drac", "artifacts", Artifacts, _artifacts, False, "Query DRAC's artifact catalog"),
    Call("emp", "record_output", RecordOutput, _record_output, True, "Record an EMP output"),
    Call("emp", "submit_obligation", SubmitObligation, _submit, True, "Submit an obligation"),
    Call("csp", "persist_state", PersistState, _persist_state, True, "Persist CSP state"),
    Call("csp", "put_blob", PutBlob, _put_blob, True, "Store a CSP snapshot blob"),
    Call("csp", "seal", Seal, _seal, True, "Seal a CSP snapshot"),
    Call("csp", "resume", Resume, _resume, False, "Resume a CSP snapshot"),
)
"""Every protocol method served on the bridge plane, in the facades' order."""

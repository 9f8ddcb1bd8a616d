"""The project's errors, rooted at :class:`SOPError`.

Untrusted-input failures (bad requests, forged tokens, malformed policy files,
mismatched proofs) derive from :class:`InputError`; integrity failures that
mean something stored is wrong derive from :class:`IntegrityError`. Caller
misuse (wrong argument types from our own code) uses the built-in exceptions.
Messages are lowercase, without a final period, with values in backticks.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AttenuationError",
    "CapabilityError",
    "CertificateError",
    "ConfigError",
    "ConfinementError",
    "EntryTooLargeError",
    "InputError",
    "IntegrityError",
    "KeyDecidedError",
    "LogHeadMovedError",
    "NotWitnessedError",
    "ObligationError",
    "PathError",
    "PersistenceError",
    "PolicyError",
    "PolicyEvaluationError",
    "PolicyParseError",
    "PolicyValidationError",
    "ProtocolError",
    "ReceiptError",
    "RemoteError",
    "RequestError",
    "SOPError",
    "StateMovedError",
    "StorageError",
    "VerificationError",
]


class SOPError(Exception):
    """Root of every error SOP raises on purpose."""


class InputError(SOPError):
    """Untrusted input was rejected; the message says what, where and what is accepted."""

    def __init__(self, message: str, *, where: str = "", accepted: str = "") -> None:
        self.where = where
        self.accepted = accepted
        parts = [message]
        if where:
            parts.append(f"at `{where}`")
        if accepted:
            parts.append(f"accepted: {accepted}")
        super().__init__("; ".join(parts))


class PathError(InputError):
    """A path given to SOP is missing, of the wrong kind, or cannot be read or written.

    The message names the path, what is there and what is expected; ``code`` says which:
    ``not_found``, ``not_a_directory``, ``is_a_directory``, ``dangling_symlink``, ``exists``,
    ``not_a_data_directory``, ``permission_denied``, ``read_only``, ``empty``.
    """

    def __init__(self, message: str, *, code: str, path: str) -> None:
        self.code = code
        self.path = path
        super().__init__(message)


class RequestError(InputError):
    """A bridge request is malformed, oversized or names an unknown operation."""


class ConfigError(InputError):
    """The configuration (data directory, scopes, service graph) is invalid."""


class CapabilityError(InputError):
    """A capability token is forged, tampered, expired, not yet valid, revoked or does not cover."""

    def __init__(self, message: str, *, code: str, capability_id: str | None = None) -> None:
        self.code = code
        self.capability_id = capability_id
        super().__init__(message)


class AttenuationError(CapabilityError):
    """A derived capability would grant more than its parent (INV-10)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        capability_id: str | None = None,
        counterexample: str | None = None,
    ) -> None:
        self.counterexample = counterexample
        super().__init__(message, code=code, capability_id=capability_id)


class CertificateError(InputError):
    """A TLS certificate names no single well-formed SOP principal, or cannot be issued."""


class PolicyError(InputError):
    """Root of policy-document failures."""


class PolicyParseError(PolicyError):
    """A policy document or a `when` condition could not be parsed."""


class PolicyValidationError(PolicyError):
    """A policy names an unknown attribute, is ill-typed, or breaks a structural rule."""


class PolicyEvaluationError(PolicyError):
    """Evaluating a condition failed at run time; the decision is DENY (INV-2)."""


class VerificationError(InputError):
    """A proof, signature or digest did not verify; carries what was expected and found."""

    def __init__(self, message: str, *, expected: Any = None, calculated: Any = None) -> None:
        self.expected = expected
        self.calculated = calculated
        super().__init__(message)


class ReceiptError(VerificationError):
    """An offline receipt failed a check; ``stage``: format, signature, cosignature, payload
    or inclusion."""

    def __init__(
        self, stage: str, message: str, *, expected: Any = None, calculated: Any = None
    ) -> None:
        self.stage = stage
        super().__init__(
            f"receipt {stage} check failed: {message}", expected=expected, calculated=calculated
        )


class ObligationError(InputError):
    """A proof obligation is malformed, unsupported or too large (the proof gate's REJECTED)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        line: int | None = None,
        where: str = "",
        accepted: str = "",
    ) -> None:
        self.message = message
        self.code = code
        self.line = line
        if not where and line is not None:
            where = f"line {line}"
        super().__init__(message, where=where, accepted=accepted)


class PersistenceError(InputError):
    """The persistence controller refused an effect or a read; ``code`` names the rule."""

    def __init__(self, message: str, *, code: str, where: str = "", accepted: str = "") -> None:
        self.code = code
        super().__init__(message, where=where, accepted=accepted)


class ConfinementError(PersistenceError):
    """A path would leave its scope root (INV-4): `..`, a symlink, a hard link, a bad name."""


class ProtocolError(InputError):
    """A DRAC, EMP or CSP rule refused an operation; ``code`` names the rule."""

    def __init__(self, message: str, *, code: str, where: str = "", accepted: str = "") -> None:
        self.code = code
        super().__init__(message, where=where, accepted=accepted)


class IntegrityError(SOPError):
    """Something SOP stored disagrees with itself (an integrity alarm)."""


class StorageError(SOPError):
    """The storage backend failed; on the decision path this is DENY (INV-2)."""


class LogHeadMovedError(StorageError):
    """Another writer appended to a shared log first: the batch was not written.

    A backend that several SOP replicas share (PostgreSQL) raises it from
    ``write_batch`` when the log's head is no longer the batch's start; the
    log re-reads its tail and builds the batch again on the new head.
    """


class PendingClosedError(StorageError):
    """A batch closes a pending persist decision that is no longer pending: nothing was written.

    On a log several replicas share, a replica's boot repair may have closed
    the decision (redone or aborted it) while its own replica was still
    carrying it out. Whoever deletes the pending row first records the one
    effect the decision has; the other's batch is rolled back whole (INV-9:
    one decision, at most one effect entry).
    """


class StateMovedError(SOPError):
    """Another replica changed what decisions depend on (a revocation, a policy set) first.

    Raised before anything of the batch is written: its decisions were taken
    on the old state, so they are taken again (INV-9: nothing is logged that
    the state in force when it is logged would not decide).
    """


class KeyDecidedError(SOPError):
    """A decision's idempotency key was decided already (another replica logged it first).

    Attributes:
        index: the log index of the key's first decision: the answer to give.
    """

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


class EntryTooLargeError(SOPError):
    """A log entry is too long for a C2SP entry bundle (a uint16 length); none is served."""

    def __init__(self, index: int, size: int, limit: int) -> None:
        self.index = index
        self.size = size
        self.limit = limit
        super().__init__(
            f"log entry `{index}` is `{size}` bytes; an entry bundle holds entries of at most"
            f" `{limit}` bytes"
        )


class NotWitnessedError(SOPError):
    """A log entry no published (witness-cosigned) checkpoint covers yet: ask again later."""

    def __init__(self, index: int, published: int) -> None:
        self.index = index
        self.published = published
        super().__init__(
            f"log entry `{index}` is in the log but not yet witnessed: the published checkpoint"
            f" covers entries `[0, {published})`"
        )


class RemoteError(SOPError):
    """A remote SOP answered with a problem (RFC 9457), or could not be reached.

    A DENY is not an error: it is a decision. This is every other answer that is
    not a success, after the client's retries (:mod:`sop_verified.client`).

    Attributes:
        status: the HTTP status, or None when no answer came (``code`` is ``unreachable``).
        code: the problem's machine-readable code (``bad_request``, ``queue_full``, ...).
        detail: what the server said went wrong.
        stage: the decision stage, when the problem is a decision's.
        decision: the logged decision the problem carries (a ``Decision``), or None.
    """

    def __init__(
        self,
        status: int | None,
        code: str,
        detail: str,
        *,
        stage: str | None = None,
        decision: Any = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.stage = stage
        self.decision = decision
        where = "no answer" if status is None else f"HTTP {status}"
        super().__init__(f"`{code}` ({where}): {detail}")

"""The persistence service: scopes opened at boot, boot repair, and the facade calls.

At boot (after config, storage and the log) every declared scope's stored
bytes are opened once, where the backend keeps them
(:meth:`~sop_verified.storage.ports.StorageBackend.open_scope`): its root
under ``<data>/scopes``, without following symlinks, with SQLite; rows of the
shared schema with PostgreSQL, so every replica reads what any of them wrote.
The controller is wired to the persistence index (which the storage keeps in
step with the log) and :meth:`~sop_verified.core.persistence.PersistenceController.recover`
closes every decision a crash left pending (redo or logged abort), purges
tombstoned files and applies retention, all before SOP is READY. A failure
leaves SOP not READY (INV-8).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sop_verified.core.health import Health
from sop_verified.core.persistence import PersistenceController, ReadResult, RecoveryReport
from sop_verified.core.ports import Clock
from sop_verified.core.request import Decision, Request, parse_request
from sop_verified.errors import InputError, IntegrityError, PersistenceError
from sop_verified.nexus.config import SOPConfig
from sop_verified.storage.ports import PersistIndex, ScopeContent, StorageBackend
from sop_verified.tools.canonical import sha256_hex

__all__ = [
    "SCOPES_DIR",
    "Offload",
    "bind_content",
    "persist",
    "persist_async",
    "read",
    "self_test",
    "start",
]

SCOPES_DIR = "scopes"

Submit = Callable[[Request | dict[str, Any]], Decision]


def start(
    data_dir: Path,
    config: SOPConfig,
    store: StorageBackend,
    health: Callable[[], Health],
    now: Clock,
    *,
    on_alarm: Callable[[str], None] | None = None,
    read_only: bool = False,
) -> tuple[PersistenceController, RecoveryReport]:
    """Open each scope's stored bytes, wire the controller, run boot repair.

    Args:
        data_dir: the data directory (with SQLite, scope roots live under its ``scopes/``).
        config: the validated configuration (its ``[[scope]]`` tables).
        store: the storage backend (its persistence index and log).
        health: SOP's health (effects happen only while READY).
        now: the clock.
        on_alarm: raises the integrity alarm (the registry's: SOP becomes DEGRADED).
        read_only: repair nothing (a dry run): a decision left pending, temporary
            files and retention are left to the next boot that writes.

    Returns:
        The controller and what repair did.

    Raises:
        ConfigError: the scopes are inconsistent.
        ConfinementError: a scope root is (or passes through) a symlink.
        IntegrityError: a root did not refuse a `..` escape (the boot canary), or
            boot repair found a pending-effects row the log does not back.
        StorageError: a root cannot be opened (read-only: it is missing), or the log
            or index failed.
    """
    table = config.scope_table()
    base = data_dir / SCOPES_DIR
    content: dict[str, ScopeContent] = {}
    try:
        for scope in table:
            content[scope.name] = store.open_scope(scope.name, scope.root, base)
            _refuses_escape(scope.name, content[scope.name])
        controller = PersistenceController(
            scopes=table,
            content=content,
            index=store.persist,
            log=store.log,
            health=health,
            now=now,
            on_alarm=on_alarm,
        )
        if read_only:
            return controller, _no_repair()
        return controller, controller.recover()
    except BaseException:
        for opened in content.values():
            opened.close()
        raise


def _no_repair() -> RecoveryReport:
    """A read-only start's boot repair: none (``through`` 0: it closed no decision).

    A decision a crash left pending stays for the next boot that writes: a
    read-only SOP carries out no effect, so none can follow it (INV-9), and no
    decision of its depends on it.
    """
    return RecoveryReport(through=0)


def _refuses_escape(scope: str, content: ScopeContent) -> None:
    """The boot canary of one scope: a `..` escape must be refused (INV-4)."""
    try:
        content.digest("../boot-canary", max_bytes=1)
    except PersistenceError:
        return
    raise IntegrityError(f"scope `{scope}` did not refuse `../boot-canary`")


def self_test(index: PersistIndex, through: int | None = None) -> None:
    """No decision is left pending after boot repair (INV-9); the roots were tested at start.

    Args:
        index: the persistence index the controller uses.
        through: the log size boot repair read the pending decisions at
            (``RecoveryReport.through``): a decision logged since by another
            replica of a shared log is that replica's to carry out (None: every
            decision must be closed).

    Raises:
        IntegrityError: a decision logged before ``through`` is still pending.
    """
    left = index.repairable()  # on a shared log, a live replica's own rows are its to close
    if any(through is None or p.decision_index < through for p in left):
        raise IntegrityError("boot repair left a persist decision pending")


def bind_content(
    request: Request | dict[str, Any], data: bytes, digest_hex: str | None = None
) -> Request | dict[str, Any]:
    """Add ``content_digest`` and ``context.size_bytes`` of ``data`` unless the request has them.

    Args:
        request: the request, parsed or as a JSON object.
        data: the bytes it is about.
        digest_hex: the hex SHA-256 of ``data`` if the caller already computed it.

    Returns:
        The request with both bound (values it already carried are kept, and
        must then match ``data``, which the controller checks).
    """
    digest = "sha256:" + (digest_hex or sha256_hex(data))
    if isinstance(request, Request):
        context = {"size_bytes": len(data), **request.context}
        cd = request.content_digest or digest
        return request.model_copy(update={"content_digest": cd, "context": context})
    out = dict(request)
    out.setdefault("content_digest", digest)
    context = out.get("context", {})
    if isinstance(context, dict):
        out["context"] = {"size_bytes": len(data), **context}
    return out


def _bound(request: object, data: bytes) -> tuple[bytes, str, object, Request | None]:
    """Immutable bytes, their digest, the request with the content bound, and it parsed (or None).

    Anything but a :class:`Request` or a JSON object is left as it is, unparsed:
    the kernel records it as a malformed request and denies it.
    """
    data = bytes(data)  # immutable from here on: the digest is of exactly these bytes
    digest_hex = sha256_hex(data)
    if not isinstance(request, Request | dict):  # JSON null is `None` here: the kernel takes text
        return data, digest_hex, "null" if request is None else request, None
    bound = bind_content(request, data, digest_hex)
    try:
        return data, digest_hex, bound, parse_request(bound)
    except InputError:
        return data, digest_hex, bound, None


def persist(
    submit: Submit,
    controller: PersistenceController,
    request: Request | dict[str, Any],
    data: bytes,
    linked: Callable[[Request, bytes, str], Decision | None] | None = None,
) -> Decision:
    """Decide a persist request through the kernel, then carry out its effect on ALLOW.

    A small content-addressed write goes through ``linked`` (decision, effect
    and bytes in one durable transaction, batched with other callers' writes:
    ADR 0007 and 0008); every other write
    is decided first and carried out after its ALLOW is logged.

    Args:
        submit: the kernel's entry (it parses, decides and logs).
        controller: the persistence controller.
        request: the persist request.
        data: the bytes to store.
        linked: the linked-write path (``LinkedWrites.persist``; None: always two steps).

    Returns:
        The kernel's DENY, the controller's refusal, or the ALLOW with its effect.
    """
    data, digest_hex, bound, parsed = _bound(request, data)
    if parsed is None:
        return submit(bound)  # type: ignore[arg-type]  # the kernel records and denies it
    if linked is not None:
        answer = linked(parsed, data, digest_hex)
        if answer is not None:
            return answer
    return controller.execute(submit(parsed), parsed, data)


Offload = Callable[[Callable[[], Decision]], Awaitable[Decision]]
"""Runs a blocking call off the event loop (SOP's writer thread) and awaits its result."""


async def persist_async(
    submit: Submit,
    controller: PersistenceController,
    request: Request | dict[str, Any],
    data: bytes,
    *,
    linked: Callable[[Request, bytes, str], Awaitable[Decision | None]] | None,
    offload: Offload,
) -> Decision:
    """:func:`persist` for coroutines: the loop never waits on a decision, a log append or a fsync.

    A small content-addressed write goes through ``linked``
    (``AsyncLinkedWrites.persist``: batched, committed off the loop, ADR 0010);
    everything else (a malformed request, a two-step write, a refusal) runs as
    :func:`persist` does, through ``offload``.

    Returns:
        The same answer :func:`persist` gives.
    """
    data, digest_hex, bound, parsed = _bound(request, data)
    if parsed is None:
        return await offload(lambda: submit(bound))  # type: ignore[arg-type]
    if linked is not None:
        answer = await linked(parsed, data, digest_hex)
        if answer is not None:
            return answer
    return await offload(lambda: controller.execute(submit(parsed), parsed, data))


def read(
    submit: Submit, controller: PersistenceController, request: Request | dict[str, Any]
) -> ReadResult:
    """Decide a read request through the kernel, then read and verify on ALLOW.

    Args:
        submit: the kernel's entry.
        controller: the persistence controller.
        request: the ``artifact.read`` request.

    Returns:
        The decision with the verified bytes, or without them when refused.
    """
    try:
        parsed = parse_request(request)
    except InputError:
        return ReadResult(submit(request))
    return controller.read(submit(parsed), parsed)

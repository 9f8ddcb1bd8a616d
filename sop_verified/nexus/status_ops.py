"""``sop status`` without a server: the integrity checks boot runs, read-only.

Booting appends a boot manifest and its attestation to the log and rewrites
``boot-manifest.json``; a status must change nothing. So the services that
hold state are checked here the way boot checks them, in the boot order
(INV-8), with every file opened read-only, and the first failure stops the
checks as it stops a boot:

- ``config``: ``sop.toml`` parses; its digest;
- ``keys``: the capability, checkpoint and attestation keys load and sign
  (nothing is printed);
- ``storage``: the database opens read-only and passes its own check;
- ``log``: opened against the latest signed checkpoint and the rollback anchor
  as boot opens it, then audited in full as ``sop log verify`` audits it (every
  leaf, tile, root and checkpoint, from the genesis key), since boot's tail
  check cannot see an entry edited in the middle of the log;
- ``state``: every derived table and ``sop.toml`` against the state seal (INV-11);
- ``capabilities``: the derivation tree rebuilt and checked;
- ``policy``: the active policy set matches its digest and permits no admin
  action through the bridge (INV-6);
- ``witness`` (when configured): the log extends what the witnesses cosigned;
- ``events_nats`` (when configured): the NATS sink's lag as its durable cursor
  says (the broker is not contacted: a status changes nothing and waits for
  nobody; a running SOP's status has the sink's live figures).

The proof gate, kernel, persistence and protocols are not started (they need
solver workers and boot repair, which writes); they are listed as not checked.
Health: ``READY`` when every check passes; ``FAILED`` when one fails (its
reason is the report's); ``DEGRADED`` when everything checks but the next boot
has something to finish (a staged key rotation) or a witnessed checkpoint is no
longer valid, which a running SOP reports as an alarm.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sop_verified.core.health import Health
from sop_verified.core.policy import PolicySet
from sop_verified.core.request import Request
from sop_verified.errors import IntegrityError
from sop_verified.events.nats_cursor import CURSOR_NAME, read_cursor
from sop_verified.nexus.config import SOPConfig, load_config, load_mac_key
from sop_verified.nexus.data_dir_log import DataDirLog
from sop_verified.nexus.data_dir_state import StateReader, capability_tree, open_state_reader
from sop_verified.nexus.graph import boot_order
from sop_verified.nexus.keys import STAGED_KEY, load_attestation_key, load_checkpoint_signer
from sop_verified.nexus.log_ops import audit_data_dir
from sop_verified.nexus.root import SERVICE_GRAPH
from sop_verified.nexus.witness_publisher import WITNESSED_NAME, load_published
from sop_verified.storage.state_view import StateView

__all__ = ["NOT_CHECKED", "inspect_status"]

NOT_CHECKED = "not started by `sop status` (a boot starts it: `sop serve`)"
"""The detail of a service this status does not start."""


@dataclass
class _Run:
    """What the checks found so far; each check reads what the ones before it set."""

    data_dir: Path
    progress: Callable[[int, int], None] | None
    stack: ExitStack
    config: SOPConfig | None = None
    master: bytes = b""
    reader: StateReader | None = None
    log_size: int | None = None
    events: int | None = None  # the log's events: its entries and its checkpoints
    checkpoint: str | None = None
    view: StateView | None = None
    policy_digest: str | None = None
    witnesses: dict[str, Any] | None = None
    nats: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cfg(self) -> SOPConfig:
        assert self.config is not None  # the config check runs first
        return self.config


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _short(digest: str) -> str:
    """``sha256:`` and the first 16 hex digits (the report's ``*_digest`` keys hold it whole)."""
    return digest[:23] + "…"


def _config(run: _Run) -> str:
    run.config = load_config(run.data_dir)
    return f"digest {_short(run.config.digest())}"


def _keys(run: _Run) -> str:
    run.master, key_id = load_mac_key(run.data_dir)
    signer = load_checkpoint_signer(run.data_dir, run.cfg.origin)
    signer.verifier().verify(b"sop-canary", signer.sign(b"sop-canary"))
    key = load_attestation_key(run.data_dir)
    key.public_key().verify(key.sign(b"sop-canary"), b"sop-canary")
    if (run.data_dir / STAGED_KEY).exists():
        run.notes.append(
            f"a checkpoint-key rotation is staged (`{STAGED_KEY}`): the next boot finishes"
            " or drops it"
        )
    return f"capability key {key_id}, checkpoint key {signer.verifier().vkey.split('+')[1]}"


def _storage(run: _Run) -> str:
    run.reader = run.stack.enter_context(open_state_reader(run.data_dir, run.cfg, run.master))
    run.reader.self_test()
    where = run.cfg.postgresql
    return "sqlite sop.db, read-only" if where is None else f"postgresql schema {where.schema_name}"


def _log(run: _Run) -> str:
    opened = run.stack.enter_context(DataDirLog(run.data_dir))
    opened.check_anchor()  # spec: INV-5 — boot's check: tail, checkpoint and anchor
    run.log_size, run.checkpoint = opened.log.size, opened.log.checkpoint_note
    report, _ = audit_data_dir(run.data_dir, progress=run.progress, derived_state=False)
    if not report.ok:  # spec: INV-5 — an entry changed anywhere, not only at the tail
        first = report.findings[0]
        raise IntegrityError(
            f"`sop log verify` finds {_count(report.total_findings, 'problem', 'problems')},"
            f" the first at index {report.first_bad_index}: {first.kind}: {first.message}"
        )
    if report.entries != opened.log.size:
        raise IntegrityError(
            f"the audit verified {report.entries} entries, the opened log holds {run.log_size}"
        )
    run.events = report.entries + report.verified_checkpoints
    entries = _count(report.entries, "entry", "entries")
    checkpoints = _count(report.verified_checkpoints, "checkpoint", "checkpoints")
    return f"{entries} and {checkpoints} verified, anchor checked"


def _state(run: _Run) -> str:
    assert run.reader is not None  # the storage check opened it
    assert run.log_size is not None  # the log check set it
    run.view = run.reader.read_state(run.log_size, run.cfg.digest())  # spec: INV-11
    return f"derived tables and sop.toml match the state seal at log size {run.view.log_size}"


def _capabilities(run: _Run) -> str:
    assert run.view is not None  # the state check read it
    tree = capability_tree(run.view)
    admitted = _count(len(tree.records), "capability", "capabilities")
    return f"{admitted} admitted, {len(tree.revoked)} revoked"


def _policy(run: _Run) -> str:
    assert run.view is not None
    if run.view.policy is None:
        return "no policy set active: every request is denied"
    digest, document = run.view.policy
    policy = PolicySet.from_canonical(document)
    if policy.digest != digest:
        raise IntegrityError(f"stored policy set digest `{digest}` does not match its document")
    canary = Request(
        request_id="status-canary",
        principal="sop-canary",
        action="policy.activate",
        resource="policies/canary",
        channel="bridge",
    )
    if policy.evaluate(canary).allowed:  # spec: INV-6
        raise IntegrityError("the active policy set permits an admin action through the bridge")
    run.policy_digest = digest
    return f"digest {_short(digest)}, {_count(len(policy.document), 'policy', 'policies')}"


def _witness(run: _Run) -> str:
    witnesses = run.cfg.witnesses
    if witnesses is None:
        return "no witnesses configured"
    opened = run.stack.enter_context(DataDirLog(run.data_dir))
    published, cosigners = load_published(run.data_dir / WITNESSED_NAME, opened.log, witnesses)
    size = 0 if published is None else published.size
    run.witnesses = {  # what a running SOP's publisher reports, as far as the files say
        "published_size": size,
        "witnesses": [
            {
                "name": w.verifier().name,
                "url": w.url,
                "cosigned_size": size if w.vkey in cosigners else 0,
                "alarm": None,
            }
            for w in witnesses.witness
        ],
    }
    if published is None:
        if (run.data_dir / WITNESSED_NAME).exists():
            run.notes.append(
                f"the witnessed checkpoint `{WITNESSED_NAME}` no longer verifies with the"
                " configured witnesses: nothing witnessed is served until they cosign again"
            )
        return "no cosigned checkpoint kept yet"
    return f"published size {published.size}, cosigned by {len(cosigners)}"


def _events_nats(run: _Run) -> str:
    events = run.cfg.events
    if events is None or events.nats is None:
        return "no `[events.nats]` configured"
    nats = events.nats
    acked = read_cursor(run.data_dir / CURSOR_NAME, nats.stream)  # a hint: 0 when absent
    size = run.events or 0
    run.nats = {  # a running SOP's sink reports the same keys, live
        "stream": nats.stream,
        "servers": list(nats.shown_servers),  # passwords and tokens replaced by `***`
        "connected": None,  # not asked: a status contacts no broker
        "events": size,
        "acked": acked,
        "lag": max(0, size - acked),
        "source": "the sink's durable cursor",
    }
    return f"stream {nats.stream}: the cursor says {acked} acknowledged, {run.nats['lag']} behind"


_CHECKS: dict[str, Callable[[_Run], str]] = {
    "config": _config,
    "keys": _keys,
    "storage": _storage,
    "log": _log,
    "state": _state,
    "capabilities": _capabilities,
    "policy": _policy,
    "witness": _witness,
    "events_nats": _events_nats,
}


def inspect_status(
    data_dir: Path, *, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Run the checks boot runs on ``data_dir``, read-only, and report its health.

    Args:
        data_dir: a data directory made by ``sop init`` (the caller checks it is one).
        progress: told ``(entries done, entry rows)`` while the log is audited.

    Returns:
        ``health`` (READY, DEGRADED or FAILED), ``reason`` (None when READY), ``checks``
        (name, health, detail, in the boot order) and the same as ``services`` by name,
        ``boot_order``, ``log_size``, ``checkpoint``, ``config_digest``,
        ``policy_digest``, and ``witnesses`` and ``events_nats`` when configured (the
        shape a running SOP's status has, with what the kept files say).
    """
    checks: list[dict[str, str]] = []
    failed: str | None = None
    order = boot_order(SERVICE_GRAPH)  # spec: INV-8 — boot's order, boot's checks
    with ExitStack() as stack:
        run = _Run(data_dir, progress, stack)
        for name in order:
            check = _CHECKS.get(name)
            if check is None:
                checks.append({"name": name, "health": "NOT_CHECKED", "detail": NOT_CHECKED})
            elif failed is not None:
                checks.append({"name": name, "health": "NOT_CHECKED", "detail": "not reached"})
            else:
                try:
                    detail, health = check(run), Health.READY
                except Exception as exc:  # spec: INV-8 — any failure leaves it not READY
                    detail, health = f"{type(exc).__name__}: {exc}", Health.FAILED
                    failed = f"{name}: {detail}"
                checks.append({"name": name, "health": str(health), "detail": detail})
    if failed is not None:
        health, reason = Health.FAILED, failed
    elif run.notes:
        health, reason = Health.DEGRADED, "; ".join(run.notes)
    else:
        health, reason = Health.READY, None
    out: dict[str, Any] = {
        "health": str(health),
        "reason": reason,
        "data_dir": str(data_dir),
        "source": "read-only checks",
        "checks": checks,
        "services": {c["name"]: {"health": c["health"], "detail": c["detail"]} for c in checks},
        "boot_order": order,
        "log_size": run.log_size,
        "checkpoint": run.checkpoint,
        "config_digest": None if run.config is None else run.config.digest(),
        "policy_digest": run.policy_digest,
    }
    if run.witnesses is not None:
        out["witnesses"] = run.witnesses
    if run.nats is not None:
        out["events_nats"] = run.nats
    return out

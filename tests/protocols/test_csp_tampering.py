"""Every way to tamper with a snapshot is refused at resume (INV-7), with the check that caught it.

The attacker here holds what SOP stores (scope files and the SQLite database,
or the PostgreSQL schema with its rows of scope bytes) but no key: blobs and
manifests are edited or swapped in place, log rows are rewritten (the
append-only guard taken off first), an old snapshot is replayed. Each case
resumes through ``sop.csp.resume`` and must be DENY, recorded, with no state
handed back.
"""

from __future__ import annotations

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from protocol_env import Env

from sop_verified.core.health import Health
from sop_verified.core.request import Permission, Stage
from sop_verified.errors import SOPError
from sop_verified.protocols.csp import ResumeResult, seal_statement
from sop_verified.protocols.csp.manifest import Manifest
from sop_verified.tools.attest import sign_envelope
from sop_verified.tools.canonical import canonical_json

BLOBS = "csp-snapshot-blobs"
MANIFESTS = "csp-snapshot-manifests"


def _snapshot(env: Env, session: str, state: dict[str, bytes]) -> tuple[str, dict[str, str]]:
    digests = {}
    for key, data in state.items():
        d = env.sop.csp.put_blob(data, state_class="working", token=env.csp)
        assert d.allowed, d.reasons
        digests[key] = str(d.write.digest)
    sealed = env.sop.csp.seal(session, digests, parent=None, token=env.csp)
    assert sealed.allowed, sealed.reasons
    return str(sealed.record.snapshot), digests


def _blob(digest: str) -> str:
    """Where a blob is stored in its scope."""
    hexd = digest.removeprefix("sha256:")
    return f"sha256/{hexd[:2]}/{hexd}"


def _refused(result: ResumeResult, code: str) -> None:
    assert result.decision.effect is Permission.DENY, result.decision
    assert result.state is None
    first = result.decision.reasons[0]
    assert (first.stage, first.code) == (Stage.PROTOCOL, code), result.decision.reasons
    assert result.decision.log_index is not None  # the refusal is recorded


def _refused_at_boot(env: Env) -> None:
    """The rewritten entry no longer hashes to the leaf its record's receipt names (INV-11)."""
    report = env.sop.boot_report
    assert (report.health, report.failed) == (Health.FAILED, "protocols"), report.detail
    assert "the log entry hashes to leaf" in report.detail
    assert "the entry or the receipt was altered" in report.detail
    with pytest.raises(SOPError, match="boot did not finish"):  # no CSP to ask at all
        env.sop.csp  # noqa: B018


def _rewrite_log_entry(env: Env, index: int, payload: bytes, *, ready: bool = True) -> None:
    """Rewrite one log row as an attacker with the database file would, then boot again."""
    env.sop.close()
    env.rewrite_log_entry(index, payload)
    env.reboot(ready=ready)


def test_an_untampered_snapshot_resumes(own_env: Env) -> None:
    snap, _ = _snapshot(own_env, "ok", {"wm": b"fine"})
    assert own_env.sop.csp.resume("ok", snap, token=own_env.csp).state == {"wm": b"fine"}


def test_an_edited_blob_is_refused(own_env: Env) -> None:
    snap, digests = _snapshot(own_env, "eb", {"wm": b"true memory"})
    own_env.overwrite(BLOBS, _blob(digests["wm"]), b"false memory")
    _refused(own_env.sop.csp.resume("eb", snap, token=own_env.csp), "blob_digest")


def test_a_swapped_blob_is_refused(own_env: Env) -> None:
    snap, digests = _snapshot(own_env, "sb", {"a": b"alpha", "b": b"beta"})
    own_env.overwrite(BLOBS, _blob(digests["a"]), b"beta")  # a's blob now holds b's bytes
    _refused(own_env.sop.csp.resume("sb", snap, token=own_env.csp), "blob_digest")


def test_a_deleted_blob_is_refused(own_env: Env) -> None:
    snap, digests = _snapshot(own_env, "db", {"wm": b"gone"})
    own_env.remove(BLOBS, _blob(digests["wm"]))
    _refused(own_env.sop.csp.resume("db", snap, token=own_env.csp), "missing_blob")


def test_an_edited_manifest_is_refused(own_env: Env) -> None:
    snap, _ = _snapshot(own_env, "em", {"wm": b"manifest"})
    stored = f"em/{snap}.json"
    planted = own_env.sop.csp.put_blob(b"planted", state_class="working", token=own_env.csp)
    original = Manifest.parse(own_env.stored(MANIFESTS, stored))
    edited = Manifest.build(
        session="em",
        parent=None,
        created=original.created,
        entries={"wm": str(planted.write.digest)},
    )
    own_env.overwrite(MANIFESTS, stored, edited.to_bytes())  # well-formed, names a stored blob
    _refused(own_env.sop.csp.resume("em", snap, token=own_env.csp), "manifest_digest")


def test_a_replayed_old_snapshot_is_refused(own_env: Env) -> None:
    old, digests = _snapshot(own_env, "rp", {"wm": b"old"})
    new = own_env.sop.csp.seal(
        "rp", {"wm": digests["wm"], "x": digests["wm"]}, parent=old, token=own_env.csp
    )
    assert new.allowed
    assert own_env.sop.csp.resume("rp", new.record.snapshot, token=own_env.csp).allowed
    _refused(own_env.sop.csp.resume("rp", old, token=own_env.csp), "lineage")


def _seal_entry(env: Env, snap: str) -> tuple[int, dict[str, object]]:
    services = env.sop.protocols
    assert services is not None
    seal = services.book.seal(snap)
    assert seal is not None
    return seal.log_index, orjson.loads(seal.payload)


def test_a_forged_seal_is_refused(own_env: Env) -> None:
    snap, _ = _snapshot(own_env, "fs", {"wm": b"forged"})
    index, entry = _seal_entry(own_env, snap)
    manifest = Manifest.parse(own_env.stored(MANIFESTS, f"fs/{snap}.json"))
    forger = Ed25519PrivateKey.from_private_bytes(b"\x42" * 32)
    statement = seal_statement(manifest, str(entry["resource"]))
    entry["envelope"] = sign_envelope(statement, forger, "forger")
    own_env.sop.csp.put_blob(b"later entry", state_class="working", token=own_env.csp)
    _rewrite_log_entry(own_env, index, canonical_json(entry), ready=False)
    _refused_at_boot(own_env)


def test_an_unlogged_seal_is_refused(own_env: Env) -> None:
    snap, _ = _snapshot(own_env, "us", {"wm": b"unlogged"})
    index, entry = _seal_entry(own_env, snap)
    entry["time"] = int(str(entry["time"])) + 1  # the signed envelope is intact; the entry is not
    own_env.sop.csp.put_blob(b"later entry", state_class="working", token=own_env.csp)
    _rewrite_log_entry(own_env, index, canonical_json(entry), ready=False)
    _refused_at_boot(own_env)

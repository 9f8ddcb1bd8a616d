"""A booted SOP with every protocol's scopes, a permissive-enough policy set and tokens.

The policy set deliberately lets the kernel ALLOW a few things the
persistence controller must still refuse (DRAC persisting into CSP's state
scope, anything persisting under ``misc/**``, which is approved but has no
scope): those are the defence-in-depth probes of INV-4.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sop_verified.core.health import Health
from sop_verified.core.obligations import ProofGate, VerdictResult
from sop_verified.core.persistence.writes import INLINE_MAX_BYTES
from sop_verified.core.proofgate import GateConfig, InMemoryVerdictStore, Z3ProofGate
from sop_verified.core.request import Decision, Obligation, Permission, Stage
from sop_verified.nexus.config import DEFAULT_CONFIG, init_data_dir
from sop_verified.nexus.sop import SOP

NOW = 1_800_000_000

POLICIES = """
[[policy]]
id = "drac-artifacts"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist", "artifact.read"]
resource = ["artifacts/drac/**"]
channel = "bridge"

[[policy]]
id = "emp-verdicts"
effect = "permit"
principal = ["emp"]
action = ["verdict.record", "artifact.read"]
resource = ["verdicts/emp/**"]
channel = "bridge"

[[policy]]
id = "csp-state"
effect = "permit"
principal = ["csp"]
action = ["state.persist", "snapshot.seal", "artifact.read"]
resource = ["state/csp/**", "snapshots/csp/**"]
channel = "bridge"

[[policy]]
id = "everyone-reads"
effect = "permit"
principal = ["drac", "emp", "csp"]
action = ["artifact.read"]
resource = ["artifacts/**", "verdicts/**", "state/**", "snapshots/**"]
channel = "bridge"

[[policy]]
id = "probe-drac-into-csp"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist"]
resource = ["state/csp/**", "misc/**"]
channel = "bridge"
"""

TEST_CONFIG = (
    DEFAULT_CONFIG.replace(
        '    "snapshots/csp/**",\n]', '    "snapshots/csp/**",\n    "misc/**",\n]'
    )
    .replace(
        'path = "artifacts/drac/**"\nmax_blob_bytes = 16777216',
        'path = "artifacts/drac/**"\nmax_blob_bytes = 262144',
    )
    .replace("retention = { keep = 16 }", "retention = { keep = 2, max_age_seconds = 1000 }")
)


@dataclass
class Env:
    """A booted SOP, its clock, its tokens and directories."""

    sop: SOP
    root: Path
    data: Path
    outside: Path
    tokens: dict[str, str]
    clock: list[int] = field(default_factory=lambda: [NOW])
    _n: list[int] = field(default_factory=lambda: [0])
    gate: ProofGate | None = None

    def reboot(self) -> Health:
        """Close SOP and boot it again on the same data directory; the new health."""
        self.sop.close()
        clock = self.clock
        self.sop = SOP.boot(self.data, now=lambda: clock[0], proof_gate=self.gate)
        return self.sop.health

    def scope_root(self, name: str) -> Path:
        controller = self.sop.persistence
        assert controller is not None
        scope = controller.scopes.get(name)
        assert scope is not None
        return self.data / "scopes" / scope.root

    def request(self, principal: str, action: str, resource: str, **kw: Any) -> dict[str, Any]:
        self._n[0] += 1
        out: dict[str, Any] = {
            "request_id": f"t-{self._n[0]}",
            "principal": principal,
            "action": action,
            "resource": resource,
            "capability": self.tokens[principal],
        }
        out.update(kw)
        return out

    def persist(
        self, principal: str, action: str, resource: str, data: bytes, **kw: Any
    ) -> Decision:
        return self.sop.persist(self.request(principal, action, resource, **kw), data)

    def read(self, principal: str, resource: str) -> Any:
        return self.sop.read(self.request(principal, "artifact.read", resource))

    def log(self) -> list[dict[str, Any]]:
        assert self.sop.store is not None
        return [json.loads(p) for _, _, p in self.sop.store.log.log_entries()]

    def db_blobs(self, scope: str) -> dict[str, bytes]:
        """The blobs the database keeps for ``scope`` (small content-addressed writes)."""
        assert self.sop.store is not None
        with sqlite3.connect(self.sop.store.path) as db:
            rows = db.execute(
                "SELECT e.stored, i.data FROM persist_inline i JOIN persist_effects e"
                " ON e.effect_index = i.effect_index WHERE e.scope = ?",
                (scope,),
            ).fetchall()
        kept = {str(r[0]): bytes(r[1]) for r in rows}
        assert len(kept) == len(rows), "a blob is kept once per stored name"
        return kept

    def tamper_db_blob(self, scope: str, stored: str, data: bytes) -> None:
        """Overwrite a database-kept blob behind SOP's back (the seal's trigger dropped first)."""
        assert self.sop.store is not None
        with sqlite3.connect(self.sop.store.path) as db:
            db.execute("DROP TRIGGER IF EXISTS persist_inline_seal_update")
            cur = db.execute(
                "UPDATE persist_inline SET data = ? WHERE effect_index IN (SELECT effect_index"
                " FROM persist_effects WHERE scope = ? AND stored = ?)",
                (data, scope, stored),
            )
            assert cur.rowcount == 1


def batch_writes(
    env: Env, folder: str, tag: str, callers: int, *, forged: int
) -> tuple[list[bytes], list[dict[str, Any]]]:
    """``callers`` writes of distinct sizes to ``artifacts/drac/<folder>/<i>``; ``forged`` has
    a forged token (a DENY inside the batch). :func:`assert_own_answers` checks the answers."""
    datas = [f"{tag} {i}".encode() * (i + 1) for i in range(callers)]
    requests = [
        env.request("drac", "artifact.persist", f"artifacts/drac/{folder}/{i}")
        for i in range(callers)
    ]
    requests[forged]["capability"] = "forged"
    return datas, requests


def assert_own_answers(
    env: Env, folder: str, datas: list[bytes], decisions: list[Decision], *, forged: int
) -> None:
    """Each concurrent caller of a batch got the answer to its own write of ``datas[i]``.

    The writes went to ``artifacts/drac/<folder>/<i>``; write ``forged`` carried
    a forged token, so it must be the capability DENY, with no effect.
    """
    for i, (data, d) in enumerate(zip(datas, decisions, strict=True)):
        if i == forged:
            assert d.effect is Permission.DENY and d.reasons[0].stage is Stage.CAPABILITY
            assert d.write is None
            continue
        assert d.effect is Permission.ALLOW, d.reasons
        assert d.write is not None
        effect = d.write.to_dict()
        assert effect["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert (effect["name"], effect["size"]) == (f"{folder}/{i}", len(data))
        assert effect["index"] == d.log_index + 1
        assert env.read("drac", f"artifacts/drac/{folder}/{i}").data == data


def large(tag: bytes) -> bytes:
    """Content too large to be kept in the database: a content-addressed file (two steps)."""
    return (tag * (INLINE_MAX_BYTES // max(1, len(tag)) + 2))[: INLINE_MAX_BYTES + 1]


class SharedGate:
    """A Z3 gate that outlives each SOP (``SOP.close`` stops only gates it recognises as Z3's)."""

    def __init__(self, gate: Z3ProofGate) -> None:
        self._gate = gate

    def check(self, obligation: Obligation) -> VerdictResult:
        return self._gate.check(obligation)

    def check_many(self, obligations: Sequence[Obligation]) -> list[VerdictResult]:
        return self._gate.check_many(obligations)


@pytest.fixture(scope="session")
def shared_gate() -> Iterator[SharedGate]:
    """One warm solver worker for every SOP these tests boot (scope obligations are cached)."""
    with Z3ProofGate(GateConfig(workers=1), store=InMemoryVerdictStore()) as gate:
        yield SharedGate(gate)


def boot_env(tmp_path: Path, gate: ProofGate, config: str = TEST_CONFIG) -> Env:
    data = tmp_path / "data"
    init_data_dir(data, config_text=config)
    clock = [NOW]
    sop = SOP.boot(data, now=lambda: clock[0], proof_gate=gate)
    assert sop.health is Health.READY, sop.boot_report
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "policy.toml").write_text(POLICIES)
    sop.activate_policy(policies)
    resources = ["artifacts/**", "verdicts/**", "state/**", "snapshots/**", "misc/**"]
    actions = [
        "artifact.persist",
        "artifact.read",
        "verdict.record",
        "state.persist",
        "snapshot.seal",
    ]
    tokens = {
        p: sop.admit(p, actions, resources, expires=NOW + 10**9)[1] for p in ("drac", "emp", "csp")
    }
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_bytes(b"outside: must never change\n")
    (outside / "dir").mkdir()
    return Env(sop, tmp_path, data, outside, tokens, clock, gate=gate)


@pytest.fixture
def env(tmp_path: Path, shared_gate: SharedGate) -> Iterator[Env]:
    e = boot_env(tmp_path, shared_gate)
    yield e
    e.sop.close()


def tree(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, tuple[Any, ...]]:
    """Everything under ``root``, symlinks not followed: kind, size, inode, links, content."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if os.path.join(rel_dir, d) not in skip]
        for name in dirnames + filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in skip:
                continue
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            out[rel] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_ino, st.st_nlink, extra)
    return out


def outside_state(env: Env) -> dict[str, tuple[Any, ...]]:
    """The tmp tree minus the SOP database, its anchor and the scope roots (inspected apart)."""
    skip = (
        "data/sop.db",
        "data/sop.db-wal",
        "data/sop.db-shm",
        "data/boot-manifest.json",
        "data/checkpoint.anchor",
        "data/scopes",
    )
    return tree(env.root, skip=skip)


def regular_files(root: Path) -> set[str]:
    return {k for k, v in tree(root).items() if v[0] == stat.S_IFREG}

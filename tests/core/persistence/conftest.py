"""A booted SOP with every protocol's scopes, a permissive-enough policy set and tokens.

The policy set deliberately lets the kernel ALLOW a few things the
persistence controller must still refuse (DRAC persisting into CSP's state
scope, anything persisting under ``misc/**``, which is approved but has no
scope): those are the defence-in-depth probes of INV-4.

The backend is SQLite, or PostgreSQL with ``SOP_TEST_BACKEND=postgresql`` (a
scratch schema on the test server, ``tests/pg_server.py``): the controller's
rules are the same on both, and so are these tests, through :class:`Env`'s
view of what is stored (:meth:`Env.stored`, :meth:`Env.plant`,
:meth:`Env.attacker`). A test about files themselves (symlinks, hard links,
directories moved mid-write) is marked ``sqlite_only`` and boots SQLite on
either run: PostgreSQL stores no file (its names get the same checks, in
tests/storage/conformance/test_conformance_content.py).
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
from attacker import attacker_db
from pg_server import DSN, drop_schema, new_schema_name
from pg_server import connect as pg_connect
from psycopg import sql as pg_sql

from sop_verified.core.health import Health
from sop_verified.core.obligations import ProofGate, VerdictResult
from sop_verified.core.persistence.writes import INLINE_MAX_BYTES
from sop_verified.core.proofgate import GateConfig, InMemoryVerdictStore, Z3ProofGate
from sop_verified.core.request import Decision, Obligation, Permission, Stage
from sop_verified.nexus.backends import open_backend
from sop_verified.nexus.config import DEFAULT_CONFIG, init_data_dir, load_config, load_mac_key
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
    schema: str | None = None
    """The PostgreSQL schema SOP keeps its state in; None: SQLite in ``data``."""

    def reboot(self) -> Health:
        """Close SOP and boot it again on the same data directory; the new health."""
        self.sop.close()
        clock = self.clock
        self.sop = SOP.boot(self.data, now=lambda: clock[0], proof_gate=self.gate)
        return self.sop.health

    def scope_root(self, name: str) -> Path:
        scope = load_config(self.data).scope_table().get(name)  # whatever SOP's state
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
        with self.reader() as db:
            rows = db.execute(
                "SELECT e.stored, i.data FROM persist_inline i JOIN persist_effects e"
                " ON e.effect_index = i.effect_index WHERE e.scope = ?",
                (scope,),
            ).fetchall()
        kept = {str(r[0]): bytes(r[1]) for r in rows}
        assert len(kept) == len(rows), "a blob is kept once per stored name"
        return kept

    def tamper_db_blob(self, scope: str, stored: str, data: bytes) -> None:
        """Overwrite a database-kept blob behind SOP's back (the seal's trigger off first)."""
        with self.attacker() as db:
            cur = db.execute(
                "UPDATE persist_inline SET data = ? WHERE effect_index IN (SELECT effect_index"
                " FROM persist_effects WHERE scope = ? AND stored = ?)",
                (data, scope, stored),
            )
            assert cur.rowcount == 1

    # ---- what is stored, wherever the backend keeps it --------------------------------------
    def stored(self, scope: str) -> dict[str, bytes]:
        """The bytes a scope's content holds by stored path (not the small blobs kept with
        their decisions, :meth:`db_blobs`): the scope root's regular files with SQLite,
        its ``persist_content`` rows with PostgreSQL."""
        if self.schema is None:
            root = self.scope_root(scope)
            return {name: (root / name).read_bytes() for name in regular_files(root)}
        with self.reader() as db:
            rows = db.execute(
                "SELECT stored, data FROM persist_content WHERE scope = ?", (scope,)
            ).fetchall()
        return {str(r[0]): bytes(r[1]) for r in rows}

    def stored_anywhere(self) -> set[str]:
        """Every stored path of every scope, as ``scope:stored``."""
        names = [s.name for s in load_config(self.data).scope_table()]
        return {f"{name}:{stored}" for name in names for stored in self.stored(name)}

    def plant(self, scope: str, stored: str, data: bytes) -> None:
        """Write ``data`` at ``stored`` behind SOP's back (a file, or a row)."""
        if self.schema is None:
            path = self.scope_root(scope) / stored
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.chmod(0o600)
            path.write_bytes(data)
            return
        with self.attacker() as db:
            db.execute(
                "INSERT INTO persist_content (scope, stored, data) VALUES (?, ?, ?)"
                " ON CONFLICT (scope, stored) DO UPDATE SET data = excluded.data",
                (scope, stored, data),
            )

    def reader(self) -> Database:
        """A plain session on SOP's database (no SOP function, no seal journal)."""
        return Database(self, attacker=False)

    def attacker(self) -> Database:
        """The attacker's session: it writes SOP's database with every trigger off."""
        return Database(self, attacker=True)


class Database:
    """SOP's database as an outsider opens it, SQLite or PostgreSQL, with ``?`` parameters."""

    def __init__(self, env: Env, *, attacker: bool) -> None:
        self._pg = env.schema is not None
        if env.schema is None:
            path = env.data / "sop.db"
            self._conn: Any = attacker_db(path) if attacker else sqlite3.connect(str(path))
            return
        conn = pg_connect()
        conn.execute(pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(env.schema)))
        if attacker:
            conn.execute("SET session_replication_role = replica")  # no trigger fires for him
        self._conn = conn

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (autocommit), ``?`` placeholders on both backends."""
        if self._pg:
            statement = statement.replace("?", "%s")
        return self._conn.execute(statement, params)

    def close(self) -> None:
        if not self._pg:
            self._conn.commit()
        self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


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


BACKEND = os.environ.get("SOP_TEST_BACKEND", "sqlite")
"""The backend these tests boot SOP on: ``sqlite`` (the default) or ``postgresql`` (a scratch
schema on the test server, tests/pg_server.py), to hold both to the same controller rules."""


def _init(data: Path, config: str, backend: str) -> str | None:
    """A fresh data directory on ``backend``; its PostgreSQL schema (created and migrated,
    and named in ``data``'s parent, where the ``env`` fixture finds it to drop it), or None."""
    if backend == "sqlite":
        init_data_dir(data, config_text=config)
        return None
    assert backend == "postgresql", f"SOP_TEST_BACKEND=`{backend}`: sqlite or postgresql"
    schema = new_schema_name()
    (data.parent / "postgres-schema").write_text(schema)
    text = config.replace('storage = "sqlite"', 'storage = "postgresql"', 1)
    init_data_dir(data, config_text=text + f'\n[postgresql]\ndsn = "{DSN}"\nschema = "{schema}"\n')
    open_backend(data, load_config(data), state_key=load_mac_key(data)[0], migrate=True).close()
    return schema


def boot_env(
    tmp_path: Path, gate: ProofGate, config: str = TEST_CONFIG, backend: str = BACKEND
) -> Env:
    data = tmp_path / "data"
    schema = _init(data, config, backend)
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
    return Env(sop, tmp_path, data, outside, tokens, clock, gate=gate, schema=schema)


@pytest.fixture
def env(request: pytest.FixtureRequest, tmp_path: Path, shared_gate: SharedGate) -> Iterator[Env]:
    files = request.node.get_closest_marker("sqlite_only") is not None
    try:
        e = boot_env(tmp_path, shared_gate, backend="sqlite" if files else BACKEND)
        yield e
        e.sop.close()
    finally:
        named = tmp_path / "postgres-schema"
        if named.exists():
            drop_schema(named.read_text())


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

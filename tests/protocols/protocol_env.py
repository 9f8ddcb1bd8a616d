"""The protocol tests' environment: a booted SOP, the demo's sound policies, tokens, EMP's key.

SQLite by default; ``SOP_TEST_BACKEND=postgresql`` boots every environment on
a scratch schema of the test server instead (``tests/pg_server.py``), and the
attacker's helpers (:meth:`Env.overwrite`, :meth:`Env.remove`,
:meth:`Env.rewrite_log_entry`) edit what that backend stores.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pg_server import DSN, connect, drop_schema, new_schema_name
from psycopg import sql

from sop_verified.core.health import Health
from sop_verified.nexus.backends import open_backend
from sop_verified.nexus.config import DEFAULT_CONFIG, init_data_dir, load_config, load_mac_key
from sop_verified.nexus.demo import SOUND_POLICIES
from sop_verified.nexus.sop import SOP

BACKEND = os.environ.get("SOP_TEST_BACKEND", "sqlite")
"""``sqlite`` (the default) or ``postgresql``."""

NOW = 1_800_000_000
EMP_SEED = bytes(range(32))


class Clock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> int:
        return self.t


@dataclass
class Env:
    """A booted SOP and what the protocols hold."""

    sop: SOP
    clock: Clock
    data_dir: Path
    drac: str
    emp: str
    csp: str
    emp_key: Ed25519PrivateKey
    schema: str | None = None
    """The PostgreSQL schema SOP keeps its state in; None: SQLite in ``data_dir``."""

    def reboot(self, *, ready: bool = True) -> SOP:
        """Close and boot again on the same data directory (READY unless ``ready`` is False)."""
        self.sop.close()
        self.sop = SOP.boot(self.data_dir, now=self.clock)
        if ready:
            assert self.sop.health is Health.READY, self.sop.boot_report
        return self.sop

    def entries(self, start: int = 0) -> list[dict[str, object]]:
        """Log entries from ``start`` on, parsed."""
        store = self.sop.store
        assert store is not None
        return [orjson.loads(p) for _, _, p in store.log.log_entries(start)]

    def log_size(self) -> int:
        """The log's size now."""
        assert self.sop.log is not None
        return self.sop.log.size

    def close(self) -> None:
        """Close SOP and drop its PostgreSQL schema (if it has one)."""
        self.sop.close()
        if self.schema is not None:
            drop_schema(self.schema)

    # ---- the attacker: he writes what SOP stores, not its keys ------------------------------
    def _scope_root(self, scope: str) -> Path:
        found = load_config(self.data_dir).scope_table().get(scope)
        assert found is not None
        return self.data_dir / "scopes" / found.root

    def stored(self, scope: str, stored: str) -> bytes:
        """The bytes at ``stored`` in ``scope`` (a file, or a ``persist_content`` row)."""
        if self.schema is None:
            return (self._scope_root(scope) / stored).read_bytes()
        with self._attacker() as conn:
            row = conn.execute(
                "SELECT data FROM persist_content WHERE scope = %s AND stored = %s",
                (scope, stored),
            ).fetchone()
        assert row is not None, stored
        return bytes(row[0])

    def overwrite(self, scope: str, stored: str, data: bytes) -> None:
        """Replace the bytes at ``stored`` in ``scope`` behind SOP's back."""
        if self.schema is None:
            path = self._scope_root(scope) / stored
            os.chmod(path, 0o600)
            path.write_bytes(data)
            return
        with self._attacker() as conn:
            cur = conn.execute(
                "UPDATE persist_content SET data = %s WHERE scope = %s AND stored = %s",
                (data, scope, stored),
            )
            assert cur.rowcount == 1, stored

    def remove(self, scope: str, stored: str) -> None:
        """Delete the bytes at ``stored`` in ``scope`` behind SOP's back."""
        if self.schema is None:
            (self._scope_root(scope) / stored).unlink()
            return
        with self._attacker() as conn:
            cur = conn.execute(
                "DELETE FROM persist_content WHERE scope = %s AND stored = %s", (scope, stored)
            )
            assert cur.rowcount == 1, stored

    def rewrite_log_entry(self, index: int, payload: bytes) -> None:
        """Rewrite one log row's payload, the append-only guard taken off first."""
        if self.schema is None:
            db = sqlite3.connect(str(self.data_dir / "sop.db"), isolation_level=None)
            db.execute("DROP TRIGGER log_entries_no_update")
            db.execute("UPDATE log_entries SET payload = ? WHERE idx = ?", (payload, index))
            db.close()
            return
        with self._attacker() as conn:
            conn.execute("UPDATE log_entries SET payload = %s WHERE idx = %s", (payload, index))

    def _attacker(self) -> Any:
        assert self.schema is not None
        conn = connect()
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        conn.execute("SET session_replication_role = replica")  # no trigger fires for him
        return conn


def make_env(root: Path, config_text: str | None = None, policies: str = SOUND_POLICIES) -> Env:
    """Init, boot, activate ``policies``, admit the three protocols, register EMP's key."""
    clock = Clock()
    data = root / "data"
    schema = _init(data, config_text or DEFAULT_CONFIG)
    sop = SOP.boot(data, now=clock)
    assert sop.health is Health.READY, sop.boot_report
    policy_dir = root / "policies"
    policy_dir.mkdir()
    (policy_dir / "policies.toml").write_text(policies)
    sop.activate_policy(policy_dir)
    day = NOW + 86_400
    _, drac = sop.admit(
        "drac",
        ["artifact.persist", "artifact.read", "phase.advance"],
        ["artifacts/drac/**"],
        expires=day,
    )
    _, emp = sop.admit(
        "emp", ["verdict.record", "obligation.submit"], ["verdicts/emp/**"], expires=day
    )
    _, csp = sop.admit(
        "csp",
        ["state.persist", "snapshot.seal", "snapshot.resume"],
        ["state/csp/**", "snapshots/csp/**"],
        expires=day,
    )
    key = Ed25519PrivateKey.from_private_bytes(EMP_SEED)
    sop.register_emp_key(key.public_key())
    return Env(sop, clock, data, drac, emp, csp, key, schema)


def _init(data: Path, config: str) -> str | None:
    """A fresh data directory on :data:`BACKEND`; its PostgreSQL schema (migrated), or None."""
    if BACKEND == "sqlite":
        init_data_dir(data, config_text=config)
        return None
    assert BACKEND == "postgresql", f"SOP_TEST_BACKEND=`{BACKEND}`: sqlite or postgresql"
    schema = new_schema_name()
    text = config.replace('storage = "sqlite"', 'storage = "postgresql"', 1)
    init_data_dir(data, config_text=text + f'\n[postgresql]\ndsn = "{DSN}"\nschema = "{schema}"\n')
    open_backend(data, load_config(data), state_key=load_mac_key(data)[0], migrate=True).close()
    return schema

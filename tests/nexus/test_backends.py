"""Choosing the backend from sop.toml: SQLite by default, PostgreSQL with `[postgresql]`."""

from __future__ import annotations

from pathlib import Path

import pytest
from pg_server import DSN, scratch_schema

from sop_verified.errors import ConfigError
from sop_verified.nexus.backends import open_backend, storage_where
from sop_verified.nexus.config import (
    DEFAULT_CONFIG,
    init_data_dir,
    init_replica,
    load_config,
    postgres_config,
)
from sop_verified.nexus.sop import SOP
from sop_verified.storage.postgres import PostgresBackend


def _config(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "d"
    d.mkdir()
    (d / "sop.toml").write_text(text)
    return d


def test_postgresql_storage_needs_its_table(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG.replace('storage = "sqlite"', 'storage = "postgresql"')
    with pytest.raises(ConfigError, match=r"needs a `\[postgresql\]` table with `dsn"):
        load_config(_config(tmp_path, text))


def test_a_postgresql_table_with_sqlite_storage_is_refused(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG + '\n[postgresql]\ndsn = "host=x"\n'
    with pytest.raises(ConfigError, match=r'only read with `storage = "postgresql"`'):
        load_config(_config(tmp_path, text))


@pytest.mark.parametrize("schema", ["Sop", "1sop", "sop-x", "a" * 64, "sop;drop"])
def test_a_schema_that_is_not_a_plain_name_is_refused(schema: str) -> None:
    with pytest.raises(ConfigError, match="is not a schema name"):
        postgres_config("host=127.0.0.1", schema)


def test_the_dsn_says_where_and_is_not_in_the_config_digest(tmp_path: Path) -> None:
    a = _config(tmp_path, postgres_config("postgresql://sop:hunter2@db1/test", "sop"))
    config = load_config(a)
    other = config.model_copy(
        update={
            "postgresql": config.postgresql.model_copy(  # type: ignore[union-attr]
                update={"dsn": "postgresql://sop:hunter2@db2/test"}
            )
        }
    )
    assert other.digest() == config.digest()  # another address for the same database
    renamed = config.model_copy(
        update={
            "postgresql": config.postgresql.model_copy(  # type: ignore[union-attr]
                update={"schema_name": "other"}
            )
        }
    )
    assert renamed.digest() != config.digest()  # another schema is another database
    shown = storage_where(config)
    assert "hunter2" not in shown and "db1" in shown


def test_a_dsn_for_a_sqlite_directory_is_refused(tmp_path: Path) -> None:
    init_data_dir(tmp_path / "d")
    config = load_config(tmp_path / "d")
    with pytest.raises(ConfigError, match="keeps its state in SQLite; `--dsn` is for"):
        open_backend(tmp_path / "d", config, state_key=None, dsn=DSN)


def test_a_replica_copies_keys_config_and_anchor_and_nothing_of_sqlite(tmp_path: Path) -> None:
    init_data_dir(tmp_path / "lite")
    with pytest.raises(ConfigError, match="keeps its state in SQLite"):
        init_replica(tmp_path / "r", tmp_path / "lite")
    with scratch_schema() as schema:
        SOP.init(tmp_path / "one", dsn=DSN, schema=schema)
        with pytest.raises(ConfigError, match="has no rollback anchor"):
            init_replica(tmp_path / "r", tmp_path / "one")  # never booted: nothing to anchor
        SOP.boot(tmp_path / "one").close()
        init_replica(tmp_path / "r", tmp_path / "one")
        for name in ("sop.toml", "checkpoint.anchor", "keys/capability.key", "keys/tls/ca.key"):
            copied = tmp_path / "r" / name
            assert copied.read_bytes() == (tmp_path / "one" / name).read_bytes()
            assert copied.stat().st_mode & 0o077 == 0, name
        with pytest.raises(ConfigError, match="already initialised"):
            init_replica(tmp_path / "r", tmp_path / "one")


def test_init_creates_the_schema_and_boot_refuses_one_it_does_not_know(tmp_path: Path) -> None:
    with scratch_schema() as schema:
        SOP.init(tmp_path / "one", dsn=DSN, schema=schema)
        store = PostgresBackend.open(DSN, schema=schema, migrate=False)  # init migrated it
        store.close()
    with scratch_schema() as schema:  # a data directory whose schema was never made
        (tmp_path / "two").mkdir()
        (tmp_path / "two" / "sop.toml").write_text(postgres_config(DSN, schema))
        donor = tmp_path / "keys-from"
        init_data_dir(donor)
        for f in (donor / "keys").rglob("*"):
            if f.is_file():
                target = tmp_path / "two" / f.relative_to(donor)
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                target.write_bytes(f.read_bytes())
                target.chmod(0o600)
        sop = SOP.boot(tmp_path / "two")
        try:
            assert sop.boot_report is not None and sop.boot_report.failed == "storage"
            assert "version" in sop.boot_report.detail
        finally:
            sop.close()


def test_init_refuses_a_schema_that_already_holds_a_log(tmp_path: Path) -> None:
    with scratch_schema() as schema:
        SOP.init(tmp_path / "one", dsn=DSN, schema=schema)
        SOP.boot(tmp_path / "one").close()  # the boot logs: the schema now holds a log
        with pytest.raises(ConfigError, match=f"schema `{schema}` already holds a log of"):
            SOP.init(tmp_path / "two", dsn=DSN, schema=schema)
        assert not (tmp_path / "two").exists()  # nothing written: no keys for a forked log

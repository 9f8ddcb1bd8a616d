"""The data directory and its configuration file, ``sop.toml``.

``sop init`` writes the directory: the configuration, the keys (0600) and the
SQLite database. Boot reads it; anything malformed is a precise ConfigError.
"""

from __future__ import annotations

import json
import re
import secrets
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sop_verified.core.persistence.scopes import (
    DEFAULT_MAX_BLOB_BYTES,
    Retention,
    Scope,
    ScopeMode,
    ScopeTable,
)
from sop_verified.core.request import PRINCIPAL_PATTERN
from sop_verified.errors import ConfigError, InputError
from sop_verified.events.nats_config import NatsSinkConfig
from sop_verified.nexus.anchor import ANCHOR_NAME
from sop_verified.nexus.keys import create_log_keys, write_secret
from sop_verified.nexus.telemetry_config import TelemetryConfig, create_telemetry_key
from sop_verified.nexus.witnesses_config import WitnessesConfig
from sop_verified.protocols.drac.phases import DEFAULT_PHASES, check_phases
from sop_verified.tools.canonical import digest, sha256_hex
from sop_verified.tools.paths import Glob, check_path
from sop_verified.tools.private_fs import make_private_dir, write_private
from sop_verified.tools.x509_ca import create_authority

__all__ = [
    "DEFAULT_CONFIG",
    "DracConfig",
    "EventsConfig",
    "PostgresConfig",
    "RetentionConfig",
    "SOPConfig",
    "ScopeConfig",
    "init_data_dir",
    "init_replica",
    "load_config",
    "load_mac_key",
    "postgres_config",
]

CONFIG_NAME = "sop.toml"
MAC_KEY_NAME = "keys/capability.key"

DEFAULT_CONFIG = """\
# SOP configuration (read at boot; changing it changes the config digest in the boot manifest)
origin = "sop.local/log"
storage = "sqlite"

[scopes]
# persist actions may only target these scopes; `sop policy activate` proves it with Z3
approved = [
    "artifacts/drac/**",
    "verdicts/emp/**",
    "state/csp/**",
    "snapshots/csp/**",
]

# Where the persistence controller stores each approved scope (under <data>/scopes/<root>).
# Only the owners write; owners and readers read. Modes: content-addressed (blobs named by
# SHA-256, verified on every read), write-once (never overwritten or deleted), versioned.
# Retention deletes superseded versions only (never the latest, never write-once scopes).

[[scope]]
name = "drac-artifacts"
root = "drac/artifacts"
owners = ["drac"]
readers = ["emp", "csp"]
mode = "content-addressed"
path = "artifacts/drac/**"
max_blob_bytes = 16777216
retention = { keep = 8, max_age_seconds = 2592000 }

[[scope]]
name = "emp-verdicts"
root = "emp/verdicts"
owners = ["emp"]
readers = ["drac", "csp"]
mode = "write-once"
path = "verdicts/emp/**"
max_blob_bytes = 1048576

[[scope]]
name = "csp-state"
root = "csp/state"
owners = ["csp"]
mode = "versioned"
path = "state/csp/**"
max_blob_bytes = 16777216
retention = { keep = 16 }

[[scope]]
name = "csp-snapshot-blobs"
root = "csp/snapshots/blobs"
owners = ["csp"]
mode = "content-addressed"
path = "snapshots/csp/blobs/**"
max_blob_bytes = 16777216

[[scope]]
name = "csp-snapshot-manifests"
root = "csp/snapshots/manifests"
owners = ["csp"]
mode = "write-once"
path = "snapshots/csp/manifests/**"
max_blob_bytes = 1048576

[drac]
# DRAC's per-session phase order: a phase is entered only after the previous one completed
phases = ["SCAN", "RESOLVE", "ASSEMBLE", "VERIFY", "FREEZE"]

# Witnesses (docs/WITNESS.md): publish a checkpoint only once `min` of them cosigned it.
# [witnesses]
# min = 1
# witness = [{ url = "http://127.0.0.1:7650", vkey = "<`sop witness init` prints it>" }]

# Telemetry (docs/TELEMETRY.md): no request context value leaves SOP in an event unless named.
# [telemetry]
# allow = ["classification"]   # context attributes whose values may leave as they are
# mode = "drop"                # the others: "drop", or "hash" (HMAC-SHA256, keys/telemetry.key)

# SOP's events to a NATS JetStream stream, exactly once by log index (README, ADR 0019).
# [events.nats]
# servers = ["nats://127.0.0.1:4222"]
# stream = "SOP_EVENTS"
# subject_prefix = "sop.events"
"""


class ScopesConfig(BaseModel):
    """Approved scopes (globs) for persist actions."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    approved: tuple[str, ...] = Field(min_length=1, max_length=256)

    @field_validator("approved")
    @classmethod
    def _globs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, g in enumerate(v):
            try:
                Glob(g, where=f"scopes.approved[{i}]")
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return v


class RetentionConfig(BaseModel):
    """``retention = { keep = N, max_age_seconds = S }`` of a scope (superseded versions only)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    keep: int | None = Field(default=None, ge=1, le=1_000_000)
    max_age_seconds: int | None = Field(default=None, ge=1)


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


class ScopeConfig(BaseModel):
    """One ``[[scope]]``: where the persistence controller stores an approved scope."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    root: str
    owners: tuple[str, ...] = Field(min_length=1, max_length=16)
    readers: tuple[str, ...] = Field(default=(), max_length=16)
    mode: Literal["content-addressed", "write-once", "versioned"]
    path: str
    retention: RetentionConfig | None = None
    max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES

    @field_validator("owners", "readers", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _tuple(v)

    @field_validator("owners", "readers")
    @classmethod
    def _principals(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [p for p in v if not isinstance(p, str) or re.fullmatch(PRINCIPAL_PATTERN, p) is None]
        if bad:
            raise ValueError(f"`{bad[0]!s}` is not a protocol id (accepted: `{PRINCIPAL_PATTERN}`)")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.endswith("/**"):
            raise ValueError(f"scope path `{v}` must be a literal prefix followed by `/**`")
        try:
            check_path(v[:-3], where="path")
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return v

    def to_scope(self) -> Scope:
        """The core :class:`~sop_verified.core.persistence.Scope` this table declares.

        Raises:
            ConfigError: the scope breaks a rule (bad root, retention on write-once, ...).
        """
        r = self.retention
        return Scope(
            name=self.name,
            root=self.root,
            owners=frozenset(self.owners),
            readers=frozenset(self.readers),
            mode=ScopeMode(self.mode),
            prefix=self.path[:-3],
            retention=None if r is None else Retention(r.keep, r.max_age_seconds),
            max_blob_bytes=self.max_blob_bytes,
        )


def _covered(prefix: str, approved: tuple[str, ...]) -> bool:
    """Whether every path under ``prefix`` is matched by some approved ``<literal>/**`` glob."""
    for glob in approved:
        head = glob[:-3] if glob.endswith("/**") else None
        literal = head is not None and "*" not in head and "?" not in head
        if literal and head is not None and (prefix == head or prefix.startswith(head + "/")):
            return True
    return False


class DracConfig(BaseModel):
    """``[drac]``: the per-session phase order (default SCAN, RESOLVE, ASSEMBLE, VERIFY, FREEZE)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    phases: tuple[str, ...] = DEFAULT_PHASES

    @field_validator("phases", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        return _tuple(v)

    @field_validator("phases")
    @classmethod
    def _order(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return check_phases(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class ProofsConfig(BaseModel):
    """The proof gate's settings: z3's deterministic budget and the cvc5 cross-check."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    rlimit: int = Field(default=5_000_000, ge=10_000, le=1_000_000_000)
    workers: int = Field(default=1, ge=1, le=16)
    cross_check: tuple[str, ...] = Field(default=(), max_length=64)
    """Obligation classes (the id up to the first `:`, e.g. `scope`, or `*`) whose PROVED
    verdicts cvc5 must confirm; a disagreement denies and raises the integrity alarm."""

    @field_validator("cross_check", mode="before")
    @classmethod
    def _classes(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v


_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresConfig(BaseModel):
    """``[postgresql]``: where the shared database is (with ``storage = "postgresql"``).

    The DSN says where, not what: it is left out of the config digest, so a replica may
    reach the same database by another address (``sop serve --dsn``). What the database
    holds is authenticated by the signed log, the anchor and the state seal, not by its
    address. Its password, if any, is never logged or shown.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    dsn: str = Field(min_length=1, max_length=4096)
    schema_name: str = Field(default="sop", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")


class EventsConfig(BaseModel):
    """``[events]``: where SOP's events are delivered beyond the process (none by default)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    nats: NatsSinkConfig | None = None
    """``[events.nats]``: the NATS JetStream sink (:mod:`sop_verified.events.nats_config`)."""


class SOPConfig(BaseModel):
    """The validated configuration."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    origin: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
    storage: str = Field(pattern=r"^(sqlite|postgresql)$")
    postgresql: PostgresConfig | None = None
    scopes: ScopesConfig
    scope: tuple[ScopeConfig, ...] = Field(default=(), max_length=64)
    drac: DracConfig = Field(default_factory=DracConfig)
    proofs: ProofsConfig = Field(default_factory=ProofsConfig)
    witnesses: WitnessesConfig | None = None
    """Publish checkpoints only once witnesses cosigned them (None: SOP's own, as signed)."""
    telemetry: TelemetryConfig | None = None
    """What of a request's context may leave SOP in events (None: nothing; docs/TELEMETRY.md)."""
    events: EventsConfig | None = None
    """Where SOP's events are delivered beyond the process (None: nowhere)."""

    @field_validator("scope", mode="before")
    @classmethod
    def _scope_list(cls, v: Any) -> Any:
        return _tuple(v)

    @model_validator(mode="after")
    def _storage_consistent(self) -> SOPConfig:
        if self.storage == "postgresql" and self.postgresql is None:
            raise ValueError(
                '`storage = "postgresql"` needs a `[postgresql]` table with `dsn = "..."`'
                " (or make the directory with `sop init --dsn DSN`)"
            )
        if self.storage == "sqlite" and self.postgresql is not None:
            raise ValueError(
                'a `[postgresql]` table is only read with `storage = "postgresql"`;'
                ' set `storage = "postgresql"` or remove the table'
            )
        return self

    @model_validator(mode="after")
    def _scopes_consistent(self) -> SOPConfig:
        try:
            table = self.scope_table()
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        for s in table:
            if not _covered(s.prefix, self.scopes.approved):
                raise ValueError(
                    f"scope `{s.name}` serves `{s.prefix}/**`, which no approved scope covers "
                    "(accepted: a path under one of `scopes.approved`)"
                )
        return self

    def scope_table(self) -> ScopeTable:
        """The declared scopes for the persistence controller.

        Raises:
            ConfigError: the scopes break a rule (overlap, nested roots, ...).
        """
        return ScopeTable(tuple(s.to_scope() for s in self.scope))

    def digest(self) -> str:
        """The config digest recorded in the boot manifest (and sealed with the state).

        The DSN is left out (it says where, not what), and so is ``[events.nats]``:
        where events are delivered changes nothing SOP decides, and the stream is a
        projection of the log, which the digest already covers. A configuration without
        ``[postgresql]``, ``[witnesses]``, ``[telemetry]`` or ``[events]`` has the digest
        it had before those tables existed: data directories made earlier boot without
        ``sop config accept``. A ``[telemetry]`` table is in the digest: what may leave
        SOP changes only through ``sop config accept``, which is logged.
        """
        dumped = self.model_dump(mode="json", by_alias=True)
        where = dumped.pop("postgresql")  # absent for SQLite: older digests stay as they were
        if where is not None:
            dumped["postgresql"] = {k: v for k, v in where.items() if k != "dsn"}
        for table in ("witnesses", "telemetry"):
            if dumped.get(table) is None:
                dumped.pop(table, None)
        events = dumped.pop("events", None) or {}
        events.pop("nats", None)  # where events go, not what SOP decides
        if events:
            dumped["events"] = events
        return digest(dumped)


def load_config(data_dir: Path) -> SOPConfig:
    """Read and validate ``data_dir/sop.toml``.

    Raises:
        ConfigError: missing, not TOML, or not the accepted shape.
    """
    path = data_dir / CONFIG_NAME
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration at `{path}`", accepted="a data directory made by `sop init`"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"`{path}` is not valid TOML: {exc}", accepted=_ACCEPTED) from None
    try:
        return SOPConfig.model_validate(
            {
                **raw,
                "scopes": {
                    **raw.get("scopes", {}),
                    "approved": tuple(raw.get("scopes", {}).get("approved", ())),
                },
            }
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            str(err["msg"]).removeprefix("Value error, "),
            where=f"{path}:{where}" if where else str(path),
            accepted=_ACCEPTED,
        ) from None
    except AttributeError:
        raise ConfigError("`scopes` must be a table", where=str(path), accepted=_ACCEPTED) from None


_ACCEPTED = "a `sop.toml` with the keys `sop init` writes"


def postgres_config(dsn: str, schema: str = "sop") -> str:
    """:data:`DEFAULT_CONFIG` keeping the state in PostgreSQL at ``dsn``, schema ``schema``.

    Raises:
        ConfigError: ``schema`` is not a schema name SOP accepts.
    """
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"`{schema}` is not a schema name", accepted="`[a-z_][a-z0-9_]{0,62}`, e.g. `sop`"
        )
    text = DEFAULT_CONFIG.replace('storage = "sqlite"', 'storage = "postgresql"', 1)
    return text + f'\n[postgresql]\ndsn = {_toml_string(dsn)}\nschema = "{schema}"\n'


def _toml_string(value: str) -> str:
    """``value`` as a TOML basic string (JSON's escapes are TOML's for these characters)."""
    return json.dumps(value, ensure_ascii=False)


def init_data_dir(data_dir: Path, *, config_text: str = DEFAULT_CONFIG) -> None:
    """Create a fresh data directory: configuration, its keys and the TLS authority (0600).

    The TLS authority (``keys/tls/``: local CA and server certificate for the bridge
    plane's mutual TLS) is made by :func:`sop_verified.tools.x509_ca.create_authority`.

    Raises:
        ConfigError: the directory already holds a configuration.
    """
    if (data_dir / CONFIG_NAME).exists():
        raise ConfigError(
            f"`{data_dir}` is already initialised", accepted="an empty or new directory"
        )
    make_private_dir(data_dir)
    write_private(data_dir / CONFIG_NAME, config_text.encode("utf-8"))
    config = load_config(data_dir)  # refuse to leave a directory that will not boot
    write_secret(data_dir / MAC_KEY_NAME, secrets.token_bytes(32))
    create_log_keys(data_dir, config.origin)  # checkpoint and attestation keys, 0600
    create_telemetry_key(data_dir)  # keys/telemetry.key: `[telemetry] mode = "hash"`, 0600
    create_authority(data_dir)  # keys/tls/: the bridge plane's CA and server certificate


def init_replica(data_dir: Path, source: Path) -> None:
    """Make ``data_dir`` another replica of ``source``: its configuration and keys, 0600.

    Replicas share one PostgreSQL log, so they share what signs and authenticates it
    (checkpoint, capability and attestation keys, the bridge plane's CA) and start from
    the source's rollback anchor; what is a replica's own (lock, socket, boot manifest)
    starts fresh here.

    Raises:
        ConfigError: ``source`` is not a PostgreSQL data directory, a key is missing or
            readable by others, or ``data_dir`` is already initialised.
    """
    config = load_config(source)
    if config.postgresql is None:
        raise ConfigError(
            f"`{source}` keeps its state in SQLite, which one server uses alone",
            accepted="a data directory made with `sop init --dsn DSN`",
        )
    if (data_dir / CONFIG_NAME).exists():
        raise ConfigError(
            f"`{data_dir}` is already initialised", accepted="an empty or new directory"
        )
    load_mac_key(source)  # refuses a missing or widened key before anything is copied
    anchor = source / ANCHOR_NAME
    if not anchor.is_file():  # a replica without one could not tell a cut-back log
        raise ConfigError(
            f"`{source}` has no rollback anchor to start the replica from",
            accepted=f"a data directory that has booted once (`sop status --data-dir {source}`)",
        )
    files = sorted(f for f in (source / "keys").rglob("*") if f.is_file())
    make_private_dir(data_dir)  # what is a replica's own (anchor, lock, socket) starts fresh
    for f in files:
        target = data_dir / f.relative_to(source)
        make_private_dir(target.parent)
        write_secret(target, f.read_bytes())
    write_private(data_dir / ANCHOR_NAME, anchor.read_bytes())  # the log only grows from it
    write_private(data_dir / CONFIG_NAME, (source / CONFIG_NAME).read_bytes())


def load_mac_key(data_dir: Path) -> tuple[bytes, str]:
    """The capability MAC key and its id (the first 8 hex digits of SHA-256 of the key).

    Raises:
        ConfigError: missing, wrong size, or readable by others.
    """
    path = data_dir / MAC_KEY_NAME
    try:
        st = path.stat()
        key = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no capability key at `{path}`", accepted="run `sop init`") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"`{path}` is readable by others", accepted="mode 0600 (chmod 600)")
    if len(key) != 32:
        raise ConfigError(f"`{path}` holds {len(key)} bytes", accepted="32 bytes")
    return key, sha256_hex(key)[:8]

"""``[telemetry]`` in ``sop.toml``: which request context values may leave SOP, and the key.

::

    [telemetry]
    allow = ["classification", "phase"]   # context attributes whose values may leave as they are
    mode = "drop"                          # the others: "drop" (default) or "hash"

With ``mode = "hash"`` every attribute not allowed leaves as
``hmac-sha256:<hex>`` under the telemetry key ``keys/telemetry.key`` (32 random
bytes, mode 0600, made by ``sop init``, copied by ``--replica-of`` so replicas
hash alike, never printed). A data directory made before the key existed has
none: it boots as before with ``drop`` (no key is needed); with ``hash`` boot
refuses, naming ``sop keys telemetry``, which makes one. Without the table
nothing of the context leaves and the configuration digest is what it was.
docs/TELEMETRY.md is the whole boundary.
"""

from __future__ import annotations

import secrets
import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sop_verified.core.request import CONTEXT_SCHEMA
from sop_verified.errors import ConfigError
from sop_verified.events.boundary import TELEMETRY_KEY_BYTES, TelemetryBoundary
from sop_verified.nexus.keys import write_secret

__all__ = [
    "TELEMETRY_KEY",
    "TelemetryConfig",
    "create_telemetry_key",
    "load_telemetry_key",
    "telemetry_boundary",
]

TELEMETRY_KEY = "keys/telemetry.key"
"""The telemetry key, relative to the data directory."""


class TelemetryConfig(BaseModel):
    """``[telemetry]``: the allow-listed context attributes and what happens to the others."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    allow: tuple[str, ...] = Field(default=(), max_length=len(CONTEXT_SCHEMA))
    mode: Literal["drop", "hash"] = "drop"

    @field_validator("allow", mode="before")
    @classmethod
    def _list(cls, v: object) -> object:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("allow")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if name not in CONTEXT_SCHEMA:
                raise ValueError(
                    f"`{name}` is not a context attribute"
                    f" (accepted: {', '.join(sorted(CONTEXT_SCHEMA))})"
                )
        if len(set(v)) != len(v):
            raise ValueError("a context attribute is named twice in `allow`")
        return tuple(sorted(v))


def create_telemetry_key(data_dir: Path) -> Path:
    """Make ``keys/telemetry.key`` (32 random bytes, 0600); never overwrite one.

    Raises:
        ConfigError: the key exists already.
    """
    path = data_dir / TELEMETRY_KEY
    if path.exists() or path.is_symlink():
        raise ConfigError(
            f"`{path}` exists already",
            accepted="one telemetry key per data directory (replicas share it: copy it)",
        )
    write_secret(path, secrets.token_bytes(TELEMETRY_KEY_BYTES))
    return path


def load_telemetry_key(data_dir: Path) -> bytes:
    """The telemetry key.

    Raises:
        ConfigError: missing, a symbolic link, readable by others, or not 32 bytes.
    """
    path = data_dir / TELEMETRY_KEY
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise ConfigError(f"`{path}` is a symbolic link", accepted="a regular file, 0600")
        key = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f'no telemetry key at `{path}`, which `[telemetry] mode = "hash"` needs',
            accepted=f"`sop keys telemetry --data-dir {data_dir}` makes one (a data directory"
            " made before it existed has none); replicas share one: copy it to each",
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"`{path}` is readable by others", accepted="mode 0600 (chmod 600)")
    if len(key) != TELEMETRY_KEY_BYTES:
        raise ConfigError(f"`{path}` holds {len(key)} bytes", accepted="32 bytes")
    return key


def telemetry_boundary(data_dir: Path, config: TelemetryConfig | None) -> TelemetryBoundary:
    """The boundary ``[telemetry]`` describes, with its key when ``mode = "hash"``.

    Args:
        data_dir: the data directory (where the key is).
        config: the table, or None (none: nothing of the context leaves).

    Returns:
        The boundary the events are projected through.

    Raises:
        ConfigError: ``hash`` and the key cannot be read.
    """
    if config is None:
        return TelemetryBoundary()
    key = load_telemetry_key(data_dir) if config.mode == "hash" else None
    return TelemetryBoundary.of(config.allow, config.mode, key)

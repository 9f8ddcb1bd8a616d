"""The data directory and its configuration file, ``sop.toml``.

``sop init`` writes the directory: the configuration, the keys (0600) and the
SQLite database. Boot reads it; anything malformed is a precise ConfigError.
"""

from __future__ import annotations

import secrets
import stat
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sop_verified.errors import ConfigError, InputError
from sop_verified.nexus.keys import create_log_keys, write_secret
from sop_verified.tools.canonical import digest, sha256_hex
from sop_verified.tools.paths import Glob

__all__ = [
    "DEFAULT_CONFIG",
    "SOPConfig",
    "init_data_dir",
    "load_config",
    "load_mac_key",
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


class SOPConfig(BaseModel):
    """The validated configuration."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    origin: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
    storage: str = Field(pattern=r"^sqlite$")
    scopes: ScopesConfig

    def digest(self) -> str:
        """The config digest recorded in the boot manifest."""
        return digest(self.model_dump(mode="json"))


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
        raise ConfigError(f"`{path}` is not valid TOML: {exc}") from None
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
            str(err["msg"]).removeprefix("Value error, "), where=f"{path}:{where}"
        ) from None
    except AttributeError:
        raise ConfigError("`scopes` must be a table", where=str(path)) from None


def init_data_dir(data_dir: Path, *, config_text: str = DEFAULT_CONFIG) -> None:
    """Create a fresh data directory: configuration and its three keys (0600).

    Raises:
        ConfigError: the directory already holds a configuration.
    """
    if (data_dir / CONFIG_NAME).exists():
        raise ConfigError(
            f"`{data_dir}` is already initialised", accepted="an empty or new directory"
        )
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (data_dir / CONFIG_NAME).write_text(config_text, encoding="utf-8")
    config = load_config(data_dir)  # refuse to leave a directory that will not boot
    write_secret(data_dir / MAC_KEY_NAME, secrets.token_bytes(32))
    create_log_keys(data_dir, config.origin)  # checkpoint and attestation keys, 0600


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

"""``[witnesses]`` in ``sop.toml``: the witnesses SOP publishes its checkpoints through.

::

    [witnesses]
    min = 2                        # distinct cosignatures a published checkpoint needs
    witness = [
        { url = "http://127.0.0.1:7650", vkey = "witness.example/w1+1a2b3c4d+BA..." },
        { url = "http://127.0.0.1:7651", vkey = "witness.example/w2+5e6f7a8b+BA..." },
    ]
    max_backoff_seconds = 30       # the longest wait before trying an unreachable witness again

Each witness is its C2SP tlog-witness submission prefix (``POST <url>/add-checkpoint``)
and its cosigner verifier key (``sop witness init`` prints it). Without the table SOP
publishes nothing through witnesses and serves its own latest checkpoint, as before.
How publication works is :mod:`sop_verified.nexus.witness_publisher` and docs/WITNESS.md.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sop_verified.errors import InputError
from sop_verified.tools.cosignature import CosignatureVerifier

__all__ = ["MAX_WITNESSES", "WitnessEndpoint", "WitnessesConfig"]

MAX_WITNESSES = 32
"""Most witnesses one SOP submits to."""

_URL_FORM = "`http://HOST[:PORT][/PREFIX]` or `https://...`, without credentials, query or fragment"
_VISIBLE = re.compile(r"[!-~]+")
"""Printable ASCII without spaces (a query `?` or fragment `#` is refused on its own)."""


class WitnessEndpoint(BaseModel):
    """One witness: ``{ url = "http://...", vkey = "<name>+<id>+<base64>" }``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    url: str = Field(max_length=2048)
    vkey: str = Field(max_length=1024)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            parts = urlsplit(v)
            port = parts.port  # a port that is not a number in [0, 65535] raises
        except ValueError:
            parts, port = None, None
        if (
            parts is None
            or not _VISIBLE.fullmatch(v)
            or "?" in v
            or "#" in v
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or "@" in parts.netloc  # credentials would end up in logs
            or port == 0
        ):
            raise ValueError(f"witness url `{v[:80]}` is not accepted (accepted: {_URL_FORM})")
        return v.rstrip("/")

    @field_validator("vkey")
    @classmethod
    def _vkey(cls, v: str) -> str:
        try:
            CosignatureVerifier.from_string(v)
        except InputError as exc:
            raise ValueError(f"witness vkey `{v[:80]}`: {exc}") from None
        return v

    def verifier(self) -> CosignatureVerifier:
        """The witness's cosigner key (validated when the table was read)."""
        return CosignatureVerifier.from_string(self.vkey)


class WitnessesConfig(BaseModel):
    """``[witnesses]``: who cosigns, and how many distinct cosignatures a publication needs."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    witness: tuple[WitnessEndpoint, ...] = Field(min_length=1, max_length=MAX_WITNESSES)
    min: int | None = Field(default=None, ge=1, le=MAX_WITNESSES)
    """Distinct cosignatures needed; default all of the witnesses listed."""
    max_backoff_seconds: int = Field(default=30, ge=1, le=3600)
    """The longest wait before an unreachable or failing witness is tried again."""

    @field_validator("witness", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @model_validator(mode="after")
    def _quorum(self) -> WitnessesConfig:
        count = len(self.witness)
        if self.min is not None and self.min > count:
            raise ValueError(
                f"`min = {self.min}` cosignatures cannot come from the `{count}` witnesses"
                f" listed (accepted: 1 to {count})"
            )
        seen_urls: set[str] = set()
        seen_keys: set[tuple[str, int]] = set()
        for i, w in enumerate(self.witness):
            key = w.verifier()
            if w.url in seen_urls:
                raise ValueError(f"witness[{i}]: url `{w.url}` is listed twice")
            if (key.name, key.key_id) in seen_keys:
                raise ValueError(
                    f"witness[{i}]: the key `{key.name}+{key.key_id:08x}` is listed twice"
                    " (accepted: distinct witnesses, each counted once towards `min`)"
                )
            seen_urls.add(w.url)
            seen_keys.add((key.name, key.key_id))
        return self

    @property
    def minimum(self) -> int:
        """How many distinct witnesses must cosign a checkpoint before it is published."""
        return len(self.witness) if self.min is None else self.min

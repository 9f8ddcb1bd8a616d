"""``[events.nats]`` in ``sop.toml``: where the NATS JetStream sink publishes SOP's events.

::

    [events.nats]
    servers = ["nats://127.0.0.1:4222"]  # nats:// or tls://; USER:PASSWORD@ allowed
    stream = "SOP_EVENTS"                # SOP's own stream: it captures `<prefix>.>`
    subject_prefix = "sop.events"        # an event goes to `<prefix>.<type>`
    create_stream = true                 # create the stream when it is missing
    duplicate_window_seconds = 120       # its Nats-Msg-Id window, when SOP creates it
    max_in_flight = 256                  # publishes awaiting the broker's ack at once
    cursor_interval_ms = 1000            # the durable cursor is written at most this often
    ack_timeout_seconds = 5              # no ack by then: reconnect and resynchronise
    max_backoff_seconds = 30             # longest wait before trying the broker again
    poll_interval_ms = 50                # how often the log is read when nothing wakes it
    batch_interval_ms = 50               # once caught up, publish at most this often

The table says where events go, not what SOP decides: it is left out of the
config digest (like PostgreSQL's DSN, ADR 0015), so pointing SOP at another
broker needs no ``sop config accept``. A password or token in a server URL is
never logged or shown: :func:`redact_url` replaces it by ``***``.
How the sink works is :mod:`sop_verified.events.nats_sink` and ADR 0019.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["MAX_SERVERS", "NatsSinkConfig", "redact_url", "url_secrets"]

MAX_SERVERS = 16
"""Most broker URLs one sink is given (the client tries them in turn)."""

_URL_FORM = "`nats://[USER:PASSWORD@]HOST[:PORT]` or `tls://...`, without path, query or fragment"
_VISIBLE = re.compile(r"[!-~]+")
_STREAM = r"^[A-Za-z0-9_-]{1,64}$"
_WORD = r"[A-Za-z0-9_-]+"
SUBJECT_PREFIX = rf"^{_WORD}(\.{_WORD}){{0,7}}$"
"""Up to eight literal subject tokens: no wildcard (``*``, ``>``), no ``$`` system subjects."""


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        port = parts.port  # a port that is not a number in [0, 65535] raises
    except ValueError:
        return None
    ok = (
        _VISIBLE.fullmatch(url) is not None
        and parts.scheme in ("nats", "tls")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and "?" not in url
        and "#" not in url
        and port != 0
    )
    return parts if ok else None


def redact_url(url: str) -> str:
    """``url`` with its password (or a lone user, which NATS reads as a token) as ``***``.

    Args:
        url: A server URL (validated or not).

    Returns:
        The URL safe to log or show: ``nats://user:***@host:4222``, ``nats://***@host``.
    """
    parts = _split(url)
    if parts is None:
        return "<a server url that is not accepted>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    who = "***" if parts.password is None else f"{parts.username}:***"
    return parts._replace(netloc=f"{who}@{host}").geturl()


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets a server URL carries (its password, or a token in the user position)."""
    parts = _split(url)
    if parts is None or "@" not in parts.netloc:
        return ()
    secret = parts.password if parts.password is not None else parts.username
    return (secret,) if secret else ()


class NatsSinkConfig(BaseModel):
    """``[events.nats]``: the broker, the stream and how the sink paces itself."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    servers: tuple[str, ...] = Field(min_length=1, max_length=MAX_SERVERS)
    stream: str = "SOP_EVENTS"
    subject_prefix: str = "sop.events"
    create_stream: bool = True
    duplicate_window_seconds: int = Field(default=120, ge=10, le=86_400)
    """The ``Nats-Msg-Id`` window of a stream SOP creates (JetStream's default is 2 min)."""
    max_in_flight: int = Field(default=256, ge=1, le=4096)
    cursor_interval_ms: int = Field(default=1000, ge=10, le=60_000)
    ack_timeout_seconds: int = Field(default=5, ge=1, le=60)
    max_backoff_seconds: int = Field(default=30, ge=1, le=3600)
    poll_interval_ms: int = Field(default=50, ge=5, le=10_000)
    batch_interval_ms: int = Field(default=50, ge=0, le=1000)
    """Once caught up, the sink publishes what the log gained at most this often (the
    events' added latency), in one burst: fewer interpreter-lock hand-overs (ADR 0019)."""

    @field_validator("servers", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("servers")
    @classmethod
    def _urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, url in enumerate(v):
            if _split(url) is None:
                shown = url if "@" not in url else "<hidden: it holds credentials>"
                raise ValueError(
                    f"servers[{i}]: `{shown[:80]}` is not accepted (accepted: {_URL_FORM})"
                )
        if len(set(v)) != len(v):
            raise ValueError("a server url is listed twice (accepted: distinct urls)")
        return tuple(url.rstrip("/") for url in v)

    @field_validator("stream")
    @classmethod
    def _stream(cls, v: str) -> str:
        if re.fullmatch(_STREAM, v) is None:
            raise ValueError(
                f"`{v[:80]}` is not a stream name (accepted: 1 to 64 letters, digits, `_`, `-`)"
            )
        return v

    @field_validator("subject_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if len(v) > 128 or re.fullmatch(SUBJECT_PREFIX, v) is None:
            raise ValueError(
                f"`{v[:80]}` is not a subject prefix (accepted: 1 to 8 dot-separated tokens of"
                " letters, digits, `_`, `-`, no wildcard, at most 128 characters)"
            )
        return v

    @model_validator(mode="after")
    def _window_covers_the_gap(self) -> NatsSinkConfig:
        # The broker's dedup must outlast the longest time an acknowledged event can stay
        # past the durable cursor (one cursor interval) plus one unacknowledged publish.
        gap = self.cursor_interval_ms / 1000 + self.ack_timeout_seconds
        if self.duplicate_window_seconds <= 2 * gap:
            raise ValueError(
                f"`duplicate_window_seconds = {self.duplicate_window_seconds}` must exceed twice"
                f" the cursor interval plus the ack timeout (`{2 * gap:g}` s); accepted: a larger"
                " window or a shorter `cursor_interval_ms` / `ack_timeout_seconds`"
            )
        return self

    @property
    def shown_servers(self) -> tuple[str, ...]:
        """The server URLs as they may be logged and shown (no password, no token)."""
        return tuple(redact_url(u) for u in self.servers)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every credential the URLs carry (scrubbed from any message the sink logs)."""
        return tuple(s for u in self.servers for s in url_secrets(u))

    def subject(self, event_type: str) -> str:
        """The subject an event of ``event_type`` is published on: ``<prefix>.<type>``."""
        return f"{self.subject_prefix}.{event_type}"

    @property
    def wildcard(self) -> str:
        """The subjects of SOP's events: ``<prefix>.>`` (the stream captures exactly these)."""
        return f"{self.subject_prefix}.>"

"""`[events.nats]` in sop.toml: accepted shapes, precise errors, no secret shown, digest kept."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sop_verified.errors import ConfigError
from sop_verified.events.nats_config import NatsSinkConfig, redact_url
from sop_verified.events.nats_cursor import CURSOR_NAME, read_cursor, write_cursor
from sop_verified.nexus.config import DEFAULT_CONFIG, SOPConfig, load_config

DEFAULT_DIGEST = "sha256:4abe0c8a47c0dc0131a05fcb2e1ec18eb4e4fd132ca6ff22fb292695f64d61d0"
"""The default configuration's digest (tests/golden)."""


def _load(tmp_path: Path, table: str) -> SOPConfig:
    (tmp_path / "sop.toml").write_text(DEFAULT_CONFIG + table)
    return load_config(tmp_path)


def _nats(tmp_path: Path, body: str) -> NatsSinkConfig:
    config = _load(tmp_path, f"\n[events.nats]\n{body}\n")
    assert config.events is not None and config.events.nats is not None
    return config.events.nats


def test_the_defaults_and_the_subjects(tmp_path: Path) -> None:
    nats = _nats(tmp_path, 'servers = ["nats://127.0.0.1:4222/"]')
    assert nats.servers == ("nats://127.0.0.1:4222",)
    assert (nats.stream, nats.subject_prefix, nats.create_stream) == (
        "SOP_EVENTS",
        "sop.events",
        True,
    )
    assert nats.subject("sop.decision.v1") == "sop.events.sop.decision.v1"
    assert nats.wildcard == "sop.events.>"


def test_the_sink_is_not_part_of_the_config_digest(tmp_path: Path) -> None:
    """Where events go is not what SOP decides (as the PostgreSQL DSN, ADR 0015)."""
    assert _load(tmp_path, "").digest() == DEFAULT_DIGEST
    one = _load(tmp_path, '\n[events.nats]\nservers = ["nats://a:4222"]\n')
    other = _load(tmp_path, '\n[events.nats]\nservers = ["tls://b"]\nstream = "X"\n')
    assert one.digest() == other.digest() == DEFAULT_DIGEST
    assert _load(tmp_path, "\n[events]\n").digest() == DEFAULT_DIGEST


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('servers = ["http://127.0.0.1:4222"]', "`http://127.0.0.1:4222` is not accepted"),
        ('servers = ["nats://h/path"]', "without path, query or fragment"),
        ('servers = ["nats://h:99999"]', "is not accepted"),
        ("servers = []", "at least 1 item"),
        ('servers = ["nats://a", "nats://a"]', "listed twice"),
        ('servers = ["nats://a"]\nstream = "a.b"', "`a.b` is not a stream name"),
        ('servers = ["nats://a"]\nsubject_prefix = "sop.>"', "`sop.>` is not a subject prefix"),
        ('servers = ["nats://a"]\nsubject_prefix = "$JS.x"', "is not a subject prefix"),
        ('servers = ["nats://a"]\nmax_in_flight = 0', "greater than or equal to 1"),
        ('servers = ["nats://a"]\nduplicate_window_seconds = 10', "must exceed twice"),
        ('servers = ["nats://a"]\ncreate_stream = "yes"', "valid boolean"),
        ('servers = ["nats://a"]\nurl = "nats://b"', "Extra inputs are not permitted"),
    ],
)
def test_a_malformed_table_is_a_precise_config_error(tmp_path: Path, body: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"events\.nats") as caught:
        _nats(tmp_path, body)
    assert says in str(caught.value)


def test_a_refused_url_with_credentials_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _nats(tmp_path, 'servers = ["nats://user:hunter2@host/path"]')
    assert "hunter2" not in str(caught.value)
    assert "<hidden: it holds credentials>" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://sop:hunter2@host:4222", "nats://sop:***@host:4222"),
        ("tls://s3cr3tt0ken@host", "tls://***@host"),  # a lone user is NATS's token
    ],
)
def test_passwords_and_tokens_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    config = NatsSinkConfig.model_validate({"servers": (url,)})
    assert config.shown_servers == (shown,)
    assert all(s not in shown for s in config.secrets)


def test_the_cursor_round_trips_and_a_bad_one_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / CURSOR_NAME
    assert read_cursor(path, "S") == 0  # none yet
    write_cursor(path, "S", 1234)
    assert read_cursor(path, "S") == 1234
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_cursor(path, "OTHER") == 0  # a cursor of another stream does not apply
    caplog.set_level(logging.WARNING)
    path.write_text('{"format": "sop-events-nats-cursor/v1", "stream": "S", "acked": "12"}')
    assert read_cursor(path, "S") == 0
    path.write_bytes(b"\x00garbage")
    assert read_cursor(path, "S") == 0
    assert len(caplog.records) == 2  # each said, neither fatal (the stream says where it is)

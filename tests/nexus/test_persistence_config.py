"""Scopes in sop.toml: one per protocol area by default; mistakes are precise ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sop_verified.core.persistence import ScopeMode
from sop_verified.errors import ConfigError
from sop_verified.nexus.config import DEFAULT_CONFIG, SOPConfig, load_config

HEAD = """
origin = "sop.local/log"
storage = "sqlite"

[scopes]
approved = ["artifacts/drac/**", "verdicts/emp/**", "state/csp/**"]
"""

GOOD = """
[[scope]]
name = "a"
root = "drac/a"
owners = ["drac"]
mode = "content-addressed"
path = "artifacts/drac/**"
"""


def _load(tmp_path: Path, scopes: str) -> SOPConfig:
    (tmp_path / "sop.toml").write_text(HEAD + scopes)
    return load_config(tmp_path)


def test_default_config_declares_a_scope_per_protocol_area(tmp_path: Path) -> None:
    (tmp_path / "sop.toml").write_text(DEFAULT_CONFIG)
    table = {s.name: s for s in load_config(tmp_path).scope_table()}
    assert {s.prefix for s in table.values()} == {
        "artifacts/drac",
        "verdicts/emp",
        "state/csp",
        "snapshots/csp/blobs",
        "snapshots/csp/manifests",
    }
    assert table["emp-verdicts"].mode is ScopeMode.WRITE_ONCE
    assert table["emp-verdicts"].retention is None
    assert table["csp-snapshot-manifests"].mode is ScopeMode.WRITE_ONCE
    assert table["csp-snapshot-blobs"].mode is ScopeMode.CONTENT_ADDRESSED
    assert table["csp-state"].mode is ScopeMode.VERSIONED
    assert all(s.owners == {s.prefix.split("/")[1]} for s in table.values())


def test_config_without_scope_tables_still_loads(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert list(config.scope_table()) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('mode = "content-addressed"', 'mode = "append"'), "mode"),
        (('path = "artifacts/drac/**"', 'path = "artifacts/drac"'), "literal prefix followed by"),
        (('path = "artifacts/drac/**"', 'path = "artifacts/*/**"'), "malformed path"),
        (('path = "artifacts/drac/**"', 'path = "misc/**"'), "which no approved scope covers"),
        (('root = "drac/a"', 'root = "../escape"'), "`..` segment"),
        (('root = "drac/a"', 'root = "/abs"'), "malformed path"),
        (('owners = ["drac"]', "owners = []"), "at least 1 item"),
        (('owners = ["drac"]', 'owners = ["DRAC"]'), "is not a protocol id"),
        (('name = "a"', 'name = "A b"'), "should match pattern"),
        (('owners = ["drac"]', 'owners = ["drac"]\nmax_blob_bytes = 0'), "max_blob_bytes"),
        (('owners = ["drac"]', 'owners = ["drac"]\nretention = { keep = 0 }'), "keep"),
        (('owners = ["drac"]', 'owners = ["drac"]\nretention = {}'), "needs `keep`"),
        (('owners = ["drac"]', 'owners = ["drac"]\nwho = "x"'), "Extra inputs"),
    ],
)
def test_bad_scope_is_a_precise_config_error(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _load(tmp_path, GOOD.replace(*change))
    assert "sop.toml" in str(caught.value)


def test_write_once_scope_with_retention_is_refused(tmp_path: Path) -> None:
    bad = GOOD.replace('mode = "content-addressed"', 'mode = "write-once"')
    with pytest.raises(ConfigError, match="write-once scope `a` declares retention"):
        _load(tmp_path, bad + "retention = { keep = 2 }\n")


def test_verdict_scope_must_be_write_once(tmp_path: Path) -> None:
    bad = GOOD.replace('path = "artifacts/drac/**"', 'path = "verdicts/emp/**"')
    with pytest.raises(ConfigError, match="proof verdicts are never deleted"):
        _load(tmp_path, bad)


def test_overlapping_scopes_are_refused(tmp_path: Path) -> None:
    second = GOOD.replace('name = "a"', 'name = "b"').replace("drac/a", "drac/b")
    second = second.replace('"artifacts/drac/**"', '"artifacts/drac/inner/**"')
    with pytest.raises(ConfigError, match="scopes `a` and `b` overlap"):
        _load(tmp_path, GOOD + second)


def test_nested_scope_roots_are_refused(tmp_path: Path) -> None:
    second = GOOD.replace('name = "a"', 'name = "b"').replace(
        'root = "drac/a"', 'root = "drac/a/x"'
    )
    second = second.replace('"artifacts/drac/**"', '"state/csp/**"').replace('"drac"]', '"csp"]')
    with pytest.raises(ConfigError, match="nest their roots"):
        _load(tmp_path, GOOD + second)


def test_duplicate_scope_names_are_refused(tmp_path: Path) -> None:
    second = GOOD.replace('root = "drac/a"', 'root = "csp/a"')
    second = second.replace('"artifacts/drac/**"', '"state/csp/**"')
    with pytest.raises(ConfigError, match="declared twice"):
        _load(tmp_path, GOOD + second)

"""`sop log verify` says whose key it trusted and where it came from (issue 13, "whose key").

A key read from inside the data directory proves nothing against whoever can
rewrite that directory: the report says so in words and as a field, and
points to ``--vkey`` and to witnesses. A key held elsewhere carries no such
warning, and it is the one that catches a rewritten directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.sop import SOP
from sop_verified.tools.signed_note import Verifier

NOW = 1_800_000_000
runner = CliRunner()
GENESIS = Path("keys") / "checkpoint.genesis.vkey"


def _make(data: Path) -> Path:
    SOP.init(data)
    sop = SOP.boot(data, now=lambda: NOW)
    sop.submit({"request_id": "r-1", "principal": "drac", "action": "artifact.read"})
    sop.close()
    return data


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make(tmp_path_factory.mktemp("key") / "data")


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture
def held(data: Path, tmp_path: Path) -> Path:
    """The genesis key, copied out of the data directory when it was made (a key held elsewhere)."""
    path = tmp_path / "held" / "checkpoint.vkey"
    path.parent.mkdir()
    shutil.copyfile(data / GENESIS, path)
    return path


def _json(data: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["log", "verify", "--data-dir", str(data), "--json", *extra])
    return result.exit_code, json.loads(result.output)


def _text(data: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["log", "verify", "--data-dir", str(data), *extra])
    return result.exit_code, " ".join(result.output.split())


def _genesis(data: Path) -> Verifier:
    return Verifier.from_string((data / GENESIS).read_text().strip())


def test_fallback_key_is_named_and_flagged_as_proving_nothing_in_json(data: Path) -> None:
    code, report = _json(data)
    key = _genesis(data)
    assert (code, report["ok"]) == (0, True)
    assert report["trusted_key"] == key.vkey
    assert report["trusted_key_name"] == key.name == "sop.local/log"
    assert report["trusted_key_id"] == f"{key.key_id:08x}"
    assert report["trusted_key_source"] == "data_directory"
    assert report["trusted_key_path"] == str(data / GENESIS)
    assert report["trusted_key_held_elsewhere"] is False
    warning = report["trusted_key_warning"]
    assert "proves nothing against someone who can rewrite that directory" in warning
    assert "`--vkey`" in warning and "witnesses" in warning


def test_fallback_key_is_named_and_flagged_as_proving_nothing_in_text(data: Path) -> None:
    code, text = _text(data)
    key = _genesis(data)
    assert code == 0
    assert f"trusted key: {key.name}+{key.key_id:08x}, read from" in text
    assert "in the data directory (no `--vkey` given)" in text
    assert "warning: the trusted key was read from" in text
    assert "proves nothing against someone who can rewrite that directory" in text
    assert "pass `--vkey` with a key held elsewhere" in text and "witnesses" in text
    assert "against the data directory's own key" in text


def test_vkey_file_held_elsewhere_is_named_without_warning(data: Path, held: Path) -> None:
    code, report = _json(data, "--vkey", str(held))
    assert (code, report["ok"]) == (0, True)
    assert report["trusted_key_source"] == "vkey_file"
    assert report["trusted_key_path"] == str(held)
    assert report["trusted_key_held_elsewhere"] is True
    assert report["trusted_key_warning"] is None
    assert report["trusted_key_name"] == "sop.local/log"
    code, text = _text(data, "--vkey", str(held))
    assert code == 0
    assert f"trusted key: sop.local/log+{_genesis(data).key_id:08x}, read from" in text
    assert "(`--vkey`)" in text
    assert "warning" not in text and "proves nothing" not in text


def test_vkey_string_is_named_without_warning(data: Path) -> None:
    vkey = _genesis(data).vkey
    code, report = _json(data, "--vkey", vkey)
    assert (code, report["trusted_key_source"], report["trusted_key_path"]) == (
        0,
        "vkey_string",
        None,
    )
    assert (report["trusted_key_held_elsewhere"], report["trusted_key_warning"]) == (True, None)
    code, text = _text(data, "--vkey", vkey)
    assert code == 0
    assert "given with `--vkey`" in text and "warning" not in text


def test_vkey_file_inside_the_data_directory_is_flagged(data: Path) -> None:
    inside = data / "keys" / "checkpoint.vkey"
    code, report = _json(data, "--vkey", str(inside))
    assert (code, report["trusted_key_source"]) == (0, "vkey_file")
    assert report["trusted_key_held_elsewhere"] is False
    assert "proves nothing" in report["trusted_key_warning"]


def test_rewritten_data_directory_passes_the_fallback_and_fails_a_held_key(
    data: Path, held: Path, tmp_path: Path
) -> None:
    """The attacker replaces the whole directory (its own keys, its own log): why the warning."""
    forged = _make(tmp_path / "attacker" / "data")
    shutil.rmtree(data)
    shutil.copytree(forged, data)
    code, report = _json(data)
    assert (code, report["ok"]) == (0, True)  # the fallback trusts the attacker's key
    assert report["trusted_key_warning"] is not None
    code, report = _json(data, "--vkey", str(held))
    assert (code, report["ok"], report["verified_checkpoints"]) == (1, False, 0)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no verifier key file at"),
        ("not a key\n", "does not hold a verifier key"),
    ],
    ids=["missing-file", "not-a-key"],
)
def test_bad_vkey_file_is_a_one_line_error(
    data: Path, tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "bad.vkey"
    if content is not None:
        path.write_text(content)
    for extra in ([], ["--json"]):
        result = runner.invoke(
            app, ["log", "verify", "--data-dir", str(data), "--vkey", str(path), *extra]
        )
        output = " ".join(result.output.split())
        assert result.exit_code == 2, result.output
        assert expected in output and "--vkey" in output
        assert "Traceback" not in result.output

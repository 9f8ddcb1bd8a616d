"""The log's keys: 0600 from init; rotation announced under the old key; the chain verifies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.health import Health
from sop_verified.nexus import keys
from sop_verified.nexus.sop import SOP
from sop_verified.tools.key_chain import ROTATION_TYPE, rotation_entry
from sop_verified.tools.signed_note import Signer, Verifier

NOW = 1_800_000_000
runner = CliRunner()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    SOP.init(d)
    return d


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("name", [keys.CHECKPOINT_KEY, keys.ATTESTATION_KEY])
def test_init_creates_private_keys(data: Path, name: str) -> None:
    assert (data / name).stat().st_mode & 0o777 == 0o600


def test_checkpoint_key_is_named_after_the_origin(data: Path) -> None:
    signer = keys.load_checkpoint_signer(data, "sop.local/log")
    assert signer.verifier().vkey == (data / keys.CHECKPOINT_VKEY).read_text().strip()
    assert (data / keys.CHECKPOINT_GENESIS).read_text() == (data / keys.CHECKPOINT_VKEY).read_text()


@pytest.mark.parametrize("name", [keys.CHECKPOINT_KEY, keys.ATTESTATION_KEY])
def test_key_readable_by_others_fails_boot(data: Path, name: str) -> None:
    os.chmod(data / name, 0o640)
    sop = SOP.boot(data, now=lambda: NOW)
    assert sop.health is Health.FAILED
    assert sop.boot_report is not None and "readable by others" in sop.boot_report.detail


def test_checkpoint_key_named_otherwise_fails_boot(data: Path) -> None:
    (data / "sop.toml").write_text((data / "sop.toml").read_text().replace("sop.local", "other"))
    sop = SOP.boot(data, now=lambda: NOW)
    assert sop.health is Health.FAILED
    assert sop.boot_report is not None and "is named `sop.local/log`" in sop.boot_report.detail


def test_keys_export_prints_public_keys_only(data: Path) -> None:
    code, vkey = _cli("keys", "export", "--data-dir", str(data))
    assert code == 0 and Verifier.from_string(vkey.strip()).name == "sop.local/log"
    code, pem = _cli("keys", "export", "--pem", "--data-dir", str(data))
    assert code == 0 and pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in vkey + pem
    code, out = _cli("keys", "export", "--pem", "--vkey", "--data-dir", str(data))
    assert code == 2 and "choose one" in out


def test_rotation_is_announced_and_the_chain_verifies(data: Path) -> None:
    genesis = (data / keys.CHECKPOINT_VKEY).read_text().strip()
    SOP.boot(data, now=lambda: NOW).close()
    code, out = _cli("keys", "rotate", "--data-dir", str(data), "--json")
    assert code == 0, out
    rotated = json.loads(out)
    assert rotated["vkey"] != genesis
    assert (data / keys.CHECKPOINT_VKEY).read_text().strip() == rotated["vkey"]
    assert not (data / "keys" / "checkpoint.key.next").exists()
    sop = SOP.boot(data, now=lambda: NOW)  # boots with the new key
    assert sop.health is Health.READY and sop.store is not None
    entry = json.loads(sop.store.log.log_entries()[rotated["receipt"]["index"]][2])
    assert (entry["type"], entry["old"], entry["new"]) == (ROTATION_TYPE, genesis, rotated["vkey"])
    sop.close()
    code, out = _cli("log", "verify", "--data-dir", str(data), "--json")
    assert code == 0, out  # from the genesis key through the rotation
    code, out = _cli("log", "verify", "--data-dir", str(data), "--json", "--vkey", rotated["vkey"])
    assert code == 1  # the new key alone did not sign the early checkpoints


def test_interrupted_rotation_not_yet_announced_is_dropped(data: Path) -> None:
    keys.stage_checkpoint_key(data, "sop.local/log")
    before = (data / keys.CHECKPOINT_KEY).read_bytes()
    sop = SOP.boot(data, now=lambda: NOW)
    assert sop.health is Health.READY
    assert (data / keys.CHECKPOINT_KEY).read_bytes() == before
    assert not (data / "keys" / "checkpoint.key.next").exists()


def test_interrupted_rotation_already_announced_is_finished(data: Path) -> None:
    sop = SOP.boot(data, now=lambda: NOW)
    staged = keys.stage_checkpoint_key(data, "sop.local/log")
    assert sop.log is not None and sop.services.keys.checkpoint is not None

    sop.log.rotate(
        staged, rotation_entry(sop.services.keys.checkpoint.verifier(), staged.verifier(), NOW)
    )
    sop.close()  # crash before the staged key replaced the old one
    again = SOP.boot(data, now=lambda: NOW)
    assert again.health is Health.READY
    assert keys.load_checkpoint_signer(data, "sop.local/log").key_id == staged.key_id
    again.close()
    code, out = _cli("log", "verify", "--data-dir", str(data), "--json")
    assert code == 0, out


def test_second_staged_rotation_is_refused(data: Path) -> None:
    keys.stage_checkpoint_key(data, "sop.local/log")
    with pytest.raises(Exception, match="already staged"):
        keys.stage_checkpoint_key(data, "sop.local/log")


def test_forged_key_material_is_refused(data: Path) -> None:
    path = data / keys.CHECKPOINT_KEY
    os.chmod(path, 0o600)
    path.write_text("PRIVATE+KEY+sop.local/log+00000000+AQ==")
    sop = SOP.boot(data, now=lambda: NOW)
    assert sop.health is Health.FAILED
    assert sop.boot_report is not None and "not a C2SP signer key" in sop.boot_report.detail


def test_signer_repr_never_shows_the_seed(data: Path) -> None:
    signer = keys.load_checkpoint_signer(data, "sop.local/log")
    secret = (data / keys.CHECKPOINT_KEY).read_text().split("+", 4)[4]
    assert len(secret) > 40
    assert secret not in repr(signer)
    assert isinstance(signer, Signer)

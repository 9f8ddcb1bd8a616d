"""`sop log prove` with witnesses configured: the published checkpoint, or says why not."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.health import Health
from sop_verified.nexus.keys import load_checkpoint_signer
from sop_verified.nexus.sop import SOP
from sop_verified.nexus.witness_publisher import WITNESSED_NAME
from sop_verified.tools.checkpoint import Checkpoint, sign_checkpoint
from sop_verified.tools.cosignature import CosignatureSigner, CosignatureVerifier
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.tlog_receipt import verify_bundle
from sop_verified.tools.witness import Cosigned, format_add_checkpoint
from sop_verified.tools.witness_config import KEY, init_witness_dir, load_witness_dir

runner = CliRunner()
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers, the witness never cosigns
READ = {"principal": "drac", "action": "artifact.read", "resource": "artifacts/drac/x"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A data directory naming one witness (never reachable), and the witness's directory."""
    base = tmp_path_factory.mktemp("prove")
    data = base / "data"
    SOP.init(data)
    log_vkey = (data / "keys" / "checkpoint.vkey").read_text().strip()
    witness_vkey = init_witness_dir(base / "w", "witness.example/w1", [(log_vkey, None)])
    table = f'[witnesses]\nwitness = [{{ url = "{NOWHERE}", vkey = "{witness_vkey}" }}]\n'
    with (data / "sop.toml").open("a") as fh:
        fh.write("\n" + table)
    with SOP.boot(data) as sop:
        for n in range(3):
            sop.submit({**READ, "request_id": f"r-{n}"})
        assert sop.witnesses is not None and sop.witnesses.published is None
        assert "sop-witness-publisher" in {t.name for t in threading.enumerate()}
    assert "sop-witness-publisher" not in {t.name for t in threading.enumerate()}  # close stops it
    return data, log_vkey, str(base / "w")


def _prove(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["log", "prove", *args, "--data-dir", str(data)])
    return result.exit_code, result.output


def test_no_witnessed_checkpoint_yet_is_said_and_unwitnessed_still_proves(
    data: tuple[Path, str, str],
) -> None:
    code, out = _prove(data[0], "1")
    assert code == 2
    assert "no checkpoint cosigned by `1` of the configured witnesses" in out
    assert "--unwitnessed" in out
    code, out = _prove(data[0], "1", "--unwitnessed")
    assert code == 0, out
    verify_bundle(out, [Verifier.from_string(data[1])])


def test_the_witnessed_checkpoint_is_proved_against_and_later_entries_are_not_yet(
    data: tuple[Path, str, str],
) -> None:
    directory, log_vkey, witness_dir = data
    proved = _prove(directory, "2", "--unwitnessed")[1]
    note = proved[proved.index("\n\n") + 2 :]  # SOP's checkpoint of the whole log
    size = int(note.split("\n")[1])
    loaded = load_witness_dir(Path(witness_dir))
    try:
        answer = loaded.witness().add_checkpoint(format_add_checkpoint(0, [], note))
        vkey = loaded.vkey
    finally:
        loaded.close()
    assert isinstance(answer, Cosigned)
    (directory / WITNESSED_NAME).write_text(note + answer.lines)
    code, out = _prove(directory, str(size - 1))
    assert code == 0, out
    result = verify_bundle(
        out, [Verifier.from_string(log_vkey)], witnesses=[CosignatureVerifier.from_string(vkey)]
    )
    assert result.checkpoint.size == size and len(result.cosignatures) == 1
    with SOP.boot(directory) as sop:  # the log grows past what was witnessed
        assert sop.witnesses is not None and sop.witnesses.published is not None
        sop.submit({**READ, "request_id": "r-9"})
    code, out = _prove(directory, str(size + 1))
    assert code == 2
    assert f"entry `{size + 1}` is in the log but not yet witnessed" in out
    code, out = _prove(directory, "100000")
    assert code == 2 and "not covered" in out


def test_status_shows_what_was_published_and_each_witness(data: tuple[Path, str, str]) -> None:
    result = runner.invoke(app, ["status", "--data-dir", str(data[0]), "--json"])
    status = json.loads(result.stdout)
    assert status["services"]["witness"]["health"] == "READY"
    [witness] = status["witnesses"]["witnesses"]
    assert witness["name"] == "witness.example/w1" and witness["url"] == NOWHERE
    assert witness["alarm"] is None
    plain = runner.invoke(app, ["status", "--data-dir", str(data[0])])
    assert "witness.example/w1" in plain.output and "published (witnessed) size" in plain.output


def test_boot_refuses_a_log_that_does_not_extend_its_published_checkpoint(
    data: tuple[Path, str, str], tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data[0], copy)
    signer = load_checkpoint_signer(copy, "sop.local/log")  # the log's own key: a forged history
    forged = sign_checkpoint(Checkpoint("sop.local/log", 2, bytes(32)), signer)
    cosigner = CosignatureSigner.from_string((Path(data[2]) / KEY).read_text().strip())
    text = forged.encode()[: forged.index("\n\n") + 1]
    (copy / WITNESSED_NAME).write_text(forged + cosigner.cosign(text, int(time.time())))
    with SOP.boot(copy) as sop:
        assert sop.health is Health.FAILED
        assert sop.boot_report.failed == "witness"
        assert "witnessed.checkpoint" in sop.boot_report.detail
        assert "is not in this log" in sop.boot_report.detail
        assert "not consistent with the kept checkpoint" in sop.boot_report.detail

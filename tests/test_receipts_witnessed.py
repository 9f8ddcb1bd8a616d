"""A receipt whose checkpoint a witness cosigned: `sop receipt verify --witness [--min]`.

SOP's own log and checkpoint (a booted data directory), cosigned by a witness
of this package (C2SP tlog-witness, in process), the cosignature lines
appended to the receipt's checkpoint note as tlog-cosignature says.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.errors import ReceiptError
from sop_verified.nexus.sop import SOP
from sop_verified.tools.cosignature import CosignatureVerifier, generate_cosigner
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.tlog_receipt import ProofBundle, verify_bundle
from sop_verified.tools.witness import Cosigned, format_add_checkpoint
from sop_verified.tools.witness_config import VKEY, init_witness_dir, load_witness_dir

NOW = 1_800_000_000
runner = CliRunner()


@pytest.fixture(scope="module")
def receipts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A SOP log's receipt, plain and cosigned, the log's key and the witness's key file."""
    base = tmp_path_factory.mktemp("witnessed")
    data = base / "data"
    SOP.init(data)
    with SOP.boot(data, now=lambda: NOW) as sop:
        for n in range(3):
            sop.submit(
                {
                    "request_id": f"r-{n}",
                    "principal": "drac",
                    "action": "artifact.read",
                    "resource": f"artifacts/drac/{n}",
                }
            )
    plain = base / "plain.tlog-proof"
    result = runner.invoke(app, ["log", "prove", "1", "--data-dir", str(data), "--out", str(plain)])
    assert result.exit_code == 0, result.output
    log_vkey = (data / "keys" / "checkpoint.vkey").read_text().strip()
    init_witness_dir(base / "w", "witness.example/w1", [(log_vkey, None)])
    loaded = load_witness_dir(base / "w")
    try:
        bundle = ProofBundle.from_text(plain.read_text())
        answer = loaded.witness().add_checkpoint(format_add_checkpoint(0, [], bundle.checkpoint))
    finally:
        loaded.close()
    assert isinstance(answer, Cosigned), answer
    cosigned = base / "cosigned.tlog-proof"
    cosigned.write_text(
        ProofBundle(
            bundle.index, bundle.proof, bundle.checkpoint + answer.lines, bundle.extra
        ).to_text()
    )
    return {
        "plain": plain,
        "cosigned": cosigned,
        "log_vkey": log_vkey,
        "witness_file": base / "w" / VKEY,
        "witness": (base / "w" / VKEY).read_text().strip(),
        "lines": answer.lines,
    }


def _verify(bundle: object, *args: str) -> tuple[int, dict[str, object] | str]:
    result = runner.invoke(app, ["receipt", "verify", str(bundle), "--json", *args])
    try:
        return result.exit_code, json.loads(result.stdout)
    except ValueError:
        return result.exit_code, result.output


def test_cosigned_receipt_verifies_with_the_witness_key(receipts: dict[str, Path | str]) -> None:
    code, out = _verify(
        receipts["cosigned"],
        "--vkey",
        str(receipts["log_vkey"]),
        "--witness",
        str(receipts["witness"]),
    )
    assert code == 0, out
    assert isinstance(out, dict)
    [cosignature] = out["cosignatures"]  # type: ignore[misc]
    assert cosignature["vkey"] == receipts["witness"]
    assert abs(cosignature["timestamp"] - time.time()) < 600  # the witness's clock


def test_witness_key_can_be_a_file(receipts: dict[str, Path | str]) -> None:
    code, out = _verify(
        receipts["cosigned"],
        "--vkey",
        str(receipts["log_vkey"]),
        "--witness",
        str(receipts["witness_file"]),
    )
    assert code == 0, out


def test_receipt_without_the_cosignature_is_rejected(receipts: dict[str, Path | str]) -> None:
    code, out = _verify(
        receipts["plain"],
        "--vkey",
        str(receipts["log_vkey"]),
        "--witness",
        str(receipts["witness"]),
    )
    assert code == 1
    assert isinstance(out, dict) and out["stage"] == "cosignature"


def test_quorum_defaults_to_every_witness_given(receipts: dict[str, Path | str]) -> None:
    other = generate_cosigner("witness.example/w2")[1]
    args = ["--vkey", str(receipts["log_vkey"]), "--witness", str(receipts["witness"])]
    code, out = _verify(receipts["cosigned"], *args, "--witness", other)
    assert code == 1 and isinstance(out, dict) and out["stage"] == "cosignature"
    code, out = _verify(receipts["cosigned"], *args, "--witness", other, "--min", "1")
    assert code == 0, out


def test_a_quorum_larger_than_the_witnesses_given_is_a_usage_error(
    receipts: dict[str, Path | str],
) -> None:
    result = runner.invoke(
        app,
        [
            "receipt",
            "verify",
            str(receipts["cosigned"]),
            "--vkey",
            str(receipts["log_vkey"]),
            "--witness",
            str(receipts["witness"]),
            "--min",
            "2",
        ],
    )
    assert result.exit_code == 2
    assert "--min 2" in result.output


def test_forged_cosignature_is_rejected(receipts: dict[str, Path | str], tmp_path: Path) -> None:
    lines = str(receipts["lines"])
    name, b64 = lines.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[20] ^= 1
    forged_line = f"{name} {base64.b64encode(bytes(raw)).decode()}\n"
    forged = tmp_path / "forged.tlog-proof"
    forged.write_text(Path(receipts["cosigned"]).read_text().replace(lines, forged_line))
    code, out = _verify(
        forged, "--vkey", str(receipts["log_vkey"]), "--witness", str(receipts["witness"])
    )
    assert code == 1 and isinstance(out, dict) and out["stage"] == "cosignature"


def test_cosigned_receipt_still_verifies_without_witness_keys(
    receipts: dict[str, Path | str],
) -> None:
    code, out = _verify(receipts["cosigned"], "--vkey", str(receipts["log_vkey"]))
    assert code == 0 and isinstance(out, dict) and out["cosignatures"] == []


def test_library_reports_the_cosignatures(receipts: dict[str, Path | str]) -> None:
    witness = CosignatureVerifier.from_string(str(receipts["witness"]))
    log = [Verifier.from_string(str(receipts["log_vkey"]))]
    text = Path(receipts["cosigned"]).read_text()
    result = verify_bundle(text, log, witnesses=[witness], min_cosignatures=1)
    assert [c.vkey for c in result.cosignatures] == [witness.vkey]
    with pytest.raises(ReceiptError) as caught:
        verify_bundle(Path(receipts["plain"]).read_text(), log, witnesses=[witness])
    assert caught.value.stage == "cosignature"

"""Every decision has a receipt; `sop log prove` writes it; `sop receipt verify` checks it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.request import Permission
from sop_verified.nexus.sop import SOP
from sop_verified.tools.checkpoint import open_checkpoint
from sop_verified.tools.merkle import leaf_hash
from sop_verified.tools.signed_note import Signer, Verifier, generate

NOW = 1_800_000_000
runner = CliRunner()


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    data = tmp_path_factory.mktemp("receipts") / "data"
    SOP.init(data)
    sop = SOP.boot(data, now=lambda: NOW)
    decision = sop.submit(
        {
            "request_id": "r-1",
            "principal": "drac",
            "action": "artifact.read",
            "resource": "artifacts/drac/a",
        }
    )
    assert decision.effect is Permission.DENY  # denials are logged, and get receipts too
    assert decision.receipt is not None
    sop.submit(
        {
            "request_id": "r-2",
            "principal": "drac",
            "action": "artifact.read",
            "resource": "artifacts/drac/b",
        }
    )
    sop.close()
    return data, decision.to_dict()


def test_decision_receipt_carries_index_leaf_hash_and_checkpoint(
    booted: tuple[Path, dict[str, object]],
) -> None:
    data, decision = booted
    receipt = decision["receipt"]
    assert isinstance(receipt, dict)
    assert receipt["index"] == decision["log_index"]
    vkey = (data / "keys" / "checkpoint.vkey").read_text().strip()

    cp = open_checkpoint(
        receipt["checkpoint"], [Verifier.from_string(vkey)], origin="sop.local/log"
    )
    assert cp.size == receipt["tree_size"] > receipt["index"]
    assert len(bytes.fromhex(receipt["leaf_hash"])) == 32


def _prove(data: Path, index: int, out: Path) -> None:
    result = runner.invoke(
        app, ["log", "prove", str(index), "--data-dir", str(data), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output


def _check(bundle: Path, *args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["receipt", "verify", str(bundle), "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_receipt_verifies_with_only_the_file_and_the_key(
    booted: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    data, decision = booted
    receipt = decision["receipt"]
    assert isinstance(receipt, dict)
    bundle = tmp_path / "r.tlog-proof"
    _prove(data, receipt["index"], bundle)
    vkey = (data / "keys" / "checkpoint.vkey").read_text().strip()
    code, out = _check(bundle, "--vkey", vkey, "--leaf-hash", receipt["leaf_hash"])
    assert code == 0, out
    assert out["index"] == receipt["index"] and out["leaf_hash"] == receipt["leaf_hash"]
    extra = bundle.read_text().split("\n")[1].removeprefix("extra ")
    entry = json.loads(base64.b64decode(extra))  # the extra line is the entry itself
    assert entry["type"] == "decision" and entry["request"]["request_id"] == "r-1"
    assert leaf_hash(base64.b64decode(extra)).hex() == receipt["leaf_hash"]


def test_receipt_key_can_be_a_file(booted: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    data, _ = booted
    bundle = tmp_path / "r.tlog-proof"
    _prove(data, 0, bundle)
    code, out = _check(bundle, "--vkey", str(data / "keys" / "checkpoint.vkey"))
    assert code == 0, out


@pytest.mark.parametrize(
    ("tamper", "stage"),
    [
        (lambda t: t.replace("index ", "index 1", 1), "inclusion"),
        (lambda t: t.replace("c2sp.org/tlog-proof@v1", "tlog-proof", 1), "format"),
        (lambda t: t[: t.rindex("— ")] + "— sop.local/log AAAA\n", "format"),
        (lambda t: t.replace("\nsop.local/log\n", "\nsop.local/lag\n", 1), "signature"),
    ],
)
def test_tampered_receipt_says_which_check_failed(
    booted: tuple[Path, dict[str, object]], tmp_path: Path, tamper: object, stage: str
) -> None:
    data, _ = booted
    bundle = tmp_path / "r.tlog-proof"
    _prove(data, 1, bundle)
    bundle.write_text(tamper(bundle.read_text()))  # type: ignore[operator]  # parametrized
    vkey = (data / "keys" / "checkpoint.vkey").read_text().strip()
    code, out = _check(bundle, "--vkey", vkey)
    assert (code, out["ok"], out["stage"]) == (1, False, stage), out


def test_receipt_with_the_wrong_key_fails_signature(
    booted: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    data, _ = booted
    bundle = tmp_path / "r.tlog-proof"
    _prove(data, 1, bundle)
    other = Signer.from_string(generate("sop.local/log")[0]).verifier().vkey
    code, out = _check(bundle, "--vkey", other)
    assert (code, out["stage"]) == (1, "signature")


def test_receipt_against_another_payload_fails_payload(
    booted: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    data, _ = booted
    bundle = tmp_path / "r.tlog-proof"
    _prove(data, 1, bundle)
    held = tmp_path / "entry.json"
    held.write_bytes(b'{"not":"the entry"}')
    vkey = (data / "keys" / "checkpoint.vkey").read_text().strip()
    code, out = _check(bundle, "--vkey", vkey, "--payload", str(held))
    assert (code, out["stage"]) == (1, "payload")
    code, out = _check(bundle, "--vkey", vkey, "--leaf-hash", leaf_hash(b"x").hex())
    assert (code, out["stage"]) == (1, "payload")


@pytest.mark.parametrize(
    "args",
    [
        ["--vkey", "not-a-key"],
        ["--vkey", "sop.local/log+zzzzzzzz+AAAA"],
        ["--vkey", "x+00000000+AQ==", "--leaf-hash", "nothex"],
    ],
)
def test_bad_receipt_arguments_are_one_line_errors(
    booted: tuple[Path, dict[str, object]], tmp_path: Path, args: list[str]
) -> None:
    data, _ = booted
    bundle = tmp_path / "r.tlog-proof"
    _prove(data, 0, bundle)
    result = runner.invoke(app, ["receipt", "verify", str(bundle), *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "error:" in result.output


def test_missing_receipt_file_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["receipt", "verify", str(tmp_path / "none"), "--vkey", "a+00000000+AQ=="]
    )
    assert result.exit_code == 2
    assert "nothing is at" in result.output and "expected a C2SP tlog-proof" in result.output


def test_prove_an_index_past_the_log_is_a_one_line_error(
    booted: tuple[Path, dict[str, object]],
) -> None:
    data, _ = booted
    result = runner.invoke(app, ["log", "prove", "99999", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert "not covered by the latest checkpoint" in result.output


def test_log_checkpoint_prints_the_signed_note(booted: tuple[Path, dict[str, object]]) -> None:
    data, _ = booted
    result = runner.invoke(app, ["log", "checkpoint", "--data-dir", str(data)])
    assert result.exit_code == 0
    assert result.output.startswith("sop.local/log\n")
    assert "\n\n— sop.local/log " in result.output

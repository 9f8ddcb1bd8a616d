"""`sop witness init | add-log | show | serve`: the witness directory from the command line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from typer.testing import CliRunner
from witness_log import ORIGIN, Log

from sop_verified.cli import app
from sop_verified.tools.cosignature import CosignatureVerifier
from sop_verified.tools.witness_config import KEY, load_witness_dir

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_init_makes_a_private_key_and_prints_the_vkey(tmp_path: Path) -> None:
    log = Log()
    where = tmp_path / "w"
    code, out = _run(
        "witness",
        "init",
        "--dir",
        str(where),
        "--name",
        "w.example/w1",
        "--log",
        log.vkey,
        "--json",
    )
    assert code == 0, out
    data = json.loads(out)
    assert CosignatureVerifier.from_string(data["vkey"]).name == "w.example/w1"
    assert data["logs"] == 1
    assert stat.S_IMODE(os.stat(where / KEY).st_mode) == 0o600
    assert "PRIVATE" not in out


def test_add_log_takes_a_key_file_and_show_lists_it(tmp_path: Path) -> None:
    where = tmp_path / "w"
    assert _run("witness", "init", "--dir", str(where))[0] == 0
    log = Log()
    key_file = tmp_path / "log.vkey"
    key_file.write_text(log.vkey + "\n")
    code, out = _run("witness", "add-log", str(key_file), "--dir", str(where), "--json")
    assert code == 0, out
    assert json.loads(out) == {"origin": ORIGIN, "vkeys": [log.vkey]}
    loaded = load_witness_dir(where)
    loaded.witness().add_checkpoint(log.body(0, 4))
    loaded.close()
    code, out = _run("witness", "show", "--dir", str(where), "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["logs"] == [{"origin": ORIGIN, "vkeys": [log.vkey], "cosigned_size": 4}]
    assert shown["evidence"] == 0


def test_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    where = tmp_path / "w"
    code, out = _run("witness", "init", "--dir", str(where), "--log", str(tmp_path / "none"))
    assert code == 2 and "no verifier key file" in out
    code, out = _run("witness", "init", "--dir", str(where), "--name", "has space")
    assert code == 2 and "name" in out
    assert _run("witness", "init", "--dir", str(where))[0] == 0
    code, out = _run("witness", "init", "--dir", str(where))
    assert code == 2 and "not an empty directory" in out
    code, out = _run("witness", "show", "--dir", str(tmp_path / "nowhere"))
    assert code == 2 and "sop witness init" in out
    code, out = _run("witness", "serve", "--dir", str(where), "--listen", "nowhere")
    assert code == 2 and "HOST:PORT" in out
    code, out = _run("witness", "add-log", "bad+key+x", "--dir", str(where))
    assert code == 2 and "Traceback" not in out

"""Layering is checked, not hoped for: import-linter holds the contracts in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def test_package_layers_hold() -> None:
    result = _lint(ROOT, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken" in result.stdout


def _skeleton(tmp_path: Path) -> Path:
    """An empty package with every layer, linted with the project's contracts."""
    pkg = tmp_path / "sop_verified"
    for sub in ("tools", "core", "nexus", "protocols", "server", "storage"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    for top in ("cli.py", "cli_log.py", "cli_support.py"):
        (pkg / top).write_text("")
    config = tmp_path / "pyproject.toml"
    config.write_text(
        (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[0]
        + "[tool.importlinter]"
        + (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1]
    )
    return pkg


def test_layer_contract_catches_tools_importing_core(tmp_path: Path) -> None:
    pkg = _skeleton(tmp_path)
    (pkg / "tools" / "bad.py").write_text("import sop_verified.core\n")
    result = _lint(tmp_path, tmp_path / "pyproject.toml")
    assert result.returncode != 0
    assert "sop_verified.tools.bad -> sop_verified.core" in result.stdout + textwrap.dedent("")


def test_layer_contract_catches_protocols_importing_nexus(tmp_path: Path) -> None:
    pkg = _skeleton(tmp_path)
    (pkg / "protocols" / "bad.py").write_text("import sop_verified.nexus\n")
    result = _lint(tmp_path, tmp_path / "pyproject.toml")
    assert result.returncode != 0
    assert "sop_verified.protocols.bad -> sop_verified.nexus" in result.stdout

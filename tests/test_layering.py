"""Layering is checked, not hoped for: import-linter holds the contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import tomllib
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
    assert "Contracts: 6 kept, 0 broken" in result.stdout


def _skeleton(tmp_path: Path) -> Path:
    """An empty package with every layer, linted with the project's contracts."""
    pkg = tmp_path / "sop_verified"
    for sub in ("tools", "core", "nexus", "protocols", "server", "storage", "events"):
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


def test_layer_contract_catches_events_importing_nexus(tmp_path: Path) -> None:
    pkg = _skeleton(tmp_path)
    (pkg / "events" / "bad.py").write_text("import sop_verified.nexus\n")
    result = _lint(tmp_path, tmp_path / "pyproject.toml")
    assert result.returncode != 0
    assert "sop_verified.events.bad -> sop_verified.nexus" in result.stdout


def test_layer_contract_catches_core_importing_events(tmp_path: Path) -> None:
    pkg = _skeleton(tmp_path)
    (pkg / "core" / "bad.py").write_text("import sop_verified.events\n")
    result = _lint(tmp_path, tmp_path / "pyproject.toml")
    assert result.returncode != 0
    assert "sop_verified.core.bad -> sop_verified.events" in result.stdout


# ---- no import cycles, spec/ and proofs/ included ---------------------------------------------
_NOT_PACKAGES = {"tests", "bench", "mutants", "build"}


def _checked_tree(dest: Path) -> list[str]:
    """Copy every package of the repository into ``dest`` as it is imported; its top-level names.

    A directory mapped into the package (``[tool.setuptools.package-dir]``, e.g. ``spec/`` as
    ``sop_verified.spec``) goes where its name says; any other directory of the repository's top
    level with an ``__init__.py`` is a top-level package of its own.
    """
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"].get("setuptools", {})
    mapped = {src: name for name, src in setuptools.get("package-dir", {}).items() if name}
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "sop_verified", dest / "sop_verified", ignore=ignore)
    tops = ["sop_verified"]
    for d in sorted(ROOT.iterdir()):
        if not (d / "__init__.py").is_file() or d.name in _NOT_PACKAGES | {"sop_verified"}:
            continue
        name = mapped.get(d.name, d.name)
        shutil.copytree(d, dest.joinpath(*name.split(".")), ignore=ignore)
        if "." not in name:
            tops.append(name)
    return tops


def _acyclic_config(where: Path, tops: list[str]) -> Path:
    config = where / "acyclic.toml"
    names = ", ".join(f'"{t}"' for t in tops)
    config.write_text(
        "[tool.importlinter]\n"
        f"root_packages = [{names}]\n\n"
        "[[tool.importlinter.contracts]]\n"
        'name = "no import cycles"\n'
        'type = "acyclic_siblings"\n'
        f"ancestors = [{names}]\n"
    )
    return config


def test_no_import_cycles_in_any_package(tmp_path: Path) -> None:
    tops = _checked_tree(tmp_path)
    for name in ("spec", "proofs"):  # checked whether top-level or mapped into the package
        assert name in tops or (tmp_path / "sop_verified" / name / "__init__.py").is_file()
    result = _lint(tmp_path, _acyclic_config(tmp_path, tops))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken" in result.stdout


def test_cycle_contract_catches_a_cycle_even_under_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "sop_verified" / "core"
    pkg.mkdir(parents=True)
    (tmp_path / "sop_verified" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "owner.py").write_text("from sop_verified.core import helper\n")
    (pkg / "helper.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from sop_verified.core.owner import Owner\n"
    )
    result = _lint(tmp_path, _acyclic_config(tmp_path, ["sop_verified"]))
    assert result.returncode != 0
    assert "No cycles are allowed in sop_verified.core" in result.stdout

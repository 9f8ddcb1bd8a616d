"""The distribution installs one top-level package: spec/ and proofs/ map into its namespace."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
MAPPED = {"sop_verified.spec": "spec", "sop_verified.proofs": "proofs"}


def _package_dirs() -> set[str]:
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "sop_verified").rglob("__init__.py")
    }
    for name, folder in MAPPED.items():
        assert (ROOT / folder / "__init__.py").is_file(), folder
        found |= {
            ".".join((name, *init.parent.relative_to(ROOT / folder).parts))
            for init in (ROOT / folder).rglob("__init__.py")
        }
    return found


def test_spec_and_proofs_install_inside_the_package() -> None:
    assert SETUPTOOLS["package-dir"] == MAPPED
    assert not {"spec", "proofs"} & set(SETUPTOOLS["packages"])
    assert all(p.split(".")[0] == "sop_verified" for p in SETUPTOOLS["packages"])


def test_package_list_names_every_package_directory() -> None:
    assert sorted(SETUPTOOLS["packages"]) == sorted(_package_dirs())


def test_spec_and_proofs_import_from_their_top_level_folders() -> None:
    from sop_verified import proofs, spec

    spec_dir = Path(spec.__file__).resolve().parent
    proofs_dir = Path(proofs.__file__).resolve().parent
    assert spec_dir.name == "spec" and (spec_dir / "INVARIANTS.md").is_file()
    assert proofs_dir.name == "proofs" and (proofs_dir / "REPORT.md").is_file()
    assert spec_dir.parent == proofs_dir.parent  # both beside sop_verified/, not inside it

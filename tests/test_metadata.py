"""docs/METADATA.json lists every package module, and every module it lists exists."""

from __future__ import annotations

import json
import pkgutil
from pathlib import Path

import sop_verified

ROOT = Path(__file__).resolve().parents[1]
DOCS = (
    "MANIFEST.md",
    "ORDER_OF_OPERATIONS.md",
    "STACK_POSITION.md",
    "RUNTIME_ROLE.md",
    "GOVERNANCE_SCOPE.md",
    "METADATA.json",
)


def _listed() -> dict[str, str]:
    data = json.loads((ROOT / "docs" / "METADATA.json").read_text())
    modules: dict[str, str] = data["modules"]
    return modules


def _package_modules() -> set[str]:
    found = {"sop_verified"}
    for info in pkgutil.walk_packages(sop_verified.__path__, prefix="sop_verified."):
        found.add(info.name)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (ROOT / rel.with_suffix(".py")).is_file() or (ROOT / rel / "__init__.py").is_file()


def test_every_listed_module_exists() -> None:
    missing = sorted(m for m in _listed() if not _exists(m))
    assert missing == [], f"METADATA.json lists modules that do not exist: {missing}"


def test_every_package_module_is_listed() -> None:
    unlisted = sorted(_package_modules() - set(_listed()))
    assert unlisted == [], f"modules missing from docs/METADATA.json: {unlisted}"


def test_every_module_has_a_purpose() -> None:
    assert all(len(purpose) > 10 for purpose in _listed().values())


def test_binding_documents_exist_and_state_prohibitions() -> None:
    for name in DOCS[:-1]:
        text = (ROOT / "docs" / name).read_text()
        assert "## Prohibitions" in text, name
    data = json.loads((ROOT / "docs" / "METADATA.json").read_text())
    assert data["prohibitions"]
    assert sorted(data["documents"]) == sorted(DOCS[:-1])


def test_binding_documents_are_never_imported() -> None:
    for path in (ROOT / "sop_verified").rglob("*.py"):
        text = path.read_text()
        for name in DOCS:
            assert f'"{name}"' not in text and f"'{name}'" not in text, (path, name)

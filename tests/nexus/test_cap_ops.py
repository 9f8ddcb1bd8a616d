"""`sop cap list`: status at a time, lineage, and rows trusted only once the seal checks them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from attacker import attacker_db
from inspected import LISTED_AT, NOW, make_data_dir, tree

from sop_verified.errors import IntegrityError
from sop_verified.nexus.cap_ops import list_capabilities
from sop_verified.storage.sqlite_log import LOG_SCHEMA
from sop_verified.storage.sqlite_seal import SEAL_SCHEMA


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data = tmp_path_factory.mktemp("caps") / "data"
    return data, make_data_dir(data)


def _by_label(listing: dict[str, Any], ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    rows = {r["id"]: r for r in listing["capabilities"]}
    return {label: rows[cap_id] for label, cap_id in ids.items()}


def test_each_status_at_its_time(made: tuple[Path, dict[str, str]]) -> None:
    data, ids = made
    rows = _by_label(list_capabilities(data, LISTED_AT), ids)
    status = {label: row["status"] for label, row in rows.items()}
    assert status == {
        "drac": "active",
        "drac.child": "active",
        "drac.grandchild": "active",
        "emp": "revoked",
        "emp.child": "revoked",
        "csp": "expired",
        "late": "not_yet_valid",
    }
    at_start = _by_label(list_capabilities(data, NOW), ids)
    assert at_start["csp"]["status"] == "active"  # expiry is `now >= expires`, not before
    assert _by_label(list_capabilities(data, NOW + 50), ids)["csp"]["status"] == "expired"


def test_a_revoked_parent_revokes_its_descendants_and_says_which(
    made: tuple[Path, dict[str, str]],
) -> None:  # spec: INV-10
    data, ids = made
    rows = _by_label(list_capabilities(data, LISTED_AT), ids)
    assert rows["emp"]["revoked_by"] == ids["emp"] and rows["emp"]["revoked_at"] == NOW
    assert rows["emp.child"]["revoked_by"] == ids["emp"]
    assert rows["drac"]["revoked_by"] is None and rows["drac"]["revoked_at"] is None


def test_lineage_parent_children_depth_root(made: tuple[Path, dict[str, str]]) -> None:
    data, ids = made
    rows = _by_label(list_capabilities(data, LISTED_AT), ids)
    assert [rows[k]["depth"] for k in ("drac", "drac.child", "drac.grandchild")] == [0, 1, 2]
    assert rows["drac"]["children"] == [ids["drac.child"]]
    assert rows["drac.child"]["children"] == [ids["drac.grandchild"]]
    assert rows["drac.grandchild"]["parent_id"] == ids["drac.child"]
    assert {rows[k]["root"] for k in ("drac", "drac.child", "drac.grandchild")} == {ids["drac"]}
    assert rows["late"]["children"] == [] and rows["late"]["parent_id"] is None


def test_counts_and_admission_order(made: tuple[Path, dict[str, str]]) -> None:
    data, ids = made
    listing = list_capabilities(data, LISTED_AT)
    assert [r["id"] for r in listing["capabilities"]] == list(ids.values())
    assert listing["counts"] == {"active": 3, "not_yet_valid": 1, "expired": 1, "revoked": 2}


def test_listing_changes_nothing(made: tuple[Path, dict[str, str]]) -> None:
    data, _ = made
    before = tree(data)
    list_capabilities(data, LISTED_AT)
    assert tree(data) == before


def _tampered(made: tuple[Path, dict[str, str]], tmp_path: Path, sql: str, *args: object) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(made[0], copy)
    db = attacker_db(copy / "sop.db")
    db.execute(sql, args)
    db.executescript(LOG_SCHEMA + SEAL_SCHEMA)  # the triggers back: only the rows differ
    db.close()
    return copy


def test_a_widened_capability_row_is_refused_not_listed(
    made: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:  # spec: INV-11
    data, ids = made
    db = attacker_db(data / "sop.db")  # read the claims to widen (the original is kept)
    (claims,) = db.execute("SELECT claims FROM capabilities WHERE id = ?", (ids["drac.child"],))
    db.close()
    wide = orjson.loads(claims[0])
    wide["resources"] = ["artifacts/**"]
    copy = _tampered(
        made,
        tmp_path,
        "UPDATE capabilities SET claims = ? WHERE id = ?",
        orjson.dumps(wide),
        ids["drac.child"],
    )
    with pytest.raises(IntegrityError, match="table `capabilities`"):
        list_capabilities(copy, LISTED_AT)


def test_a_deleted_revocation_is_refused_not_listed_as_active(
    made: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:  # spec: INV-11 — deleting the row must not bring emp back
    copy = _tampered(made, tmp_path, "DELETE FROM revocations")
    with pytest.raises(IntegrityError, match="table `revocations`"):
        list_capabilities(copy, LISTED_AT)

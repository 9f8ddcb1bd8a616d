"""docs/DECISION_JSON.md says what ``Decision.to_dict`` produces, key for key."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sop_verified.core.decision_fields import WriteResult
from sop_verified.core.request import DECISION_JSON_VERSION, Decision, Permission, Reason, Stage
from sop_verified.tools.tlog_store import Receipt

DOC = Path(__file__).resolve().parents[2] / "docs" / "DECISION_JSON.md"
_CP = (
    "sop.local/log\n8\nq2pMBa2mSKCmJCnh9YqYqKNmGQlvY2dk6o8f3e5KxsE=\n\n— sop.local/log Az3+Zg...\n"
)


def _example() -> Decision:
    why = Reason(
        Stage.POLICY,
        "permitted",
        "permitted by `drac-writes-artifacts`",
        ("drac-writes-artifacts",),
    )
    write = WriteResult(
        "written",
        7,
        "drac-artifacts",
        "s1/plan.json",
        "s1/plan.json",
        "sha256:" + "9e" * 32,
        4,
        1,
        Receipt(7, bytes.fromhex("a1" * 32), 8, _CP),
    )
    return Decision(
        Permission.ALLOW,
        (why,),
        "r-42",
        "cap-7f3a",
        ("drac-writes-artifacts",),
        6,
        Receipt(6, bytes.fromhex("5f" * 32), 8, _CP),
        entry_digest="sha256:" + "3c" * 32,
        write=write,
    )


def _examples() -> list[dict[str, object]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)
    return [json.loads(b) for b in blocks]


def test_the_documented_example_is_what_to_dict_produces() -> None:
    assert _examples()[0] == _example().to_dict()


def test_every_key_a_decision_can_have_is_documented() -> None:
    text = DOC.read_text()
    decision = _example()
    keys = {*decision.to_dict(), "dry_run", "decision_index", "phase", "artifact", "output"}
    keys |= {"unchanged", "snapshot"}
    assert all(f"| `{k}` |" in text for k in keys), sorted(k for k in keys if f"`{k}`" not in text)
    assert f"**version {DECISION_JSON_VERSION}**" in text


def test_every_example_carries_the_version_and_a_permission() -> None:
    for example in _examples():
        assert example["version"] == DECISION_JSON_VERSION
        assert example["effect"] in {str(p) for p in Permission}


def test_optional_keys_appear_only_when_they_apply() -> None:
    bare = Decision(Permission.DENY, (Reason(Stage.SCHEMA, "bad_request", "no"),)).to_dict()
    assert set(bare) == {
        "version",
        "effect",
        "request_id",
        "capability_id",
        "policy_ids",
        "reasons",
        "log_index",
    }
    refused = Decision(Permission.DENY, (), decision_index=4, dry_run=True).to_dict()
    assert (refused["decision_index"], refused["dry_run"]) == (4, True)

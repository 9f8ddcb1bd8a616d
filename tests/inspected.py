"""A small data directory for the inspection tests: a capability forest, a policy set, a log.

At ``NOW`` the operator admits and derives (with a pinned clock):

- ``drac`` (root, valid until ``NOW + 1000``) -> ``drac.child`` -> ``drac.grandchild``;
- ``emp`` (root) -> ``emp.child``; then ``emp`` is revoked, so ``emp.child`` dies with it;
- ``csp`` (root) that expires at ``NOW + 50``;
- ``late`` (root) not valid before ``NOW + 500``;

and activates the demo's sound policy set; one request without a capability is
denied (a decision in the log). Listed at ``NOW + 100`` the statuses
are: drac, drac.child, drac.grandchild active; emp, emp.child revoked; csp
expired; late not yet valid. :func:`tree` hashes a directory (path -> mode, mtime,
bytes) to show that a command changed nothing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sop_verified.nexus.demo import SOUND_POLICIES
from sop_verified.nexus.sop import SOP

__all__ = ["LISTED_AT", "NOW", "make_data_dir", "tree"]

NOW = 1_800_000_000
LISTED_AT = NOW + 100


def make_data_dir(data_dir: Path, dsn: str | None = None, schema: str = "sop") -> dict[str, str]:
    """Make the data directory described above (its state in SQLite, or with ``dsn`` in that
    PostgreSQL ``schema``); return each capability's id by its label."""
    SOP.init(data_dir, dsn=dsn, schema=schema)
    policies = data_dir.parent / f"{data_dir.name}-policies"
    policies.mkdir()
    (policies / "policies.toml").write_text(SOUND_POLICIES)
    ids: dict[str, str] = {}
    with SOP.boot(data_dir, now=lambda: NOW) as sop:
        sop.activate_policy(policies)
        read, persist = ["artifact.read"], ["artifact.read", "artifact.persist"]
        drac, token = sop.admit("drac", persist, ["artifacts/drac/**"], expires=NOW + 1000)
        child, child_token = sop.attenuate(token, actions=read, resources=["artifacts/drac/s1/**"])
        grandchild, _ = sop.attenuate(
            child_token, actions=read, resources=["artifacts/drac/s1/a/**"]
        )
        record = ["verdict.record"]
        emp, emp_token = sop.admit("emp", record, ["verdicts/emp/**"], expires=NOW + 1000)
        emp_child, _ = sop.attenuate(emp_token, actions=record, resources=["verdicts/emp/r1/**"])
        sop.revoke(emp.id)
        csp, _ = sop.admit("csp", ["state.persist"], ["state/csp/**"], expires=NOW + 50)
        late, _ = sop.admit("late", read, ["late/**"], not_before=NOW + 500, expires=NOW + 1000)
        request = {"request_id": "r-1", "principal": "drac", "action": "artifact.read"}
        denied = sop.submit({**request, "resource": "artifacts/drac/s1/x"})  # no capability
        assert denied.log_index is not None
    for label, cap in (
        ("drac", drac),
        ("drac.child", child),
        ("drac.grandchild", grandchild),
        ("emp", emp),
        ("emp.child", emp_child),
        ("csp", csp),
        ("late", late),
    ):
        ids[label] = cap.id
    return ids


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under ``root`` (itself included): its mode, its mtime (ns) and its bytes' hash."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        body = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[os.path.relpath(path, root)] = (st.st_mode, st.st_mtime_ns, body)
    return out

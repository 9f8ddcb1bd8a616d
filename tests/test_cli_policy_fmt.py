"""`sop policy fmt`: the canonical layout keeps the digest and the comments, and is idempotent."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from core.policy.policy_strategies import policy_documents, requests  # the differential tests'
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.policy import PolicySet
from sop_verified.core.policy.loader import document_from_fragments, load_path, parse_bytes
from sop_verified.core.policy.model import PolicyDocument
from sop_verified.core.request import Request
from sop_verified.nexus.demo_policies import SOUND_POLICIES, UNSOUND_POLICIES
from sop_verified.policy_format import format_policy_file

runner = CliRunner()
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60)


def _messy_toml(doc: PolicyDocument, rnd: random.Random, comments: bool) -> tuple[str, list[str]]:
    """``doc`` as a TOML file in a random layout: keys, lists and tables shuffled, comments."""
    said: list[str] = []

    def comment() -> str:
        said.append(f"# note {len(said)}")
        return said[-1]

    def value(v: Any) -> str:
        if isinstance(v, list):
            v = rnd.sample(v, len(v))
            return "[" + ", ".join(json.dumps(x, ensure_ascii=False) for x in v) + "]"
        return json.dumps(v, ensure_ascii=False)

    def table(header: str, items: dict[str, Any]) -> list[str]:
        lines = [comment()] if comments and rnd.random() < 0.7 else []
        lines.append(header)
        for key in rnd.sample(sorted(items), len(items)):
            if comments and rnd.random() < 0.3:
                lines.append(comment())
            line = f"{json.dumps(key) if rnd.random() < 0.2 else key} = {value(items[key])}"
            lines.append(line + (f"  {comment()}" if comments and rnd.random() < 0.3 else ""))
        return [*lines, ""]

    canonical = doc.to_canonical()
    blocks = [table("[[policy]]", p) for p in canonical["policy"]]
    if canonical["roles"]:
        blocks.insert(rnd.randrange(len(blocks) + 1), table("[roles]", canonical["roles"]))
    head = [comment(), ""] if comments else []
    tail = [comment()] if comments and rnd.random() < 0.5 else []
    return "\n".join(head + [line for b in blocks for line in b] + tail) + "\n", said


def _document(text: str, fmt: str = "toml") -> PolicyDocument:
    return document_from_fragments([parse_bytes(text.encode(), source="t", fmt=fmt)])


@SETTINGS
@given(policy_documents(), st.randoms(use_true_random=False), st.booleans(), requests())
def test_formatting_keeps_the_meaning_and_every_comment_and_is_idempotent(
    doc: PolicyDocument, rnd: random.Random, comments: bool, request: Request
) -> None:
    text, said = _messy_toml(doc, rnd, comments)
    once = format_policy_file(text.encode(), source="t.toml", fmt="toml")
    assert once.dropped == ()
    formatted = _document(once.text)
    assert formatted.digest == doc.digest  # spec: the digest does not depend on the layout
    assert PolicySet(formatted).evaluate(request) == PolicySet(doc).evaluate(request)
    for c in said:
        assert c in once.text
    assert format_policy_file(once.text.encode(), source="t.toml", fmt="toml").text == once.text


@SETTINGS
@given(policy_documents(), st.randoms(use_true_random=False))
def test_json_files_are_rewritten_as_the_canonical_document(
    doc: PolicyDocument, rnd: random.Random
) -> None:
    canonical = doc.to_canonical()
    shuffled = {"policy": rnd.sample(canonical["policy"], len(canonical["policy"])), **canonical}
    once = format_policy_file(json.dumps(shuffled).encode(), source="t.json", fmt="json")
    assert _document(once.text, "json").digest == doc.digest
    assert format_policy_file(once.text.encode(), source="t.json", fmt="json").text == once.text


def test_the_demos_policy_sets_are_formatted() -> None:
    for text in (SOUND_POLICIES, UNSOUND_POLICIES):
        assert format_policy_file(text.encode(), source="t", fmt="toml").text == text


MESSY_ROLES = """\
# who is who
[roles]
writers = ["emp", "drac"]   # two of them
"""

MESSY_RULES = """\
# the rules of the house

# writers write
[[policy]]
resource = ["artifacts/x/**", "artifacts/a/**"]
action = ["artifact.persist"]
principal = ["role:writers"]
effect = "permit"
id = "writers-write"
when = "context.size_bytes<=10"    # small only

[[policy]]
effect = "forbid"
id = "no-secrets"
principal = "*"
action = "*"
resource = "*"
when = 'has context.classification&&context.classification=="secret"'
"""


def _fmt(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["policy", "fmt", *args])
    return result.exit_code, result.output


def _set(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def _bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_fmt_rewrites_a_set_in_place_with_the_same_digest(tmp_path: Path) -> None:
    d = _set(tmp_path, {"roles.toml": MESSY_ROLES, "rules.toml": MESSY_RULES})
    digest = load_path(d).digest
    code, out = _fmt(str(d))
    assert code == 0, out
    assert "formatted" in out
    assert load_path(d).digest == digest
    rules = (d / "rules.toml").read_text()
    for kept in ("# the rules of the house", "# writers write", "# small only"):
        assert kept in rules
    assert "when = 'context.size_bytes <= 10'  # small only" in rules
    assert 'writers = ["drac", "emp"]  # two of them' in (d / "roles.toml").read_text()
    formatted = _bytes(d)
    code, out = _fmt(str(d))  # again: nothing changes
    assert code == 0 and "2 files already formatted" in out and _bytes(d) == formatted
    assert _fmt("--check", str(d))[0] == 0


def test_check_lists_what_would_change_and_writes_nothing(tmp_path: Path) -> None:
    d = _set(tmp_path, {"rules.toml": MESSY_RULES, "ok.toml": UNSOUND_POLICIES})
    before = _bytes(d)
    code, out = _fmt("--check", str(d))
    assert code == 1, out
    assert "would reformat" in out and "rules.toml" in out and "1 file already formatted" in out
    assert _bytes(d) == before
    code, out = _fmt("--check", "--json", str(d))
    files = {Path(f["path"]).name: f for f in json.loads(out)["files"]}
    assert files["rules.toml"]["changed"] and not files["rules.toml"]["written"]
    assert not files["ok.toml"]["changed"]


def test_a_file_that_does_not_parse_is_never_rewritten(tmp_path: Path) -> None:
    d = _set(tmp_path, {"a.toml": MESSY_RULES, "b.toml": "[[policy]]\nid = \n"})
    before = _bytes(d)
    code, out = _fmt(str(d))
    assert code == 2, out
    assert "b.toml" in out and "malformed TOML" in out
    assert _bytes(d) == before  # nor any other file of the run


def test_a_comment_without_a_place_is_refused_unless_dropped(tmp_path: Path) -> None:
    text = MESSY_RULES.replace(
        'resource = ["artifacts/x/**", "artifacts/a/**"]',
        'resource = [\n    "artifacts/x/**",  # the x tree\n    "artifacts/a/**",\n]',
    )
    d = _set(tmp_path, {"roles.toml": MESSY_ROLES, "rules.toml": text})
    digest = load_path(d).digest
    before = (d / "rules.toml").read_bytes()
    code, out = _fmt(str(d / "rules.toml"))
    assert code == 1, out
    assert "refused" in out and "# the x tree" in out and "--drop-comments" in out
    assert (d / "rules.toml").read_bytes() == before
    code, out = _fmt("--drop-comments", str(d / "rules.toml"))
    assert code == 0, out
    assert "1 comment dropped" in out
    after = (d / "rules.toml").read_text()
    assert "# the x tree" not in after and "# writers write" in after
    assert load_path(d).digest == digest


def test_missing_or_foreign_paths_exit_2(tmp_path: Path) -> None:
    code, out = _fmt(str(tmp_path / "nope.toml"))
    assert code == 2 and "no policy file or directory" in " ".join(out.split())
    (tmp_path / "x.txt").write_text("x")
    code, out = _fmt(str(tmp_path / "x.txt"))
    assert code == 2 and "is not a policy file" in " ".join(out.split())

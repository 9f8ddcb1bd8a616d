"""Policy documents: TOML/JSON loading, the structural checks, the canonical form and its digest.

Bad inputs live as vectors in ``vectors/bad/*.toml``, one file per mutation,
each with a ``# desc``, the expected ``# error`` class, a ``# match`` of the
message and, where it matters, the ``# where`` location.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sop_verified.core.policy.loader import (
    MAX_FILE_BYTES,
    MAX_FILES,
    document_from_dict,
    load_canonical,
    load_path,
    parse_bytes,
)
from sop_verified.core.policy.model import Policy, PolicyDocument, PolicyEffect
from sop_verified.errors import PolicyError, PolicyParseError, PolicyValidationError
from sop_verified.tools.canonical import canonical_json, digest

VECTORS = Path(__file__).parent / "vectors"
BAD = sorted((VECTORS / "bad").glob("*.toml"))
ERRORS = {"PolicyParseError": PolicyParseError, "PolicyValidationError": PolicyValidationError}


def _header(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"# (desc|error|match|where): (.*)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_every_bad_vector_is_described() -> None:
    assert len(BAD) >= 20
    for path in BAD:
        assert {"desc", "error", "match"} <= set(_header(path)), path.name


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_policy_file_rejected(path: Path) -> None:
    expected = _header(path)
    with pytest.raises(ERRORS[expected["error"]], match=re.escape(expected["match"])) as info:
        load_path(path)
    assert type(info.value) is ERRORS[expected["error"]]
    if "where" in expected:
        assert info.value.where == expected["where"]
    assert info.value.accepted, "every rejection says what is accepted"


def test_good_vectors_load_as_one_set() -> None:
    doc = load_path(VECTORS / "good")
    assert [p.id for p in doc.policies] == [
        "compiler-read",
        "drac-persist-artifacts",
        "no-huge-writes",
        "ops-activate",
    ]
    assert doc.roles == {"compiler": ("drac", "emp"), "operators": ("ops", "root-ops")}
    first = doc.policies[1]
    assert first.effect is PolicyEffect.PERMIT
    assert first.channel == "bridge"
    assert first.source == "drac-example.toml"
    assert doc.principals_of(doc.policies[0]) == frozenset({"drac", "emp"})
    assert doc.principals_of(doc.policies[2]) is None


def test_duplicate_id_across_files_rejected(tmp_path: Path) -> None:
    shutil.copy(VECTORS / "good" / "drac-example.toml", tmp_path / "a.toml")
    (tmp_path / "b.json").write_text(
        json.dumps(
            {
                "policy": [
                    {
                        "id": "compiler-read",
                        "effect": "forbid",
                        "principal": "*",
                        "action": "*",
                        "resource": "*",
                    }
                ]
            }
        )
    )
    with pytest.raises(
        PolicyValidationError, match=r"duplicate policy id `compiler-read` \(first in `a.toml`\)"
    ):
        load_path(tmp_path)


def test_role_defined_in_two_files_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[roles]\nx = ["drac"]\n')
    (tmp_path / "b.toml").write_text('[roles]\nx = ["emp"]\n')
    with pytest.raises(
        PolicyValidationError, match=r"role `x` is defined twice \(first in `a.toml`\)"
    ):
        load_path(tmp_path)


def test_roles_resolve_across_files(tmp_path: Path) -> None:
    (tmp_path / "roles.toml").write_text('[roles]\nx = ["drac"]\n')
    (tmp_path / "p.toml").write_text(
        '[[policy]]\nid = "p"\neffect = "permit"\nprincipal = ["role:x"]\n'
        'action = "*"\nresource = "*"\n'
    )
    doc = load_path(tmp_path)
    assert doc.principals_of(doc.policies[0]) == frozenset({"drac"})


def test_oversized_file_rejected(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(
        PolicyParseError, match=r"bytes; at `.*big\.toml`; accepted: at most 1048576 bytes"
    ):
        load_path(big)
    with pytest.raises(PolicyParseError, match="accepted: at most 1048576 bytes"):
        parse_bytes(big.read_bytes(), source="big.toml", fmt="toml")


def test_too_many_files_rejected(tmp_path: Path) -> None:
    for i in range(MAX_FILES + 1):
        (tmp_path / f"f{i:03}.toml").write_text("")
    with pytest.raises(PolicyParseError, match="policy files"):
        load_path(tmp_path)


def test_empty_directory_rejected(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a policy")
    with pytest.raises(PolicyParseError, match="directory holds no policy file"):
        load_path(tmp_path)


def test_missing_path_and_unknown_suffix_rejected(tmp_path: Path) -> None:
    with pytest.raises(PolicyParseError, match="no such policy file"):
        load_path(tmp_path / "nope")
    (tmp_path / "p.yaml").write_text("")
    with pytest.raises(PolicyParseError, match="unknown policy file type"):
        load_path(tmp_path / "p.yaml")


def test_not_utf8_rejected() -> None:
    with pytest.raises(PolicyParseError, match="not UTF-8"):
        parse_bytes(b'id = "\xff"', source="x.toml", fmt="toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"policy": [], "policy": []}', "duplicate key `policy` at `/policy`"),
        ('{"policy": [{"id": "a", "id": "b"}]}', "duplicate key `id` at `/policy/0/id`"),
        ('{"policy": [{"id": 1.5}]}', "floats are not accepted"),
        ('{"policy": [{"id": NaN}]}', "floats are not accepted"),
        ("[1, 2", "malformed JSON"),
        ("[]", "document is a `list`"),
        ('{"policy": {}}', "`policy` is not an array"),
        ('{"roles": ["drac"]}', "`roles` is a `list`"),
        ('{"roles": {"x": "drac"}}', "role `x` is not a list of strings"),
        ('{"policy": ["p1"]}', "policy entry is a `str`"),
        ("[" * 100_000 + "]" * 100_000, "malformed JSON"),
        ('{"policy": [{"description": "\\ud800"}]}', "lone surrogate"),
    ],
)
def test_bad_json_document_rejected(text: str, message: str) -> None:
    with pytest.raises((PolicyParseError, PolicyValidationError), match=re.escape(message)):
        parse_bytes(text.encode(), source="x.json", fmt="json")


def test_empty_set_is_a_valid_document() -> None:
    doc = document_from_dict({})
    assert len(doc) == 0
    assert doc.to_canonical() == {"policy": [], "roles": {}}


def test_canonical_form_is_rfc8785_and_digest_is_its_sha256() -> None:
    doc = load_path(VECTORS / "good")
    data = doc.canonical_bytes()
    assert data == canonical_json(json.loads(data))
    assert doc.digest == digest(doc.to_canonical())
    assert doc.digest.startswith("sha256:")


def test_canonical_form_round_trips() -> None:
    doc = load_path(VECTORS / "good")
    again = load_canonical(doc.canonical_bytes())
    assert again.canonical_bytes() == doc.canonical_bytes()
    assert again.digest == doc.digest
    assert [p.when for p in again.policies] == [p.when for p in doc.policies]


def test_digest_ignores_file_layout_order_and_formatting(tmp_path: Path) -> None:
    good = load_path(VECTORS / "good")
    canonical = good.to_canonical()
    reordered = {"roles": canonical["roles"], "policy": list(reversed(canonical["policy"]))}
    for p in reordered["policy"]:
        if "when" in p:
            p["when"] = "(" + p["when"].replace(" ", "  ") + ")"
    (tmp_path / "one.json").write_text(json.dumps(reordered, indent=4))
    assert load_path(tmp_path).digest == good.digest


def test_digest_changes_with_any_policy_change() -> None:
    doc = load_path(VECTORS / "good").to_canonical()
    base = document_from_dict(doc).digest
    doc["policy"][0]["resource"] = ["artifacts/x/**"]
    assert document_from_dict(doc).digest != base


def test_non_canonical_bytes_rejected() -> None:
    doc = load_path(VECTORS / "good")
    pretty = json.dumps(doc.to_canonical(), indent=2).encode()
    with pytest.raises(PolicyValidationError, match="not in canonical form"):
        load_canonical(pretty)
    with pytest.raises(PolicyValidationError, match="document is a `list`"):
        load_canonical(b"[]")


def test_document_checks_hold_for_programmatic_construction() -> None:
    p = Policy("p1", PolicyEffect.PERMIT, ("role:nope",), None, None)
    with pytest.raises(PolicyValidationError, match="unknown role `nope`"):
        PolicyDocument([p])
    with pytest.raises(PolicyValidationError, match="unknown action"):
        Policy("p1", PolicyEffect.PERMIT, None, ("artifact.nuke",), None)
    with pytest.raises(PolicyValidationError, match="duplicate policy id"):
        PolicyDocument([Policy("p1", PolicyEffect.PERMIT, None, None, None)] * 2)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.sampled_from(["*", "permit", "forbid", "artifact.read", "a/**", "drac", "role:x", "p1"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "effect",
                    "principal",
                    "action",
                    "resource",
                    "channel",
                    "when",
                    "description",
                    "policy",
                    "roles",
                    "x",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["policy", "roles", "extra"]),
        st.lists(_JSON, max_size=3) | _JSON,
        max_size=2,
    )
)
def test_arbitrary_documents_fail_only_with_policy_errors(doc: dict[str, object]) -> None:
    data = json.dumps(doc).encode()
    error: PolicyError | None = None
    try:
        parse_bytes(data, source="fuzz.json", fmt="json")
    except PolicyError as exc:
        error = exc
    assert error is None or error.where.startswith("fuzz.json")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_fail_only_with_policy_errors(data: bytes) -> None:
    for fmt in ("toml", "json"):
        with contextlib.suppress(PolicyError):  # anything else escapes and fails the test
            parse_bytes(data, source="fuzz", fmt=fmt)

"""INV-4: no write or read leaves its scope root, whatever the path or what is planted.

The traversal corpus is generated here (at least 200 payloads: plain,
percent-encoded, double-encoded, backslash, Unicode look-alikes, NUL,
overlong names and paths, absolute, ``//``, trailing ``/``, ``./``, mixed).
Each payload goes through the request parser, through the core layer's name
check, straight into the file layer's resolution (write and read), and end
to end through ``SOP.persist``: every one is refused with a reason, and the
tree outside the scope roots is byte-for-byte unchanged. Planted symlinks
(a directory symlink at the top, one in the middle, one as the last name),
hard links and a FIFO are refused the same way (``sqlite_only``: on
PostgreSQL a scope stores rows, with no file to plant; the names still get
the file layer's checks, tests/storage/conformance/test_conformance_content.py).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Env, large, outside_state, regular_files

from sop_verified.core.persistence.layout import check_name
from sop_verified.core.request import Permission, Stage, parse_request
from sop_verified.errors import ConfinementError, PersistenceError, RequestError
from sop_verified.storage.blobs import ScopeDir, split_relative

_DOTDOT = [
    "..",
    "..%2f",
    "%2e%2e",
    "%2e%2e%2f",
    "%2E%2E%2F",
    "..%5c",
    "%252e%252e%252f",
    "%252e%252e",
    "..%c0%af",
    "..%c1%9c",
    "..\\",
    "..\\..",
    "\u2024\u2024",  # ONE DOT LEADER x2
    "\uff0e\uff0e",  # FULLWIDTH FULL STOP x2
    "\u2025",  # TWO DOT LEADER
    "..\u2215",  # DIVISION SLASH
    "..\uff0f",  # FULLWIDTH SOLIDUS
    "\u2024\u2024\u2215",
    "\uff0e\uff0e\uff0f",
    ".\u200b.",  # ZERO WIDTH SPACE between the dots
    "..\x00",
    ".\x00.",
]
_TARGETS = ["etc/passwd", "outside/target.txt", "data/keys/capability.key"]
_PREFIXES = ["", "s1/", "s1/deep/"]


def _corpus() -> list[str]:
    out: list[str] = []
    for dots in _DOTDOT:
        for prefix in _PREFIXES:
            for target in _TARGETS:
                out.append(f"{prefix}{dots}/{target}")
        out.append(f"{dots}/{dots}/{dots}/{_TARGETS[2]}")
    out += [
        "/etc/passwd",
        "/tmp/x",
        "//etc/passwd",
        "///",
        "/",
        "",
        "s1//x.bin",
        "s1/x.bin/",
        "s1/",
        "./s1/x.bin",
        "s1/./x.bin",
        "s1/.",
        ".",
        "s1/x\x00.bin",
        "\x00",
        "s1\\..\\..\\x.bin",
        "s1\\x.bin",
        "..%2f..\\../x",
        "..././x",
        "....//x",
        "s1\u2215x.bin",
        "s1\uff0fx.bin",
        "s1/x\u2024bin",
        "s1/\u0130.bin",
        "s1/x.bin\u202e",
        "a" * 256,
        "s1/" + "b" * 1000,
        "c" * 4096,
        "d/" * 600 + "x",
        "e/" * 40 + "x",
        "s1/x.bin%00.txt",
        "%2fetc%2fpasswd",
        "s1/%2e%2e/x",
        "file:///etc/passwd",
        "C:\\Windows\\x",
        "s1/x?.bin",
        "s1/*",
        "s1/x bin",
        "~/../x",
    ]
    return out


CORPUS = _corpus()


def test_corpus_has_at_least_200_distinct_payloads() -> None:
    assert len(set(CORPUS)) >= 200


def test_request_parser_refuses_every_traversal_payload() -> None:
    for payload in CORPUS:
        raw = {
            "request_id": "r-1",
            "principal": "drac",
            "action": "artifact.persist",
            "resource": f"artifacts/drac/{payload}",
        }
        with pytest.raises(RequestError) as caught:
            parse_request(raw)
        assert "resource" in str(caught.value), payload


def test_core_name_check_refuses_every_traversal_payload(env: Env) -> None:
    assert env.sop.persistence is not None
    for scope in env.sop.persistence.scopes:
        for payload in CORPUS:
            with pytest.raises(PersistenceError) as caught:
                check_name(scope, payload, writing=True)
            assert caught.value.code, payload


def test_file_layer_refuses_every_traversal_payload(tmp_path: Path) -> None:
    base = tmp_path / "scopes"
    base.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "target.txt").write_bytes(b"keep")
    root = ScopeDir(base, "drac/artifacts")
    codes = set()
    try:
        for payload in CORPUS:
            with pytest.raises(ConfinementError) as w:
                root.write(payload, b"escape", tag="1", exclusive=True)
            with pytest.raises(ConfinementError) as r:
                root.read(payload, max_bytes=100, expected_hex="0" * 64)
            assert w.value.code == r.value.code
            assert str(w.value), payload
            codes.add(w.value.code)
    finally:
        root.close()
    assert list((base / "drac" / "artifacts").iterdir()) == []
    assert (tmp_path / "outside" / "target.txt").read_bytes() == b"keep"
    assert {"dot_component", "bad_character", "non_ascii", "absolute", "empty", "nul"} <= codes
    assert {"backslash", "name_too_long", "path_too_long", "too_deep"} <= codes


def test_split_relative_refuses_each_kind_with_its_code() -> None:
    cases = {
        "../x": "dot_component",
        "a/./x": "dot_component",
        "/abs": "absolute",
        "a//b": "empty",
        "a/": "empty",
        "a\x00b": "nul",
        "a\\b": "backslash",
        "a%2fb": "bad_character",
        "a\u2024b": "non_ascii",
        "x" * 161: "name_too_long",
        "y/" * 600: "path_too_long",
        "z/" * 40 + "z": "too_deep",
        ".sop-tmp-1": "reserved",
    }
    for path, code in cases.items():
        with pytest.raises(ConfinementError) as caught:
            split_relative(path)
        assert caught.value.code == code, path
    with pytest.raises(ConfinementError, match="must be a string"):
        split_relative(b"bytes")


def test_end_to_end_traversal_corpus_is_denied_and_nothing_escapes(env: Env) -> None:
    before = outside_state(env)
    stored_before = env.stored_anywhere()
    for payload in CORPUS:
        d = env.persist("drac", "artifact.persist", f"artifacts/drac/{payload}", b"escape")
        assert d.effect is Permission.DENY, payload
        assert d.reasons and d.reasons[0].message, payload
        assert d.reasons[0].stage is Stage.SCHEMA, payload
    assert outside_state(env) == before
    assert env.stored_anywhere() == stored_before


def test_reserved_temporary_names_are_refused_by_the_controller(env: Env) -> None:
    for name in (".sop-tmp-1-deadbeef", "s1/.sop-tmp-7-cafe", ".sop-x"):
        d = env.persist("emp", "verdict.record", f"verdicts/emp/{name}", b"{}")
        assert d.effect is Permission.DENY
        assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.PERSISTENCE, "reserved_name")
    assert regular_files(env.scope_root("emp-verdicts")) == set()


# ---- planted links -----------------------------------------------------------------------
def _assert_refused(env: Env, d: object, code: str) -> None:
    from sop_verified.core.request import Decision

    assert isinstance(d, Decision)
    assert d.effect is Permission.DENY
    assert d.reasons[0].stage is Stage.PERSISTENCE
    assert d.reasons[0].code == code, d.reasons
    assert d.log_index is not None  # the refusal is recorded
    assert env.log()[d.log_index]["outcome"] == "refused"


@pytest.mark.sqlite_only
def test_directory_symlink_at_the_top_of_a_scope_is_not_followed(env: Env) -> None:
    root = env.scope_root("emp-verdicts")
    os.symlink(env.outside / "dir", root / "evil")
    before = outside_state(env)
    d = env.persist("emp", "verdict.record", "verdicts/emp/evil/v.json", b"{}")
    _assert_refused(env, d, "symlink")
    assert outside_state(env) == before
    assert list((env.outside / "dir").iterdir()) == []


@pytest.mark.sqlite_only
def test_directory_symlink_in_the_middle_of_a_path_is_not_followed(env: Env) -> None:
    root = env.scope_root("emp-verdicts")
    (root / "a").mkdir()
    os.symlink(env.outside, root / "a" / "b")
    before = outside_state(env)
    d = env.persist("emp", "verdict.record", "verdicts/emp/a/b/dir/v.json", b"{}")
    _assert_refused(env, d, "symlink")
    assert outside_state(env) == before


@pytest.mark.sqlite_only
def test_symlink_pointing_inside_the_scope_is_refused_too(env: Env) -> None:
    root = env.scope_root("emp-verdicts")
    (root / "real").mkdir()
    os.symlink("real", root / "alias")
    d = env.persist("emp", "verdict.record", "verdicts/emp/alias/v.json", b"{}")
    _assert_refused(env, d, "symlink")
    assert list((root / "real").iterdir()) == []


@pytest.mark.sqlite_only
def test_symlink_as_the_final_name_is_not_written_through(env: Env) -> None:
    root = env.scope_root("emp-verdicts")
    os.symlink(env.outside / "target.txt", root / "final.json")
    before = outside_state(env)
    d = env.persist("emp", "verdict.record", "verdicts/emp/final.json", b"overwrite!")
    _assert_refused(env, d, "symlink")
    assert outside_state(env) == before
    assert (env.outside / "target.txt").read_bytes() == b"outside: must never change\n"


def _plant_at_blob_name(env: Env, data: bytes, plant: Callable[[Path, Path], None]) -> str:
    """Plant a link to the outside target where ``data``'s blob would live; return its hex."""
    hexd = hashlib.sha256(data).hexdigest()
    blob_dir = env.scope_root("drac-artifacts") / "sha256" / hexd[:2]
    blob_dir.mkdir(parents=True)
    plant(env.outside / "target.txt", blob_dir / hexd)
    return hexd


@pytest.mark.sqlite_only
def test_symlink_at_a_small_blob_name_is_never_followed(env: Env) -> None:
    data = b"artifact bytes"  # kept in the database: the planted link is never opened
    hexd = _plant_at_blob_name(env, data, os.symlink)
    before = outside_state(env)
    d = env.persist("drac", "artifact.persist", "artifacts/drac/s1/out.bin", data)
    assert d.effect is Permission.ALLOW
    assert env.read("drac", "artifacts/drac/s1/out.bin").data == data
    assert env.read("drac", f"artifacts/drac/sha256/{hexd}").data == data
    assert outside_state(env) == before


@pytest.mark.sqlite_only
def test_symlink_at_a_blob_name_is_not_written_through(env: Env) -> None:
    data = large(b"artifact bytes")
    _plant_at_blob_name(env, data, os.symlink)
    before = outside_state(env)
    d = env.persist("drac", "artifact.persist", "artifacts/drac/s1/out.bin", data)
    _assert_refused(env, d, "symlink")
    assert outside_state(env) == before


@pytest.mark.sqlite_only
def test_hard_link_planted_at_a_blob_name_is_refused(env: Env) -> None:
    data = large(b"outside: must never change\n")  # the same bytes: the digest would match
    (env.outside / "target.txt").write_bytes(data)
    _plant_at_blob_name(env, data, os.link)
    before = outside_state(env)
    d = env.persist("drac", "artifact.persist", "artifacts/drac/s1/out.bin", data)
    _assert_refused(env, d, "hard_link")
    assert outside_state(env) == before


@pytest.mark.sqlite_only
def test_hard_link_planted_at_a_write_once_name_is_refused(env: Env) -> None:
    root = env.scope_root("emp-verdicts")
    os.link(env.outside / "target.txt", root / "v.json")
    before = outside_state(env)
    d = env.persist("emp", "verdict.record", "verdicts/emp/v.json", b"{}")
    _assert_refused(env, d, "hard_link")
    assert outside_state(env) == before


@pytest.mark.sqlite_only
def test_read_refuses_a_blob_later_hard_linked_from_outside(env: Env) -> None:
    d = env.persist("drac", "artifact.persist", "artifacts/drac/s1/out.bin", large(b"payload"))
    assert d.effect is Permission.ALLOW
    stored = env.scope_root("drac-artifacts") / d.write.stored
    os.link(stored, env.outside / "alias")  # whoever holds the alias could change the blob
    r = env.read("drac", "artifacts/drac/s1/out.bin")
    assert not r.allowed and r.data is None
    assert r.decision.reasons[0].code == "hard_link"


@pytest.mark.sqlite_only
def test_read_refuses_a_version_replaced_by_a_symlink(env: Env) -> None:
    d = env.persist("csp", "state.persist", "state/csp/k1", b"state")
    assert d.effect is Permission.ALLOW
    stored = env.scope_root("csp-state") / d.write.stored
    stored.unlink()
    os.symlink(env.outside / "target.txt", stored)
    r = env.read("csp", "state/csp/k1")
    assert r.data is None and r.decision.reasons[0].code == "symlink"


@pytest.mark.sqlite_only
def test_read_refuses_a_fifo_without_blocking(env: Env) -> None:
    d = env.persist("emp", "verdict.record", "verdicts/emp/v.json", b"{}")
    assert d.effect is Permission.ALLOW
    stored = env.scope_root("emp-verdicts") / "v.json"
    stored.unlink()
    os.mkfifo(stored)
    r = env.read("emp", "verdicts/emp/v.json")
    assert r.data is None and r.decision.reasons[0].code == "not_a_regular_file"


@pytest.mark.sqlite_only
def test_a_file_where_a_directory_is_needed_is_refused(env: Env) -> None:
    assert env.persist("emp", "verdict.record", "verdicts/emp/a", b"{}").effect is Permission.ALLOW
    d = env.persist("emp", "verdict.record", "verdicts/emp/a/b", b"{}")
    _assert_refused(env, d, "not_a_directory")

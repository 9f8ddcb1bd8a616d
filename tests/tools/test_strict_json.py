"""Strict JSON: an object that names a key twice is refused, with the key and its JSON Pointer."""

from __future__ import annotations

import pytest

from sop_verified.tools.strict_json import DuplicateKeyError, json_pointer, loads_unique_keys


@pytest.mark.parametrize(
    ("text", "key", "pointer"),
    [
        ('{"goal": 1, "goal": 2}', "goal", "/goal"),
        ('{"a": {"b": [0, {"c": 1, "d": 2, "c": 3}]}}', "c", "/a/b/1/c"),
        ('[{"ok": 1}, {"x/y": 1, "x/y": 2}]', "x/y", "/1/x~1y"),
        ('{"a": {"k": 1, "k": 2}, "b": {"k": 1, "k": 2}}', "k", "/a/k"),  # the first one found
    ],
)
def test_duplicate_key_is_named_with_its_json_pointer(text: str, key: str, pointer: str) -> None:
    with pytest.raises(DuplicateKeyError) as info:
        loads_unique_keys(text)
    assert (info.value.key, info.value.pointer) == (key, pointer)
    assert str(info.value) == f"duplicate key `{key}` at `{pointer}`; an object names each key once"


def test_objects_without_repeats_read_as_json_does() -> None:
    text = '{"a": [1, {"b": null, "c": "x"}], "d": {"a": 1}}'  # equal keys in different objects
    assert loads_unique_keys(text) == {"a": [1, {"b": None, "c": "x"}], "d": {"a": 1}}


def test_json_pointer_escapes_tilde_and_slash() -> None:
    assert json_pointer(("a~b", "c/d", 3)) == "/a~0b/c~1d/3"
    assert json_pointer(()) == ""


def test_a_deep_document_with_a_repeat_is_located_without_recursion() -> None:
    depth = 900
    text = '{"a": ' * depth + '{"k": 1, "k": 2}' + "}" * depth
    with pytest.raises(DuplicateKeyError) as info:
        loads_unique_keys(text)
    assert info.value.path == ("a",) * depth + ("k",)

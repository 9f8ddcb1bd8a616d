"""canonical_json: orjson's fast path writes RFC 8785's bytes, the reference takes the rest.

The reference is the behaviour before the fast path: ``rfc8785.dumps`` with its errors turned
into ``ValueError``. Every test compares against it, byte for byte or error type for error type;
the named cases also say which path a value takes, so that a fast path that grows past its
proved subset (or one that never runs) is caught.

No RFC 8785 vectors are in tests/vectors (it holds RFC 6962 Merkle probes only), so the
two published examples of RFC 8785 (sections 3.2.2 and 3.2.3) are stated here with their source.
"""

from __future__ import annotations

import collections
import datetime
import enum
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any
from unittest import mock

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sop_verified.tools.canonical import canonical_json, digest, sha256_hex

_I_JSON_MAX = 2**53 - 1  # RFC 7493 2.2 / RFC 8785 3.2.2.3: integers exact in a double


def _reference(value: Any) -> bytes:
    """The behaviour to keep: ``rfc8785.dumps``, its errors raised as ``ValueError``."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ValueError(str(exc)) from exc


def _outcome(serialize: Callable[[Any], bytes], value: Any) -> tuple[object, ...]:
    """The bytes, or the error type and its cause's type, ``serialize`` gives for ``value``."""
    try:
        return ("bytes", serialize(value))
    except (ValueError, TypeError, RecursionError) as exc:
        cause = exc.__cause__
        return ("error", type(exc), None if cause is None else type(cause))


def _assert_same_as_reference(value: Any) -> None:
    assert _outcome(canonical_json, value) == _outcome(_reference, value)


@contextmanager
def _reference_calls() -> Iterator[list[object]]:
    """Record every value ``canonical_json`` hands to the reference serializer."""
    calls: list[object] = []
    real = rfc8785.dumps

    def spy(value: Any) -> bytes:
        calls.append(value)
        return real(value)

    with mock.patch.object(rfc8785, "dumps", spy):
        yield calls


def _path(value: Any) -> str:
    """``"fast"`` if orjson's output is returned for ``value``, else ``"reference"``."""
    with _reference_calls() as calls, suppress(ValueError, RecursionError):
        canonical_json(value)
    return "reference" if calls else "fast"


class Stage(enum.StrEnum):
    POLICY = "policy"


class Level(enum.IntEnum):
    HIGH = 3


class Plain(enum.Enum):
    Q = "q"


class Scaled(int):
    """An int subclass with its own ``__int__``: rfc8785 writes ``int(n)``, orjson the digits."""

    def __int__(self) -> int:
        return 1000 * int.__int__(self)


class Name(str):
    pass


class Row(list[Any]):
    pass


def _decision_entry() -> dict[str, Any]:
    """A decision log entry as the kernel writes it (ASCII keys, str/int/list/dict values)."""
    return {
        "type": "decision",
        "time": 1764200000,
        "effect": "ALLOW",
        "capability_id": "cap-0123456789abcdef",
        "policy_ids": ["drac-write"],
        "reasons": [
            {
                "stage": "policy",
                "code": "permitted",
                "message": "permitted by drac-write",
                "policy_ids": ["drac-write"],
            }
        ],
        "request": {
            "request_id": "r-1",
            "protocol": "drac",
            "action": "artifact.persist",
            "resource": "artifacts/drac/bench/c07/obj3.bin",
            "principal": "drac",
            "channel": "bridge",
            "capability": "v1." + "Ab9_-" * 60,
            "context": {"size_bytes": 4096},
            "obligations": [],
            "content_digest": "sha256:" + "0123456789abcdef" * 4,
        },
    }


# -- differential tests ---------------------------------------------------------------------------

# Characters where escaping or key order could go wrong, mixed into otherwise random text.
_TRICKY_CHARS = [chr(c) for c in range(0x20)] + [
    '"',
    "\\",
    "/",
    "\x7f",
    "\x80",
    "\x9f",
    "é",
    "\u2028",
    "\u2029",
    "\ud7ff",
    "\ud800",  # lone surrogates: not Unicode scalar values
    "\udbff",
    "\udc00",
    "\udfff",
    "\ue000",
    "\ufb33",
    "\ufeff",
    "\ufffd",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
]
_CHARS = st.one_of(
    st.sampled_from(_TRICKY_CHARS),
    st.characters(codec=None, exclude_categories=()),  # every code point, surrogates included
    st.characters(max_codepoint=0x7F),
)
_TEXT = st.text(_CHARS, max_size=12)
_INT_EDGES = [
    _I_JSON_MAX,
    _I_JSON_MAX + 1,
    -_I_JSON_MAX,
    -_I_JSON_MAX - 1,
    2**63 - 1,
    2**63,
    -(2**63),
    2**64,
]
_INTS = st.one_of(st.integers(), st.sampled_from(_INT_EDGES))
_PLAIN_SCALARS = st.one_of(st.none(), st.booleans(), _INTS, _TEXT)
_ODD_SCALARS = st.one_of(
    st.floats(),  # NaN and infinities included
    st.sampled_from(
        [Stage.POLICY, Level.HIGH, Plain.Q, Scaled(2), Name("n"), uuid.UUID(int=7), b"x"]
    ),
)
_KEYS = st.one_of(_TEXT, st.sampled_from([Stage.POLICY, Name("k"), 1, None]))


def _plain_json(leaves: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> Any:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5),
            st.lists(inner, max_size=3).map(tuple),
            st.dictionaries(keys, inner, max_size=5),
        ),
        max_leaves=20,
    )


_ANY_JSON = st.recursive(
    st.one_of(_PLAIN_SCALARS, _ODD_SCALARS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_KEYS, inner, max_size=5),
        st.dictionaries(_TEXT, inner, max_size=3).map(collections.OrderedDict),
    ),
    max_leaves=20,
)


_PLAIN_JSON = _plain_json(_PLAIN_SCALARS, _TEXT)  # most of these take the fast path
_FAST = settings(max_examples=300, deadline=None)
_SLOW = settings(max_examples=2000, deadline=None)  # two runs, ~40 s in .ci/run


@_FAST
@given(_ANY_JSON)
def test_canonical_json_equals_rfc8785_on_any_value(value: Any) -> None:
    _assert_same_as_reference(value)


@_FAST
@given(_PLAIN_JSON)
def test_canonical_json_equals_rfc8785_on_plain_json(value: Any) -> None:
    _assert_same_as_reference(value)


@pytest.mark.slow
@_SLOW
@given(_ANY_JSON)
def test_canonical_json_equals_rfc8785_on_any_value_long_run(value: Any) -> None:
    _assert_same_as_reference(value)


@pytest.mark.slow
@_SLOW
@given(_PLAIN_JSON)
def test_canonical_json_equals_rfc8785_on_plain_json_long_run(value: Any) -> None:
    _assert_same_as_reference(value)


@settings(max_examples=200, deadline=None)
@given(
    _plain_json(
        st.one_of(st.none(), st.booleans(), st.integers(-_I_JSON_MAX, _I_JSON_MAX), _TEXT),
        st.text(st.characters(max_codepoint=0xD7FF), max_size=8),
    )
)
def test_plain_values_without_bad_strings_take_the_fast_path(value: Any) -> None:
    # In-range ints and keys below U+D800: only a lone surrogate in a value may need the reference.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        has_surrogate = False
    except UnicodeEncodeError:
        has_surrogate = True
    assert _path(value) == ("reference" if has_surrogate else "fast")
    _assert_same_as_reference(value)


# -- the decision record: the hot path ------------------------------------------------------------


def test_decision_entry_takes_the_fast_path_with_rfc8785_bytes() -> None:
    entry = _decision_entry()
    assert _path(entry) == "fast"
    assert canonical_json(entry) == rfc8785.dumps(entry)


# -- condition 1: exact types only ----------------------------------------------------------------


def test_floats_take_the_reference_number_form() -> None:
    numbers = [1.0, 1e16, 1e21, 1e-7, 0.1, -0.0, 333333333.33333329, 5e-324, 2.0**60]
    assert orjson.dumps(numbers) != rfc8785.dumps(numbers)  # why floats are kept off the fast path
    assert _path(numbers) == "reference"
    assert canonical_json(numbers) == (
        b"[1,10000000000000000,1e+21,1e-7,0.1,0,333333333.3333333,5e-324,1152921504606847000]"
    )
    _assert_same_as_reference({"x": numbers})


def test_float_inside_a_nested_container_takes_the_reference() -> None:
    value = {"a": [{"b": (1, 2.5)}]}
    assert _path(value) == "reference"
    assert canonical_json(value) == b'{"a":[{"b":[1,2.5]}]}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_rejected(bad: float) -> None:
    assert orjson.dumps([bad]) == b"[null]"  # orjson would quietly write null
    with pytest.raises(ValueError, match="not representable"):
        canonical_json({"x": [bad]})


def test_strenum_and_intenum_members_serialize_as_their_text_and_number() -> None:
    value = {"stage": Stage.POLICY, "level": Level.HIGH, "list": [Stage.POLICY]}
    assert _path(value) == "reference"
    assert canonical_json(value) == b'{"level":3,"list":["policy"],"stage":"policy"}'


def test_int_subclass_serializes_as_the_reference_does() -> None:
    assert orjson.dumps([Scaled(3)]) == b"[3]"  # why subclasses are kept off the fast path
    assert canonical_json([Scaled(3)]) == b"[3000]"


def test_str_subclass_values_and_keys_serialize_as_their_text() -> None:
    value = {Name("k"): Name("v"), Stage.POLICY: 1}
    with pytest.raises(orjson.JSONEncodeError):  # the fast path relies on this: keys are exact str
        orjson.dumps({Name("k"): 1})
    assert _path(value) == "reference"
    assert canonical_json(value) == b'{"k":"v","policy":1}'


@pytest.mark.parametrize(
    "value",
    [
        [Plain.Q],
        [uuid.UUID(int=1)],
        [datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)],
        [b"bytes"],
        [{1, 2}],
        [object()],
    ],
)
def test_types_json_cannot_hold_are_rejected(value: list[object]) -> None:
    with pytest.raises(ValueError, match="unsupported type"):
        canonical_json(value)


@pytest.mark.parametrize("key", [1, None, 1.5, (1,)])
def test_non_string_keys_are_rejected(key: object) -> None:
    with pytest.raises(ValueError, match="keys must be strings"):
        canonical_json({"ok": 1, key: 2})


def test_dict_and_list_subclasses_serialize_as_plain_containers() -> None:
    value = collections.OrderedDict([("b", Row([1])), ("a", (True, None))])
    assert _path(value) == "reference"
    assert canonical_json(value) == b'{"a":[true,null],"b":[1]}'
    ordered = collections.OrderedDict([("b", [1]), ("a", (True, None))])
    assert _path(ordered) == "reference"
    assert canonical_json(ordered) == b'{"a":[true,null],"b":[1]}'


def test_booleans_are_literals_not_integers() -> None:
    value = {"t": True, "f": False, "n": None, "one": 1, "zero": 0}
    assert _path(value) == "fast"
    assert canonical_json(value) == b'{"f":false,"n":null,"one":1,"t":true,"zero":0}'


# -- condition 2: I-JSON integers -----------------------------------------------------------------


@pytest.mark.parametrize("n", [_I_JSON_MAX, -_I_JSON_MAX, 0, -1])
def test_integers_within_i_json_serialize_exactly(n: int) -> None:
    assert _path([n]) == "fast"
    assert canonical_json([n]) == f"[{n}]".encode()


@pytest.mark.parametrize("n", [_I_JSON_MAX + 1, -_I_JSON_MAX - 1, 2**63, -(2**63), 2**64, 10**30])
def test_integers_outside_i_json_are_rejected(n: int) -> None:
    with pytest.raises(ValueError, match="safe integer domain") as caught:
        canonical_json({"n": [n]})
    assert isinstance(caught.value.__cause__, rfc8785.IntegerDomainError)


# -- condition 3: string escaping -----------------------------------------------------------------


def test_every_unicode_scalar_value_is_escaped_as_rfc8785_does() -> None:
    # Every code point but the surrogates, in one string: orjson alone
    # already agrees with RFC 8785 3.2.2.2, which is why strings need no check of their own.
    scalars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    everything = "".join(scalars)
    assert orjson.dumps(everything) == rfc8785.dumps(everything)
    assert canonical_json({"s": everything}) == rfc8785.dumps({"s": everything})


def test_escapes_do_not_depend_on_position_in_the_string() -> None:
    # orjson scans strings in wide chunks; put each ASCII / C1 character at every offset in one.
    for c in [*range(0xA0), 0x2028, 0x2029, 0xFEFF]:
        for offset in range(0, 70, 3):
            text = "a" * offset + chr(c) + "é" * (offset % 5)
            assert canonical_json([text]) == rfc8785.dumps([text]), (hex(c), offset)


def test_rfc8785_string_escapes() -> None:
    text = '\b\t\n\f\r\x00\x1f"\\/\x7f\u2028\u2029é\U0001f600'
    expected = '"\\b\\t\\n\\f\\r\\u0000\\u001f\\"\\\\/\x7f\u2028\u2029é\U0001f600"'
    assert canonical_json(text) == expected.encode()


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udbff\udc00"])
def test_lone_surrogate_in_a_value_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="non-UTF-8") as caught:
        canonical_json({"s": [text]})
    assert isinstance(caught.value.__cause__, rfc8785.CanonicalizationError)


def test_lone_surrogate_in_a_key_is_rejected_as_the_reference_does() -> None:
    # rfc8785 fails while sorting (UTF-16 encoding the key): a UnicodeEncodeError, a ValueError.
    value = {"\ud800": 1, "a": 2}
    _assert_same_as_reference(value)
    with pytest.raises(ValueError, match="surrogates not allowed"):
        canonical_json(value)


# -- condition 4: key order by UTF-16 code units --------------------------------------------------


def test_rfc8785_section_3_2_3_sorting_example() -> None:
    # RFC 8785 3.2.3: U+1F600 is D83D DE00 in UTF-16, so it sorts before U+FB33.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != expected  # code-point order
    assert _path(value) == "reference"
    assert canonical_json(value) == expected


def test_key_order_conflict_nested_in_a_list_takes_the_reference() -> None:
    value = [1, {"x": [{"\uffff": 1, "\U00010000": 2}]}]
    assert _path(value) == "reference"
    assert canonical_json(value) == '[1,{"x":[{"\U00010000":2,"\uffff":1}]}]'.encode()


@pytest.mark.parametrize("bmp", ["\ue000", "\uefff", "\uf000", "\ufb33", "\ufffd", "\uffff"])
@pytest.mark.parametrize("astral", ["\U00010000", "\U0001f600", "\U0010ffff"])
def test_keys_from_e000_to_ffff_sort_after_astral_keys(bmp: str, astral: str) -> None:
    value = {bmp: 1, astral: 2, "k" + bmp: 3, "k" + astral: 4}
    expected = f'{{"k{astral}":4,"k{bmp}":3,"{astral}":2,"{bmp}":1}}'.encode()
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != expected  # code-point order
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "keys",
    [
        ["\u00e9", "e", "\u0080"],  # Latin-1
        ["\u4e2d", "\u20ac", "\ud7ff", "z"],  # BMP below the surrogates
        ["\U0001f600", "\U00010000", "\u4e2d", "a"],  # astral with BMP below U+D800
        ["\ue000", "\ufb33", "\uffff", "a"],  # BMP above the surrogates, no astral
    ],
)
def test_non_ascii_keys_take_the_fast_path_unless_in_e000_to_ffff(keys: list[str]) -> None:
    value = {"outer": {k: i for i, k in enumerate(keys)}}
    _assert_same_as_reference(value)
    fast = all(not ("\ue000" <= ch <= "\uffff") for k in keys for ch in k)
    assert _path(value) == ("fast" if fast else "reference")


def test_non_ascii_values_with_ascii_keys_take_the_fast_path() -> None:
    value = {"b": "\U0001f600\ufb33", "a": ["\uffff", "\u2028"]}
    assert _path(value) == "fast"
    assert canonical_json(value) == rfc8785.dumps(value)


# -- condition 5: nesting -------------------------------------------------------------------------


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [1, 250, 251, 254, 255, 400])
def test_deep_nesting_gives_the_reference_bytes(depth: int) -> None:
    value = _nested(depth)
    assert canonical_json(value) == b"[" * depth + b"]" * depth
    assert _path(value) == ("fast" if depth <= 250 else "reference")


def test_cyclic_value_fails_as_the_reference_does() -> None:
    loop: list[Any] = []
    loop.append({"a": loop})
    with pytest.raises(RecursionError):
        rfc8785.dumps(loop)
    with pytest.raises(RecursionError):
        canonical_json(loop)


# -- published examples and the rest of the API ---------------------------------------------------


def test_rfc8785_section_3_2_2_example() -> None:
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(value) == expected.encode()


def test_empty_containers_and_top_level_scalars() -> None:
    values: list[Any] = [{}, [], (), "", 0, True, None, {"a": {}}, [[], {}]]
    for value in values:
        assert _path(value) == "fast"
        assert canonical_json(value) == rfc8785.dumps(value)


def test_digest_is_sha256_of_the_canonical_bytes() -> None:
    entry = _decision_entry()
    expected = hashlib.sha256(rfc8785.dumps(entry)).hexdigest()
    assert sha256_hex(canonical_json(entry)) == expected
    assert digest(entry) == "sha256:" + expected

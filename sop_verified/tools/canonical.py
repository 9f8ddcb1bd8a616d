"""Canonical JSON (RFC 8785, JCS) for everything SOP hashes or signs.

The reference serializer is the pure-Python ``rfc8785`` package. orjson writes the very same
bytes for a subset of JSON values, at a small fraction of the cost, so ``canonical_json`` takes
orjson's output only when the value is proved to lie in that subset, and hands everything else
(errors included) to the reference. The subset, and why each condition is needed:

1. Exact ``dict``, ``list``, ``tuple``, ``str``, ``int``, ``bool`` and ``None`` only. No
   ``float``: orjson does not use the ECMAScript number form of RFC 8785 3.2.2.3 (it writes
   ``1.0``, ``1e+16``, ``null`` for NaN). No subclass, nor any other type: the reference writes
   ``int(n)`` of an ``int`` subclass (its own ``__int__``, if it has one), and orjson writes
   types the reference rejects (``enum.Enum`` by value, ``uuid.UUID``, ``datetime``, ...).
   Keys need no check: orjson rejects every key that is not an exact ``str``.
2. Integers inside I-JSON's ``[-(2**53-1), 2**53-1]`` (RFC 8785 3.2.2.3; the reference raises
   outside it): ``OPT_STRICT_INTEGER`` makes orjson raise on exactly that range.
3. Strings: orjson escapes exactly as RFC 8785 3.2.2.2 (``\\b \\t \\n \\f \\r \\" \\\\``,
   other C0 controls as lowercase ``\\u00xx``, everything else, DEL and U+2028/9 included, as
   raw UTF-8) for every Unicode scalar value; tests check all 1,112,064 of them. A lone
   surrogate makes orjson raise, and the reference then raises its own error.
4. Key order: RFC 8785 3.2.3 sorts keys by UTF-16 code units, orjson by code point. Below
   U+D800 a character is one code unit equal to its code point, and surrogate pairs (D800..DBFF,
   DC00..DFFF) keep code-point order among themselves, so the two orders agree unless two keys
   first differ at a character in U+E000..U+FFFF against one above U+FFFF. ASCII output means
   ASCII keys; otherwise every key is searched for a character in U+E000..U+FFFF.
5. At most ``_MAX_DEPTH`` (250) nested containers, inside orjson's own limit (254); deeper
   values (and cycles) go to the reference, which fails or succeeds exactly as before.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

import orjson
import rfc8785

__all__ = ["canonical_json", "digest", "sha256_hex"]

_FAST_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_MAX_DEPTH = 250
# Characters that sort above a surrogate pair in UTF-16 but below it by code point (RFC 8785 3.2.3).
_UTF16_ORDER_DIFFERS = re.compile(r"[\ue000-\uffff]")


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` as RFC 8785 canonical JSON.

    Values made only of exact dicts, lists, tuples, strings, integers, booleans and ``None``
    take orjson's fast path; any other value gets the pure-Python reference. Both give the
    same bytes, and fail on the same values with the same errors.

    Args:
        value: JSON-compatible data (dict, list, str, int, bool, None; floats only if finite).

    Returns:
        The canonical UTF-8 bytes.

    Raises:
        ValueError: ``value`` holds something JSON cannot represent canonically.
    """
    if _in_fast_subset((value,), _MAX_DEPTH):
        try:
            out = orjson.dumps(value, option=_FAST_OPTIONS)
        except orjson.JSONEncodeError:
            pass  # a non-str key, a lone surrogate or a non-I-JSON integer: the reference decides
        else:
            if out.isascii() or _keys_sort_alike((value,)):
                return out
    # Everything else: the pure-Python reference, called exactly as before the fast path.
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ValueError(f"value is not canonical-JSON serializable: {exc}") from exc


def _in_fast_subset(items: Iterable[Any], depth: int) -> bool:
    """Whether every item, recursively, has a type orjson writes as RFC 8785 does (conditions 1, 5).

    Keys are not looked at: orjson itself rejects keys that are not exact ``str``.
    """
    for item in items:
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is dict:
            inner = item.values()
        elif kind is list or kind is tuple:
            inner = item
        else:
            return False  # float, a subclass (StrEnum, IntEnum, OrderedDict), or not JSON
        if depth == 0 or not _in_fast_subset(inner, depth - 1):
            return False
    return True


def _keys_sort_alike(items: Iterable[Any]) -> bool:
    """Whether code-point order equals UTF-16 order for every object's keys (condition 4).

    Only called on values ``_in_fast_subset`` accepted and orjson serialized.
    """
    for item in items:
        kind = type(item)
        if kind is dict:
            if any(not key.isascii() and _UTF16_ORDER_DIFFERS.search(key) for key in item):
                return False
            inner = item.values()
        elif kind is list or kind is tuple:
            inner = item
        else:
            continue
        if not _keys_sort_alike(inner):
            return False
    return True


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """Return ``sha256:<hex>`` of the canonical JSON of ``value``."""
    return "sha256:" + sha256_hex(canonical_json(value))

"""JSON whose objects name each key once: a duplicate is refused, with the key and where it is.

RFC 8259 section 4 only says that names within an object SHOULD be unique, and
both ``json`` and orjson keep the last of two equal keys, so
``{"goal": "(> y 4)", "goal": "true"}`` means whatever the last parser thinks.
A document SOP decides on (a policy document, a structured proof obligation)
must mean one thing to every reader, so it is read through
:func:`loads_unique_keys`, which refuses it instead, naming the key and its
place as an RFC 6901 JSON Pointer (``/declarations/f/args``).

The check costs one ``dict`` per object while parsing; the place is only
looked for once a duplicate has been seen.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DuplicateKeyError", "json_pointer", "loads_unique_keys"]

_MAX_KEY = 80


def json_pointer(path: tuple[str | int, ...]) -> str:
    """The RFC 6901 JSON Pointer of ``path`` (``~`` and ``/`` escaped as ``~0`` and ``~1``)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class DuplicateKeyError(ValueError):
    """An object holds the same key twice.

    Attributes:
        key: the repeated key.
        path: the place of the repeated member, from the document root.
    """

    def __init__(self, key: str, path: tuple[str | int, ...]) -> None:
        self.key = key
        self.path = path
        super().__init__(
            f"duplicate key `{key[:_MAX_KEY]}` at `{self.pointer[: 2 * _MAX_KEY]}`; "
            "an object names each key once"
        )

    @property
    def pointer(self) -> str:
        """The JSON Pointer of the repeated member (``/goal``, ``/declarations/f/args``)."""
        return json_pointer(self.path)


class _Duplicate:
    """Stands in, during parsing, for an object that repeats ``key`` (located afterwards)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


def _first_repeated(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:  # document order
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("unreachable: fewer keys than pairs means one repeats")  # pragma: no cover


def _locate(value: Any) -> DuplicateKeyError | None:
    """The first duplicate in document order (an iterative walk: depth is not a problem)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Duplicate):
            return DuplicateKeyError(node.key, (*path, node.key))
        children: list[tuple[str | int, Any]]
        if isinstance(node, dict):
            children = list(node.items())
        elif isinstance(node, list):
            children = list(enumerate(node))
        else:
            continue
        stack.extend((child, (*path, k)) for k, child in reversed(children))
    return None


def loads_unique_keys(
    text: str | bytes,
    *,
    parse_float: Callable[[str], Any] | None = None,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """``json.loads`` that refuses an object naming the same key twice, at any depth.

    Args:
        text: the JSON text.
        parse_float: as for :func:`json.loads` (e.g. to refuse floats).
        parse_constant: as for :func:`json.loads` (e.g. to refuse ``NaN``).

    Returns:
        The decoded value.

    Raises:
        DuplicateKeyError: an object repeats a key (the key and its JSON Pointer named).
        ValueError: the text is not JSON (``json.JSONDecodeError``), or a hook refused it.
        RecursionError: the nesting is deeper than Python's recursion limit.
    """
    if parse_float is None and parse_constant is None:
        return _loads_default(text)
    repeated = False

    def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Duplicate:
        nonlocal repeated
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        repeated = True
        return _Duplicate(_first_repeated(pairs))

    value = json.loads(
        text, object_pairs_hook=_object, parse_float=parse_float, parse_constant=parse_constant
    )
    if repeated:
        raise _locate(value) or ValueError("an object repeats a key")
    return value


_seen = threading.local()  # per thread: did the document being decoded repeat a key?


def _object_once(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Duplicate:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    _seen.repeated = True
    return _Duplicate(_first_repeated(pairs))


_DECODER = json.JSONDecoder(object_pairs_hook=_object_once)
"""One decoder for the default hooks: building one per call costs more than small documents."""


def _loads_default(text: str | bytes) -> Any:
    """:func:`loads_unique_keys` without hooks, on a decoder built once."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return loads_unique_keys(text, parse_float=float)  # json.loads detects the encoding
    _seen.repeated = False
    value = _DECODER.decode(text)
    if _seen.repeated:
        raise _locate(value) or ValueError("an object repeats a key")
    return value

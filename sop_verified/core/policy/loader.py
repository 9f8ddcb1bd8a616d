"""Reading policy documents: TOML or JSON files, a directory of them, or canonical bytes.

Every file is size-capped and parsed strictly: unknown keys, wrong value
types, floats, duplicate JSON keys, duplicate ids across the set, duplicate
role names, unknown roles and oversized inputs are rejected with the file,
the policy id, the field and what is accepted. The schema is in
spec/POLICY_LANGUAGE.md section 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Final

from sop_verified.core.contracts import ensure, require
from sop_verified.core.policy.lang import parse_condition
from sop_verified.core.policy.model import ANY, Policy, PolicyDocument, PolicyEffect
from sop_verified.errors import PolicyParseError, PolicyValidationError
from sop_verified.tools.strict_json import loads_unique_keys

__all__ = [
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "document_from_dict",
    "document_from_fragments",
    "load_canonical",
    "load_path",
    "parse_bytes",
]

MAX_FILE_BYTES: Final = 1024 * 1024
MAX_FILES: Final = 64
_POLICY_KEYS: Final = (
    "id",
    "effect",
    "principal",
    "action",
    "resource",
    "channel",
    "when",
    "description",
)
_REQUIRED: Final = ("id", "effect", "principal", "action", "resource")
_TOP_KEYS: Final = ("policy", "roles")
_FORMATS: Final = {".toml": "toml", ".json": "json"}

Fragment = tuple[list[Policy], dict[str, tuple[str, ...]], str]
"""What one file contributes: its policies, its roles, and its name."""


def _keys_text(keys: tuple[str, ...]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def _no_float(text: str) -> Any:
    raise ValueError(f"floats are not accepted (found `{text[:40]}`)")


def _has_surrogate(value: Any) -> bool:
    """Whether any string in the decoded document holds a lone surrogate (JSON ``\\ud800``)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _decode(data: bytes, source: str, fmt: str) -> Any:
    if len(data) > MAX_FILE_BYTES:
        raise PolicyParseError(
            f"file is {len(data)} bytes", where=source, accepted=f"at most {MAX_FILE_BYTES} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyParseError(
            f"file is not UTF-8: {exc.reason} at byte {exc.start}", where=source
        ) from None
    try:
        if fmt == "toml":
            return tomllib.loads(text)
        value = loads_unique_keys(text, parse_float=_no_float, parse_constant=_no_float)
        if _has_surrogate(value):
            raise ValueError("a string holds a lone surrogate escape (`\\ud800`-`\\udfff`)")
        return value
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise PolicyParseError(
            f"malformed {fmt.upper()}: {str(exc)[:300]}",
            where=source,
            accepted=f"a {fmt.upper()} policy document",
        ) from None


def _listing(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = raw[key]
    if value == ANY:
        return None
    accepted = '`"*"` or a non-empty list of strings (`"*"` is not accepted inside a list)'
    if not isinstance(value, list):
        raise PolicyValidationError(
            f"`{key}` has the wrong type `{type(value).__name__}`", where=where, accepted=accepted
        )
    for v in value:
        if not isinstance(v, str):
            raise PolicyValidationError(
                f"`{key}` holds a `{type(v).__name__}`", where=where, accepted=accepted
            )
    if ANY in value:
        raise PolicyValidationError(
            f'`"*"` inside the `{key}` list', where=where, accepted=accepted
        )
    return tuple(value)


def _string_field(raw: dict[str, Any], key: str, where: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise PolicyValidationError(
            f"`{key}` must be a string, got `{type(value).__name__}`",
            where=where,
            accepted="a string",
        )
    return value


def _policy_from_dict(raw: Any, source: str, index: int) -> Policy:
    if not isinstance(raw, dict):
        raise PolicyValidationError(
            f"policy entry is a `{type(raw).__name__}`",
            where=f"{source}: policy #{index}",
            accepted="a table/object",
        )
    pid = raw.get("id")
    label = pid if isinstance(pid, str) and pid else f"#{index}"

    def at(name: str) -> str:
        return f"{source}: policy {label}: {name}"

    unknown = sorted(k for k in raw if k not in _POLICY_KEYS)
    if unknown:
        raise PolicyValidationError(
            f"unknown key `{unknown[0][:80]}`",
            where=at(unknown[0]),
            accepted=_keys_text(_POLICY_KEYS),
        )
    for key in _REQUIRED:
        if key not in raw:
            raise PolicyValidationError(
                f"missing key `{key}`",
                where=at(key),
                accepted=f"required keys {_keys_text(_REQUIRED)}",
            )
    effect = raw["effect"]
    if effect not in ("permit", "forbid"):
        raise PolicyValidationError(
            f"unknown effect `{str(effect)[:80]}`",
            where=at("effect"),
            accepted='`"permit"` or `"forbid"`',
        )
    channel = _string_field(raw, "channel", at("channel"), ANY)
    when_text = raw.get("when")
    if when_text is not None and not isinstance(when_text, str):
        raise PolicyValidationError(
            f"`when` must be a string, got `{type(when_text).__name__}`",
            where=at("when"),
            accepted="a condition as text, e.g. 'context.size_bytes <= 4096'",
        )
    return Policy(
        id=_string_field(raw, "id", at("id"), ""),
        effect=PolicyEffect(effect),
        principals=_listing(raw, "principal", at("principal")),
        actions=_listing(raw, "action", at("action")),
        resources=_listing(raw, "resource", at("resource")),
        channel=None if channel == ANY else channel,
        when=None if when_text is None else parse_condition(when_text, at("when")),
        description=_string_field(raw, "description", at("description"), ""),
        source=source,
    )


def _roles_from_dict(raw: Any, source: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise PolicyValidationError(
            f"`roles` is a `{type(raw).__name__}`",
            where=f"{source}: roles",
            accepted="a table of role name to a list of principal ids",
        )
    out: dict[str, tuple[str, ...]] = {}
    for name, members in raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise PolicyValidationError(
                f"role `{name[:80]}` is not a list of strings",
                where=f"{source}: roles: {name[:80]}",
                accepted="a non-empty list of principal ids",
            )
        out[name] = tuple(members)
    return out


def _fragment(obj: Any, source: str) -> Fragment:
    if not isinstance(obj, dict):
        raise PolicyValidationError(
            f"document is a `{type(obj).__name__}`",
            where=source,
            accepted="a table/object with `policy` and `roles`",
        )
    unknown = sorted(k for k in obj if k not in _TOP_KEYS)
    if unknown:
        raise PolicyValidationError(
            f"unknown top-level key `{unknown[0][:80]}`",
            where=source,
            accepted=_keys_text(_TOP_KEYS),
        )
    entries = obj.get("policy", [])
    if not isinstance(entries, list):
        raise PolicyValidationError(
            "`policy` is not an array",
            where=source,
            accepted="`[[policy]]` tables (TOML) or a `policy` array (JSON)",
        )
    policies = [_policy_from_dict(e, source, i + 1) for i, e in enumerate(entries)]
    return policies, _roles_from_dict(obj.get("roles", {}), source), source


@ensure(
    lambda fragments, result: len(result) == sum(len(f[0]) for f in fragments),
    "every policy of every fragment is in the set",
)
def document_from_fragments(fragments: list[Fragment]) -> PolicyDocument:
    """Merge file fragments into one set: role names and policy ids must be unique across files.

    Args:
        fragments: (policies, roles, source) per file.

    Returns:
        The checked document.

    Raises:
        PolicyValidationError: a role defined in two files, a duplicate policy id,
            an unknown role, or a structural limit exceeded.
    """
    roles: dict[str, tuple[str, ...]] = {}
    role_source: dict[str, str] = {}
    policies: list[Policy] = []
    for file_policies, file_roles, source in fragments:
        for name, members in file_roles.items():
            if name in roles:
                raise PolicyValidationError(
                    f"role `{name[:80]}` is defined twice (first in `{role_source[name]}`)",
                    where=f"{source}: roles: {name[:80]}",
                    accepted="each role defined once",
                )
            roles[name], role_source[name] = members, source
        policies.extend(file_policies)
    return PolicyDocument(policies, roles)


@require(lambda fmt: fmt in ("toml", "json"), "a known format")
def parse_bytes(data: bytes, *, source: str, fmt: str) -> Fragment:
    """Parse one policy file's bytes into a fragment (not yet merged into a set).

    Args:
        data: the file content.
        source: the file name, for errors.
        fmt: ``"toml"`` or ``"json"``.

    Returns:
        The file's policies, roles and name.

    Raises:
        PolicyParseError: oversized, not UTF-8, malformed TOML/JSON, a duplicate
            JSON key, a float, or a malformed condition.
        PolicyValidationError: an unknown key, a wrong type, an unknown action,
            a bad glob, an empty list, or an ill-typed condition.
    """
    return _fragment(_decode(data, source, fmt), source)


def document_from_dict(obj: dict[str, Any], source: str = "<document>") -> PolicyDocument:
    """Build a set from one already-decoded document (the shape of a JSON policy file).

    Args:
        obj: ``{"policy": [...], "roles": {...}}``.
        source: a name for errors.

    Returns:
        The checked document.

    Raises:
        PolicyParseError: a malformed condition.
        PolicyValidationError: any structural or typing error.
    """
    return document_from_fragments([_fragment(obj, source)])


def _read_capped(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PolicyParseError(
                f"file is {size} bytes", where=str(path), accepted=f"at most {MAX_FILE_BYTES} bytes"
            )
        with path.open("rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyParseError(f"cannot read the file: {exc.strerror}", where=str(path)) from None


def _policy_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in _FORMATS:
            raise PolicyParseError(
                f"unknown policy file type `{path.suffix}`",
                where=str(path),
                accepted="`.toml` or `.json`",
            )
        return [path]
    if not path.is_dir():
        raise PolicyParseError(
            "no such policy file or directory",
            where=str(path),
            accepted="a `.toml` or `.json` policy file, or a directory of them",
        )
    files = sorted(p for p in path.iterdir() if p.suffix in _FORMATS and p.is_file())
    if not files:
        raise PolicyParseError(
            "directory holds no policy file",
            where=str(path),
            accepted="one or more `*.toml` or `*.json` files",
        )
    if len(files) > MAX_FILES:
        raise PolicyParseError(
            f"directory holds {len(files)} policy files",
            where=str(path),
            accepted=f"at most {MAX_FILES} files",
        )
    return files


def load_path(path: str | Path) -> PolicyDocument:
    """Load a policy set from one file or from a directory of ``*.toml`` / ``*.json`` files.

    Args:
        path: a policy file, or a directory (not searched recursively).

    Returns:
        The checked document of the whole set.

    Raises:
        PolicyParseError: unreadable, oversized, malformed, or no policy file.
        PolicyValidationError: any structural or typing error, named by file, id and field.
    """
    fragments = []
    for f in _policy_files(Path(path)):
        fragments.append(parse_bytes(_read_capped(f), source=f.name, fmt=_FORMATS[f.suffix]))
    return document_from_fragments(fragments)


@ensure(lambda data, result: result.canonical_bytes() == data, "the input was canonical")
def load_canonical(data: bytes) -> PolicyDocument:
    """Read back a set stored in canonical form, refusing anything not byte-for-byte canonical.

    Args:
        data: RFC 8785 bytes as produced by :meth:`PolicyDocument.canonical_bytes`.

    Returns:
        The checked document.

    Raises:
        PolicyParseError: the bytes are not a JSON policy document.
        PolicyValidationError: the document is invalid or not in canonical form.
    """
    doc = document_from_fragments([_fragment(_decode(data, "<canonical>", "json"), "<canonical>")])
    if doc.canonical_bytes() != data:
        raise PolicyValidationError(
            "policy document is not in canonical form",
            where="<canonical>",
            accepted="RFC 8785 bytes of the canonical form",
        )
    return doc

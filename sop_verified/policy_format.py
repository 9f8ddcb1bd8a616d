"""`sop policy fmt`: a policy file rewritten in the canonical layout, its comments kept.

The layout is the canonical form's (spec/POLICY_LANGUAGE.md section 2,
:meth:`~sop_verified.core.policy.Policy.to_canonical`) written as TOML: the
``[roles]`` table first (roles by name, members sorted), then each
``[[policy]]`` in the order written, its keys in the canonical order (``id``,
``effect``, ``principal``, ``action``, ``resource``, ``channel``, ``when``,
``description``), lists sorted, ``"*"`` for any, ``channel`` always written,
the ``when`` condition printed canonically; one blank line between tables.
The policy digest does not depend on layout, so a formatted file means
exactly what it meant: every file is parsed again after formatting and must
give the same policies and roles, or nothing is written.

Comments are kept where they can be placed: the file's opening comments stay
at the top, a comment above a table or a key stays above it, one after a
value stays after it. A comment inside a value spread over several lines (an
array, a multi-line string) or beside something the layout does not have has
no place; such a file is refused unless those comments may be dropped.
JSON policy files have no comments: they are rewritten as the canonical
document's JSON, indented.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from sop_verified.core.policy.loader import Fragment, parse_bytes
from sop_verified.core.policy.model import Policy
from sop_verified.errors import PolicyValidationError

__all__ = ["Formatted", "format_policy_file"]

LINE: Final = 100
"""Lists longer than this on one line are written one entry a line."""

_Table = tuple[str, int] | None
"""Where a line is: ``("roles", 0)``, ``("policy", n)`` (the n-th ``[[policy]]``), another
table (``("other", 0)``), or None at the top level."""


@dataclass(frozen=True, slots=True)
class Formatted:
    """A file's canonical text, and the comments that text could not keep."""

    text: str
    dropped: tuple[str, ...] = ()


@dataclass
class _Comments:
    """Where each comment of a file was, by what it stood above or beside."""

    header: list[str] = field(default_factory=list)
    before_table: dict[_Table, list[str]] = field(default_factory=dict)
    before_key: dict[tuple[_Table, str], list[str]] = field(default_factory=dict)
    after: dict[tuple[_Table, str | None], str] = field(default_factory=dict)
    end: list[str] = field(default_factory=list)
    homeless: list[str] = field(default_factory=list)
    policy_tables: int = 0


def format_policy_file(data: bytes, *, source: str, fmt: str) -> Formatted:
    """The canonical layout of one policy file.

    Args:
        data: the file's bytes.
        source: its name, for errors.
        fmt: ``"toml"`` or ``"json"``.

    Returns:
        The formatted text and the comments it could not keep (the caller decides
        whether to write it without them).

    Raises:
        PolicyParseError: the file does not parse.
        PolicyValidationError: it is not a valid policy file, or (a bug) the
            formatted text would not mean what the file means.
    """
    fragment = parse_bytes(data, source=source, fmt=fmt)
    if fmt == "json":
        out = Formatted(_json_text(fragment))
    else:
        comments = _scan(data.decode("utf-8"))
        out = _toml_text(fragment, comments)
    _same_meaning(fragment, parse_bytes(out.text.encode("utf-8"), source=source, fmt=fmt))
    return out


def _same_meaning(before: Fragment, after: Fragment) -> None:
    def meaning(f: Fragment) -> Any:
        roles = {name: sorted(members) for name, members in f[1].items()}
        return [p.to_canonical() for p in f[0]], roles

    if meaning(before) != meaning(after):  # never write a file that means something else
        raise PolicyValidationError(
            "the formatted file would not mean what the file means (a formatter bug)",
            where=before[2],
            accepted="the file left as it is; please report it",
        )


# ---- writing ------------------------------------------------------------------------------
def _string(value: str) -> str:
    """A TOML basic string (only `\\`, `"` and control characters escaped)."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _condition(text: str) -> str:
    """A condition as a TOML literal string when it can be one (it reads as written)."""
    if "'" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return _string(text)
    return f"'{text}'"


def _value(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [f"{key} = {_condition(value) if key == 'when' else _string(value)}"]
    items = [_string(v) for v in value]
    one = f"{key} = [{', '.join(items)}]"
    if len(one) <= LINE:
        return [one]
    return [f"{key} = [", *(f"    {i}," for i in items), "]"]


def _keyed(lines: list[str], table: _Table, key: str, c: _Comments, value: Any) -> None:
    written = _value(key, value)
    lines.extend(c.before_key.get((table, key), []))
    trailing = c.after.get((table, key))
    if trailing is not None and len(written) > 1:
        lines.append(trailing)  # beside a value of several lines: above it
        trailing = None
    if trailing is not None:
        written[0] += "  " + trailing
    lines.extend(written)


def _header(lines: list[str], table: _Table, name: str, c: _Comments, extra: list[str]) -> None:
    if lines:
        lines.append("")
    lines.extend(c.before_table.get(table, []))
    lines.extend(extra)
    trailing = c.after.get((table, None))
    lines.append(name + (f"  {trailing}" if trailing is not None else ""))


def _toml_text(fragment: Fragment, c: _Comments) -> Formatted:
    policies, roles, _ = fragment
    dropped = list(c.homeless)
    if c.policy_tables != len(policies):  # policies not written as `[[policy]]` tables
        dropped += _policy_comments(c)
    lines: list[str] = list(c.header)
    if roles:
        table: _Table = ("roles", 0)
        _header(lines, table, "[roles]", c, [])
        for name in sorted(roles):
            _keyed(lines, table, name, c, sorted(roles[name]))
    for n, policy in enumerate(policies):
        _policy(lines, ("policy", n), policy, c)
    if c.end:
        lines += ["", *c.end] if lines else c.end
    return Formatted("\n".join(lines) + "\n" if lines else "", tuple(dropped))


def _policy(lines: list[str], table: _Table, policy: Policy, c: _Comments) -> None:
    form = policy.to_canonical()
    # comments above a key the layout leaves out (an empty description) go above the table
    orphans = [
        line
        for (t, k), above in c.before_key.items()
        if t == table and k not in form
        for line in above
    ]
    orphans += [
        v for (t, k), v in c.after.items() if t == table and k is not None and k not in form
    ]
    _header(lines, table, "[[policy]]", c, orphans)
    for key, value in form.items():
        _keyed(lines, table, key, c, value)


def _policy_comments(c: _Comments) -> list[str]:
    """Take every comment placed by a ``[[policy]]`` table out of ``c``, and return them."""

    def policy(t: _Table) -> bool:
        return t is not None and t[0] == "policy"

    out = [line for t, above in c.before_table.items() if policy(t) for line in above]
    out += [line for (t, _), above in c.before_key.items() if policy(t) for line in above]
    out += [v for (t, _), v in c.after.items() if policy(t)]
    c.before_table = {t: v for t, v in c.before_table.items() if not policy(t)}
    c.before_key = {k: v for k, v in c.before_key.items() if not policy(k[0])}
    c.after = {k: v for k, v in c.after.items() if not policy(k[0])}
    return out


def _json_text(fragment: Fragment) -> str:
    policies, roles, _ = fragment
    document: dict[str, Any] = {}
    if roles:
        document["roles"] = {name: sorted(roles[name]) for name in sorted(roles)}
    document["policy"] = [p.to_canonical() for p in policies]
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# ---- reading where the comments are ---------------------------------------------------------
@dataclass
class _Lexer:
    """Where a line scan is inside a value: an open multi-line string, open brackets."""

    string: str | None = None
    depth: int = 0

    @property
    def inside(self) -> bool:
        """True while a value spans lines."""
        return self.string is not None or self.depth > 0

    def comment(self, line: str, start: int = 0) -> str | None:
        """Scan ``line`` from ``start``; return the comment it ends with (``#...``), if any."""
        i = start
        while i < len(line):
            if self.string is not None:
                close = line.find(self.string, i)
                if self.string == '"""':
                    while close > 0 and _escaped(line, close):
                        close = line.find('"""', close + 1)
                if close < 0:
                    return None
                i, self.string = close + 3, None
                continue
            ch = line[i]
            if line.startswith('"""', i) or line.startswith("'''", i):
                self.string, i = line[i : i + 3], i + 3
            elif ch in "\"'":
                i = _string_end(line, i)
            elif ch in "[{":
                self.depth, i = self.depth + 1, i + 1
            elif ch in "]}":
                self.depth, i = self.depth - 1, i + 1
            elif ch == "#":
                return line[i:].rstrip()
            else:
                i += 1
        return None


def _escaped(line: str, at: int) -> bool:
    slashes = 0
    while at - 1 - slashes >= 0 and line[at - 1 - slashes] == "\\":
        slashes += 1
    return slashes % 2 == 1


def _string_end(line: str, start: int) -> int:
    quote, i = line[start], start + 1
    while i < len(line) and line[i] != quote:
        i += 2 if quote == '"' and line[i] == "\\" else 1
    return i + 1


def _key(line: str) -> tuple[str, int]:
    """The key a ``key = value`` line starts with (quotes removed), and where its value starts."""
    s = line.lstrip()
    skip = len(line) - len(s)
    if s[:1] in "\"'":
        end = _string_end(s, 0)
        key, rest = s[1 : end - 1], end
    else:
        rest = s.find("=")
        key = s[:rest].strip() if rest >= 0 else s
    eq = s.find("=", rest)
    return key.strip(), skip + (eq + 1 if eq >= 0 else len(s))


def _table_of(header: str, policies: int) -> _Table:
    name = header.strip("[] \t")
    if header.startswith("[[") and name == "policy":
        return ("policy", policies)
    return ("roles", 0) if name == "roles" else ("other", 0)


def _scan(text: str) -> _Comments:
    """Where each comment of ``text`` stands (one pass over its lines)."""
    scan = _Scanner()
    for line in text.splitlines():
        scan.line(line)
    return scan.finish()


class _Scanner:
    """The state of :func:`_scan`: the table it is in, the comments not yet placed."""

    def __init__(self) -> None:
        self.c = _Comments()
        self.lex = _Lexer()
        self.table: _Table = None
        self.pending: list[str | None] = []  # comments since the last content; None: a blank
        self.seen = False  # content (a table or a key) seen yet

    def line(self, line: str) -> None:
        """Take one line of the file."""
        if self.lex.inside:  # a value spread over lines: no place for a comment inside it
            found = self.lex.comment(line)
            if found is not None:
                self.c.homeless.append(found)
            return
        s = line.strip()
        if not s:
            self.pending.append(None)
        elif s.startswith("#"):
            self.pending.append(s.rstrip())
        elif s.startswith("["):
            self._header(s)
        else:
            self._key(line)

    def finish(self) -> _Comments:
        """The comments, the last ones placed at the end of the file."""
        if self.seen:
            self.c.end = self._attach()
        else:
            self.c.header = [v for v in self.pending if v is not None]
        return self.c

    def _attach(self) -> list[str]:
        block, self.pending = self.pending, []
        if not self.seen:  # the opening comments: up to the last blank line, the file's own
            cut = max((i for i, v in enumerate(block) if v is None), default=len(block))
            self.c.header += [v for v in block[:cut] if v is not None]
            block = block[cut:]
        self.seen = True
        return [v for v in block if v is not None]

    def _header(self, s: str) -> None:
        c = self.c
        end = s.find("]]") + 2 if s.startswith("[[") else s.find("]") + 1
        self.table = table = _table_of(s[:end], c.policy_tables)
        if table is not None and table[0] == "policy":
            c.policy_tables += 1
        above = self._attach()
        trailing = _Lexer().comment(s, end)
        if table == ("other", 0):
            c.homeless += above + ([] if trailing is None else [trailing])
            return
        c.before_table.setdefault(table, []).extend(above)
        if trailing is not None:
            c.after[(table, None)] = trailing

    def _key(self, line: str) -> None:
        c, table = self.c, self.table
        key, at = _key(line)
        above = self._attach()
        trailing = self.lex.comment(line, at)
        if table is None or table == ("other", 0):
            c.homeless += above + ([] if trailing is None else [trailing])
            return
        c.before_key.setdefault((table, key), []).extend(above)
        if trailing is not None:
            c.after[(table, key)] = trailing

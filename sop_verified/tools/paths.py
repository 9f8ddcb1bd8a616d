"""Resource paths and path globs, one grammar for the evaluator and for Z3.

A resource path is relative: segments joined by ``/``, each 1 to
:data:`MAX_SEGMENT_LEN` characters from :data:`SEGMENT_ALPHABET`, never ``.``
or ``..``. A glob uses the same segments plus ``*`` (any run of segment
characters, possibly empty), ``?`` (one segment character) and ``**`` as a
whole segment (any number of whole segments: one or more at the end, zero or
more elsewhere). The Python regex and the Z3 regex built here denote the same
language; the policy differential tests hold them to it.
"""

from __future__ import annotations

import re
import string
from typing import Any

import z3

from sop_verified.errors import InputError

__all__ = [
    "MAX_PATH_LEN",
    "MAX_SEGMENTS",
    "MAX_SEGMENT_LEN",
    "SEGMENT_ALPHABET",
    "Glob",
    "check_path",
    "z3_well_formed_path",
]

SEGMENT_ALPHABET = string.ascii_letters + string.digits + "._~@+=,-"
MAX_SEGMENT_LEN = 128
MAX_SEGMENTS = 32
MAX_PATH_LEN = 1024

_SEG_CHARS = re.escape(SEGMENT_ALPHABET)
_PATH_RE = re.compile(
    rf"[{_SEG_CHARS}]{{1,{MAX_SEGMENT_LEN}}}(?:/[{_SEG_CHARS}]{{1,{MAX_SEGMENT_LEN}}})*"
)
_PATH_ACCEPTED = (
    f"a relative path of 1-{MAX_SEGMENTS} `/`-separated segments of 1-{MAX_SEGMENT_LEN} "
    "characters from `A-Za-z0-9._~@+=,-`, no `.` or `..` segment, "
    f"at most {MAX_PATH_LEN} characters"
)


def check_path(path: Any, *, where: str = "resource") -> str:
    """Return ``path`` if it is a well-formed resource path, else raise.

    Raises:
        InputError: the path is not a string, too long, absolute, has an empty,
            ``.`` or ``..`` segment, or a character outside the alphabet.
    """
    if not isinstance(path, str):
        raise InputError(f"path must be a string, got `{type(path).__name__}`", where=where)
    if len(path) > MAX_PATH_LEN:
        raise InputError(
            f"path is {len(path)} characters long", where=where, accepted=_PATH_ACCEPTED
        )
    if _PATH_RE.fullmatch(path) is None:
        raise InputError(f"malformed path `{path[:80]!s}`", where=where, accepted=_PATH_ACCEPTED)
    segments = path.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise InputError(f"path has {len(segments)} segments", where=where, accepted=_PATH_ACCEPTED)
    for seg in segments:
        if seg in (".", ".."):
            raise InputError(f"path has a `{seg}` segment", where=where, accepted=_PATH_ACCEPTED)
    return path


def _check_glob(pattern: Any, where: str) -> list[str]:
    if not isinstance(pattern, str) or not pattern:
        raise InputError("glob must be a non-empty string", where=where)
    if len(pattern) > MAX_PATH_LEN:
        raise InputError(f"glob is {len(pattern)} characters long", where=where)
    segments = pattern.split("/")
    for i, seg in enumerate(segments):
        if seg == "**":
            if i > 0 and segments[i - 1] == "**":
                raise InputError(f"glob `{pattern}` has `**/**`", where=where)
            continue
        bad = [c for c in seg if c not in SEGMENT_ALPHABET and c not in "*?"]
        if not seg or bad or seg in (".", "..") or "**" in seg:
            raise InputError(
                f"malformed glob segment `{seg}` in `{pattern}`",
                where=where,
                accepted="segments of `A-Za-z0-9._~@+=,-`, `*`, `?`, or a whole `**` segment",
            )
    return segments


class Glob:
    """A compiled path glob: ``matches`` in Python, ``z3_regex`` for the solver."""

    __slots__ = ("_re", "pattern", "segments")

    def __init__(self, pattern: str, *, where: str = "glob") -> None:
        self.segments = tuple(_check_glob(pattern, where))
        self.pattern = pattern
        self._re = re.compile(self._python_regex())

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Glob) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def matches(self, path: str) -> bool:
        """Whether the (already well-formed) ``path`` is in this glob's language."""
        return self._re.fullmatch(path) is not None

    def _python_regex(self) -> str:
        seg = f"[{_SEG_CHARS}]+"

        def literal(s: str) -> str:
            out = []
            for c in s:
                if c == "*":
                    out.append(f"[{_SEG_CHARS}]*")
                elif c == "?":
                    out.append(f"[{_SEG_CHARS}]")
                else:
                    out.append(re.escape(c))
            return "".join(out)

        regex: str = _assemble(
            self.segments,
            seg,
            literal,
            lambda a, b: a + b,
            lambda r: f"(?:{r})*",
            lambda r: f"(?:{r})+",
            "/",
        )
        return regex

    def z3_regex(self) -> Any:
        """The glob's language as a Z3 regular expression over strings."""
        seg_char = _z3_seg_char()

        def literal(s: str) -> Any:
            parts = []
            for c in s:
                if c == "*":
                    parts.append(z3.Star(seg_char))
                elif c == "?":
                    parts.append(seg_char)
                else:
                    parts.append(z3.Re(z3.StringVal(c)))
            return parts[0] if len(parts) == 1 else z3.Concat(*parts)

        return _assemble(
            self.segments,
            z3.Plus(seg_char),
            literal,
            z3.Concat,
            z3.Star,
            z3.Plus,
            z3.Re(z3.StringVal("/")),
        )


def _assemble(segments: tuple[str, ...], *args: Any) -> Any:
    """Build one regex (Python string or Z3 term) from glob segments.

    ``args`` are the algebra: (segment, literal, concat, star, plus, slash).
    """
    seg, literal, cat, star, plus, slash = args
    n = len(segments)
    if n == 1 and segments[0] == "**":
        return cat(seg, star(cat(slash, seg)))
    out: Any = None
    skip_sep = False
    for i, s in enumerate(segments):
        if s == "**":
            if i == n - 1:
                piece = plus(cat(slash, seg))
            elif i == 0:
                piece = star(cat(seg, slash))
                skip_sep = True
            else:
                piece = star(cat(slash, seg))
        else:
            piece = literal(s)
            if i > 0 and not skip_sep:
                piece = cat(slash, piece)
            skip_sep = False
        out = piece if out is None else cat(out, piece)
    return out


_Z3_SEG_CHAR: list[Any] = []


def _z3_seg_char() -> Any:
    if not _Z3_SEG_CHAR:
        ranges = [z3.Range("a", "z"), z3.Range("A", "Z"), z3.Range("0", "9")]
        ranges += [z3.Re(z3.StringVal(c)) for c in "._~@+=,-"]
        _Z3_SEG_CHAR.append(z3.Union(*ranges))
    return _Z3_SEG_CHAR[0]


def z3_well_formed_path(var: Any) -> Any:
    """Constrain the Z3 string ``var`` to well-formed resource paths (no `.`/`..` segments)."""
    seg_char = _z3_seg_char()
    dots = z3.Union(z3.Re(z3.StringVal(".")), z3.Re(z3.StringVal("..")))
    seg = z3.Intersect(z3.Plus(seg_char), z3.Complement(dots))
    path = z3.Concat(seg, z3.Star(z3.Concat(z3.Re(z3.StringVal("/")), seg)))
    return z3.And(z3.InRe(var, path), z3.Length(var) <= MAX_PATH_LEN)

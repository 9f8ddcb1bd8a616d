"""``sop prove FILE``: check one obligation file through a fresh proof gate.

The lead registers :func:`prove_command` in the CLI. FILE is ``.smt2`` or
``.json``; the answer is the verdict, the obligation digest, the reason, the
evidence and the solver identity, as a rich panel for humans or one JSON
object with ``--json`` (indented, keys sorted, as every `sop` command prints
JSON). The exit status follows the CLI's exit-code table: 0 PROVED; 1 REFUTED
or UNKNOWN (not proved); 2 REJECTED (the file is not an obligation: an input
error). 3 is never a verdict's: it is kept for internal errors.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, assert_never

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sop_verified.core.contracts import ensure
from sop_verified.core.obligations import Verdict, VerdictResult
from sop_verified.core.proofgate.gate import GateConfig, Z3ProofGate
from sop_verified.core.request import Obligation
from sop_verified.tools.canonical import canonical_json

__all__ = ["EXIT_CODES", "prove_command", "prove_file"]

_FORMATS = {".smt2": "smt2", ".json": "json"}


def _exit_code(verdict: Verdict) -> int:
    match verdict:
        case Verdict.PROVED:
            return 0
        case Verdict.REFUTED:
            return 1
        case Verdict.UNKNOWN:
            return 1
        case Verdict.REJECTED:
            return 2
        case _:
            assert_never(verdict)


def _style(verdict: Verdict) -> str:
    match verdict:
        case Verdict.PROVED:
            return "bold green"
        case Verdict.REFUTED:
            return "bold red"
        case Verdict.UNKNOWN:
            return "bold yellow"
        case Verdict.REJECTED:
            return "bold magenta"
        case _:
            assert_never(verdict)


EXIT_CODES = {verdict: _exit_code(verdict) for verdict in Verdict}
"""``sop prove``'s exit status per verdict."""


def _raw_digest(path: Path) -> str:
    """SHA-256 of the raw file bytes (for files that never become an obligation)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _rejected(path: Path, reason: str, evidence: dict[str, Any]) -> VerdictResult:
    try:
        digest = _raw_digest(path)
    except OSError:
        digest = "sha256:" + hashlib.sha256(str(path).encode("utf-8", "surrogatepass")).hexdigest()
    return VerdictResult(Verdict.REJECTED, digest, reason, evidence)


def _load(
    path: Path, max_bytes: int, fmt: str | None = None, data: bytes | None = None
) -> tuple[str, str] | VerdictResult:
    """The obligation's format and text: ``data`` when given (standard input), else the file.

    ``fmt`` (``smt2`` or ``json``) overrides the file's suffix; without it the suffix decides.
    """
    fmt = fmt or _FORMATS.get(path.suffix.lower())
    if fmt is None or fmt not in _FORMATS.values():
        shown = f"format `{fmt}`" if fmt else f"file suffix `{path.suffix}`"
        return _rejected(
            path,
            f"unsupported: {shown}; accepted: `.smt2`, `.json` (or `--format smt2|json`)",
            {"code": "unsupported"},
        )
    if data is not None:
        if len(data) > max_bytes:
            return VerdictResult(
                Verdict.REJECTED,
                "sha256:" + hashlib.sha256(data).hexdigest(),
                f"too_large: input is {len(data)} bytes; accepted: at most {max_bytes} bytes",
                {"code": "too_large"},
            )
        return _decoded(path, fmt, data)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return _rejected(
                path,
                f"too_large: file is {size} bytes; accepted: at most {max_bytes} bytes",
                {"code": "too_large"},
            )
        data = path.read_bytes()
    except OSError as exc:
        return _rejected(
            path, f"unreadable: cannot read `{path}`: {exc.strerror}", {"code": "unreadable"}
        )
    return _decoded(path, fmt, data)


def _decoded(path: Path, fmt: str, data: bytes) -> tuple[str, str] | VerdictResult:
    try:
        return fmt, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return VerdictResult(
            Verdict.REJECTED,
            "sha256:" + hashlib.sha256(data).hexdigest(),
            f"encoding: not valid UTF-8 at byte {exc.start}; accepted: UTF-8 text",
            {"code": "encoding", "offset": exc.start},
        )


def prove_file(
    path: Path, rlimit: int | None = None, *, fmt: str | None = None, data: bytes | None = None
) -> tuple[VerdictResult, dict[str, Any]]:
    """Check one obligation file with a fresh gate (one worker, in-memory store).

    Args:
        path: an ``.smt2`` or ``.json`` file (with ``data``: only its name, for messages).
        rlimit: z3's resource limit (default: :class:`GateConfig`'s).
        fmt: ``smt2`` or ``json``, instead of what the suffix says.
        data: the obligation's bytes, already read (standard input); the file is not read.

    Returns:
        The verdict and the solver identity.
    """
    config = GateConfig(workers=1) if rlimit is None else GateConfig(workers=1, rlimit=rlimit)
    loaded = _load(path, config.limits.max_bytes, fmt, data)
    with Z3ProofGate(config) as gate:
        identity = gate.solver_identity
        if isinstance(loaded, VerdictResult):
            return loaded, identity
        fmt, source = loaded
        # model_construct: the gate applies its own caps and rejects with a precise reason
        obligation = Obligation.model_construct(id="cli", format=fmt, source=source)
        return gate.check(obligation), identity


def _human(result: VerdictResult, identity: dict[str, Any], path: Path) -> None:
    console = Console()
    table = Table(title=Text(f"sop prove {path}"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    # Text cells, not markup: a reason quotes the file (`{`args`: [sort]}`) and must stay whole
    table.add_row("verdict", Text(str(result.verdict), style=_style(result.verdict)))
    table.add_row("digest", Text(result.digest))
    reason = result.reason
    if result.verdict is Verdict.REJECTED:
        reason = f"`{path}` is not an obligation the gate accepts: {reason}"
    table.add_row("reason", Text(reason))
    if result.evidence:
        table.add_row("evidence", Text(canonical_json(result.evidence).decode("utf-8")))
    solver = [f"{identity[k]}" for k in ("name", "version") if identity.get(k) is not None]
    if identity.get("rlimit") is not None:
        solver.append(f"rlimit={identity['rlimit']}")
    table.add_row("solver", Text(" ".join(solver) or "unknown"))
    console.print(table, highlight=False)


def _error(result: VerdictResult, path: Path) -> dict[str, Any]:
    """The CLI's JSON error members for a REJECTED file (exit 2): ok, exit, stage, code, message."""
    code = result.evidence.get("code") if isinstance(result.evidence, dict) else None
    return {
        "ok": False,
        "exit": _exit_code(result.verdict),
        "stage": "obligation",
        "code": code if isinstance(code, str) else "rejected",
        "message": f"`{path}` is not an obligation the gate accepts: {result.reason}",
    }


@ensure(lambda result: result in EXIT_CODES.values())
def prove_command(
    path: Path,
    json_output: bool,
    rlimit: int | None,
    *,
    fmt: str | None = None,
    data: bytes | None = None,
) -> int:
    """Run ``sop prove FILE``: print the verdict and return the exit status.

    Args:
        path: the obligation file (``.smt2`` or ``.json``); with ``data``, its name only.
        json_output: print one JSON object ``{verdict, digest, reason, evidence, solver}``.
        rlimit: z3's resource limit, or None for the default.
        fmt: ``smt2`` or ``json``, instead of what the suffix says.
        data: the obligation's bytes, already read (``sop prove -``).

    Returns:
        0 for PROVED, 1 REFUTED or UNKNOWN, 2 REJECTED (whose JSON object also has the
        CLI's error members: ``ok``, ``exit``, ``stage``, ``code``, ``message``).
    """
    result, identity = prove_file(Path(path), rlimit, fmt=fmt, data=data)
    if json_output:
        payload = {
            "verdict": str(result.verdict),
            "digest": result.digest,
            "reason": result.reason,
            "evidence": result.evidence,
            "solver": identity,
        }
        if result.verdict is Verdict.REJECTED:  # an input error: the CLI's error object too
            payload |= _error(result, Path(path))
        indented = orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        sys.stdout.write(indented.decode("utf-8") + "\n")  # the command's output
    else:
        _human(result, identity, Path(path))
    return _exit_code(result.verdict)

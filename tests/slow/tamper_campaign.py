"""A randomised tampering campaign against a demo data directory (issue 13, item 9).

One demo data directory is built once (``sop demo``'s run, made clean and given
a reader; see :func:`build_base`). Each trial copies it, applies one tampering
(:mod:`tamper_kinds`) to one target, boots SOP on the copy, reads every stored
object through SOP if it came up READY, closes it, and runs
``sop log verify --json``. The trial is

- ``detected`` when boot is not READY, a read is refused, or verify exits non-zero;
- ``noop`` when the tampering could not change anything (proved by comparing
  rows or bytes; SOP is not even booted);
- ``inert`` when bytes changed but nothing SOP can observe did: a raw edit of
  ``sop.db`` that leaves its schema and every row as they were (free space,
  slack), or a configuration edit that parses to the same document (a comment);
- ``undetected`` otherwise.

Targets are every table of ``sop.db`` (listed from ``sqlite_master``, so a table
added later is in the campaign without an edit here) and every file of the data
directory except ``keys/``: the attacker of the threat model can neither read
nor write the keys (DESIGN.md §7), so tampering with them is out of scope. New
files (a rollback anchor, say) are picked up the same way.

Targets and kinds are drawn so that every (target, kind) pair is tried about
equally often: the pairs are shuffled by the seed and dealt round after round;
the row, cell, offset and mask of each tampering come from a per-trial RNG
seeded with ``(seed, trial)``, so one trial can be replayed alone (``--only``).

Run as a script::

    python tests/slow/tamper_campaign.py --n 1000 --seed 7 --json report.json
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find tamper_kinds

from tamper_kinds import FILE_KINDS, TABLE_KINDS, tamper_file, tamper_table

__all__ = [
    "ALLOW_LIST",
    "Base",
    "Report",
    "build_base",
    "format_report",
    "main",
    "run_campaign",
]


@dataclass(frozen=True)
class Allowance:
    """Why the undetected tamperings of one target are harmless, and which of them are."""

    reason: str
    covers: Callable[[Trial], bool] = lambda _trial: True


def _not_latest_checkpoint(trial: Trial) -> bool:
    return trial.kind == "delete" and trial.detail.get("last") is False


ALLOW_LIST: dict[str, Allowance] = {
    # SOP writes this file at every boot (atomically, before anything reads it) and never reads
    # it back: it is an output, and its content is logged (and attested) at every READY boot, so
    # the log, not this file, is the record. A tampered manifest is simply overwritten.
    "file:boot-manifest.json": Allowance(
        "rewritten at every boot and never read; the log holds its content"
    ),
    # The source files `sop policy activate` analysed. SOP never reads them again: the active
    # set is the copy in the sealed `policy_sets` table, so editing a source changes no decision
    # (a later `sop policy activate` of an edited file is analysed afresh and logged).
    "file:policies/*": Allowance(
        "activation sources, never read after activation; policy_sets is sealed"
    ),
    # SQLite's own record of the last AUTOINCREMENT value of `capabilities` and `policy_sets`.
    # SOP never reads it; SQLite takes the larger of it and the table's largest key, so a lower
    # value, a deleted row or a row for another name changes nothing, and a higher one leaves a
    # gap in `seq` (order kept: `ORDER BY seq` still sorts as written). At the int64 maximum
    # the next admit or activation fails loudly ("database or disk is full"): a denial of
    # service, which this attacker has anyway (he can delete sop.db), never a wrong decision.
    "table:sqlite_sequence": Allowance(
        "SQLite's AUTOINCREMENT counter, never read by SOP; at worst a later write fails"
    ),
    # Only the deletion of a checkpoint that is not the latest. SOP reads the latest checkpoint
    # alone (the log's tail); older ones are evidence the audit re-verifies when present. With
    # group commit not every size has a checkpoint, so a missing one is indistinguishable from a
    # batch never checkpointed; nothing decided depends on it, and consistency with a checkpoint
    # someone kept is still proved from the tiles (`sop log verify --checkpoint`). Deleting the
    # latest one, and every other edit of this table, must be detected.
    "table:log_checkpoints": Allowance(
        "an older signed checkpoint deleted: evidence only, never read to decide",
        _not_latest_checkpoint,
    ),
}
"""Targets whose undetected tamperings are harmless, each with the reason (see comments)."""

CLOCK = 1_800_000_000 + 7_200  # after the demo's fixed clock (its capabilities still valid)
READER = "csp"  # owns or may read every scope of the demo's configuration
READ_RESOURCES = ["artifacts/**", "verdicts/**", "snapshots/**", "state/**"]
READ_POLICY = """
# Added by the tampering campaign: lets the campaign's reader read every stored object back.
[[policy]]
id = "campaign-reader"
effect = "permit"
principal = ["csp"]
action = ["artifact.read"]
resource = ["artifacts/**", "verdicts/**", "snapshots/**", "state/**"]
channel = "bridge"
"""
# The demo overwrites one stored blob on purpose (to show a resume refused); put it back so the
# campaign starts from a directory where every check passes.
DEMO_PLANTED = (b"planted memory", b"trusted memory")


def _clock() -> int:
    return CLOCK


@dataclass(frozen=True)
class StoredObject:
    """One object of the persistence index and the file that holds it."""

    resource: str
    file: str  # relative to the data directory
    scope: str


@dataclass(frozen=True)
class Base:
    """The clean demo data directory every trial copies, and how to read its objects."""

    path: str
    token: str
    objects: tuple[StoredObject, ...]


@dataclass(frozen=True)
class Target:
    """One table of ``sop.db`` (``table:NAME``) or one file (its path)."""

    kind: str  # "table" or "file"
    name: str
    group: str  # the reporting class: the table, or the file's class

    @property
    def kinds(self) -> tuple[str, ...]:
        return TABLE_KINDS if self.kind == "table" else FILE_KINDS


@dataclass
class Trial:
    """One trial: what was done, what SOP then said, and the outcome."""

    n: int
    target: str
    group: str
    kind: str
    detail: dict[str, Any]
    outcome: str = "noop"  # noop | inert | detected | undetected
    noop: str | None = None
    boot: str = ""
    reads_refused: list[str] = field(default_factory=list)
    verify_exit: int | None = None
    verify: str = ""
    crash: str | None = None  # an exception that escaped SOP (an error of its own)
    allowed: bool = False


# ---- the base directory -----------------------------------------------------------------


def build_base(path: Path) -> Base:
    """Run the demo into ``path``, make it clean, admit a reader, and check it passes.

    Raises:
        RuntimeError: the base is not clean (boot, a read or verify fails on it).
    """
    from sop_verified.nexus.demo import SOUND_POLICIES, run_demo
    from sop_verified.nexus.sop import SOP

    run_demo(path)
    objects = _objects(path)
    for obj in objects:
        f = path / obj.file
        if f.read_bytes() == DEMO_PLANTED[0]:
            f.write_bytes(DEMO_PLANTED[1])
    pol = path / "policies" / "campaign"
    pol.mkdir(mode=0o700)
    (pol / "policies.toml").write_text(SOUND_POLICIES + READ_POLICY)
    sop = SOP.boot(path, now=_clock)
    try:
        sop.activate_policy(pol)
        _, token = sop.admit(READER, ["artifact.read"], READ_RESOURCES, expires=CLOCK + 10**8)
    finally:
        sop.close()
    base = Base(str(path), token, tuple(objects))
    trial = Trial(-1, "", "", "", {})
    _observe(base, path, trial)
    if trial.boot != "READY" or trial.reads_refused or trial.verify_exit != 0:
        raise RuntimeError(f"the campaign's base directory is not clean: {asdict(trial)}")
    return base


def _objects(path: Path) -> list[StoredObject]:
    """Every written object of the index, with its resource and file (from ``sop.toml``)."""
    conf = tomllib.loads((path / "sop.toml").read_text())
    scopes = {s["name"]: s for s in conf.get("scope", [])}
    db = sqlite3.connect(f"{(path / 'sop.db').as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT scope, name, stored FROM persist_effects WHERE outcome = 'written'"
            " ORDER BY effect_index"
        ).fetchall()
    finally:
        db.close()
    out = []
    for scope, name, stored in rows:
        s = scopes[scope]
        prefix = s["path"].removesuffix("/**")
        out.append(StoredObject(f"{prefix}/{name}", f"scopes/{s['root']}/{stored}", scope))
    return out


def targets(base: Base) -> list[Target]:
    """Every table of ``sop.db`` and every file of the data directory but ``keys/``."""
    root = Path(base.path)
    db = sqlite3.connect(f"{(root / 'sop.db').as_uri()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        db.close()
    out = [Target("table", t, f"table:{t}") for t in sorted(tables)]
    by_file = {o.file: o.scope for o in base.objects}
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel.startswith("keys/"):  # the attacker can neither read nor write the keys
            continue
        out.append(Target("file", rel, _file_group(rel, by_file)))
    return out


def _file_group(rel: str, by_file: dict[str, str]) -> str:
    if rel in by_file:
        return f"file:scope:{by_file[rel]}"
    if rel.startswith("policies/"):
        return "file:policies/*"
    if rel.startswith("scopes/"):
        return "file:scopes/(not indexed)"
    return f"file:{rel}"


# ---- one trial --------------------------------------------------------------------------


def _plan(tgts: Sequence[Target], n: int, seed: int) -> list[tuple[Target, str]]:
    pairs = [(t, k) for t in tgts for k in t.kinds]
    rng = random.Random(f"plan/{seed}")
    out: list[tuple[Target, str]] = []
    while len(out) < n:
        rnd = list(pairs)
        rng.shuffle(rnd)
        out.extend(rnd)
    return out[:n]


def run_trial(base: Base, tgts: Sequence[Target], n: int, seed: int, total: int) -> Trial:
    """Trial ``n`` of a campaign of ``total`` trials seeded with ``seed``."""
    target, kind = _plan(tgts, total, seed)[n]
    rng = random.Random(f"trial/{seed}/{n}")
    trial = Trial(n, target.name, target.group, kind, {})
    with tempfile.TemporaryDirectory(prefix="sop-tamper-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(base.path, data)
        if target.kind == "table":
            done = tamper_table(data / "sop.db", target.name, kind, rng)
        else:
            # a swap stays within the file's class (two blobs, two policy sources), so that
            # what SOP notices is charged to the class tampered with
            partners = [t.name for t in tgts if t.kind == "file" and t.group == target.group]
            done = tamper_file(data, target.name, kind, rng, partners)
        trial.detail, trial.noop = done.detail, done.noop
        if done.noop is not None:
            return trial
        inert = _inert(Path(base.path), data, target)
        _observe(base, data, trial)
    detected = (
        trial.boot != "READY" or bool(trial.reads_refused) or trial.verify_exit != 0 or trial.crash
    )
    trial.outcome = "detected" if detected else "inert" if inert else "undetected"
    allowance = ALLOW_LIST.get(trial.group)
    trial.allowed = trial.outcome == "undetected" and bool(allowance and allowance.covers(trial))
    return trial


def _inert(base: Path, data: Path, target: Target) -> bool:
    """Whether a file tampering left everything SOP reads from that file as it was."""
    if target.kind != "file":
        return False
    if target.name.startswith("sop.db"):  # the database, its WAL or its shared-memory index
        found = _dump(data / "sop.db")
        return found is not None and found == _dump(base / "sop.db")
    if target.name == "sop.toml":  # what SOP uses is the validated model, by its digest
        digest = _config_digest(data)
        return digest is not None and digest == _config_digest(base)
    parsers: dict[str, Callable[[bytes], object]] = {
        ".toml": lambda b: tomllib.loads(b.decode()),
        ".json": json.loads,
    }
    parse = parsers.get(Path(target.name).suffix)
    if parse is None:
        return False
    try:
        before = parse((base / target.name).read_bytes())
        return bool(before == parse((data / target.name).read_bytes()))
    except (OSError, ValueError):
        return False


def _config_digest(data: Path) -> str | None:
    """The digest of the configuration SOP would boot with, or None when it would not load."""
    from sop_verified.errors import SOPError
    from sop_verified.nexus.config import load_config

    try:
        return load_config(data).digest()
    except SOPError:
        return None


def _dump(path: Path) -> list[str] | None:
    """The schema and every row of a database, or None when it cannot be read."""
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return list(db.iterdump())
        finally:
            db.close()
    except (sqlite3.Error, OSError, UnicodeDecodeError):
        return None


def _observe(base: Base, data: Path, trial: Trial) -> None:
    """Boot SOP on ``data``, read every object if READY, close, and run ``sop log verify``."""
    from typer.testing import CliRunner

    from sop_verified.cli import app
    from sop_verified.nexus.sop import SOP

    try:
        sop = SOP.boot(data, now=_clock)
    except Exception as exc:  # an escape is a finding of its own (never an exception: issue 13)
        trial.boot = "raised"
        trial.crash = f"boot raised {type(exc).__name__}: {exc}"
    else:
        try:
            health = str(sop.health)
            report = sop.boot_report
            trial.boot = health if health == "READY" else f"{health}: {report and report.detail}"
            if health == "READY":
                trial.reads_refused = _read_all(sop, base)
        finally:
            sop.close()
    args = ["log", "verify", "--json", "--data-dir", str(data)]
    result = CliRunner().invoke(app, args)
    trial.verify_exit = result.exit_code
    escaped = result.exception
    if escaped is not None and not isinstance(escaped, SystemExit):
        trial.crash = trial.crash or f"verify raised {type(escaped).__name__}: {escaped}"
    trial.verify = _verify_summary(result.output)


def _read_all(sop: Any, base: Base) -> list[str]:
    refused = []
    for i, obj in enumerate(base.objects):
        request = {
            "request_id": f"campaign-read-{i}",
            "principal": READER,
            "action": "artifact.read",
            "resource": obj.resource,
            "capability": base.token,
            "context": {},
        }
        r = sop.read(request)
        if r.data is None:
            first = r.decision.reasons[0] if r.decision.reasons else None
            refused.append(f"{obj.resource}: {first.code if first else '?'}")
    return refused


def _verify_summary(output: str) -> str:
    try:
        data = json.loads(output)
    except ValueError:
        return output.strip().splitlines()[-1][:300] if output.strip() else ""
    if data.get("ok"):
        return "ok"
    findings = data.get("findings") or []
    first = findings[0]["message"] if findings else data.get("derived_state", "")
    return f"{data.get('total_findings')} findings; first: {first}"[:300]


# ---- the campaign -----------------------------------------------------------------------


@dataclass
class Report:
    """The campaign's result: every trial and the tallies."""

    seed: int
    n: int
    workers: int
    seconds: float
    targets: list[str]
    trials: list[Trial]

    def tally(self, key: Callable[[Trial], str]) -> dict[str, dict[str, Any]]:
        """Counts of each outcome grouped by ``key``, with the detection rates.

        ``rate`` is detected / (detected + undetected); ``rate_unexcused`` leaves out the
        undetected trials the allow-list excuses (``allowed``).
        """
        out: dict[str, dict[str, Any]] = {}
        for t in self.trials:
            row = out.setdefault(
                key(t),
                {"trials": 0, "noop": 0, "inert": 0, "detected": 0, "undetected": 0, "allowed": 0},
            )
            row["trials"] += 1
            row[t.outcome] += 1
            row["allowed"] += t.allowed
        for row in out.values():
            judged = row["detected"] + row["undetected"]
            row["rate"] = None if judged == 0 else row["detected"] / judged
            judged -= row["allowed"]
            row["rate_unexcused"] = None if judged == 0 else row["detected"] / judged
        return dict(sorted(out.items()))

    @property
    def undetected(self) -> list[Trial]:
        """The undetected trials (allow-listed or not)."""
        return [t for t in self.trials if t.outcome == "undetected"]

    @property
    def harmful(self) -> list[Trial]:
        """Undetected trials on a target the allow-list does not excuse."""
        return [t for t in self.undetected if not t.allowed]

    @property
    def crashes(self) -> list[Trial]:
        """Trials where an exception escaped boot or verify."""
        return [t for t in self.trials if t.crash]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "seed": self.seed,
            "n": self.n,
            "workers": self.workers,
            "seconds": round(self.seconds, 1),
            "excluded": "keys/ (the attacker can neither read nor write it)",
            "targets": self.targets,
            "allow_list": {k: a.reason for k, a in ALLOW_LIST.items()},
            "overall": self.tally(lambda t: "all")["all"],
            "by_target": self.tally(lambda t: t.group),
            "by_kind": self.tally(
                lambda t: ("table " if t.group.startswith("table:") else "file ") + t.kind
            ),
            "undetected": [asdict(t) for t in self.undetected],
            "crashes": [asdict(t) for t in self.crashes],
            "inert": [asdict(t) for t in self.trials if t.outcome == "inert"],
            "trials": [asdict(t) for t in self.trials],
        }


def run_campaign(
    n: int,
    seed: int,
    *,
    workers: int = 2,
    base_dir: Path | None = None,
    only: Iterable[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Build the base (or reuse ``base_dir/base`` if it is there) and run ``n`` trials.

    Args:
        n: The number of trials.
        seed: The campaign's seed (the plan and every trial's RNG derive from it).
        workers: Processes to run trials in.
        base_dir: Where to keep the base directory; default a temporary one.
        only: Run only these trial numbers (to replay one).
        progress: Called with a line now and then.
    """
    say = progress or (lambda _line: None)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sop-campaign-") as tmp:
        root = base_dir or Path(tmp)
        base_path = root / "base"
        meta = root / "base.json"
        if base_path.exists() and meta.exists():
            raw = json.loads(meta.read_text())
            base = Base(raw["path"], raw["token"], tuple(StoredObject(**o) for o in raw["objects"]))
        else:
            base = build_base(base_path)
            meta.write_text(json.dumps(asdict(base)))
        tgts = targets(base)
        say(f"base ready in {time.perf_counter() - start:.1f}s: {len(tgts)} targets")
        numbers = sorted(only) if only is not None else list(range(n))
        trials: list[Trial] = []
        if workers <= 1:
            for i in numbers:
                trials.append(run_trial(base, tgts, i, seed, n))
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = pool.map(
                    _trial_star, [(base, tgts, i, seed, n) for i in numbers], chunksize=4
                )
                for t in futures:
                    trials.append(t)
                    if len(trials) % 100 == 0:
                        say(f"{len(trials)}/{len(numbers)} trials")
    names = [
        t.group if t.kind == "file" and t.group.startswith("file:scope") else t.name for t in tgts
    ]
    return Report(seed, len(trials), workers, time.perf_counter() - start, names, trials)


def _trial_star(args: tuple[Base, Sequence[Target], int, int, int]) -> Trial:
    return run_trial(*args)


# ---- the report -------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def format_report(report: Report) -> str:
    """The detection tables, the undetected trials and the crashes, as text.

    ``rate`` counts every undetected trial; ``excused`` is the rate once the allow-list's
    harmless ones (column ``allow``) are left out: the figure the slow test holds at 100 %.
    """
    d = report.to_dict()
    lines = [
        f"tampering campaign: {report.n} trials, seed {report.seed},"
        f" {report.workers} workers, {report.seconds:.0f} s (keys/ excluded: out of reach)",
    ]
    head = (
        f"{'target':34} {'trials':>6} {'noop':>5} {'inert':>5} {'det':>5} {'undet':>5}"
        f" {'allow':>5} {'rate':>8} {'excused':>8}"
    )
    tables = (
        ("by target", d["by_target"]),
        ("by kind", d["by_kind"]),
        ("overall", {"all": d["overall"]}),
    )
    for title, rows in tables:
        lines += ["", title, head]
        for name, r in rows.items():
            lines.append(
                f"{name:34} {r['trials']:>6} {r['noop']:>5} {r['inert']:>5} {r['detected']:>5}"
                f" {r['undetected']:>5} {r['allowed']:>5} {_rate(r['rate']):>8}"
                f" {_rate(r['rate_unexcused']):>8}"
            )
    lines += ["", f"undetected: {len(report.undetected)} ({len(report.harmful)} not allow-listed)"]
    for t in report.undetected:
        tag = "allowed" if t.allowed else "NOT ALLOWED"
        lines.append(f"  [{tag}] #{t.n} {t.target} {t.kind} {json.dumps(t.detail)[:150]}")
    if report.crashes:
        lines += ["", f"exceptions that escaped SOP: {len(report.crashes)}"]
        lines += [f"  #{t.n} {t.target} {t.kind}: {t.crash}"[:240] for t in report.crashes]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the campaign from the command line; exit 1 when a harmful tampering went unseen."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="number of trials (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="campaign seed (default random)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--base-dir", type=Path, default=None, help="keep/reuse the base here")
    p.add_argument("--only", type=int, action="append", help="replay only this trial number")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    print(f"seed {seed}", flush=True)
    report = run_campaign(
        args.n,
        seed,
        workers=args.workers,
        base_dir=args.base_dir,
        only=args.only,
        progress=lambda line: print(line, flush=True),
    )
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 1 if report.harmful else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Policy-decision benchmark: SOP against cedarpy and casbin on one RBAC+ABAC scenario.

Usage::

    python3 bench/bench_policy.py [--requests N] [--json]

One run renders the 44-policy scenario (bench/policy_scenario.py) for the three
engines, builds a seeded corpus of N requests (default 2,000), checks that all
three engines decide every request alike (SOP and Cedar also name the same
determining policies) and fails loudly otherwise, then times each decision and
prints one table: median and p99 microseconds per decision, a batched figure,
and the ratio to SOP. SOP is timed twice: in this process with the contract
settings it ships with, and in a child process started with
``SOP_BENCH_CONTRACTS=off``, which switches contracts off before SOP's modules
load (and must reach the same decisions). casbin, at milliseconds a decision,
is timed on the first ``--casbin-requests`` requests; it is checked on all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import contract_switch
from policy_agreement import DisagreementError, check_agreement, verdict_digest
from policy_corpus import Case, generate_cases
from policy_engines import CasbinEngine, CedarEngine, SopEngine
from policy_render import casbin_rows
from policy_scenario import PRINCIPALS, ROLES, RULES
from policy_timing import Timing, summarise, time_batches, time_each, timer_floor_ns

__all__ = ["main", "run"]

_SOP_TARGET_US = 5.0  # issue 12
_CEDAR_RATIO_TARGET = 20.0  # issue 12


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="corpus size (default 2000)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--seed", type=int, default=20261126, help="corpus seed")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes for SOP (default 5)")
    parser.add_argument("--cedar-rounds", type=int, default=3, help="timed passes for cedarpy")
    parser.add_argument("--casbin-requests", type=int, default=200, help="casbin timing subset")
    parser.add_argument("--casbin-rounds", type=int, default=2, help="timed passes for casbin")
    parser.add_argument("--only", choices=("sop",), help=argparse.SUPPRESS)  # the child run
    args = parser.parse_args(argv)
    if args.requests < 1 or args.casbin_requests < 1:
        parser.error("`--requests` and `--casbin-requests` must be at least 1")
    if min(args.rounds, args.cedar_rounds, args.casbin_rounds) < 1:
        parser.error("every `--*rounds` must be at least 1")
    return args


def _measure(engine: Any, items: list[Any], rounds: int) -> Timing:
    warm = items[: min(len(items), 200)]
    time_each(engine.timed, warm, 1)
    samples = time_each(engine.timed, items, rounds)
    return summarise(samples, time_batches(engine.batch, items, rounds))


def _sop_part(cases: list[Case], rounds: int) -> dict[str, Any]:
    """SOP's verdicts digest and timing, with this process's contract setting."""
    sop = SopEngine(RULES)
    items = sop.prepare(cases)
    return {
        "contracts_on": contract_switch.CONTRACTS_ON,
        # the shipped boundary contract of the policy set: its class invariant (ADR 0007)
        "contracted": contract_switch.contracted(type(sop.policy_set)),
        "digest": verdict_digest([sop.verdict(r) for r in items]),
        "timing": _measure(sop, items, rounds).to_dict(),
    }


def _sop_contracts_off(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--only", "sop", "--json"]
    cmd += ["--requests", str(args.requests), "--seed", str(args.seed)]
    cmd += ["--rounds", str(args.rounds)]
    env = {**os.environ, contract_switch.ENV: "off"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the contracts-off run failed:\n{done.stderr}")
    child: dict[str, Any] = json.loads(done.stdout)
    if child["contracts_on"] or child["contracted"]:
        raise RuntimeError("the contracts-off run still had contracts on")
    return child


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Check agreement, then time the three engines (and SOP without contracts).

    Args:
        args: the parsed command line.

    Returns:
        The report (what :func:`main` prints).

    Raises:
        DisagreementError: two engines decided some request differently.
        RuntimeError: the contracts-off child run failed or kept contracts on.
    """
    cases = generate_cases(args.requests, args.seed)
    sop, cedar, casbin = SopEngine(RULES), CedarEngine(RULES), CasbinEngine(RULES)
    items: dict[str, list[Any]] = {
        "sop": sop.prepare(cases),
        "cedar": cedar.prepare(cases),
        "casbin": casbin.prepare(cases),
    }
    reference = [sop.verdict(r) for r in items["sop"]]
    others = {
        "cedarpy": [cedar.verdict(r) for r in items["cedar"]],
        "casbin": [casbin.verdict(r) for r in items["casbin"]],
    }
    agreement = check_agreement(cases, reference, others)
    timings = {
        "sop": _measure(sop, items["sop"], args.rounds),
        "cedarpy": _measure(cedar, items["cedar"], args.cedar_rounds),
        "casbin": _measure(casbin, items["casbin"][: args.casbin_requests], args.casbin_rounds),
    }
    off = _sop_contracts_off(args)
    if off["digest"] != verdict_digest(reference):
        raise DisagreementError("SOP with contracts off decided differently from contracts on")
    return _report(args, agreement, timings, off)


def _report(
    args: argparse.Namespace, agreement: Any, timings: dict[str, Timing], off: dict[str, Any]
) -> dict[str, Any]:
    base = timings["sop"].median_us
    rows = [
        ("SOP, shipped contract settings", timings["sop"].to_dict(), args.rounds),
        ("SOP, contracts off", off["timing"], args.rounds),
        ("cedarpy " + metadata.version("cedarpy"), timings["cedarpy"].to_dict(), args.cedar_rounds),
        ("casbin " + metadata.version("casbin"), timings["casbin"].to_dict(), args.casbin_rounds),
    ]
    engines = [
        {"engine": label, "rounds": rounds, **t, "ratio": round(t["median_us"] / base, 2)}
        for label, t, rounds in rows
    ]
    cedar_ratio = timings["cedarpy"].median_us / base
    return {
        "scenario": {
            "policies": len(RULES),
            "permits": sum(r.effect == "permit" for r in RULES),
            "forbids": sum(r.effect == "forbid" for r in RULES),
            "roles": len(ROLES),
            "principals": len(PRINCIPALS),
            "casbin_rows": len(casbin_rows(RULES)),
        },
        "corpus": {"requests": args.requests, "seed": args.seed, **agreement.reasons},
        "agreement": {
            "compared": agreement.compared,
            "ids_compared": agreement.ids_compared,
            "sop_contracts_off_same_decisions": True,
        },
        "engines": engines,
        "targets": {
            "sop_median_us_at_most_5": base <= _SOP_TARGET_US,
            "cedarpy_over_sop_at_least_20x": cedar_ratio >= _CEDAR_RATIO_TARGET,
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "timer_floor_us": round(timer_floor_ns() / 1000, 3),
        },
    }


def _fmt(us: float) -> str:
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}" if us >= 10 else f"{us:.2f}"


def _table(report: dict[str, Any]) -> str:
    head = "| engine | decisions timed | median µs/decision | p99 µs | batched µs/decision "
    lines = [head + "| median vs SOP |", "|---|---:|---:|---:|---:|---:|"]
    for e in report["engines"]:
        n = e["decisions"] // e["rounds"]
        lines.append(
            f"| {e['engine']} | {n:,} × {e['rounds']} | {_fmt(e['median_us'])} | "
            f"{_fmt(e['p99_us'])} | {_fmt(e['batch_us'])} | {e['ratio']:,.2f}× |"
        )
    return "\n".join(lines)


def _notes(report: dict[str, Any]) -> str:
    s, c, m, t = report["scenario"], report["corpus"], report["machine"], report["targets"]
    sop, cedar, casbin = report["engines"][0], report["engines"][2], report["engines"][3]
    compared = ", ".join(f"{k} {v:,}" for k, v in report["agreement"]["compared"].items())
    allow, forbid, none = (c.get(k, 0) for k in ("permitted", "forbidden", "no_permit"))
    verdict = {True: "PASS", False: "MISS"}
    return "\n".join(
        [
            f"scenario: {s['policies']} policies ({s['permits']} permit, {s['forbids']} forbid), "
            f"{s['roles']} roles, {s['principals']} principals; casbin: {s['casbin_rows']} rows",
            f"corpus: {c['requests']:,} requests, seed {c['seed']}: {allow:,} allow, "
            f"{forbid:,} forbidden, {none:,} no permit (default deny)",
            f"agreement with SOP on every request: {compared} (cedarpy also on the determining "
            "policy ids); SOP with contracts off reached the same decisions",
            f"casbin is timed on the first {casbin['decisions'] // casbin['rounds']:,} requests "
            "only (milliseconds a decision); cedarpy uses pre-parsed PolicySet and Entities "
            "handles, {type, id} dict entity ids and a pre-serialised context",
            f"targets: SOP median <= 5 us: {verdict[t['sop_median_us_at_most_5']]} "
            f"({_fmt(sop['median_us'])} us); cedarpy >= 20x SOP: "
            f"{verdict[t['cedarpy_over_sop_at_least_20x']]} ({cedar['ratio']:.1f}x)",
            f"machine: Python {m['python']}, {m['cpus']} CPUs, load average {m['load_average']}; "
            f"timer floor {m['timer_floor_us']} us per timed call (not subtracted)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (or JSON).

    Args:
        argv: the arguments (default: the command line).

    Returns:
        0, or 2 when the engines disagree.
    """
    args = _parse(argv)
    if args.only == "sop":
        print(json.dumps(_sop_part(generate_cases(args.requests, args.seed), args.rounds)))
        return 0
    if not contract_switch.CONTRACTS_ON:
        print(
            f"unset `{contract_switch.ENV}`: the bench starts the contracts-off run itself",
            file=sys.stderr,
        )
        return 2
    try:
        report = run(args)
    except DisagreementError as exc:
        print(f"DISAGREEMENT: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else _table(report) + "\n\n" + _notes(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

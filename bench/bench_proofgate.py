"""Benchmark of the proof gate (not a test): medians and ratios.

Measures, on this machine:

* a cached verdict (the obligation was decided before; in-process memo);
* a cached verdict from the store only (memo disabled; decode + digest check);
* a fresh scope-containment obligation on a warm worker (filter, IPC, z3);
* throughput of fresh obligations with 1 and 2 worker processes;
* the baselines: z3 in-process with a fresh solver per obligation, z3
  in-process with one solver and push/pop (no filter, no isolation), and a
  new process per check.

Run: ``python bench/bench_proofgate.py [--n 400]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import z3

from sop_verified.core.proofgate import GateConfig, InMemoryVerdictStore, Z3ProofGate, compile_smt2
from sop_verified.core.proofgate.derive import scope_containment
from sop_verified.core.request import Obligation

SCOPE = "artifacts/drac/**"


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def _time_each(fn: Callable[[int], object], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def _obligations(n: int, tag: str) -> list[Obligation]:
    return [scope_containment(f"artifacts/drac/{tag}{i}/out.json", SCOPE) for i in range(n)]


def bench_cached(n: int) -> tuple[float, float]:
    ob = _obligations(1, "cached")[0]
    with Z3ProofGate(GateConfig(workers=1)) as gate:
        assert gate.check(ob).verdict == "PROVED"
        memo = _median_us(_time_each(lambda _: gate.check(ob), n * 20))
    store = InMemoryVerdictStore()
    with Z3ProofGate(GateConfig(workers=1, memo_size=0), store=store) as gate:
        assert gate.check(ob).verdict == "PROVED"
        stored = _median_us(_time_each(lambda _: gate.check(ob), n * 5))
    return memo, stored


def bench_fresh(n: int) -> tuple[float, float]:
    obs = _obligations(n + 20, "fresh")
    with Z3ProofGate(GateConfig(workers=1)) as gate:
        gate.warm()
        for ob in obs[:20]:
            gate.check(ob)
        samples = _time_each(lambda i: gate.check(obs[20 + i]), n)
    derive = _time_each(lambda i: scope_containment(f"artifacts/drac/d{i}/x.json", SCOPE), n)
    return _median_us(samples), _median_us(derive)


def bench_throughput(n: int, workers: int, threads: int = 4) -> float:
    """Fresh obligations per second with ``workers`` solver processes and ``threads`` callers."""
    obs = _obligations(n, f"tp{workers}-")
    with Z3ProofGate(GateConfig(workers=workers)) as gate:
        gate.warm()
        for ob in _obligations(threads * 2, f"warm{workers}-"):
            gate.check(ob)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            verdicts = list(pool.map(gate.check, obs))
        elapsed = time.perf_counter() - t0
    assert all(v.verdict == "PROVED" for v in verdicts)
    return n / elapsed


def bench_baselines(n: int) -> tuple[float, float, float]:
    scripts = [compile_smt2(ob.source).solver_script() for ob in _obligations(n, "base")]

    def fresh_solver(i: int) -> None:
        solver = z3.Solver()
        solver.set("rlimit", 5_000_000)
        solver.add(z3.parse_smt2_string(scripts[i]))
        assert solver.check() == z3.unsat

    reused = z3.Solver()
    reused.set("rlimit", 5_000_000)

    def push_pop(i: int) -> None:
        reused.push()
        reused.add(z3.parse_smt2_string(scripts[i]))
        assert reused.check() == z3.unsat
        reused.pop()

    fresh = _median_us(_time_each(fresh_solver, n))
    pushpop = _median_us(_time_each(push_pop, n))
    code = "import sys, z3; s = z3.Solver(); s.add(z3.parse_smt2_string(sys.argv[1])); s.check()"
    spawn = _time_each(
        lambda i: subprocess.run([sys.executable, "-c", code, scripts[i]], check=True), min(n, 15)
    )
    return fresh, pushpop, _median_us(spawn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400)
    n = parser.parse_args().n
    memo, stored = bench_cached(n)
    fresh, derive = bench_fresh(n)
    z3_fresh, z3_pushpop, spawn = bench_baselines(n)
    tp1, tp2 = bench_throughput(n, 1), bench_throughput(n, 2)
    rows = [
        ("cached verdict (memo)", memo, "target <= 20 us"),
        ("cached verdict (store, no memo)", stored, ""),
        ("fresh scope containment, warm worker", fresh, "target <= 2000 us"),
        ("  derive the obligation (kernel side)", derive, ""),
        ("baseline: z3 fresh solver per obligation", z3_fresh, "in-process, unfiltered"),
        ("baseline: z3 one solver push/pop", z3_pushpop, "in-process, unfiltered"),
        ("baseline: new process per check", spawn, ""),
    ]
    print(f"{'measurement':45s} {'median':>12s}")
    for name, value, note in rows:
        print(f"{name:45s} {value:10.1f} us  {note}")
    print()
    print(f"fresh gate check / z3 fresh solver in-process  = {fresh / z3_fresh:6.2f}x")
    print(f"fresh gate check / z3 push-pop in-process      = {fresh / z3_pushpop:6.2f}x")
    print(f"new process per check / fresh gate check       = {spawn / fresh:6.1f}x")
    print(f"fresh gate check / cached verdict              = {fresh / memo:6.0f}x")
    print()
    print(
        f"throughput, fresh obligations, 4 caller threads: 1 worker {tp1:7.0f}/s, "
        f"2 workers {tp2:7.0f}/s ({tp2 / tp1:.2f}x on this 2-core machine)"
    )


if __name__ == "__main__":
    main()

"""Timing helpers for the policy benchmark: per-decision samples, medians, percentiles.

Each decision is timed on its own with :func:`time.perf_counter_ns` around the
one call a caller makes; the garbage collector is off while a loop runs (as
:mod:`timeit` does), for every engine alike.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["BATCH", "Timing", "summarise", "time_batches", "time_each", "timer_floor_ns"]

BATCH = 100
"""Requests per batched call."""


@dataclass(frozen=True, slots=True)
class Timing:
    """Per-decision figures of one engine, in microseconds."""

    decisions: int
    median_us: float
    p99_us: float
    batch_us: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form.

        Returns:
            The fields, rounded to 0.01 us.
        """
        return {
            "decisions": self.decisions,
            "median_us": round(self.median_us, 2),
            "p99_us": round(self.p99_us, 2),
            "batch_us": round(self.batch_us, 2),
        }


def _percentile(sorted_ns: Sequence[int], q: float) -> float:
    index = min(len(sorted_ns) - 1, round(q * (len(sorted_ns) - 1)))
    return float(sorted_ns[index])


def time_each(call: Callable[[Any], object], items: Sequence[Any], rounds: int) -> list[int]:
    """Time every call separately, ``rounds`` passes over ``items``.

    Args:
        call: the decision call.
        items: prepared requests.
        rounds: passes over the items.

    Returns:
        Nanoseconds per call, in call order.
    """
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for item in items:
                start = clock()
                call(item)
                append(clock() - start)
    finally:
        if gc_was_on:
            gc.enable()
    return samples


def time_batches(
    batch: Callable[[Any], object], items: Sequence[Any], rounds: int, size: int = BATCH
) -> float:
    """The median time per item of batched calls over chunks of ``size`` items.

    Chunks keep each timed call short, so the median shrugs off the times a
    shared machine preempts the process (a whole-corpus pass rarely escapes it).

    Args:
        batch: decides every item of a list.
        items: prepared requests.
        rounds: passes over the items.
        size: items per batch.

    Returns:
        Nanoseconds per item.
    """
    chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
    per_item: list[float] = []
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for chunk in chunks:
                start = time.perf_counter_ns()
                batch(chunk)
                per_item.append((time.perf_counter_ns() - start) / len(chunk))
    finally:
        if gc_was_on:
            gc.enable()
    return statistics.median(per_item)


def summarise(samples: list[int], batch_ns: float) -> Timing:
    """Median and 99th percentile of per-call samples, with the batched figure.

    Args:
        samples: nanoseconds per call.
        batch_ns: nanoseconds per item of a batched pass.

    Returns:
        The figures in microseconds.
    """
    ordered = sorted(samples)
    return Timing(
        decisions=len(samples),
        median_us=statistics.median(ordered) / 1000,
        p99_us=_percentile(ordered, 0.99) / 1000,
        batch_us=batch_ns / 1000,
    )


def timer_floor_ns(samples: int = 20000) -> float:
    """The cost of timing an empty call the way :func:`time_each` times a decision.

    Args:
        samples: how many empty calls.

    Returns:
        The median nanoseconds of an empty timed call (not subtracted from the figures).
    """
    return float(statistics.median(time_each(lambda _item: None, range(samples), 1)))

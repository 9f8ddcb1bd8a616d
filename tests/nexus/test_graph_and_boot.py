"""INV-8: the boot order is a pure function of the graph; any boot failure leaves SOP not READY."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sop_verified.core.health import Health
from sop_verified.errors import ConfigError
from sop_verified.nexus.boot import boot
from sop_verified.nexus.graph import boot_order
from sop_verified.nexus.registry import Service, ServiceRegistry


def test_the_declared_service_graph_boots_in_its_one_order() -> None:
    from sop_verified.nexus.sop import SERVICE_GRAPH

    order = boot_order(SERVICE_GRAPH)
    assert sorted(order) == sorted(SERVICE_GRAPH)
    assert order == boot_order(dict(reversed(list(SERVICE_GRAPH.items()))))


def test_ties_are_broken_by_name() -> None:
    assert boot_order({"b": [], "a": [], "c": ["a"]}) == ["a", "b", "c"]


def test_dependencies_come_first() -> None:
    order = boot_order(
        {"kernel": ["policy", "log"], "log": ["storage"], "policy": ["storage"], "storage": []}
    )
    assert order == ["storage", "log", "policy", "kernel"]


def test_cycle_is_refused() -> None:
    with pytest.raises(ConfigError, match="cycle among `a, b`"):
        boot_order({"a": ["b"], "b": ["a"], "c": []})


def test_undeclared_dependency_is_refused() -> None:
    with pytest.raises(ConfigError, match="undeclared service `ghost`"):
        boot_order({"a": ["ghost"]})


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    names = draw(
        st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=8, unique=True)
    )
    return {
        n: draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        for i, n in enumerate(names)
    }


@given(dags(), st.randoms())
def test_boot_order_is_a_pure_function_of_the_graph(
    graph: dict[str, list[str]], rnd: random.Random
) -> None:
    items = list(graph.items())
    rnd.shuffle(items)
    shuffled = {k: list(reversed(v)) for k, v in items}
    order = boot_order(graph)
    assert order == boot_order(shuffled)
    pos = {n: i for i, n in enumerate(order)}
    assert all(pos[d] < pos[n] for n, ds in graph.items() for d in ds)


def _registry(fail: str | None = None, log: list[str] | None = None) -> ServiceRegistry:
    log = [] if log is None else log
    reg = ServiceRegistry()

    def make(name: str, deps: tuple[str, ...]) -> Service:
        def start() -> None:
            log.append(name)

        def self_test() -> None:
            if name == fail:
                raise RuntimeError(f"{name} self-test failed")

        return Service(name, deps, start, self_test)

    for name, deps in [("storage", ()), ("log", ("storage",)), ("kernel", ("log",))]:
        reg.register(make(name, deps))
    return reg


def test_boot_reaches_ready_in_order() -> None:
    started: list[str] = []
    report = boot(_registry(log=started), now=lambda: 5, facts=dict)
    assert report.health is Health.READY
    assert started == ["storage", "log", "kernel"]


@pytest.mark.parametrize("failing", ["storage", "log", "kernel"])
def test_failed_self_test_leaves_sop_not_ready(failing: str) -> None:
    reg = _registry(fail=failing)
    report = boot(reg, now=lambda: 5, facts=dict)
    assert report.health is Health.FAILED
    assert report.failed == failing
    assert reg.health() is not Health.READY
    assert report.manifest_dict()["failed_service"] == failing


def test_alarm_degrades_health() -> None:
    reg = _registry()
    boot(reg, now=lambda: 5, facts=dict)
    reg.raise_alarm("log", "verdict mismatch")
    assert reg.health() is Health.DEGRADED


def test_alarm_raised_while_a_service_boots_is_not_lost() -> None:
    reg = _registry()
    kernel = reg.get("kernel")
    started = kernel.start

    def start_and_alarm() -> None:  # a thread the service started answers before boot ends
        started()
        reg.raise_alarm("kernel", "witness refused a fork")

    kernel.start = start_and_alarm
    report = boot(reg, now=lambda: 5, facts=dict)
    assert report.health is Health.DEGRADED
    assert reg.get("kernel").detail == "witness refused a fork"


def test_manifest_is_byte_identical_for_same_inputs() -> None:
    a = boot(_registry(), now=lambda: 7, facts=lambda: {"config_digest": "sha256:1"})
    b = boot(_registry(), now=lambda: 7, facts=lambda: {"config_digest": "sha256:1"})
    assert a.manifest == b.manifest
    c = boot(_registry(), now=lambda: 8, facts=lambda: {"config_digest": "sha256:1"})
    assert c.manifest != a.manifest

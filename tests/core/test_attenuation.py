"""Glob inclusion proved with Z3 (INV-10): sound, with real counterexamples, fail-closed."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sop_verified.core import attenuation
from sop_verified.core.attenuation import prove_glob_within
from sop_verified.core.capability import CapabilityRegistry
from sop_verified.core.obligations import Verdict
from sop_verified.errors import AttenuationError, InputError
from sop_verified.storage.memory import MemoryStore
from sop_verified.tools.paths import Glob, check_path

KEY = bytes(range(32))
T0 = 1_700_000_000

# -- a naive reference: enumerate every path over a tiny alphabet --------------------

_SEGMENTS = ["a", "b", "ab", "ba", "a.b"]
_PATHS = [
    "/".join(p) for n in range(1, 5) for p in itertools.product(_SEGMENTS, repeat=n)
]  # 5 + 25 + 125 + 625 paths


def _brute_force_escape(child: str, parents: tuple[str, ...]) -> str | None:
    """A path of the tiny universe matched by ``child`` and by no parent, if any."""
    c, ps = Glob(child), [Glob(p) for p in parents]
    for path in _PATHS:
        if c.matches(path) and not any(p.matches(path) for p in ps):
            return path
    return None


CASES: list[tuple[str, tuple[str, ...], Verdict]] = [
    ("artifacts/**", ("artifacts/drac/**",), Verdict.REFUTED),
    ("artifacts/drac/s1/*.bin", ("artifacts/drac/**",), Verdict.PROVED),
    ("artifacts/drac/**", ("artifacts/drac/*",), Verdict.REFUTED),
    ("a/*/c", ("a/**",), Verdict.PROVED),
    ("a/*", ("a/b*",), Verdict.REFUTED),
    ("a?c/**/d*e", ("a*/**",), Verdict.PROVED),
    ("**/a/**", ("**/a/**/*",), Verdict.PROVED),
    ("x/**", ("x/*", "x/*/**"), Verdict.PROVED),
    ("a/**/b", ("a/*/b", "a/b", "a/**/*/b"), Verdict.PROVED),
    ("a/**/b", ("a/*/b", "a/b"), Verdict.REFUTED),
    ("*", ("?*",), Verdict.PROVED),
    ("**", ("*",), Verdict.REFUTED),
    ("*.bin", ("*",), Verdict.PROVED),
    ("*", ("*.bin",), Verdict.REFUTED),
]


@pytest.mark.parametrize(("child", "parents", "expected"), CASES)
def test_glob_inclusion_verdicts_match_reference(
    child: str, parents: tuple[str, ...], expected: Verdict
) -> None:
    result = prove_glob_within(child, parents)
    assert result.verdict is expected, result.reason
    escape = _brute_force_escape(child, parents)
    if result.verdict is Verdict.PROVED:
        assert escape is None, f"proved, yet `{escape}` escapes"
    else:
        cx = result.counterexample
        assert cx is not None
        check_path(cx)
        assert Glob(child).matches(cx)
        assert not any(Glob(p).matches(cx) for p in parents)


def test_inclusion_results_are_cached() -> None:
    first = prove_glob_within("cache/*/x", ("cache/**",))
    assert prove_glob_within("cache/*/x", ("cache/**", "cache/**")) is first


def test_solver_unknown_refuses_attenuation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attenuation, "_CACHE", {})
    monkeypatch.setattr(attenuation, "RLIMIT", 1)
    result = prove_glob_within("u/*/*", ("u/**/*z*", "u/a*/*"))
    assert result.verdict is Verdict.UNKNOWN
    store = MemoryStore()
    reg = CapabilityRegistry(store, KEY, "k1", lambda: T0)
    _, token = reg.admit("drac", ["artifact.read"], ["u/**/*z*", "u/a*/*"], T0, T0 + 60)
    before = store.snapshot()
    with pytest.raises(AttenuationError) as info:
        reg.attenuate(token, actions=["artifact.read"], resources=["u/*/*"])
    assert info.value.code == "resources_unproved"
    assert store.snapshot() == before


def test_malformed_glob_rejected_before_solving() -> None:
    with pytest.raises(InputError):
        prove_glob_within("../x", ("**",))


# -- property: a proof is sound --------------------------------------------------------

_GLOB_SEGMENTS = st.sampled_from(["a", "b", "ab", "*", "?", "a*", "*b", "a.b", "**"])
_PATH_SEGMENTS = st.sampled_from(["a", "b", "ab", "ba", "a.b", "bb", "b.a", "aab"])


def _glob(segments: list[str]) -> str | None:
    pattern = "/".join(segments)
    try:
        Glob(pattern)
    except InputError:
        return None
    return pattern


_globs = st.lists(_GLOB_SEGMENTS, min_size=1, max_size=3).map(_glob).filter(lambda g: g is not None)
_paths = st.lists(_PATH_SEGMENTS, min_size=1, max_size=5).map("/".join)


def _check_soundness(child: str, parents: tuple[str, ...], paths: list[str]) -> None:
    result = prove_glob_within(child, parents)
    event(str(result.verdict))
    c, ps = Glob(child), [Glob(p) for p in parents]
    if result.verdict is Verdict.PROVED:
        for path in paths:
            if c.matches(path):
                assert any(p.matches(path) for p in ps), f"`{path}` escapes a proved inclusion"
        assert _brute_force_escape(child, parents) is None
    elif result.verdict is Verdict.REFUTED:
        cx = result.counterexample
        assert cx is not None
        assert c.matches(cx)
        assert not any(p.matches(cx) for p in ps)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(child=_globs, parents=st.lists(_globs, min_size=1, max_size=2), paths=st.lists(_paths))
def test_proved_inclusion_is_sound(child: str, parents: list[str], paths: list[str]) -> None:
    _check_soundness(child, tuple(parents), paths)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(child=_globs, parents=st.lists(_globs, min_size=1, max_size=3), paths=st.lists(_paths))
def test_proved_inclusion_is_sound_many(child: str, parents: list[str], paths: list[str]) -> None:
    _check_soundness(child, tuple(parents), paths)

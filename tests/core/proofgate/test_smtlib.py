"""The SMT-LIB command filter: deny by default, with the command and the line."""

from __future__ import annotations

import pytest

from sop_verified.core.proofgate.logics import LOGICS
from sop_verified.core.proofgate.smtlib import compile_smt2
from sop_verified.errors import ObligationError

HEAD = "(set-logic QF_LIA)\n(declare-const x Int)\n"


def _error(text: str) -> ObligationError:
    with pytest.raises(ObligationError) as info:
        compile_smt2(text)
    return info.value


@pytest.mark.parametrize(
    "command",
    [
        '(set-option :regular-output-channel "owned.txt")',
        "(set-option :verbose 10)",
        "(set-option :produce-proofs true)",
        '(include "/etc/passwd")',
        "(exit)",
        "(push 1)",
        "(pop 1)",
        "(reset)",
        "(get-model)",
        "(get-value (x))",
        '(echo "hi")',
        "(check-sat-assuming (true))",
        "(declare-datatypes ((L 0)) (((nil))))",
        "(define-fun-rec f ((a Int)) Int (f a))",
        "(get-info :all-statistics)",
        "(eval x)",
    ],
)
def test_command_outside_the_accepted_set_is_rejected_with_name_and_line(command: str) -> None:
    err = _error(HEAD + "(assert (> x 0))\n" + command + "\n(check-sat)")
    name = command[1:].split(maxsplit=1)[0].rstrip(")")
    assert err.code == "command"
    assert err.line == 4
    assert f"`{name}`" in str(err)
    assert "accepted: `set-logic`" in str(err)


def test_incomplete_application_that_z3_accepts_is_rejected() -> None:
    err = _error(HEAD + "(assert (> x ))")
    assert err.code == "arity" and err.line == 3


@pytest.mark.parametrize(
    ("term", "code"),
    [
        ("(* x x)", "nonlinear"),
        ("(div x x)", "nonlinear"),
        ("(mod x 0)", "nonlinear"),
        ("(forall ((y Int)) (> y x))", "quantifier"),
        ("(exists ((y Int)) (> y x))", "quantifier"),
        ("(str.len x)", "symbol"),
        ("(bvadd x x)", "symbol"),
        ("(pble x)", "symbol"),
        ("(f x)", "symbol"),
        ("2.5", "sort"),
        ('"text"', "sort"),
        ("#xff", "sort"),
        ("(as x Int)", "syntax"),
        ("(! (> x 1) :weight 3)", "syntax"),
    ],
)
def test_term_outside_the_logic_is_rejected(term: str, code: str) -> None:
    err = _error(HEAD + f"(assert (= {term} x))")
    assert err.code == code, str(err)
    assert err.line == 3


def test_linear_multiplication_by_constants_is_accepted() -> None:
    compiled = compile_smt2(HEAD + "(assert (= (* 3 x (- 2)) (div x 4)))")
    assert compiled.assertions == ("(= (* 3 x (- 2)) (div x 4))",)


def test_script_needs_one_logic_first() -> None:
    assert _error("(declare-const x Int)").code == "command"
    assert _error("(assert true)").code == "command"
    assert "no `set-logic`" in str(_error("(set-info :status sat)"))
    assert _error("(set-logic QF_LIA)(set-logic QF_LIA)").code == "command"


@pytest.mark.parametrize("logic", ["QF_NIA", "QF_NRA", "ALL", "HORN", "QF_FP", "QF_DT", "qf_lia"])
def test_unsupported_logic_is_rejected(logic: str) -> None:
    err = _error(f"(set-logic {logic})")
    assert err.code == "unsupported" and f"`{logic}`" in str(err)


def test_check_sat_is_last_and_at_most_once() -> None:
    assert _error(HEAD + "(check-sat)\n(check-sat)").code == "command"
    assert _error(HEAD + "(check-sat)\n(assert true)").line == 4
    assert compile_smt2(HEAD + "(assert (> x 0))").assertions == ("(> x 0)",)


def test_named_assertions_become_labels_and_vanish_from_the_solver_text() -> None:
    compiled = compile_smt2(HEAD + "(assert (! (> x 1) :named big))\n(assert (< x 0))")
    assert compiled.names == ("big", None)
    assert ":named" not in compiled.solver_script()
    assert "(assert (! (> x 1) :named big))" in compiled.smtlib_script()


@pytest.mark.parametrize(
    "assertion",
    [
        "(! (> x 1) :named x)",
        "(! (> x 1) :named a :named b)",
        "(! (> x 1) :pattern ((> x 1)))",
        "(and (! (> x 1) :named inner) true)",
    ],
)
def test_malformed_or_misplaced_annotations_are_rejected(assertion: str) -> None:
    with pytest.raises(ObligationError):
        compile_smt2(HEAD + f"(assert {assertion})")


def test_duplicate_names_are_rejected() -> None:
    err = _error(HEAD + "(assert (! true :named a))\n(assert (! true :named a))")
    assert err.code == "annotation" and err.line == 4


@pytest.mark.parametrize(
    "declaration",
    [
        "(declare-const x Int)",
        "(declare-const and Int)",
        "(declare-const assert Int)",
        "(declare-const sop!track!0 Bool)",
        "(declare-const |sop.goal| Bool)",
        "(declare-fun g (Int) Int)",
        "(declare-sort U 0)",
        "(declare-const r Real)",
        "(declare-const s String)",
        "(declare-const a (Array Int Int))",
    ],
)
def test_declarations_outside_the_logic_or_reserved_are_rejected(declaration: str) -> None:
    with pytest.raises(ObligationError):
        compile_smt2(HEAD + declaration)


def test_the_solver_sees_only_the_rendered_script() -> None:
    source = (
        "; comment (set-option :verbose 10)\n(set-info :status unsat)\n(set-logic QF_LIA)\n"
        '(declare-const |odd name| Int)\n(assert (let ((y |odd name|)) (> y "0")))'
    )
    with pytest.raises(ObligationError):
        compile_smt2(source)
    compiled = compile_smt2(source.replace('"0"', "0"))
    assert compiled.solver_script() == (
        "(declare-const |odd name| Int)\n(assert (let ((sop.v1 |odd name|)) (> sop.v1 0)))\n"
    )
    assert compiled.status == "unsat"


def test_quantifiers_patterns_and_sorts_in_quantified_logics() -> None:
    compiled = compile_smt2(
        "(set-logic UFLIA)(declare-fun f (Int) Int)"
        "(assert (forall ((x Int)) (! (> (f x) 0) :pattern ((f x)) :qid pos)))"
    )
    assert compiled.assertions == (
        "(forall ((sop.v1 Int)) (! (> (f sop.v1) 0) :pattern ((f sop.v1)) :qid pos))",
    )


def test_define_fun_is_expanded_and_never_sent() -> None:
    compiled = compile_smt2(
        "(set-logic QF_ALIA)(define-sort Mem (K) (Array K Int))(declare-const m (Mem Int))"
        "(define-fun at ((i Int)) Int (select m i))(assert (> (at 1) (at 2)))"
    )
    assert compiled.declarations == (
        "(define-sort Mem (K) (Array K Int))",
        "(declare-const m (Mem Int))",
    )
    assert compiled.assertions == (
        "(> (let ((sop.v1 1)) (select m sop.v1)) (let ((sop.v1 2)) (select m sop.v1)))",
    )
    assert "define-fun" not in compiled.solver_script()


def test_bound_variables_are_renamed_so_definitions_cannot_be_captured() -> None:
    compiled = compile_smt2(
        "(set-logic LIA)(declare-const c Int)(define-fun g () Int c)"
        "(assert (forall ((c Int)) (= g c)))"
    )
    assert compiled.assertions == ("(forall ((sop.v1 Int)) (= c sop.v1))",)


def test_define_sort_and_define_fun_are_checked() -> None:
    with pytest.raises(ObligationError):
        compile_smt2(
            "(set-logic QF_ALIA)(define-sort Mem (K) (Array K Int))(declare-const m (Mem))"
        )
    with pytest.raises(ObligationError):  # no recursion: the name is not in scope in its body
        compile_smt2("(set-logic QF_LIA)(define-fun f ((a Int)) Int (f a))")


def test_bitvector_indices_and_widths_are_capped() -> None:
    base = "(set-logic QF_BV)(declare-const v (_ BitVec 8))"
    assert compile_smt2(base + "(assert (= ((_ extract 3 0) v) #x0))")
    for bad in (
        "(declare-const w (_ BitVec 2048))",
        "(declare-const w (_ BitVec 0))",
        "(assert (= ((_ repeat 5000) v) v))",
        "(assert (= ((_ extract 3) v) v))",
        "(assert (= ((_ frobnicate 3) v) v))",
    ):
        with pytest.raises(ObligationError):
            compile_smt2(base + bad)


def test_string_logics_admit_regex_membership_but_not_fragile_predicates() -> None:
    base = "(set-logic QF_SLIA)(declare-const s String)"
    assert compile_smt2(base + '(assert (str.in_re s ((_ re.loop 1 3) (str.to_re "ab"))))')
    for fragile in ("str.prefixof", "str.contains", "str.suffixof", "str.indexof", "str.replace"):
        err = _error(base + f'(assert ({fragile} "a" s))')
        assert err.code == "symbol" and fragile in str(err)
    assert (
        _error("(set-logic QF_S)(declare-const s String)(assert (= (str.len s) 1))").code
        == "symbol"
    )


def test_every_listed_logic_accepts_a_trivial_script() -> None:
    for name in LOGICS:
        assert compile_smt2(f"(set-logic {name})(assert true)(check-sat)").logic == name

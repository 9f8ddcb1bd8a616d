; equality is transitive
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_UF)
(declare-sort U 0)
(declare-const a U)
(declare-const b U)
(declare-const c U)
(assert (= a b))
(assert (= b c))
(assert (distinct a c))
(check-sat)

; no integer c is below every integer
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic LIA)
(declare-const c Int)
(assert (forall ((x Int)) (> x c)))
(check-sat)

; an absolute value is never negative
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LIA)
(declare-const x Int)
(assert (< (abs x) 0))
(check-sat)

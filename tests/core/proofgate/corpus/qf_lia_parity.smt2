; an even number is never odd
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LIA)
(declare-const x Int)
(declare-const y Int)
(assert (= (* 2 x) (+ (* 2 y) 1)))
(check-sat)

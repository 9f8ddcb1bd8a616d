; f(x) = x + 1 is never below x
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_UFLRA)
(declare-fun f (Real) Real)
(declare-const x Real)
(assert (= (f x) (+ x 1.0)))
(assert (< (f x) x))
(check-sat)

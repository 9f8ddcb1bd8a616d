; a nonnegative function is nonnegative at 7
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic UFLIA)
(declare-fun g (Int) Int)
(assert (forall ((x Int)) (>= (g x) 0)))
(assert (< (g 7) 0))
(check-sat)

; no real y is above every real
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic LRA)
(declare-const y Real)
(assert (forall ((x Real)) (< x y)))
(check-sat)

; there is no largest integer
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic LIA)
(assert (exists ((y Int)) (forall ((x Int)) (<= x y))))
(check-sat)

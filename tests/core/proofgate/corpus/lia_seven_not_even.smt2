; 7 is not twice an integer
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic LIA)
(assert (exists ((x Int)) (= (* 2 x) 7)))
(check-sat)

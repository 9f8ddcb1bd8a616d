; 2x = 1 forces x = 0.5
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LRA)
(declare-const x Real)
(assert (= (* 2 x) 1))
(assert (not (= x 0.5)))
(check-sat)

; x / 3 > 1 implies x > 3
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LRA)
(declare-const x Real)
(assert (> (/ x 3) 1))
(assert (<= x 3))
(check-sat)

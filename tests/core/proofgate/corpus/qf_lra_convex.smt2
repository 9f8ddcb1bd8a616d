; two shares above 0.6 exceed a unit budget
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LRA)
(declare-const x Real)
(declare-const y Real)
(assert (! (<= (+ x y) 1.0) :named budget))
(assert (! (>= x 0.6) :named x_share))
(assert (! (>= y 0.6) :named y_share))
(check-sat)

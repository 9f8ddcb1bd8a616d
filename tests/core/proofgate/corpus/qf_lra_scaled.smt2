; x = 1.5 y with y positive
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_LRA)
(declare-const x Real)
(declare-const y Real)
(assert (= x (* 1.5 y)))
(assert (> y 0.0))
(assert (< x 3.0))
(check-sat)

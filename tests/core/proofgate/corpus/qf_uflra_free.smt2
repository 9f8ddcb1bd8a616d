; g may map 0.5 to 2.5
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_UFLRA)
(declare-fun g (Real) Real)
(assert (= (g 0.5) 2.5))
(assert (> (g 0.5) (* 2 0.5)))
(check-sat)

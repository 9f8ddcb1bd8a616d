; between two reals there is a third
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_LRA)
(declare-const x Real)
(declare-const y Real)
(declare-const z Real)
(assert (< x z))
(assert (< z y))
(assert (= (- y x) 0.001))
(check-sat)

; arrays and functions can disagree
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_AUFLIA)
(declare-fun f (Int) Int)
(declare-const a (Array Int Int))
(assert (not (= (select a 3) (f 3))))
(check-sat)

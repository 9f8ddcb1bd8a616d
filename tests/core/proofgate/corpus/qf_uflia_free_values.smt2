; f may take increasing values
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_UFLIA)
(declare-fun f (Int) Int)
(assert (< (f 0) (f 1) (f 2)))
(check-sat)

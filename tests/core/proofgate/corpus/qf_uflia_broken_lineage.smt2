; a chain with a missing link need not reach the root
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_UFLIA)
(declare-fun parent (Int) Int)
(declare-const s Int)
(assert (= s 3))
(assert (= (parent 3) 2))
(assert (not (or (= s 0) (= (parent s) 0) (= (parent (parent s)) 0))))
(check-sat)

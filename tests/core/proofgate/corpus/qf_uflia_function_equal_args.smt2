; a function agrees with itself on equal arguments
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_UFLIA)
(declare-fun f (Int) Int)
(declare-const x Int)
(declare-const y Int)
(assert (= x y))
(assert (> (f x) (f y)))
(check-sat)

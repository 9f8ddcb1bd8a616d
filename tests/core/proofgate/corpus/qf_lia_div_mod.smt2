; an odd number is not twice its half
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LIA)
(declare-const x Int)
(assert (= (mod x 2) 1))
(assert (= x (* 2 (div x 2))))
(check-sat)

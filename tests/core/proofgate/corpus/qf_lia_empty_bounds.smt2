; no integer is above 3 and below 2
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LIA)
(declare-const x Int)
(assert (! (> x 3) :named above))
(assert (! (< x 2) :named below))
(check-sat)

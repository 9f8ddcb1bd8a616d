; two cells can hold different values
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_ALIA)
(declare-const a (Array Int Int))
(assert (> (select a 0) (+ (select a 1) 5)))
(check-sat)

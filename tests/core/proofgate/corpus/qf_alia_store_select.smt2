; a stored integer reads back
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_ALIA)
(declare-const a (Array Int Int))
(declare-const i Int)
(assert (not (= (select (store a i 42) i) 42)))
(check-sat)

; concatenation never shortens
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_SLIA)
(declare-const x String)
(declare-const y String)
(assert (! (< (str.len (str.++ x y)) (str.len x)) :named shorter))
(check-sat)

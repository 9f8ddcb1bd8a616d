; a strict chain cannot close into a cycle
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LRA)
(declare-const a Real)
(declare-const b Real)
(declare-const c Real)
(assert (< a b c))
(assert (<= c a))
(check-sat)

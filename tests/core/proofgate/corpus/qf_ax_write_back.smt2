; writing back what was read leaves the array unchanged
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_AX)
(declare-sort Index 0)
(declare-sort Element 0)
(declare-const a (Array Index Element))
(declare-const i Index)
(assert (not (= (store a i (select a i)) a)))
(check-sat)

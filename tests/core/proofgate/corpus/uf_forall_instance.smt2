; a universal property holds at a
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic UF)
(declare-sort U 0)
(declare-fun P (U) Bool)
(declare-const a U)
(assert (forall ((x U)) (P x)))
(assert (not (P a)))
(check-sat)

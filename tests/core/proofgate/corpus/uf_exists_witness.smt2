; some element satisfies P
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic UF)
(declare-sort U 0)
(declare-fun P (U) Bool)
(declare-const a U)
(assert (exists ((x U)) (P x)))
(assert (not (P a)))
(check-sat)

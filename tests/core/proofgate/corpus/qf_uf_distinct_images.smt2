; f may separate two distinct points
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_UF)
(declare-sort U 0)
(declare-fun f (U) U)
(declare-const a U)
(declare-const b U)
(assert (not (= (f a) (f b))))
(check-sat)

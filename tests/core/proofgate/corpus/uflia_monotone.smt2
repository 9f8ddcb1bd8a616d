; a monotone function preserves order at 1 and 2
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic UFLIA)
(declare-fun m (Int) Int)
(assert (! (forall ((x Int) (y Int)) (=> (<= x y) (<= (m x) (m y)))) :named monotone))
(assert (! (> (m 1) (m 2)) :named inverted))
(check-sat)

; a symmetric relation relates b to a
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic UF)
(declare-sort U 0)
(declare-fun R (U U) Bool)
(declare-const a U)
(declare-const b U)
(assert (! (forall ((x U) (y U)) (! (=> (R x y) (R y x)) :pattern ((R x y)))) :named symmetric))
(assert (! (R a b) :named ab))
(assert (! (not (R b a)) :named not_ba))
(check-sat)

; a transitive relation composes two steps
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic UF)
(declare-sort U 0)
(declare-fun R (U U) Bool)
(declare-const a U)
(declare-const b U)
(declare-const c U)
(assert (forall ((x U) (y U) (z U)) (=> (and (R x y) (R y z)) (R x z))))
(assert (R a b))
(assert (R b c))
(assert (not (R a c)))
(check-sat)

; congruence: a = c and f(a) = b imply f(c) = b
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_UF)
(declare-sort U 0)
(declare-fun f (U) U)
(declare-const a U)
(declare-const b U)
(declare-const c U)
(assert (! (= (f a) b) :named fa_is_b))
(assert (! (= a c) :named a_is_c))
(assert (! (not (= (f c) b)) :named fc_not_b))
(check-sat)

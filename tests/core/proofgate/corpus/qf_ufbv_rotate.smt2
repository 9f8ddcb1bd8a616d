; rotating left then right is the identity under h
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_UFBV)
(declare-fun h ((_ BitVec 8)) Bool)
(declare-const x (_ BitVec 8))
(assert (h x))
(assert (not (h ((_ rotate_right 3) ((_ rotate_left 3) x)))))
(check-sat)

; shifting left by one doubles
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_BV)
(declare-const x (_ BitVec 12))
(assert (! (not (= (bvshl x (_ bv1 12)) (bvmul x (_ bv2 12)))) :named shift_vs_mul))
(check-sat)

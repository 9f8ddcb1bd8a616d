; an uninterpreted function may invert a bit
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_UFBV)
(declare-fun h ((_ BitVec 4)) (_ BitVec 4))
(declare-const x (_ BitVec 4))
(assert (= (h x) (bvnot x)))
(assert (= x #b1010))
(check-sat)

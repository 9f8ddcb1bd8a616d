; equal arguments give equal images
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_UFBV)
(declare-fun h ((_ BitVec 8)) (_ BitVec 8))
(declare-const x (_ BitVec 8))
(declare-const y (_ BitVec 8))
(assert (= (bvadd x #x01) (bvadd y #x01)))
(assert (not (= (h x) (h y))))
(check-sat)

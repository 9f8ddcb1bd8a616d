; x xor x is zero
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_BV)
(declare-const x (_ BitVec 32))
(assert (not (= (bvxor x x) #x00000000)))
(check-sat)

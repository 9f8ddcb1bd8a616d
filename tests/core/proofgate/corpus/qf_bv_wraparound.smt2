; adding one can wrap to zero
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_BV)
(declare-const x (_ BitVec 8))
(assert (= (bvadd x #x01) #x00))
(check-sat)

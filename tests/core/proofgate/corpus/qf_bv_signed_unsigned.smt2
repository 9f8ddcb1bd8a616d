; a word can be negative signed and large unsigned
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_BV)
(declare-const x (_ BitVec 8))
(assert (bvslt x #x00))
(assert (bvugt x #b01111111))
(check-sat)

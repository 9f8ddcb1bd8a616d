; two addresses may alias
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_ABV)
(declare-const mem (Array (_ BitVec 16) (_ BitVec 8)))
(declare-const p (_ BitVec 16))
(declare-const q (_ BitVec 16))
(assert (= (select (store mem p #xff) q) #xff))
(assert (= (select mem q) #x00))
(check-sat)

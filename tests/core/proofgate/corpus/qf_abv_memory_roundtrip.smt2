; a byte stored at an address reads back
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_ABV)
(declare-const mem (Array (_ BitVec 16) (_ BitVec 8)))
(declare-const addr (_ BitVec 16))
(declare-const v (_ BitVec 8))
(assert (! (distinct (select (store mem addr v) addr) v) :named roundtrip))
(check-sat)

; bit-vector addition commutes
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_BV)
(declare-const x (_ BitVec 16))
(declare-const y (_ BitVec 16))
(assert (distinct (bvadd x y) (bvadd y x)))
(check-sat)

; zero extension keeps the value below 256
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_BV)
(declare-const x (_ BitVec 8))
(assert (bvuge ((_ zero_extend 8) x) #x0100))
(check-sat)

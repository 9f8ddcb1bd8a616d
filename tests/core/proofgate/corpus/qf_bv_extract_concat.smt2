; concatenating the two halves rebuilds the word
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_BV)
(declare-const x (_ BitVec 16))
(assert (not (= (concat ((_ extract 15 8) x) ((_ extract 7 0) x)) x)))
(check-sat)

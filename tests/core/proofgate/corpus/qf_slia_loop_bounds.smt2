; two or three a's never make five letters
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_SLIA)
(declare-const x String)
(assert (str.in_re x ((_ re.loop 2 3) (str.to_re "a"))))
(assert (= (str.len x) 5))
(check-sat)

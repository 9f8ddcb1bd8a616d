; the difference of a language and itself is empty
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_S)
(declare-const x String)
(assert (str.in_re x (re.diff (re.opt (str.to_re "ab")) (re.opt (str.to_re "ab")))))
(check-sat)

; words of (ab)* have even length
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_SLIA)
(declare-const x String)
(assert (str.in_re x (re.* (str.to_re "ab"))))
(assert (= (str.len x) 3))
(check-sat)

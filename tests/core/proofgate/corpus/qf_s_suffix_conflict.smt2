; a string ending in a is not in b*
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_S)
(declare-const x String)
(declare-const y String)
(assert (= x (str.++ y "a")))
(assert (str.in_re x (re.* (str.to_re "b"))))
(check-sat)

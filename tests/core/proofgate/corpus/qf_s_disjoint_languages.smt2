; a* and b+ share no word
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_S)
(declare-const x String)
(assert (str.in_re x (re.inter (re.* (str.to_re "a")) (re.+ (str.to_re "b")))))
(check-sat)

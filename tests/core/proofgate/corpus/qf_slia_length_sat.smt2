; a word of (ab)* can have length 4
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_SLIA)
(declare-const x String)
(assert (str.in_re x (re.* (str.to_re "ab"))))
(assert (= (str.len x) 4))
(check-sat)

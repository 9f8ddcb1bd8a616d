; exactly three ab's make six letters
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_SLIA)
(declare-const x String)
(assert (str.in_re x ((_ re.^ 3) (str.to_re "ab"))))
(assert (= (str.len x) 6))
(check-sat)

; some word avoids the dot-dot segment
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_S)
(declare-const x String)
(assert (str.in_re x (re.comp (re.++ re.all (str.to_re "..") re.all))))
(assert (str.in_re x (re.+ (re.range "a" "c"))))
(check-sat)

; a path of letters and slashes contains no dot-dot
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_S)
(declare-const p String)
(assert (str.in_re p (re.* (re.union (re.range "a" "z") (str.to_re "/")))))
(assert (str.in_re p (re.++ re.all (str.to_re "..") re.all)))
(check-sat)

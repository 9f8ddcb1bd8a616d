; every short path under a/b/ is under a/
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_SLIA)
(declare-const p String)
(assert (<= (str.len p) 64))
(assert (str.in_re p (re.++ (str.to_re "a/b/") (re.+ (re.range "a" "z")))))
(assert (not (str.in_re p (re.++ (str.to_re "a/") (re.+ (re.union (re.range "a" "z") (str.to_re "/")))))))
(check-sat)

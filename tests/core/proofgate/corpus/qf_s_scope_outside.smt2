; artifacts/csp/x is outside the scope artifacts/drac/*
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_S)
(declare-const p String)
(assert (= p "artifacts/csp/x"))
(assert (not (str.in_re p (re.++ (str.to_re "artifacts/drac/") (re.+ (re.range "a" "z"))))))
(check-sat)

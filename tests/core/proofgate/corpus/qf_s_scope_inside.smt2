; artifacts/drac/x.json is inside the scope artifacts/drac/*
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_S)
(declare-const p String)
(assert (= p "artifacts/drac/x.json"))
(assert (not (str.in_re p (re.++ (str.to_re "artifacts/drac/") (re.+ (re.union (re.range "a" "z") (re.range "0" "9") (str.to_re ".")))))))
(check-sat)

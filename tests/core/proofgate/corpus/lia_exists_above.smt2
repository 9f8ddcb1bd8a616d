; some integer exceeds c
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic LIA)
(declare-const c Int)
(assert (exists ((x Int)) (> x c)))
(check-sat)

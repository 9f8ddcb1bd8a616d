; a midpoint exists strictly between a and b
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic LRA)
(declare-const a Real)
(declare-const b Real)
(assert (< a b))
(assert (exists ((z Real)) (and (< a z) (< z b) (= (* 2 z) (+ a b)))))
(check-sat)

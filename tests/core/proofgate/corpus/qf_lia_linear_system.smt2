; x + y = 10 and x - y = 2 has the solution (6, 4)
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_LIA)
(declare-const x Int)
(declare-const y Int)
(assert (= (+ x y) 10))
(assert (= (- x y) 2))
(check-sat)

; max(x, y) is at least x and at least y
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LIA)
(declare-const x Int)
(declare-const y Int)
(define-fun mx ((a Int) (b Int)) Int (ite (>= a b) a b))
(assert (or (< (mx x y) x) (< (mx x y) y)))
(check-sat)

; f(x) = f(x - 1) + 1 for positive x and f(0) = 0 give f(3) = 3
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic UFLIA)
(declare-fun f (Int) Int)
(assert (forall ((x Int)) (! (=> (> x 0) (= (f x) (+ (f (- x 1)) 1))) :pattern ((f x)))))
(assert (= (f 0) 0))
(assert (not (= (f 3) 3)))
(check-sat)

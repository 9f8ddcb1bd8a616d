; let-bound sums can reach 7
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_LIA)
(declare-const x Int)
(declare-const y Int)
(assert (let ((s (+ x y)) (d (- x y))) (and (= s 7) (> d 0) (>= y 0))))
(check-sat)

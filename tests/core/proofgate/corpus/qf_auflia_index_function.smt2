; equal indices computed by f read the same cell
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_AUFLIA)
(declare-fun f (Int) Int)
(declare-const a (Array Int Int))
(declare-const x Int)
(declare-const y Int)
(assert (= x y))
(assert (not (= (select a (f x)) (select a (f y)))))
(check-sat)

; swapping twice restores both cells
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_ALIA)
(declare-const a (Array Int Int))
(declare-const i Int)
(declare-const j Int)
(define-fun swap ((b (Array Int Int)) (p Int) (q Int)) (Array Int Int)
  (store (store b p (select b q)) q (select b p)))
(assert (not (= (select (swap (swap a i j) i j) i) (select a i))))
(check-sat)

; skipping from phase 0 to phase 2 is not one step
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_LIA)
(declare-const cur Int)
(declare-const nxt Int)
(assert (= cur 0))
(assert (= nxt 2))
(assert (not (and (<= 0 cur) (< nxt 4) (= nxt (+ cur 1)))))
(check-sat)

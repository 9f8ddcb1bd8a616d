; phase index 2 follows index 1 in a 4-phase pipeline
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_LIA)
(declare-const cur Int)
(declare-const nxt Int)
(assert (! (= cur 1) :named current))
(assert (! (= nxt 2) :named target))
(assert (! (not (and (<= 0 cur) (< nxt 4) (= nxt (+ cur 1)))) :named one_step))
(check-sat)

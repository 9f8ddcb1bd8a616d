; snapshot 3's parent chain reaches root 0
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_UFLIA)
(declare-fun parent (Int) Int)
(declare-const s Int)
(declare-const r Int)
(assert (! (= s 3) :named snapshot))
(assert (! (= r 0) :named root))
(assert (! (= (parent 3) 2) :named link3))
(assert (! (= (parent 2) 1) :named link2))
(assert (! (= (parent 1) 0) :named link1))
(assert (! (not (or (= s r) (= (parent s) r) (= (parent (parent s)) r) (= (parent (parent (parent s))) r))) :named reaches_root))
(check-sat)

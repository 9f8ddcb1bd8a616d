; reading the index just written gives the value written
; source: written for SOP's proof gate corpus
(set-info :status unsat)
(set-logic QF_AX)
(declare-sort Index 0)
(declare-sort Element 0)
(declare-const a (Array Index Element))
(declare-const i Index)
(declare-const e Element)
(assert (! (not (= (select (store a i e) i) e)) :named read_over_write))
(check-sat)

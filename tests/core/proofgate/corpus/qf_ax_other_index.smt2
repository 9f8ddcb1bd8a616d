; a write at i may change what j reads only if i = j
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_AX)
(declare-sort Index 0)
(declare-sort Element 0)
(declare-const a (Array Index Element))
(declare-const i Index)
(declare-const j Index)
(declare-const e Element)
(assert (not (= (select (store a i e) j) (select a j))))
(check-sat)

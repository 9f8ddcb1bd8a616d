; an xor chain with a fixed end is satisfiable
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic QF_UF)
(declare-const a Bool)
(declare-const b Bool)
(declare-const c Bool)
(assert (xor a b c))
(assert (=> a (not b)))
(assert (ite c a b))
(check-sat)

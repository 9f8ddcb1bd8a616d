; some argument maps to 5 while 0 maps to 1
; source: written for SOP's proof gate corpus
(set-info :status sat)
(set-logic UFLIA)
(declare-fun h (Int) Int)
(assert (= (h 0) 1))
(assert (exists ((y Int)) (and (> y 0) (= (h y) 5))))
(check-sat)

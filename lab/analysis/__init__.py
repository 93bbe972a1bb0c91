"""What the data say: intervals and tests (:mod:`.stats`), a verdict between two runs (:mod:`.compare`), the
report on any run (:mod:`.analyze`), simulated coverage and calibration (:mod:`.coverage`, cached by
:mod:`.simulations`), what hedging would do on recorded calls (:mod:`.hedging`, :mod:`.stalls`) and figures
(:mod:`.plots`). The numbered notebooks read one study each: the time windows (:mod:`.windows`, 01), the review
switch (:mod:`.review_study`, 02), the tests' calibration (:mod:`.calibration`) and the tests on the data
(:mod:`.significance`, 03), hedging (:mod:`.hedging_study`, 04) and the LLMPerf traces (:mod:`.traces`, 05)."""

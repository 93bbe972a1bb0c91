"""What the data say: intervals and tests (:mod:`.stats`), a verdict between two runs (:mod:`.compare`), the
report on any run (:mod:`.analyze`), simulated coverage and calibration (:mod:`.coverage`, cached by
:mod:`.simulations`), what hedging would do on recorded calls (:mod:`.hedging`, :mod:`.stalls`) and figures
(:mod:`.plots`)."""

"""Collecting experiments into runs: the experiment protocol (:mod:`.experiment`), the collector that holds a
run and resumes it (:mod:`.collector`), calls through a run (:mod:`.recorder`), open-loop schedules
(:mod:`.openloop`), and the experiments: your workload and the field report's experiment 1
(:mod:`.workload`, :mod:`.variance`), the code review (:mod:`.review`) and the routing scenarios
(:mod:`.hedging`)."""

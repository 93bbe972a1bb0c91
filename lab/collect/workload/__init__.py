"""Your workload: targets x prompts, serial or open-loop (:mod:`.spec`: the file and its validation;
:mod:`.plan`: the calls, keys and cost; :mod:`.collection`: collecting and replaying)."""

from lab.collect.workload.spec import Design, ExperimentError, Prompt, Target, Workload, load_file

__all__ = ["Design", "ExperimentError", "Prompt", "Target", "Workload", "load_file"]

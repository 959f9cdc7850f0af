"""Fit and cost before submitting: GPU memory per job kind against the card, GPU-hours per rule.

`memory` computes the peak of one GPU of a training process or an inference engine term by term from a
model's shape (`shapes`: its config.json); `fit` applies it to each GPU rule of a config with the GPUs a
profile gives the rule, and `check_fit` is the check rules/common.smk runs when the workflow loads; `hours`
turns a dry-run's jobs into GPU-hours with the throughput table (throughput.yaml); `cli` is `stargate plan`.
Nothing here imports torch: the workflow loads it on every start.
"""

from .fit import check_fit, plan_fit, resources_of_profile, resources_of_workflow

__all__ = ["check_fit", "plan_fit", "resources_of_profile", "resources_of_workflow"]

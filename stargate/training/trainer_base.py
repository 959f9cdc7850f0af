"""The Trainer every method runs under, with the numerics this project fixes itself whatever the transformers
version (docs/training.md): warmup steps from the ratio as transformers 4.39 computed them, `loss_weighting`,
and AdamW one parameter at a time; plus the precision a run keeps its weights in and the log callback.
"""

from __future__ import annotations

import math
from typing import Any

from ..log import get_logger
from ..progress import Progress
from .spec import TrainingSpec

log = get_logger(__name__)


def checkpointing_args(cls: type, enabled: bool) -> dict[str, Any]:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing; older ones lack the new name."""
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in cls.__dataclass_fields__
        else "gradient_checkpointing"
    )
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def warmup_steps_for(ratio: float, num_training_steps: int) -> int:
    """Linear-warmup length for a ratio: transformers 4.39's rule (`warmup_ratio`), also 5.x's for a float < 1."""
    return math.ceil(num_training_steps * ratio)


def trainer_class(warmup_ratio: float, loss_weighting: str, base: type | None = None):
    """The HF Trainer (or `base`, e.g. TRL's DPOTrainer) with the two numerics this stage fixes itself,
    whatever the transformers version."""
    from transformers import Trainer, get_scheduler

    class StargateTrainer(base or Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.warmup_steps: int | None = None
            if loss_weighting == "micro_batch":
                # no num_items_in_batch reaches the model: each micro-batch's loss is its own token mean, and the
                # Trainer divides by the accumulation steps, i.e. the mean of micro-batch means (transformers 4.39)
                self.model_accepts_loss_kwargs = False

        def create_optimizer(self, *args, **kwargs):
            # AdamW one parameter at a time (torch's single-tensor implementation): the same elementwise operations
            # in the same order as the multi-tensor (foreach) default on CUDA, without the step's temporary copy of
            # every second moment (13.5 GiB for Mistral-7B in bf16, the difference between fitting an 80 GB card
            # and not: stargate/plan/memory.py, docs/performance.md). CPU runs used this implementation already.
            optimizer = super().create_optimizer(*args, **kwargs)
            for group in optimizer.param_groups:
                group["foreach"] = False
            return optimizer

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_scheduler is None:
                self.warmup_steps = warmup_steps_for(warmup_ratio, num_training_steps)
                self.lr_scheduler = get_scheduler(
                    self.args.lr_scheduler_type,
                    optimizer=optimizer if optimizer is not None else self.optimizer,
                    num_warmup_steps=self.warmup_steps,
                    num_training_steps=num_training_steps,
                    scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
                )
                self._created_lr_scheduler = True
            return self.lr_scheduler

    return StargateTrainer


def numerics(spec: TrainingSpec, deepspeed: bool) -> tuple[Any, str]:
    """The dtype m0 is loaded in, and a sentence for the card saying what is kept in which precision."""
    import torch

    if not spec.bf16:
        return torch.float32, "fp32 throughout"
    if spec.master_weights == "bf16":
        return torch.bfloat16, "pure bf16: weights, gradients and AdamW states in bf16 (the paper's run)"
    if deepspeed:  # ZeRO builds its fp32 master copy from the loaded weights
        return torch.bfloat16, "mixed bf16: bf16 compute, fp32 master weights and AdamW states (DeepSpeed ZeRO)"
    return torch.float32, "mixed bf16: bf16 autocast, fp32 weights and AdamW states"


def log_callback():
    from transformers import TrainerCallback

    class LogToStderr(TrainerCallback):
        """One plain log line per Trainer log event (tqdm bars are off: logs go to a file), and a progress
        line (steps, rate, ETA) at least every ~15 s."""

        progress = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                if self.progress is None:
                    self.progress = Progress("train", state.max_steps, "steps")
                self.progress.advance(state.global_step - self.progress.done)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                shown = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in logs.items()}
                log.info("step %d/%d %s", state.global_step, state.max_steps, shown)

    return LogToStderr()

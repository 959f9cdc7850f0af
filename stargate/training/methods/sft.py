"""`sft`: the paper's method (spec §3.5-§3.7): supervised fine-tuning of m0 on the top-k conversations of each
pair, the loss on the assistant turns only (masking.py), each example ending with the regularizer's answer."""

from __future__ import annotations

from typing import Any

from .base import TrainerContext, TrainingMethod


class SFT(TrainingMethod):
    name = "sft"
    card = (
        "supervised fine-tuning on the conversations m{p} generated and kept (top-k by the log-probability "
        "of the gold response under m0)"
    )

    def build_trainer(self, ctx: TrainerContext) -> Any:
        from ..collator import SFTCollator  # torch: only where a model trains

        return self.trainer_class(ctx)(
            model=ctx.model,
            args=ctx.args,
            data_collator=SFTCollator(ctx.pad_id),
            train_dataset=self.dataset(ctx.train_split),
            eval_dataset=self.dataset(ctx.eval_split) if ctx.eval_split.examples else None,
            processing_class=ctx.tokenizer,
            callbacks=ctx.callbacks,
        )

    def trainer_class(self, ctx: TrainerContext) -> type:
        return ctx.trainer_class(None)

    def dataset(self, split: Any) -> Any:
        from ..collator import EncodedDataset

        return EncodedDataset(split.examples)

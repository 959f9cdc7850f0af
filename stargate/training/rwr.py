"""Reward-weighted SFT (`training.method: rwr`; the offline-RL objective of arXiv 2506.06964).

Every conversation of a pair is an SFT example, weighted by n * softmax(m0 log p(gold) / temperature) over
the pair's n conversations (the `select` stage writes the weights). The loss is the SFT loss with each
label token's negative log-likelihood multiplied by its example's weight:

    loss = sum_tokens w(example) * nll(token) / N

with N the label tokens of the accumulated batch (`loss_weighting: tokens`) or of the micro-batch
(`micro_batch`), exactly the normalisers of SFT, so weights that are all 1 give SFT's loss. Masks, collator,
numerics, DeepSpeed and bf16 are SFT's (sft.py runs this method; only the loss differs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import InputError
from .masking import IGNORE_INDEX


def check_weights(records: list[dict], path: str | Path) -> None:
    for lineno, rec in enumerate(records, start=1):
        w = rec.get("weight")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
            raise InputError(
                path,
                f"pair '{rec.get('pair')}': rwr needs a finite `weight` >= 0, got {w!r}",
                lineno,
                "build the file with training.method rwr (stages select and sft_data)",
            )


def weighted_nll_sum(logits: Any, labels: Any, weight: Any) -> tuple[Any, Any]:
    """sum over label tokens of weight x nll (next-token shift), and the number of label tokens."""
    import torch.nn.functional as F

    targets = labels[:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )  # (batch, length - 1), 0 where ignored
    mask = targets != IGNORE_INDEX
    return (nll * weight.to(nll.dtype)[:, None] * mask).sum(), mask.sum()


def weighted_trainer_class(base: type) -> type:
    """`base` (the SFT Trainer) with the weighted loss; `weight` is a batch field, never a model input."""

    class WeightedTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            weight, labels = inputs.pop("weight"), inputs.pop("labels")
            outputs = model(**inputs)
            total, n_tokens = weighted_nll_sum(outputs.logits, labels, weight)
            # the Trainer's own rule (transformers >= 4.46): a loss normalised by num_items_in_batch is already
            # scaled for accumulation; otherwise it is a micro-batch mean that the Trainer divides itself
            over_batch = self.model_accepts_loss_kwargs and num_items_in_batch is not None
            loss = total / (num_items_in_batch if over_batch else n_tokens.clamp_min(1))
            if over_batch and self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer

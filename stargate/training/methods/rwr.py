"""Reward-weighted SFT (`training.method: rwr`; the offline-RL objective of arXiv 2506.06964).

Every conversation of a pair is an SFT example, weighted by n * softmax(m0 log p(gold) / temperature) over
the pair's n conversations (the `select` stage writes the weights). The loss is the SFT loss with each
label token's negative log-likelihood multiplied by its example's weight:

    loss = sum_tokens w(example) * nll(token) / N

with N the label tokens of the accumulated batch (`loss_weighting: tokens`) or of the micro-batch
(`micro_batch`), exactly the normalisers of SFT, so weights that are all 1 give SFT's loss. Masks, collator,
numerics, DeepSpeed and bf16 are SFT's (the driver runs this method; only the loss differs).

Selection (stage `select`): every conversation of a pair, weighted by n * softmax(log p / temperature) over the
pair's n conversations. The weights average 1 per pair, so a high temperature is SFT on every conversation and
a low one is top-1 SFT; a pair with one conversation gets 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import InputError, StargateError
from ...log import get_logger
from ..masking import IGNORE_INDEX
from .base import TrainerContext
from .sft import SFT

log = get_logger(__name__)


@dataclass(frozen=True)
class RWRKnobs:
    temperature: float  # softmax temperature of the weights, in nats (training.rwr.temperature)


def rwr_weights(values: list[float], temperature: float) -> list[float]:
    """n * softmax(values / temperature): mean 1, stable for any log-prob scale."""
    top = max(values)
    exp = [math.exp((v - top) / temperature) for v in values]
    total = sum(exp)
    return [len(values) * e / total for e in exp]


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


class RWR(SFT):
    name = "rwr"
    block = "rwr"
    selects = True
    select_keys = ("temperature",)
    card = (
        "reward-weighted fine-tuning on every conversation m{p} generated, each weighted by the softmax of "
        "its log-probability of the gold response under m0 within its pair"
    )

    def knobs(self, block: dict[str, Any] | None) -> RWRKnobs:
        return RWRKnobs(temperature=float((block or {})["temperature"]))

    def select(self, convs, scores, knobs: dict, source: str) -> tuple[list[dict], dict[str, Any]]:
        temperature = float(knobs["temperature"])
        if not temperature > 0:
            raise StargateError("select --method rwr needs a temperature > 0 (training.rwr.temperature)")
        out = []
        for pair in sorted(scores):
            vals = sorted(scores[pair], key=lambda v: v[1])
            for (lp, conv), w in zip(vals, rwr_weights([v for v, _ in vals], temperature), strict=True):
                out.append({**convs[(pair, conv)], "logprob": lp, "weight": w})
        log.info("rwr: %d conversations of %d pairs weighted (T=%g)", len(out), len(scores), temperature)
        return out, {"temperature": temperature, "n_pairs": len(scores)}

    def check_used(self, convs: list[dict], path: str | Path) -> None:
        if any("weight" not in c for c in convs):
            raise InputError(path, "rwr needs a `weight` per conversation", fix="make it with `stargate select`")

    def records(self, examples, source) -> list[dict]:
        return [{"pair": c["pair"], "conv": c["conv"], "messages": m, "weight": c["weight"]} for c, m in examples]

    def load_records(self, data: Path) -> list[dict]:
        records = super().load_records(data)
        check_weights(records, data)
        return records

    def trainer_class(self, ctx: TrainerContext) -> type:
        return weighted_trainer_class(ctx.trainer_class(None))

    def dataset(self, split: Any) -> Any:
        from ..collator import EncodedDataset

        return EncodedDataset(split.examples, split.weights)

"""DPO over the best and worst conversation of a pair (`training.method: dpo`; ACT-style contrast).

TRL's `DPOTrainer` (sigmoid loss, `training.dpo.beta`) with m0 as the frozen reference, driven by sft.py like
SFT (same arguments, numerics, DeepSpeed, W&B, card). What differs from TRL's defaults is the mask: TRL
scores the whole completion after the prompt, which in a multi-turn chat includes the user's (the
Roleplayer's) turns. Here each side is tokenized by SFT's own code (masking.py), and the completion mask is
SFT's label mask: the log-ratio of a side sums over its assistant turns only (questions and final answer,
with their end-of-turn tokens), so the method is trained on exactly the tokens SFT trains on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .masking import IGNORE_INDEX, Encoded, check_messages, encode_chat


@dataclass
class PairEncoded:
    """A preference example: both sides tokenized with SFT's labels."""

    chosen: Encoded
    rejected: Encoded

    # what EncodedSplit's statistics read, over both sides
    @property
    def input_ids(self) -> list[int]:
        return self.chosen.input_ids + self.rejected.input_ids

    @property
    def labels(self) -> list[int]:
        return self.chosen.labels + self.rejected.labels

    @property
    def full_length(self) -> int:
        return max(self.chosen.full_length, self.rejected.full_length)

    @property
    def truncated(self) -> bool:
        return self.chosen.truncated or self.rejected.truncated

    @property
    def n_label_tokens(self) -> int:
        # a side with no assistant token left has no log-ratio: the example is dropped
        return min(self.chosen.n_label_tokens, self.rejected.n_label_tokens)


def check_records(records: list[dict], path: str | Path) -> None:
    for lineno, rec in enumerate(records, start=1):
        for side in ("chosen", "rejected"):
            why = check_messages(rec.get(side))
            if why:
                raise InputError(path, f"pair '{rec.get('pair')}' {side}: {why}", lineno, "rebuild it with sft_data")


def encode_pair(tokenizer: Any, record: dict, max_length: int, labels: str = "char_offsets") -> PairEncoded:
    return PairEncoded(
        encode_chat(tokenizer, record["chosen"], max_length, labels),
        encode_chat(tokenizer, record["rejected"], max_length, labels),
    )


class PreferenceCollator:
    """[chosen rows; rejected rows], right-padded, attention from lengths, completion mask = SFT's labels."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [(f["chosen_input_ids"], f["chosen_labels"]) for f in features]
        rows += [(f["rejected_input_ids"], f["rejected_labels"]) for f in features]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (ids, labels) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[r, : len(ids)] = 1
            completion_mask[r, : len(ids)] = torch.tensor([int(x != IGNORE_INDEX) for x in labels], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}


def to_dataset(examples: list[PairEncoded]):
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "chosen_input_ids": e.chosen.input_ids,
                "chosen_labels": e.chosen.labels,
                "rejected_input_ids": e.rejected.input_ids,
                "rejected_labels": e.rejected.labels,
            }
            for e in examples
        ]
    )


def config_class():
    from trl import DPOConfig

    return DPOConfig


def dpo_arguments(spec: Any) -> dict[str, Any]:
    """DPOConfig's own keys; the shared TrainingArguments come from sft.py."""
    return {
        "beta": float(spec.dpo["beta"]),
        "loss_type": ["sigmoid"],
        "max_length": None,  # truncated at encoding, as SFT does
        "precompute_ref_log_probs": False,
        "disable_dropout": True,
    }


def make_trainer(
    *, trainer_class, model, ref_model, args, train_examples, eval_examples, tokenizer, pad_id, callbacks
):
    """`trainer_class(base)` adds sft.py's scheduler and loss numerics to TRL's trainer."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # tokenized and masked by SFT's code above

    return trainer_class(PretokenizedDPOTrainer)(
        model=model,
        ref_model=ref_model,
        args=args,
        data_collator=PreferenceCollator(pad_id),
        train_dataset=to_dataset(train_examples),
        eval_dataset=to_dataset(eval_examples) if eval_examples else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )

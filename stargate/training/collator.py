"""Pad a batch of encoded chats on the right.

The attention mask comes from each example's length, never from `input_ids != pad_token_id`. The paper's
Alpaca-style collator did the latter with pad = EOS = `</s>`, which also hid every real end-of-turn token
inside an example from the tokens after it (spec §5, §9.14). SmolLM2 has the same trap (its pad token
is `<|im_end|>`, the end-of-turn token), so the fix matters here too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from .masking import IGNORE_INDEX, Encoded


class EncodedDataset(Dataset):
    """Encoded chats; with `weights` (reward-weighted SFT) each item also carries its example weight."""

    def __init__(self, examples: list[Encoded], weights: list[float] | None = None):
        self.examples = examples
        self.weights = weights

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e = self.examples[i]
        item: dict[str, Any] = {"input_ids": e.input_ids, "labels": e.labels}
        if self.weights is not None:
            item["weight"] = self.weights[i]
        return item


class SFTCollator:
    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        n = len(features)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((n, width), dtype=torch.long)
        for row, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[row, :k] = torch.tensor(f["input_ids"], dtype=torch.long)
            labels[row, :k] = torch.tensor(f["labels"], dtype=torch.long)
            attention_mask[row, :k] = 1
        out = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        if "weight" in features[0]:
            out["weight"] = torch.tensor([float(f["weight"]) for f in features], dtype=torch.float32)
        return out

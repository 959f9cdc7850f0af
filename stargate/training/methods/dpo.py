"""DPO over the best and worst conversation of a pair (`training.method: dpo`; ACT-style contrast).

TRL's `DPOTrainer` (sigmoid loss, `training.dpo.beta`) with m0 as the frozen reference, driven by driver.py like
SFT (same arguments, numerics, DeepSpeed, W&B, card). What differs from TRL's defaults is the mask: TRL
scores the whole completion after the prompt, which in a multi-turn chat includes the user's (the
Roleplayer's) turns. Here each side is tokenized by SFT's own code (masking.py), and the completion mask is
SFT's label mask: the log-ratio of a side sums over its assistant turns only (questions and final answer,
with their end-of-turn tokens), so the method is trained on exactly the tokens SFT trains on.

Selection (stage `select`): per pair, the best conversation by m0's log p(gold) is `chosen` and the worst is
`rejected` (ties go to the lower index, as in top-k). A pair is used only when the gap best - worst is > 0
and >= `training.dpo.min_gap`; a pair with one conversation has no contrast and is left out (counted in the meta).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import InputError, StargateError
from ...log import get_logger
from ...records import read_jsonl
from ..masking import IGNORE_INDEX, Encoded, check_messages, encode_chat
from .base import TrainerContext, TrainingMethod

log = get_logger(__name__)


@dataclass(frozen=True)
class DPOKnobs:
    beta: float  # the DPO temperature (training.dpo.beta)
    min_gap: float  # smallest best - worst log-prob gap of a used pair (training.dpo.min_gap)


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


def dpo_pairs(scores: dict[str, list[tuple[float, int]]], min_gap: float) -> tuple[list[tuple], dict[str, int]]:
    """[(pair, chosen conv, rejected conv, gap)] and the counts of pairs left out, by reason."""
    out, skipped = [], {"one_conversation": 0, "tie": 0, "below_min_gap": 0}
    for pair in sorted(scores):
        ranked = sorted(scores[pair], key=lambda v: (-v[0], v[1]))
        if len(ranked) < 2:
            skipped["one_conversation"] += 1
            continue
        (best, chosen), (worst, rejected) = ranked[0], ranked[-1]
        gap = best - worst
        if gap <= 0:
            skipped["tie"] += 1
        elif gap < min_gap:
            skipped["below_min_gap"] += 1
        else:
            out.append((pair, chosen, rejected, gap))
    return out, skipped


class DPO(TrainingMethod):
    name = "dpo"
    block = "dpo"
    selects = True
    select_keys = ("min_gap",)
    min_conversations_per_pair = 2  # it contrasts two conversations of a pair
    card = (
        "DPO (m0 the reference) on the best versus the worst conversation m{p} generated for each pair, by "
        "the log-probability of the gold response under m0"
    )

    def knobs(self, block: dict[str, Any] | None) -> DPOKnobs:
        block = block or {}
        return DPOKnobs(beta=float(block["beta"]), min_gap=float(block["min_gap"]))

    # ------------------------------------------------------------------ select
    def select(self, convs, scores, knobs: dict, source: str) -> tuple[list[dict], dict[str, Any]]:
        min_gap = float(knobs["min_gap"])
        if not min_gap >= 0:
            raise StargateError("select --method dpo needs a min_gap >= 0 (training.dpo.min_gap)")
        chosen, skipped = dpo_pairs(scores, min_gap)
        out = []
        for pair, good, bad, gap in chosen:
            lp = dict((c, v) for v, c in scores[pair])
            out.append({**convs[(pair, good)], "logprob": lp[good], "side": "chosen", "gap": gap})
            out.append({**convs[(pair, bad)], "logprob": lp[bad], "side": "rejected", "gap": gap})
        log.info("dpo: %d pairs of %d used; left out %s", len(chosen), len(scores), skipped)
        if not chosen:
            raise StargateError(
                f"no pair of {source} has two conversations whose log-prob gap is > 0 and >= {min_gap}; "
                "lower training.dpo.min_gap or simulate more conversations per pair"
            )
        return out, {"min_gap": min_gap, "n_pairs": len(chosen), "skipped": skipped}

    # ------------------------------------------------------------------ sft_data
    def check_used(self, convs: list[dict], path: str | Path) -> None:
        if any(c.get("side") not in ("chosen", "rejected") for c in convs):
            raise InputError(path, "dpo needs a `side` per conversation", fix="make it with `stargate select`")

    def records(self, examples, source) -> list[dict]:
        sides: dict[str, dict[str, tuple[dict, list[dict]]]] = {}
        for c, m in examples:
            if c["side"] in sides.setdefault(c["pair"], {}):
                raise InputError(source, f"pair {c['pair']} has two {c['side']} conversations")
            sides[c["pair"]][c["side"]] = (c, m)
        out = []
        for pair, both in sides.items():
            if set(both) != {"chosen", "rejected"}:
                continue  # its other side had no gold response
            (good, chosen), (bad, rejected) = both["chosen"], both["rejected"]
            out.append(
                {
                    "pair": pair,
                    "chosen": chosen,
                    "rejected": rejected,
                    "chosen_conv": good["conv"],
                    "rejected_conv": bad["conv"],
                    "gap": good.get("gap"),
                }
            )
        return out

    # ------------------------------------------------------------------ train
    def load_records(self, data: Path) -> list[dict]:
        records = read_jsonl(data, required=("pair", "chosen", "rejected"))
        check_records(records, data)
        return records

    def encoder(self, labels: str):
        return functools.partial(encode_pair, labels=labels)

    def arguments(self, knobs: DPOKnobs) -> tuple[type, dict[str, Any]]:
        """DPOConfig's own keys; the shared TrainingArguments come from the driver."""
        from trl import DPOConfig

        return DPOConfig, {
            "beta": knobs.beta,
            "loss_type": ["sigmoid"],
            "max_length": None,  # truncated at encoding, as SFT does
            "precompute_ref_log_probs": False,
            "disable_dropout": True,
        }

    def build_trainer(self, ctx: TrainerContext) -> Any:
        """The driver's Trainer numerics over TRL's DPOTrainer; the reference is m0 itself, frozen: a second copy
        in the same dtype and attention."""
        from trl import DPOTrainer

        class PretokenizedDPOTrainer(DPOTrainer):
            def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
                return dataset  # tokenized and masked by SFT's code above

        return ctx.trainer_class(PretokenizedDPOTrainer)(
            model=ctx.model,
            ref_model=ctx.load_model(),
            args=ctx.args,
            data_collator=PreferenceCollator(ctx.pad_id),
            train_dataset=to_dataset(ctx.train_split.examples),
            eval_dataset=to_dataset(ctx.eval_split.examples) if ctx.eval_split.examples else None,
            processing_class=ctx.tokenizer,
            callbacks=ctx.callbacks,
        )

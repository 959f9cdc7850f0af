"""The SFT dataset: read `results/m{t}/sft/{split}.jsonl`, split off a seeded validation set, tokenize.

The split is by pair key (with top-k > 1 a pair's conversations stay on one side), drawn from a private
RNG seeded with `split_seed`, which the original forgot to pass (spec §5, §9.12). It is recorded in the
model card and train_metrics.json together with the held-out pair keys.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..log import get_logger
from ..records import read_jsonl
from .masking import Encoded, check_messages, encode_chat, end_of_turn_ids

log = get_logger(__name__)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_sft_records(path: str | Path) -> list[dict]:
    """Every record, checked: a `pair` string and a `messages` chat that alternates and ends with assistant."""
    records = read_jsonl(path, required=("pair", "messages"))
    for lineno, rec in enumerate(records, start=1):
        if not isinstance(rec["pair"], str) or not rec["pair"]:
            raise InputError(path, "'pair' must be a non-empty string", lineno)
        why = check_messages(rec["messages"])
        if why:
            raise InputError(path, f"pair '{rec['pair']}': {why}", lineno, "rebuild this file with the sft_data stage")
    return records


def split_by_pair(records: list[dict], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the train and validation records. round(fraction * n_pairs) pairs (at least one when
    fraction > 0 and there are two pairs or more) are held out; the train side is never empty."""
    pairs = sorted({r["pair"] for r in records})
    n_eval = round(fraction * len(pairs))
    if fraction > 0 and len(pairs) >= 2:
        n_eval = max(1, n_eval)
    n_eval = min(n_eval, len(pairs) - 1)
    rng = random.Random(seed)
    held = set(rng.sample(pairs, n_eval)) if n_eval > 0 else set()
    train = [i for i, r in enumerate(records) if r["pair"] not in held]
    evals = [i for i, r in enumerate(records) if r["pair"] in held]
    return train, evals


@dataclass
class EncodedSplit:
    examples: list[Any] = field(default_factory=list)  # Encoded, or dpo.PairEncoded
    n_records: int = 0
    n_truncated: int = 0
    n_dropped_no_labels: int = 0  # the first user turn alone filled max_length: nothing left to learn
    lengths: list[int] = field(default_factory=list)  # before truncation
    weights: list[float] = field(default_factory=list)  # per kept example: rwr's `weight`, else 1.0

    def stats(self) -> dict[str, Any]:
        kept = self.examples
        lengths = sorted(self.lengths)
        return {
            "n_records": self.n_records,
            "n_examples": len(kept),
            "n_truncated": self.n_truncated,
            "n_dropped_no_labels": self.n_dropped_no_labels,
            "n_tokens": sum(len(e.input_ids) for e in kept),
            "n_label_tokens": sum(e.n_label_tokens for e in kept),
            "max_length_before_truncation": lengths[-1] if lengths else 0,
            "median_length_before_truncation": lengths[len(lengths) // 2] if lengths else 0,
        }


def encode_records(
    tokenizer: Any, records: list[dict], max_length: int, encode=None, labels: str = "char_offsets"
) -> EncodedSplit:
    """Tokenize every record (`encode(tokenizer, record, max_length)`; default: its `messages` chat, labelled by
    the rule `labels`, see masking.encode_chat)."""
    out = EncodedSplit(n_records=len(records))
    for rec in records:
        if encode:
            enc = encode(tokenizer, rec, max_length)
        else:
            enc = encode_chat(tokenizer, rec["messages"], max_length, labels)
        out.lengths.append(enc.full_length)
        if enc.truncated:
            out.n_truncated += 1
        if enc.n_label_tokens == 0:
            out.n_dropped_no_labels += 1
            continue
        out.examples.append(enc)
        out.weights.append(float(rec.get("weight", 1.0)))
    return out


def warn_if_no_end_of_turn(tokenizer: Any, enc: Encoded) -> None:
    """A template that closes assistant turns with plain text would teach the model never to stop."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    last = end_of_turn_ids(tokenizer, enc)
    if last and not (last & (special | added)):
        log.warning(
            "the chat template ends assistant turns with %s, which is not a special token: the model may not "
            "learn to stop. Check the base model's chat template.",
            [tokenizer.convert_ids_to_tokens(i) for i in sorted(last)],
        )

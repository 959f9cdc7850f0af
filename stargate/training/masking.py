"""Tokenize one chat for SFT: labels on every assistant turn (with its end-of-turn token), -100 elsewhere.

This follows the paper's `_tokenize_fn` (spec §5): the spans are found by rendering *prefixes* of the
conversation with the model's own chat template (`encoding/spans.py: assistant_spans`, the same code that
locates a scored target), so it works for any template (ChatML, Mistral
`[INST]`, Llama-3, ...) and needs no `{% generation %}` markers (SmolLM2's and Mistral's templates have
none). Two refinements over the original, both template-agnostic:

* Spans are located in characters and mapped to tokens through the fast tokenizer's offset mapping of
  the single full rendering, so the prefix tokenizations can never disagree with the full one at a
  boundary (a BPE merge across `[/INST]` and the answer would shift the original's mask by a token).
* Assistant turn k's span is ``[len(render(messages[:k], add_generation_prompt=True)),
  len(render(messages[:k+1]).rstrip()))``: it starts after the generation prompt (for ChatML the
  ``<|im_start|>assistant\\n`` header is a prompt, not a target) and ends with the end-of-turn token
  (``<|im_end|>``, ``</s>``, ``<|eot_id|>``); only whitespace the template puts after that token is
  left unlabelled. For Mistral's template this is exactly the paper's mask.

Truncation is on the right at ``max_length`` tokens, after labelling, as the paper did; the caller
counts how many examples were cut.

A prompt set can ask for the original's rule instead (``sft_labels: prefix_length``, paper_v1):
`encode_chat_prefix_length` places the labels where `_tokenize_fn` placed them, by the token *lengths* of
the separately tokenized prefixes. The two rules differ only where a token straddles a turn boundary:
Mistral's SentencePiece merges the "]" of "[/INST]" with an assistant turn's first character when that is
"(", "*", ".", ":" ... ("](", "]*"), and the prefix-length rule leaves that token out of the loss (it ends the
user turn's prefix), where the character-offset rule trains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..encoding.spans import assistant_spans, overlapping_tokens, render_chat, tokenize_with_offsets
from ..errors import StargateError

IGNORE_INDEX = -100
LABEL_RULES = ("char_offsets", "prefix_length")


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    full_length: int  # tokens before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def check_messages(messages: Any) -> str | None:
    """Why `messages` is not a trainable chat, or None. Shape (spec §3.6): [system], user, assistant, ...,
    alternating, ending with an assistant turn; every content a string."""
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return f"messages[{i}] must be an object with string 'role' and 'content'"
    roles = [m["role"] for m in messages]
    body = roles[1:] if roles[0] == "system" else roles
    if not body:
        return "there is no user or assistant turn"
    for i, role in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if role != want:
            return f"turn {i + (len(roles) - len(body))} has role '{role}', expected '{want}' (roles must alternate, starting with user)"
    if body[-1] != "assistant":
        return "the last message must be an assistant turn (there is nothing to train on)"
    return None


def assistant_char_spans(tokenizer: Any, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The full rendering and the half-open character span of every assistant turn (content + end-of-turn)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise StargateError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; SFT needs the base "
            "model's chat template to find the assistant turns"
        )
    full, spans = assistant_spans(tokenizer, messages)
    return full, [(t.start, t.end) for t in spans]


def encode_chat(tokenizer: Any, messages: list[dict], max_length: int, labels: str = "char_offsets") -> Encoded:
    """Token ids and labels of one chat; labels are the ids on assistant spans and -100 elsewhere. `labels`:
    the rule placing them, "char_offsets" (default) or the original's "prefix_length" (module docstring)."""
    if labels == "prefix_length":
        return encode_chat_prefix_length(tokenizer, messages, max_length)
    if labels != "char_offsets":
        raise StargateError(f"unknown SFT label rule '{labels}' (known: {', '.join(LABEL_RULES)})")
    full, spans = assistant_char_spans(tokenizer, messages)
    ids, offsets = tokenize_with_offsets(tokenizer, full)
    labels = [IGNORE_INDEX] * len(ids)
    for s, e in spans:
        for i in overlapping_tokens(offsets, s, e):
            labels[i] = ids[i]
    return Encoded(ids[:max_length], labels[:max_length], len(ids))


def encode_chat_prefix_length(tokenizer: Any, messages: list[dict], max_length: int) -> Encoded:
    """The original's `_tokenize_fn` (spec §5): p_k = the chat template applied to ``messages[:k]`` and
    tokenized (no special tokens added, truncated at `max_length`); the labels are the full chat's ids with
    every non-assistant message k masked from ``len(p_k)`` to ``len(p_{k+1})`` (p_0 = nothing: the first user
    turn is masked from position 0, its BOS included)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise StargateError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; SFT needs the base "
            "model's chat template to find the assistant turns"
        )

    def ids_of(msgs: list[dict]) -> list[int]:
        return list(
            tokenizer(render_chat(tokenizer, msgs, add_generation_prompt=False), add_special_tokens=False)["input_ids"]
        )

    ids = ids_of(messages)
    labels = list(ids[:max_length])
    bounds = [0] + [min(len(ids_of(messages[:k])), max_length) for k in range(1, len(messages) + 1)]
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            labels[bounds[k] : bounds[k + 1]] = [IGNORE_INDEX] * max(0, bounds[k + 1] - bounds[k])
    return Encoded(ids[:max_length], labels, len(ids))


def end_of_turn_ids(tokenizer: Any, encoded: Encoded) -> set[int]:
    """Ids of the last labelled token of every assistant turn (for a sanity check: they should be special)."""
    out, prev = set(), IGNORE_INDEX
    for lab in [*encoded.labels, IGNORE_INDEX]:
        if lab == IGNORE_INDEX and prev != IGNORE_INDEX:
            out.add(prev)
        prev = lab
    return out

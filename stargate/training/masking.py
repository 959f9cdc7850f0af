"""Tokenize one chat for SFT: labels on every assistant turn (with its end-of-turn token), -100 elsewhere.

This follows the paper's `_tokenize_fn` (spec §5): the spans are found by rendering *prefixes* of the
conversation with the model's own chat template, so it works for any template (ChatML, Mistral
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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import StargateError

IGNORE_INDEX = -100


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


def _render(tokenizer: Any, messages: list[dict], add_generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    if not isinstance(text, str):
        raise StargateError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


def assistant_char_spans(tokenizer: Any, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The full rendering and the half-open character span of every assistant turn (content + end-of-turn)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise StargateError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; SFT needs the base "
            "model's chat template to find the assistant turns"
        )
    full = _render(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:k], add_generation_prompt=True)
        upto = _render(tokenizer, messages[: k + 1], add_generation_prompt=False).rstrip()
        if not (full.startswith(before) and full.startswith(upto) and len(upto) >= len(before)):
            raise StargateError(
                "the chat template does not render conversations prefix-consistently (rendering the first turns "
                "is not a prefix of rendering them all), so assistant turns cannot be located; templates that "
                f"rewrite earlier turns are not supported. Turn {k}: prefix ends {before[-60:]!r}"
            )
        spans.append((len(before), len(upto)))
    return full, spans


def encode_chat(tokenizer: Any, messages: list[dict], max_length: int) -> Encoded:
    """Token ids and labels of one chat; labels are the ids on assistant spans and -100 elsewhere."""
    full, spans = assistant_char_spans(tokenizer, messages)
    try:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:  # slow tokenizers have no offsets
        raise StargateError(f"SFT needs a fast tokenizer with offset mappings: {exc}") from exc
    ids = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    si = 0
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        while si < len(spans) and spans[si][1] <= a:
            si += 1
        if si == len(spans):
            break
        s, e = spans[si]
        if a < e and b > s:  # the token overlaps an assistant span (a boundary-straddling token counts)
            labels[i] = ids[i]
    return Encoded(ids[:max_length], labels[:max_length], len(ids))


def end_of_turn_ids(tokenizer: Any, encoded: Encoded) -> set[int]:
    """Ids of the last labelled token of every assistant turn (for a sanity check: they should be special)."""
    out, prev = set(), IGNORE_INDEX
    for lab in [*encoded.labels, IGNORE_INDEX]:
        if lab == IGNORE_INDEX and prev != IGNORE_INDEX:
            out.add(prev)
        prev = lab
    return out

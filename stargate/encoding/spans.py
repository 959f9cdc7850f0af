"""Shared prompt rendering and target-span location for every local backend (hf, vllm).

Both local backends must feed the model exactly the same token ids and sum the log-probs of exactly the
same positions, otherwise their scores differ by whole tokens. This module is the single place where that
is decided:

* `prompt_ids(tokenizer, prompt)`: the token ids a generation prompt is fed as. A chat is rendered with the
  model's chat template plus the generation prompt; a raw string is used as-is. Either way the text is
  tokenized with ``add_special_tokens=False`` (the template, or the raw string, already carries any BOS).
* `render_for_scoring(tokenizer, context, target)`: the token ids of context + target and the half-open
  token range ``[start, end)`` of the target, located by character offsets so that neither an end-of-turn
  token nor anything of the context is counted.

The chat-span logic itself (`assistant_spans`: where each assistant turn of a chat lies in its rendering,
found by rendering prefixes with the model's own template; `tokenize_with_offsets`, `overlapping_tokens`)
is shared with SFT's loss mask (training/masking.py), so scoring and training agree on what a turn is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import StargateError
from .vllm033 import PromptLengthContext, VllmTextPrompt, prompt_length_span, text_prompt_ids

# a chat (messages) or a raw string, as stargate.backends.base.Prompt (not imported: see encoding/__init__.py)
Prompt = list[dict[str, str]] | str


def _is_chat(prompt: Any) -> bool:
    if isinstance(prompt, str):
        return False
    if isinstance(prompt, list | tuple) and all(isinstance(m, dict) and "role" in m for m in prompt):
        return True
    raise StargateError(
        f"a prompt must be a chat (list of {{'role', 'content'}} messages) or a raw string, got {type(prompt).__name__}"
    )


def render_chat(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """A chat rendered with the tokenizer's own chat template, as text."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise StargateError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
            "use raw string prompts with this model, or a model that ships a chat template"
        )
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    if not isinstance(text, str):  # some transformers versions return a list for batched input
        raise StargateError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


@dataclass(frozen=True)
class TurnSpan:
    """Character offsets of one assistant turn in a chat's full rendering: it starts after the generation
    prompt; its content ends at `content_end` (None if the template altered the content) and the turn with its
    end-of-turn token at `end` (whitespace the template puts after that token excluded)."""

    index: int  # position of the message in the chat
    start: int
    content_end: int | None
    end: int


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[TurnSpan]]:
    """The full rendering of a chat and the span of every assistant turn in it.

    Turn k starts at ``len(render(messages[:k], add_generation_prompt=True))`` and ends at
    ``len(render(messages[:k+1]).rstrip())``; both renderings must be prefixes of the full one, which holds
    for any template that does not rewrite earlier turns (ChatML, Mistral `[INST]`, Llama-3, ...).
    """
    messages = list(messages)
    full = render_chat(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render_chat(tokenizer, messages[:k], add_generation_prompt=True)
        upto = render_chat(tokenizer, messages[: k + 1], add_generation_prompt=False).rstrip()
        if not (full.startswith(before) and full.startswith(upto) and len(upto) >= len(before)):
            raise StargateError(
                "cannot locate the assistant turns: the chat template's rendering of the context with the "
                "generation prompt is not a prefix of its rendering with the assistant turn appended (templates "
                "that rewrite earlier turns, e.g. ones that drop reasoning, are not supported); "
                f"turn {k}: context ends {before[-80:]!r}, full text there reads "
                f"{full[max(0, len(before) - 80) : len(before)]!r}"
            )
        content = m["content"]
        content_end = len(before) + len(content) if full[len(before) :].startswith(content) else None
        spans.append(TurnSpan(k, len(before), content_end, len(upto)))
    return full, spans


def tokenize_with_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of `text` (no special tokens added) and each token's character span."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:  # slow (Python) tokenizers have no offset mapping
        raise StargateError(
            f"locating turns needs a fast tokenizer with offset mappings ({type(tokenizer).__name__} has none): {exc}"
        ) from exc
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def overlapping_tokens(offsets: list[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens whose characters overlap ``[start, end)`` (a boundary-straddling token counts)."""
    return [i for i, (a, b) in enumerate(offsets) if a < end and b > start]


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """The text a generation prompt is fed as: chat template + generation prompt, or the raw string as-is."""
    if _is_chat(prompt):
        return render_chat(tokenizer, list(prompt), add_generation_prompt=True)
    return prompt


def prompt_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of a generation prompt (see `render_prompt`), tokenized with no special tokens added."""
    if isinstance(prompt, VllmTextPrompt):  # the paper's text prompts, as vLLM 0.3.3 encoded them
        return text_prompt_ids(tokenizer, prompt)
    return list(tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"])


def render_for_scoring(tokenizer: Any, context: Prompt, target: str) -> tuple[list[int], int, int]:
    """Tokenize context + target for teacher-forced scoring.

    Returns ``(input_ids, start, end)``: the ids of the full text and the half-open range of the tokens whose
    character span overlaps the target's characters. ``sum(logp(input_ids[i] | input_ids[:i]) for i in
    range(start, end))`` is the score. For a chat context the target is the content of the next assistant
    turn (the full rendering is the template applied to ``context + [assistant: target]``, the target's
    characters start where the generation-prompt rendering of the context ends); the end-of-turn token
    after it lies outside the span. For a raw context the full text is ``context + target``.

    A token that straddles the context/target boundary (a tokenizer merging across it) counts as a target
    token. An empty target gives ``start == end`` (score 0 over 0 tokens).
    """
    if not isinstance(target, str):
        raise StargateError(f"a scoring target must be a string, got {type(target).__name__}")
    if isinstance(context, PromptLengthContext):  # the paper scorer's boundary rule (vllm033.py)
        return prompt_length_span(tokenizer, context, target)
    if _is_chat(context):
        full, spans = assistant_spans(tokenizer, list(context) + [{"role": "assistant", "content": target}])
        turn = spans[-1]
        if turn.content_end is None:
            raise StargateError(
                "cannot locate the target span: the chat template changed the assistant content (it may strip "
                f"or escape it); target starts {target[:60]!r}, rendering reads "
                f"{full[turn.start : turn.start + 60]!r}. Strip the target (gold.strip()) or use a raw-string context"
            )
        char_start = turn.start
    else:
        full = context + target
        char_start = len(context)
    char_end = char_start + len(target)

    ids, offsets = tokenize_with_offsets(tokenizer, full)
    inside = overlapping_tokens(offsets, char_start, char_end)
    if inside:
        start, end = inside[0], inside[-1] + 1
        if inside != list(range(start, end)):  # pragma: no cover - offsets are monotone for real tokenizers
            raise StargateError("target tokens are not contiguous in the tokenized text")
    else:
        if target:
            raise StargateError(f"no token of the tokenized text overlaps the target {target[:60]!r}")
        start = end = next((i for i, (a, _) in enumerate(offsets) if a >= char_start), len(ids))
    if start == 0 and end > start:
        raise StargateError(
            "the context tokenizes to nothing before the target, so the first target token has no conditioning "
            "context; give a non-empty context (e.g. starting with the BOS text)"
        )
    return ids, start, end

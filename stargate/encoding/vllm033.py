"""How the original code's vLLM 0.3.3 turned text prompts into token ids and generated ids into text.

The paper's generation steps (spec §3.1, §3.5, §6.2) handed vLLM 0.3.3 *text*; we hand backends token ids.
To reproduce the paper token for token, the prompt set marks such prompts as `VllmTextPrompt`, and both
local backends (hf, vllm) encode and decode them through the two functions below:

* `text_prompt_ids`: vLLM 0.3.3 called ``tokenizer.encode(text)``, which adds a BOS, although the hand-built
  strings already began with ``<s>``: the model saw two BOS tokens (spec §9.13). Chat prompts (regularizer,
  win-rate answers) were first rendered with ``apply_chat_template`` (token ids), turned back into text with
  ``tokenizer.decode`` and only then sent: the decode/re-encode round trip is not the identity for Mistral's
  legacy tokenizer (``</s>[INST]`` comes back as ``</s> [INST]``), so it is replayed here.
* `decode_continuation`: vLLM's ``.text`` is the incremental detokenization of the new tokens *after* the
  prompt's last tokens, so it keeps the first token's SentencePiece space (" What kind ..."), where a plain
  ``decode(new_ids)`` drops it. The original stored that text verbatim.

Everything else (chats, plain raw strings) goes through `decode_plain`, the project's own convention.

The paper's scorer passed token ids (one BOS), but located the gold span by *length*: the summed positions
were those past the separately tokenized context (spec §4). `PromptLengthContext` marks a scoring context for
which `prompt_length_span` replays that rule; it differs from the project's character-offset span only when
a token straddles the boundary (Mistral merges "]" with a following "*", "(", ".", ":" ...: a gold starting
with "(" loses its first token in the original's sum).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# vLLM 0.3.3, vllm/transformers_utils/tokenizer.py: detokenize_incrementally starts from the prompt's last
# 5 tokens (INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET), "to defeat cleanup algorithms in the decode"
_PREFIX_TOKENS = 5


class VllmTextPrompt(str):
    """A prompt string that the original sent to vLLM 0.3.3 as text.

    ``round_trip`` marks a chat rendering (``<s>[INST] u [/INST]a</s>...``) that the original tokenized,
    decoded and re-sent. It is a ``str``, so code that only needs the text (hashing, logging, caches) works
    unchanged; only `stargate.encoding.spans.prompt_ids` and the backends' output decoding look at the type.
    """

    round_trip: bool

    def __new__(cls, text: str, round_trip: bool = False) -> VllmTextPrompt:
        obj = super().__new__(cls, text)
        obj.round_trip = bool(round_trip)
        return obj

    def __reduce__(self):  # keep the flag across pickling (multiprocessing, caches)
        return (VllmTextPrompt, (str(self), self.round_trip))


class PromptLengthContext(str):
    """A raw scoring context whose target span is found as the original scorer found it (by token counts)."""


def prompt_length_span(tokenizer: Any, context: str, target: str) -> tuple[list[int], int, int]:
    """(ids of context + target, start, end): start = len(ids of the context alone), both tokenized without
    special tokens, as `batch_log_probs` of the original did (spec §4)."""
    ids = list(tokenizer(context + target, add_special_tokens=False)["input_ids"])
    start = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    return ids, min(start, len(ids)), len(ids)


def text_prompt_ids(tokenizer: Any, prompt: VllmTextPrompt) -> list[int]:
    """The ids vLLM 0.3.3 fed the model for this text prompt."""
    text = str(prompt)
    if prompt.round_trip:
        # transformers 4.39: apply_chat_template(messages) tokenizes with add_special_tokens=False, and the
        # original then called tokenizer.decode(ids) (skip_special_tokens=False; Mistral's config sets
        # clean_up_tokenization_spaces=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])  # vLLM's encode: BOS added


def decode_continuation(tokenizer: Any, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> str:
    """vLLM 0.3.3's ``.text`` of a completion (skip_special_tokens=True): the text the new tokens add to the
    prompt's last tokens, so the first token's leading space is kept."""
    special = set(tokenizer.all_special_ids)
    head = [t for t in prompt_ids if t not in special][-_PREFIX_TOKENS:]
    new = [t for t in new_ids if t not in special]
    if not new:
        return ""
    head_tokens = tokenizer.convert_ids_to_tokens(head)
    before = tokenizer.convert_tokens_to_string(head_tokens) if head_tokens else ""
    after = tokenizer.convert_tokens_to_string(head_tokens + tokenizer.convert_ids_to_tokens(new))
    if not after.startswith(before):  # pragma: no cover - SentencePiece/BPE decoders are prefix-stable
        return tokenizer.decode(new, skip_special_tokens=True)
    return after[len(before) :]


def decode_plain(tokenizer: Any, new_ids: Sequence[int]) -> str:
    """The project's own decoding of a completion: the new tokens alone, special tokens skipped."""
    return tokenizer.decode(list(new_ids), skip_special_tokens=True)


def decode_output(tokenizer: Any, prompt: Any, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> str:
    """The one decoding entry point of the local backends: vLLM 0.3.3's text for `VllmTextPrompt`s, else plain."""
    if isinstance(prompt, VllmTextPrompt):
        return decode_continuation(tokenizer, prompt_ids, new_ids)
    return decode_plain(tokenizer, new_ids)

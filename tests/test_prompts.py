"""Prompt sets: the paper's exact strings (prompts file §4-§6) and the fixed set's chat rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from stargate.encoding.vllm033 import VllmTextPrompt
from stargate.errors import StargateError
from stargate.prompts import available_sets, load_prompt_set, template_files

TASK = "What wine goes with steak."
# Stored turn texts, spaces as given. Which spaces the paper path stores (vLLM's leading space) is decided
# where outputs are decoded; tests/test_paper_tokens.py derives the turns from generated ids instead.
TURNS = [
    {"role": "questioner", "text": "Q1 text"},
    {"role": "roleplayer", "text": "answer 1"},
    {"role": "questioner", "text": " Q2 text"},
    {"role": "roleplayer", "text": "answer 2"},
]


def test_sets_and_files():
    assert {"paper_v1", "fixed_v1"} <= set(available_sets())
    for name in ("paper_v1", "fixed_v1"):
        assert all(Path(f).exists() for f in template_files(name))
    with pytest.raises(StargateError, match="unknown prompt set"):
        load_prompt_set("nope_v9")
    assert any(f.endswith("paper_v1/chat_template.jinja") for f in template_files("paper_v1"))


def test_paper_generation_prompts_go_as_vllm_text_and_fixed_ones_do_not():
    paper, fixed = load_prompt_set("paper_v1"), load_prompt_set("fixed_v1")
    q = paper.questioner("Leo", TASK, TURNS[:1], finetuned=False)
    r = paper.roleplayer("P", TASK, "Leo", TURNS[:1])
    reg, win = paper.regularizer("Leo", TASK, TURNS), paper.winrate_answer("Leo", TASK, TURNS)
    assert all(isinstance(x, VllmTextPrompt) for x in (q, r, reg, win))
    assert not q.round_trip and not r.round_trip and reg.round_trip and win.round_trip
    # regularizer: rendered with the shipped March-2024 template (<s>[INST] u [/INST]a</s>[INST] ...)
    assert reg.startswith("<s>[INST] You are a helpful AI assistant, able to provide highly personalized")
    assert reg.endswith(
        "[/INST]Q1 text</s>[INST] answer 1 [/INST]Q2 text</s>[INST] answer 2\n\nWhat wine goes with steak. [/INST]"
    )
    assert not isinstance(paper.scoring_context("neg-control", "Leo", "P", TASK, []), VllmTextPrompt)  # ids: 1 BOS
    assert isinstance(fixed.regularizer("Leo", TASK, TURNS), list)
    assert not isinstance(fixed.questioner("Leo", TASK, TURNS[:1], finetuned=False), VllmTextPrompt)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"generation_io": "vllm_text"}, "generation_io 'vllm_text' is not one of"),
        ({"chat_template": "missing.jinja"}, "chat_template file missing.jinja does not exist"),
        ({"score_span": "tokens"}, "score_span 'tokens' is not one of"),
        ({"sft_labels": "tokens"}, "sft_labels 'tokens' is not one of"),
        ({"tokenizer": "gpt2"}, "tokenizer 'gpt2' is not one of"),
        ({"shuffle_rotation": "left"}, "shuffle_rotation 'left' is not one of"),
        ({"blank_gold": "maybe"}, "blank_gold 'maybe' is not one of"),
    ],
)
def test_bad_manifest_names_the_file_and_key(tmp_path, monkeypatch, change, message):
    import shutil

    import yaml

    from stargate.prompts import templates

    shutil.copytree(templates.PROMPTS_DIR / "paper_v1", tmp_path / "broken_v1")
    manifest = yaml.safe_load((tmp_path / "broken_v1" / "manifest.yaml").read_text())
    (tmp_path / "broken_v1" / "manifest.yaml").write_text(yaml.safe_dump({**manifest, **change}))
    monkeypatch.setattr(templates, "PROMPTS_DIR", tmp_path)
    load_prompt_set.cache_clear()
    try:
        with pytest.raises(StargateError, match=message) as err:
            load_prompt_set("broken_v1")
        assert "broken_v1/manifest.yaml" in str(err.value)
    finally:
        load_prompt_set.cache_clear()


def test_paper_scoring_context_is_the_original_string():
    ps = load_prompt_set("paper_v1")
    got = ps.scoring_context("qa-experimental", "Leo ", "persona text", TASK, TURNS)
    assert got == (
        "<s>[INST]My name is Leo.\n\nWhat wine goes with steak.[/INST]Q1 text</s>\n[INST] answer 1 [/INST]\n"
        " Q2 text</s>\n[INST] answer 2\n\nWhat wine goes with steak.[/INST]"
    )
    assert ps.scoring_context("neg-control", "Leo", "p", TASK, []) == f"<s>[INST]My name is Leo.\n\n{TASK}[/INST]"
    assert ps.scoring_context("pos-control-2", "Leo", "PERSONA", TASK, []) == (
        f"<s>[INST]My name is Leo. Here is some information about me:\n\nPERSONA\n\n{TASK}[/INST]"
    )


def test_paper_questioner_and_roleplayer_strings():
    ps = load_prompt_set("paper_v1")
    q = ps.questioner("Leo", TASK, TURNS[:1], finetuned=True)
    assert q.startswith("<s>[INST]A user named Leo has approached you")
    assert q.endswith(f"The initial request is as follows: {TASK}[/INST]\nQ1 text</s>")  # instruction kept for m_t
    turns = [
        {"role": "questioner", "text": " <q1>"},
        {"role": "roleplayer", "text": "<a1>"},
        {"role": "questioner", "text": " <q2>"},
    ]
    r = ps.roleplayer("PERSONA", TASK, "Leo", turns)
    assert r.startswith("<s>[INST] You are particularly skilled at roleplaying as a human.")
    assert "AI Assistant:  <q1>\nYou:  <a1> \nAI Assistant:  <q2>\nYou: [/INST]" in r  # prompts file §5.3
    assert r.endswith("[/INST]")


def test_fixed_set_renders_chats_and_drops_instruction_for_finetuned():
    ps = load_prompt_set("fixed_v1")
    base = ps.questioner(" Leo ", TASK + " ", TURNS[:1], finetuned=False)
    tuned = ps.questioner("Leo", TASK, TURNS[:1], finetuned=True)
    assert base[0]["content"].startswith("A user named Leo has approached")
    assert tuned[0] == {"role": "user", "content": f"My name is Leo.\n\n{TASK}"}  # the format m_t was trained on
    assert tuned[1] == {"role": "assistant", "content": "Q1 text"}
    ctx = ps.scoring_context("qa-experimental", "Leo", "p", TASK, TURNS)
    assert [m["role"] for m in ctx] == ["user", "assistant", "user", "assistant", "user"]
    assert ctx[-1]["content"] == f"answer 2\n\n{TASK}" and ctx[2]["content"] == "answer 1"


def test_sft_messages_shape_spec_3_6():
    ps = load_prompt_set("fixed_v1")
    msgs = ps.sft_messages("Zara", "Prepare for an interview.", TURNS, " Final answer. ")
    assert msgs[0] == {"role": "user", "content": "My name is Zara.\n\nPrepare for an interview."}
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert msgs[-2]["content"] == "answer 2\n\nPrepare for an interview."
    assert msgs[-1]["content"] == "Final answer."
    reg = ps.regularizer("Zara", "Prepare for an interview.", TURNS)
    assert reg[0]["content"].startswith("You are a helpful AI assistant, able to provide highly personalized")
    assert reg[0]["content"].endswith("\n\nMy name is Zara.\n\nPrepare for an interview.")


@pytest.mark.parametrize(
    ("text", "paper", "fixed"),
    [
        ("Comparison: ...\n\nFinal Response: B", "b", "b"),
        ("Final Response: A", "a", "a"),
        ("Final Response: **B**", None, "b"),
        ("Final Response: C", None, None),
        ("no verdict at all", None, None),
    ],
)
def test_verdict_parsing(text, paper, fixed):
    assert load_prompt_set("paper_v1").parse_verdict(text) == paper
    assert load_prompt_set("fixed_v1").parse_verdict(text) == fixed

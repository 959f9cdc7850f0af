"""paper_v1 against the original code, token id for token id, under the real Mistral tokenizer.

Every expected value here is built the way the *original* code built it, written out from the spec
(../shared spec §3-§5, prompts file §4-§10) and independent of the project's rendering code: the
original's hand-built strings, its history extraction and turn parsing, the March-2024 Mistral template
spelled out as string concatenation, vLLM 0.3.3's `encode(text)` (BOS added) and its `.text` (the raw
SentencePiece pieces of the new tokens). The project side is what the backends feed the model:
`spans.prompt_ids` / `spans.render_for_scoring` on the prompt set's output, and `vllm033.decode_output`
on generated ids. Only the instruction texts are read from the prompt set's .txt files (their byte
identity with the original is checked elsewhere).

One pilot persona-task pair (tests/fixtures/paper_pilot_pair.json) is taken through a 2-turn conversation:
questioner -> roleplayer -> questioner -> roleplayer, all five scoring conditions, the regularizer prompt,
the SFT example, the win-rate answer prompt and the judge prompt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from paper_mistral import build_tiny_model, build_tokenizer

import stargate.prompts as prompts_pkg
from stargate.backends.spans import prompt_ids, render_for_scoring
from stargate.backends.vllm033 import VllmTextPrompt, decode_output
from stargate.prompts import load_prompt_set, provenance
from stargate.training.masking import IGNORE_INDEX, encode_chat

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "paper_pilot_pair.json").read_text(encoding="utf-8"))
TEXTS = Path(prompts_pkg.__file__).parent / "paper_v1"
NAME, PERSONA, TASK, GOLD = FIXTURE["name"], FIXTURE["persona"], FIXTURE["task"], FIXTURE["gold"]
GEN = FIXTURE["generated"]


def text(key: str) -> str:
    return (TEXTS / f"{key}.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def ps():
    return load_prompt_set("paper_v1")


# ------------------------------------------------------------------ the original, written out from the spec
def vllm033_ids(tok, prompt_text: str) -> list[int]:
    """vLLM 0.3.3 `LLM.generate(prompts=[text])`: tokenizer.encode(text), special tokens (BOS) added."""
    return tok.encode(prompt_text)


def vllm033_text(tok, generated_ids: list[int]) -> str:
    """vLLM 0.3.3's `.text`: the new SentencePiece pieces joined, "▁" read as a space, nothing stripped."""
    pieces = tok.convert_ids_to_tokens([i for i in generated_ids if i not in (1, 2)])
    raw = "".join(pieces).replace("▁", " ")
    # byte-fallback pieces <0xNN> spell UTF-8 bytes
    return re.sub(
        r"((?:<0x[0-9A-F]{2}>)+)",
        lambda m: bytes.fromhex(m.group(1).replace("<0x", "").replace(">", "")).decode(),
        raw,
    )


def generated(tok, key: str) -> list[int]:
    """Ids a model generated for this fixture text (its first token carries the SentencePiece space), + EOS."""
    return tok(GEN[key], add_special_tokens=False)["input_ids"] + [2]


def orig_conversation(name: str, task: str, texts: list[str]) -> str:
    """Spec §3.1: "<s>[INST]{QA_PROMPTS[13]}[/INST]", then "\\n" + q + "</s>" and "\\n[INST] " + a + " [/INST]"."""
    conv = "<s>[INST]" + text("questioner").format(name=name, task=task) + "[/INST]"
    for k, t in enumerate(texts):
        conv += ("\n" + t + "</s>") if k % 2 == 0 else ("\n[INST] " + t + " [/INST]")
    return conv


def orig_extract_history(conv: str) -> str:
    """Prompts file §5.3, steps 1-5."""
    h = conv[conv.find("[/INST]") :]
    h = h.replace("</s>", "")
    h = h.replace("[/INST]\n", "\nAI Assistant: ")
    h = h.replace("[INST]", "You: ")
    return h.strip()


def orig_roleplayer(persona: str, task: str, conv: str) -> str:
    """Prompts file §5.3: "<s>[INST] " + HUMAN_SYS_MSGS[1] + "\\n\\n" + HUMAN_PROMPTS[4](...) + "[/INST]"."""
    body = text("roleplayer").format(persona=persona, task=task, history=orig_extract_history(conv))
    return "<s>[INST] " + text("roleplayer_system") + "\n\n" + body + "[/INST]"


def orig_create_turns(conv: str) -> list[str]:
    """Spec §3.6: after the anchor; whitespace around the markers collapsed; split; trailing empty dropped."""
    rest = conv[conv.find("The initial request is as follows: ") + len("The initial request is as follows: ") :]
    rest = re.sub(r"\s*(\[INST\]|\[/INST\]|<s>|</s>)\s*", r"\1", rest)
    parts = re.split(r"</s>\[INST\]|\[/INST\]", rest)
    return parts[:-1] if parts[-1] == "" else parts


def mistral_march_2024(messages: list[dict]) -> str:
    """The Mistral-7B-Instruct-v0.2 chat template of March 2024, as plain concatenation."""
    out = "<s>"
    for m in messages:
        out += f"[INST] {m['content']} [/INST]" if m["role"] == "user" else m["content"] + "</s>"
    return out


def orig_answer_messages(first_prefix: str, name: str, task: str, turns: list[str]) -> list[dict]:
    """Prompts file §7 steps 1-4 / §9: [task, q1, a1, ..., qn, an] as alternating messages."""
    _, *qa = turns
    msgs = [{"role": "user", "content": first_prefix + f"My name is {name}.\n\n{task}"}]
    for k, t in enumerate(qa):
        msgs.append({"role": "assistant" if k % 2 == 0 else "user", "content": t})
    msgs[-1] = {"role": "user", "content": msgs[-1]["content"].strip() + "\n\n" + task}
    return msgs


def orig_chat_prompt_ids(tok, messages: list[dict]) -> list[int]:
    """decode(apply_chat_template(messages)) sent to vLLM 0.3.3 as text (prompts file §7 steps 5-7)."""
    ids = tok(mistral_march_2024(messages), add_special_tokens=False)["input_ids"]  # apply_chat_template, 4.39
    return vllm033_ids(tok, tok.decode(ids))


def orig_score_ids(tok, prompt: str, gold: str) -> tuple[list[int], int, int]:
    """Spec §4: answer = prompt + gold, both tokenized without special tokens; summed positions are those past
    the prompt's length (the pad mask), so the span is [len(prompt_ids), len(answer_ids))."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(prompt + gold, add_special_tokens=False)["input_ids"]
    return a, len(p), len(a)


def orig_sft(tok, messages: list[dict], max_length: int = 1024) -> tuple[list[int], list[int]]:
    """Spec §5 `_tokenize_fn`: prefix renderings (truncated at max_length) give the user-turn ranges to mask."""

    def enc(msgs):
        return tok(mistral_march_2024(msgs), add_special_tokens=False)["input_ids"][:max_length]

    ids = enc(messages)
    labels = list(ids)
    bounds = [0] + [len(enc(messages[:i])) for i in range(1, len(messages) + 1)]
    for i, m in enumerate(messages):
        if m["role"] == "user":
            labels[bounds[i] : bounds[i + 1]] = [IGNORE_INDEX] * (bounds[i + 1] - bounds[i])
    return ids, labels


# ------------------------------------------------------------------ one conversation, both ways
@pytest.fixture(scope="module")
def run(tok, ps):
    """Simulate the pair's 2-turn conversation through the project's paper path, recording every prompt's ids
    and every decoded output, next to the original's."""
    out: dict = {"project": {}, "original": {}}
    proj, orig = out["project"], out["original"]
    turns: list[dict] = []
    orig_texts: list[str] = []
    for step, key in enumerate(("q1", "a1", "q2", "a2")):
        if key.startswith("q"):
            prompt = ps.questioner(NAME, TASK, turns, finetuned=step > 0)
            orig_prompt = orig_conversation(NAME, TASK, orig_texts)
            role = "questioner"
        else:
            prompt = ps.roleplayer(PERSONA, TASK, NAME, turns)
            orig_prompt = orig_roleplayer(PERSONA, TASK, orig_conversation(NAME, TASK, orig_texts))
            role = "roleplayer"
        ids = prompt_ids(tok, prompt)
        proj[key] = {"prompt_ids": ids, "text": decode_output(tok, prompt, ids, generated(tok, key))}
        orig[key] = {"prompt_ids": vllm033_ids(tok, orig_prompt), "text": vllm033_text(tok, generated(tok, key))}
        turns.append({"role": role, "text": proj[key]["text"]})
        orig_texts.append(orig[key]["text"])
    out["turns"], out["orig_conv"] = turns, orig_conversation(NAME, TASK, orig_texts)
    return out


@pytest.mark.parametrize("key", ["q1", "a1", "q2", "a2"])
def test_simulation_prompts_are_the_originals_ids(run, key):
    """Questioner (turns 1, 2, with the instruction also for m_t) and Roleplayer (Mixtral) prompts: double BOS."""
    assert run["project"][key]["prompt_ids"] == run["original"][key]["prompt_ids"]
    assert run["project"][key]["prompt_ids"][:3] == [1, 1, 733]  # <s><s>▁[ : vLLM's BOS + the string's <s>


@pytest.mark.parametrize("key", ["q1", "a1", "q2", "a2"])
def test_outputs_keep_vllm_leading_space(run, key):
    """Issue item 1: the original stored vLLM's .text, which starts with the first token's space."""
    assert run["project"][key]["text"] == run["original"][key]["text"]
    assert run["project"][key]["text"].startswith(" ") and not run["project"][key]["text"].startswith("  ")


def test_stored_turns_read_like_the_original(run):
    conv = run["orig_conv"]
    assert "[/INST]\n What kind" in conv and "</s>\n[INST]  I have" in conv  # spec: [/INST]\n q</s>\n[INST]  a
    assert orig_extract_history(conv).startswith("AI Assistant:  What kind")


@pytest.mark.parametrize("condition", ["qa-experimental", "pos-control-1", "pos-control-2", "neg-control", "shuffled"])
def test_scoring_ids_and_span_are_the_originals(tok, ps, run, condition):
    """Spec §4 / prompts file §6: one BOS (the scorer passed ids), gold span by prompt length."""
    turns = run["turns"]
    conv_full = run["orig_conv"]
    if condition == "shuffled":  # another persona's conversation for the same task, scored under this name
        other = [
            {"role": "questioner", "text": vllm033_text(tok, generated(tok, "other_q1"))},
            {"role": "roleplayer", "text": vllm033_text(tok, generated(tok, "other_a1"))},
        ]
        turns = other
        conv_full = orig_conversation(FIXTURE["other_persona_name"], TASK, [t["text"] for t in other])
    conv = conv_full[conv_full.find("[/INST]") + 7 : conv_full.rfind("[/INST]")].strip()
    name, task, persona = NAME.strip(), TASK.strip(), PERSONA
    intro = {
        "qa-experimental": f"My name is {name}.\n\n{task}[/INST]{conv}\n\n{task}[/INST]",
        "shuffled": f"My name is {name}.\n\n{task}[/INST]{conv}\n\n{task}[/INST]",
        "pos-control-1": f"My name is {name}. Here is some information about me:\n\n{persona}\n\n{task}[/INST]{conv}"
        f"\n\n{task}[/INST]",
        "pos-control-2": f"My name is {name}. Here is some information about me:\n\n{persona}\n\n{task}[/INST]",
        "neg-control": f"My name is {name}.\n\n{task}[/INST]",
    }[condition]
    expected = orig_score_ids(tok, "<s>[INST]" + intro, GOLD.strip())
    ctx = ps.scoring_context(condition, NAME, PERSONA, TASK, turns)
    got = render_for_scoring(tok, ctx, GOLD.strip())
    assert got == expected
    assert got[0][:2] == [1, 733]  # a single BOS
    assert not isinstance(ctx, VllmTextPrompt)


def test_scoring_boundary_is_the_originals_when_gold_merges_with_inst(tok, ps, run):
    """Spec §4 caveat: a gold starting with "(" merges with the "]" of [/INST] ("]("); the original's span,
    counted from the context's token length, then leaves that token out. paper_v1 does the same."""
    gold = "(Quick plan) start with the counters, then the stovetop."
    conv = run["orig_conv"][run["orig_conv"].find("[/INST]") + 7 : run["orig_conv"].rfind("[/INST]")].strip()
    prompt = f"<s>[INST]My name is {NAME}.\n\n{TASK}[/INST]{conv}\n\n{TASK}[/INST]"
    expected = orig_score_ids(tok, prompt, gold)
    ctx = ps.scoring_context("qa-experimental", NAME, PERSONA, TASK, run["turns"])
    assert render_for_scoring(tok, ctx, gold) == expected
    assert tok.convert_ids_to_tokens(expected[0][expected[1] - 1 : expected[1]]) == ["]("]  # the merged token
    assert render_for_scoring(tok, str(ctx), gold)[1] == expected[1] - 1  # char offsets would count it


def test_regularizer_prompt_is_the_originals_round_trip(tok, ps, run):
    """Prompts file §7: rendered with the March-2024 template, decoded, re-sent as text (double BOS)."""
    turns = orig_create_turns(run["orig_conv"])
    msgs = orig_answer_messages(text("regularizer") + "\n\n", NAME.strip(), TASK.strip(), turns)
    expected = orig_chat_prompt_ids(tok, msgs)
    prompt = ps.regularizer(NAME, TASK, run["turns"])
    assert prompt_ids(tok, prompt) == expected
    assert expected[:2] == [1, 1]
    # the round trip matters: the decode puts a space after every </s> ("</s> [INST]")
    direct = tok.encode(mistral_march_2024(msgs))
    assert direct != expected


def test_winrate_answer_prompt_is_the_originals(tok, ps, run):
    """Prompts file §9: the same shape without instruction; name and task not stripped."""
    turns = orig_create_turns(run["orig_conv"])
    expected = orig_chat_prompt_ids(tok, orig_answer_messages("", NAME, TASK, turns))
    assert prompt_ids(tok, ps.winrate_answer(NAME, TASK, run["turns"])) == expected


@pytest.mark.parametrize("max_length", [1024, 60])
def test_sft_example_is_the_originals(tok, ps, run, max_length):
    """Spec §3.6 + §5: message list from the parsed conversation plus m_t's stored answer (as vLLM gave it),
    rendered with the March-2024 template; labels on assistant turns with their </s>; right truncation."""
    final_ids = generated(tok, "final")
    final = vllm033_text(tok, final_ids)
    turns = orig_create_turns(run["orig_conv"])
    msgs = orig_answer_messages("", NAME.strip(), TASK.strip(), turns) + [{"role": "assistant", "content": final}]
    expected_ids, expected_labels = orig_sft(tok, msgs, max_length)

    paper_tok = build_tokenizer(ps.chat_template)  # what sft.py trains with under paper_v1
    reg_prompt = ps.regularizer(NAME, TASK, run["turns"])
    final_text = decode_output(tok, reg_prompt, prompt_ids(tok, reg_prompt), final_ids)
    enc = encode_chat(paper_tok, ps.sft_messages(NAME, TASK, run["turns"], final_text), max_length)
    assert enc.input_ids == expected_ids
    assert enc.labels == expected_labels


def test_judge_prompt_is_the_originals(ps):
    """Prompts file §10: full persona, stripped task, the two answers as stored (with vLLM's space)."""
    a, b = " Response one.", " Response two."
    expected = [
        {"role": "system", "content": text("judge_system")},
        {
            "role": "user",
            "content": text("judge_user").format(persona=PERSONA, task=TASK.strip(), response_A=a, response_B=b),
        },
    ]
    assert ps.judge(PERSONA, TASK, a, b) == expected


def test_fixed_set_decodes_and_encodes_plainly(tok):
    """fixed_v1 is the corrected path: chat prompts with one BOS from the template, outputs without the space."""
    fixed = load_prompt_set("fixed_v1")
    prompt = fixed.questioner(NAME, TASK, [], finetuned=False)
    assert not isinstance(prompt, VllmTextPrompt)
    gen = generated(tok, "q1")
    assert decode_output(tok, prompt, [1, 733], gen) == GEN["q1"]


def test_provenance_hashes(tok, ps):
    meta = provenance("paper_v1", tok)
    assert meta["prompt_set"] == "paper_v1"
    assert all(len(meta[k]) == 64 for k in ("prompt_files_sha256", "chat_template_sha256", "tokenizer_sha256"))
    # the paper set's own template counts, not the tokenizer's
    other = build_tokenizer("{{ 'something else' }}")
    assert provenance("paper_v1", other)["chat_template_sha256"] == meta["chat_template_sha256"]
    assert provenance("fixed_v1", other)["chat_template_sha256"] != meta["chat_template_sha256"]
    assert provenance("fixed_v1", None)["tokenizer_sha256"] is None


# ------------------------------------------------------------------ through a real backend
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("torch")
    return build_tiny_model(tmp_path_factory.mktemp("tiny-mistral"))


def test_hf_backend_feeds_and_decodes_like_vllm_033(tok, ps, tiny_model):
    """The hf backend end to end: the ids it feeds are the original's (double BOS) and the text it returns is
    vLLM 0.3.3's .text of the same greedy continuation."""
    import torch
    from transformers import AutoModelForCausalLM

    from stargate.backends.base import Sampling
    from stargate.backends.hf import HFBackend
    from stargate.backends.options import HFOptions

    prompt = ps.questioner(NAME, TASK, [], finetuned=False)
    expected_ids = vllm033_ids(tok, orig_conversation(NAME, TASK, []))
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        out = model.generate(torch.tensor([expected_ids]), max_new_tokens=6, do_sample=False, pad_token_id=2)
    new = out[0, len(expected_ids) :].tolist()
    if 2 in new:
        new = new[: new.index(2)]
    with HFBackend(str(tiny_model), HFOptions(device="cpu", batch_size=2)) as backend:
        assert prompt_ids(backend.tokenizer, prompt) == expected_ids
        got = backend.generate([prompt], Sampling(n=1, temperature=0.0, max_tokens=6))
        assert got == [[vllm033_text(tok, new)]]

        # a scripted continuation (a random model rarely starts with a "▁" piece): the space must survive
        seen = {}

        def scripted(rows, n, sampling, row_seeds):  # the decode loop's ids, stop token cut
            seen["ids"] = list(rows[0])
            return [generated(tok, "q1")[:-1]]

        backend._decode = scripted
        got = backend.generate([prompt], Sampling(n=1, temperature=0.0, max_tokens=64))
    assert seen["ids"] == expected_ids
    assert got == [[vllm033_text(tok, generated(tok, "q1"))]] and got[0][0].startswith(" What")


def test_vllm_backend_feeds_and_decodes_like_vllm_033(tok, ps):
    """The vllm backend (engine scripted): token ids submitted, and vLLM 0.3.3's text for what comes back."""
    from types import SimpleNamespace

    from stargate.backends.base import Backend, Sampling
    from stargate.backends.vllm_backend import VLLMBackend

    submitted = []

    def fake_generate(requests, params, use_tqdm=False):
        submitted.extend(requests)
        done = SimpleNamespace(index=0, token_ids=generated(tok, "a1"), finish_reason="stop")
        return [SimpleNamespace(outputs=[done]) for _ in requests]

    backend = VLLMBackend.__new__(VLLMBackend)
    Backend.__init__(backend)
    backend.tokenizer, backend.max_model_len, backend._special_ids = tok, 32768, set(tok.all_special_ids)
    backend._SamplingParams, backend._TokensPrompt = (lambda **kw: kw), (lambda prompt_token_ids: prompt_token_ids)
    backend.llm = SimpleNamespace(generate=fake_generate)
    turns = [{"role": "questioner", "text": " What kind of kitchen do you have?"}]
    prompt = ps.roleplayer(PERSONA, TASK, NAME, turns)
    got = backend.generate([prompt], Sampling(n=1, temperature=0.0, max_tokens=64))
    assert submitted == [
        vllm033_ids(tok, orig_roleplayer(PERSONA, TASK, orig_conversation(NAME, TASK, [turns[0]["text"]])))
    ]
    assert got == [[vllm033_text(tok, generated(tok, "a1"))]] and got[0][0].startswith(" I have")


def test_generation_sidecar_records_the_hashes(tok, monkeypatch):
    """Every generation stage's .meta.json comes from the generation skeleton: it carries the provenance hashes."""
    import json
    from types import SimpleNamespace

    from stargate.backends import load_backend
    from stargate.stages import generation

    backend = load_backend({"backend": "scripted"}, "m0")
    backend.tokenizer = tok  # as a local backend has
    monkeypatch.setattr(generation, "load_backend", lambda *a, **k: backend)
    args = SimpleNamespace(role=json.dumps({"backend": "scripted"}), model="m0", gpus=0)
    meta = generation.generate(args, "oracle", ["a prompt"], [("pair",)], prompt_set="paper_v1").meta
    assert {k: meta[k] for k in provenance("paper_v1", tok)} == provenance("paper_v1", tok)
    assert meta["tokenizer_sha256"] is not None

"""paper_v1 against the original code, token id for token id, through the production tokenizer.

The project side is what a real run feeds the model: the tokenizer comes from
`stargate.tokenization.load_tokenizer` (the one function the hf and vllm backends and SFT training call)
out of a *prepared* model folder (`stargate prepare-model` of a local folder: a tiny random Mistral with
Mistral's tokenizer files, whose tokenizer_config.json says `legacy: true`, `legacy: false` or nothing,
the three things a Hub snapshot may hold); the ids are those of `spans.prompt_ids`,
`spans.render_for_scoring`, the SFT encoding sft.py runs (`training_tokenizer` + `encode_records`), and the
text is `vllm033.decode_output`'s.

The original side is written out from the spec (../shared spec §3-§5, prompts file §4-§10) and shares no
code with the project: the original's hand-built strings, its history extraction and turn parsing, the
March-2024 Mistral template as string concatenation, vLLM 0.3.3's `encode(text)` (BOS added) and `.text`,
the scorer's prompt-length span and `_tokenize_fn`'s prefix-length mask, all tokenized by
`tests/mistral_reference.py`: SentencePiece's algorithm run in plain Python on mistral-common's
SentencePiece model. Only the instruction texts are read from the prompt set's .txt files (their byte
identity with the original is checked in test_prompts.py).

Cases: the pilot pair of tests/fixtures/paper_pilot_pair.json through a 2-turn conversation; the same
with questions that begin with "(", "*", ".", ":" (SentencePiece merges "]" with them: "](", "]*", "].",
"]:"), as a model emits them (no leading space); and a persona and a name with surrounding whitespace.
Call kinds: Questioner turns 1 and 2, Roleplayer turns 1 and 2 (prompt ids and the stored text), the
Oracle's messages, the scorer under all five conditions (ids and span, also for a gold that merges with
"]" and a blank gold), the regularizer prompt, the SFT example (ids and labels, whole and truncated), the
win-rate answer prompt, the judge's messages.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from mistral_reference import reference, sentencepiece_model_path

import stargate.prompts as prompts_pkg
from stargate.encoding.spans import prompt_ids, render_for_scoring
from stargate.encoding.vllm033 import VllmTextPrompt, decode_output
from stargate.errors import StargateError
from stargate.prompts import load_prompt_set, provenance, tokenizer_sha256
from stargate.tokenization import load_tokenizer, vocabulary_sha256
from stargate.training.masking import IGNORE_INDEX

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "paper_pilot_pair.json").read_text(encoding="utf-8"))
TEXTS = Path(prompts_pkg.__file__).parent / "paper_v1"
TASK, GOLD = FIXTURE["task"], FIXTURE["gold"]
LEGACY = {"legacy-true": True, "legacy-false": False, "legacy-absent": None}
# a later chat template in the folder (the v0.2 repo's was rewritten after the paper): never used by paper_v1
HUB_TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ '[INST]' + m['content'] + '[/INST]' }}{% endfor %}"

EDGE = {  # questions as a model emits them, first token without its "▁": "\n(Quick" in the conversation
    "q1": "(Quick one) What kind of kitchen do you have?",
    "q2": "*Which* part bothers you most: the stovetop or the floor?",
}
EDGE2 = {
    "q1": ".NET or Java: which one do you cook with? Just kidding, how much time do you have?",
    "q2": ": which part bothers you most?",
}
CASES = {
    "pilot": {"name": FIXTURE["name"], "persona": FIXTURE["persona"], "space": {}},
    "merge-paren-star": {"name": FIXTURE["name"], "persona": FIXTURE["persona"], "space": EDGE},
    "merge-dot-colon": {"name": FIXTURE["name"], "persona": FIXTURE["persona"], "space": EDGE2},
    "whitespace": {"name": FIXTURE["name"] + " ", "persona": "\n  " + FIXTURE["persona"] + " \n", "space": {}},
}


def text(key: str) -> str:
    return (TEXTS / f"{key}.txt").read_text(encoding="utf-8")


R = None  # the reference, set by the fixture below (pytest.skip without mistral-common)


@pytest.fixture(scope="module", autouse=True)
def ref():
    global R
    R = reference()
    return R


@pytest.fixture(scope="module")
def ps():
    return load_prompt_set("paper_v1")


# ------------------------------------------------------------------ prepared model folders
def write_source_folder(folder: Path, legacy: bool | None, weights: Path) -> Path:
    """A Hub-like Mistral folder: weights and config.json (model_type mistral), tokenizer.model, and the
    tokenizer.json + tokenizer_config.json that today's transformers writes for Mistral's LlamaTokenizer
    with that `legacy` setting (Metaspace pre-tokenizer, no legacy normalizer), with a later chat template."""
    from transformers import AutoTokenizer

    from stargate.tokenization import build_pinned

    folder.mkdir(parents=True)
    for f in weights.iterdir():
        shutil.copy(f, folder / f.name)
    shutil.copy(sentencepiece_model_path(), folder / "tokenizer.model")
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "chat_template": HUB_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1000000000000000019884624838656,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "use_default_system_prompt": False,
    }
    if legacy is not None:
        config["legacy"] = legacy
    staging = folder.parent / f".{folder.name}.tokenizer"  # no config.json: the LlamaTokenizer class decides
    staging.mkdir()
    shutil.copy(sentencepiece_model_path(), staging / "tokenizer.model")
    (staging / "tokenizer.json").write_text(build_pinned("mistral_v1_legacy").backend_tokenizer.to_str())
    (staging / "tokenizer_config.json").write_text(json.dumps(config))
    AutoTokenizer.from_pretrained(staging).save_pretrained(folder)
    shutil.rmtree(staging)
    saved = json.loads((folder / "tokenizer_config.json").read_text())
    saved.pop("legacy", None)
    saved.update({k: v for k, v in config.items() if k in ("legacy", "tokenizer_class", "chat_template")})
    (folder / "tokenizer_config.json").write_text(json.dumps(saved, indent=2))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, Path]:
    """The three prepared folders (stargate prepare-model with a local `path` source), by legacy setting."""
    pytest.importorskip("torch")
    import argparse

    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from stargate.stages import prepare_model

    root = tmp_path_factory.mktemp("paper-mistral")
    torch.manual_seed(0)
    cfg = MistralConfig(
        vocab_size=32000, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=1,
        eos_token_id=2, sliding_window=None,
    )  # fmt: skip
    MistralForCausalLM(cfg).save_pretrained(root / "weights")
    out = {}
    for name, legacy in LEGACY.items():
        src = write_source_folder(root / "hub" / name, legacy, root / "weights")
        dst = root / "resources" / "models" / name
        prepare_model.run(argparse.Namespace(source=json.dumps({"path": str(src)}), output=str(dst)))
        out[name] = dst
    return out


@pytest.fixture(scope="module", params=list(LEGACY))
def folder(request, prepared) -> Path:
    return prepared[request.param]


@pytest.fixture(scope="module")
def tok(folder):
    """What every stage of a paper_v1 run tokenizes with."""
    return load_tokenizer(folder, "paper_v1")


# ------------------------------------------------------------------ the original, written out from the spec
def vllm033_ids(prompt_text: str) -> list[int]:
    """vLLM 0.3.3 `LLM.generate(prompts=[text])`: tokenizer.encode(text), BOS added."""
    return R.encode(prompt_text, add_special_tokens=True)


def generated(case: dict, key: str) -> list[int]:
    """Ids a model generated for this text, + EOS: with the SentencePiece space in front (the fixture's
    texts), or without it for the edge cases ("(Quick ..." emitted as "(" "Quick" ...)."""
    if key in case["space"]:
        return R.encode_segment(case["space"][key], dummy_prefix=False) + [2]
    return R.encode_segment(FIXTURE["generated"][key]) + [2]


def orig_conversation(name: str, task: str, texts: list[str]) -> str:
    """Spec §3.1: "<s>[INST]{QA_PROMPTS[13]}[/INST]", then "\\n" + q + "</s>" and "\\n[INST] " + a + " [/INST]"."""
    conv = "<s>[INST]" + text("questioner").format(name=name, task=task) + "[/INST]"
    for k, t in enumerate(texts):
        conv += ("\n" + t + "</s>") if k % 2 == 0 else ("\n[INST] " + t + " [/INST]")
    return conv


def orig_extract_history(conv: str) -> str:
    """Prompts file §5.3, steps 1-5."""
    h = conv[conv.find("[/INST]") :].strip()
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


def orig_chat_prompt_ids(messages: list[dict]) -> list[int]:
    """decode(apply_chat_template(messages)) sent to vLLM 0.3.3 as text (prompts file §7 steps 5-7)."""
    return vllm033_ids(R.decode(R.encode(mistral_march_2024(messages))))


def orig_score_ids(prompt: str, gold: str) -> tuple[list[int], int, int]:
    """Spec §4: answer = prompt + gold, both tokenized without special tokens; summed positions are those past
    the prompt's length (the pad mask), so the span is [len(prompt_ids), len(answer_ids))."""
    p, a = R.encode(prompt), R.encode(prompt + gold)
    return a, len(p), len(a)


def orig_sft(messages: list[dict], max_length: int = 1024) -> tuple[list[int], list[int]]:
    """Spec §5 `_tokenize_fn`: prefix renderings (truncated at max_length) give the user-turn ranges to mask."""

    def enc(msgs):
        return R.encode(mistral_march_2024(msgs))[:max_length]

    ids = enc(messages)
    labels = list(ids)
    prefixes = [enc(messages[:i]) for i in range(1, len(messages) + 1)]
    for i in range(1, len(prefixes), 2):  # the loop of _tokenize_fn, literally
        lo = 0 if i == 1 else len(prefixes[i - 2])
        labels[lo : len(prefixes[i - 1])] = [IGNORE_INDEX] * len(labels[lo : len(prefixes[i - 1])])
    return ids, labels


def orig_oracle(persona: str, task: str) -> list[dict]:
    """build-gold-responses/generate.py: SYS_PROMPTS[0], GENERATION_PROMPTS[2].format(persona, task.strip())."""
    user = text("oracle_user").format(persona=persona, task=task.strip())
    return [{"role": "system", "content": text("oracle_system")}, {"role": "user", "content": user}]


def orig_judge(persona: str, task: str, a: str, b: str) -> list[dict]:
    """Prompts file §10: full persona as stored, stripped task, the two answers as stored."""
    user = text("judge_user").format(persona=persona, task=task.strip(), response_A=a, response_B=b)
    return [{"role": "system", "content": text("judge_system")}, {"role": "user", "content": user}]


# ------------------------------------------------------------------ one conversation, both ways
def simulate(tok, ps, case: dict) -> dict:
    """The pair's 2-turn conversation through the project's paper path (prompt ids and decoded outputs),
    next to the original's."""
    name, persona = case["name"], case["persona"]
    out: dict = {"project": {}, "original": {}}
    proj, orig = out["project"], out["original"]
    turns: list[dict] = []
    orig_texts: list[str] = []
    for step, key in enumerate(("q1", "a1", "q2", "a2")):
        if key.startswith("q"):
            prompt = ps.questioner(name, TASK, turns, finetuned=step > 0)
            orig_prompt = orig_conversation(name, TASK, orig_texts)
            role = "questioner"
        else:
            prompt = ps.roleplayer(persona, TASK, name, turns)
            orig_prompt = orig_roleplayer(persona, TASK, orig_conversation(name, TASK, orig_texts))
            role = "roleplayer"
        ids = prompt_ids(tok, prompt)
        new = generated(case, key)
        proj[key] = {"prompt_ids": ids, "text": decode_output(tok, prompt, ids, new)}
        orig[key] = {"prompt_ids": vllm033_ids(orig_prompt), "text": R.vllm_text(new)}
        turns.append({"role": role, "text": proj[key]["text"]})
        orig_texts.append(orig[key]["text"])
    out["turns"], out["orig_conv"] = turns, orig_conversation(name, TASK, orig_texts)
    return out


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    return {"id": request.param, **CASES[request.param]}


@pytest.fixture(scope="module")
def run(tok, ps, case):
    return simulate(tok, ps, case)


@pytest.mark.parametrize("key", ["q1", "a1", "q2", "a2"])
def test_simulation_prompts_are_the_originals_ids(run, key):
    """Questioner (turns 1, 2, with the instruction also for m_t) and Roleplayer (Mixtral) prompts: double BOS."""
    assert run["project"][key]["prompt_ids"] == run["original"][key]["prompt_ids"]
    assert run["project"][key]["prompt_ids"][:3] == [1, 1, 733]  # <s><s>▁[ : vLLM's BOS + the string's <s>


@pytest.mark.parametrize("key", ["q1", "a1", "q2", "a2"])
def test_outputs_are_vllm_033_text(run, case, key):
    """The original stored vLLM's .text, which starts with the first token's space (when it has one)."""
    got = run["project"][key]["text"]
    assert got == run["original"][key]["text"]
    if key in case["space"]:  # emitted without a first "▁": stored without a space
        assert got == case["space"][key]
    else:
        assert got.startswith(" ") and not got.startswith("  ")


def test_edge_questions_merge_with_inst_in_the_original(run, case):
    """The edge cases do what they are for: in the original's SFT rendering "]" merges with the question."""
    turns = orig_create_turns(run["orig_conv"])
    ids = R.encode(mistral_march_2024(orig_answer_messages("", case["name"].strip(), TASK, turns)))
    merged = [t for t in R.tokens(ids) if t.startswith("]") and len(t) > 1]
    assert len(merged) == (2 if case["space"] else 0), merged


CONDITIONS = ["qa-experimental", "pos-control-1", "pos-control-2", "neg-control", "shuffled"]


def orig_scoring_prompt(condition: str, name: str, persona: str, conv_full: str) -> str:
    """likelihood-*.py (prompts file §6): name and task stripped, persona stripped in pos-control-1/2."""
    conv = conv_full[conv_full.find("[/INST]") + 7 : conv_full.rfind("[/INST]")].strip()
    name, task, persona = name.strip(), TASK.strip(), persona.strip()
    intro = {
        "qa-experimental": f"My name is {name}.\n\n{task}[/INST]{conv}\n\n{task}[/INST]",
        "shuffled": f"My name is {name}.\n\n{task}[/INST]{conv}\n\n{task}[/INST]",
        "pos-control-1": f"My name is {name}. Here is some information about me:\n\n{persona}\n\n{task}[/INST]{conv}"
        f"\n\n{task}[/INST]",
        "pos-control-2": f"My name is {name}. Here is some information about me:\n\n{persona}\n\n{task}[/INST]",
        "neg-control": f"My name is {name}.\n\n{task}[/INST]",
    }[condition]
    return "<s>[INST]" + intro


@pytest.mark.parametrize("condition", CONDITIONS)
def test_scoring_ids_and_span_are_the_originals(tok, ps, run, case, condition):
    """Spec §4 / prompts file §6: one BOS (the scorer passed ids), gold span by prompt length; also a gold
    whose first token merges with "]" (the original's span leaves it out) and a blank gold (no token)."""
    turns, conv_full = run["turns"], run["orig_conv"]
    if condition == "shuffled":  # another persona's conversation for the same task, scored under this name
        other = [R.vllm_text(generated(case, "other_q1")), R.vllm_text(generated(case, "other_a1"))]
        turns = [{"role": "questioner", "text": other[0]}, {"role": "roleplayer", "text": other[1]}]
        conv_full = orig_conversation(FIXTURE["other_persona_name"], TASK, other)
    ctx = ps.scoring_context(condition, case["name"], case["persona"], TASK, turns)
    assert not isinstance(ctx, VllmTextPrompt)
    prompt = orig_scoring_prompt(condition, case["name"], case["persona"], conv_full)
    for gold in (GOLD.strip(), "(Quick plan) start with the counters.", ""):
        expected = orig_score_ids(prompt, gold)
        assert render_for_scoring(tok, ctx, gold) == expected, gold[:20]
        assert expected[0][:2] == [1, 733]  # a single BOS
    merged = orig_score_ids(prompt, "(Quick plan) start with the counters.")
    assert R.tokens(merged[0][merged[1] - 1 : merged[1]]) == ["]("]  # the merged token, outside the span


def test_pos_controls_strip_the_persona(ps, case):
    """likelihood-pos-control-{1,2}.py put `persona.strip()` in the context (the Roleplayer, Oracle and judge
    got it verbatim): a persona with surrounding whitespace is stripped there only."""
    for condition in ("pos-control-1", "pos-control-2"):
        ctx = ps.scoring_context(condition, case["name"], case["persona"], TASK, [{"role": "roleplayer", "text": "a"}])
        assert f"about me:\n\n{case['persona'].strip()}\n\n{TASK}[/INST]" in ctx
    fixed = load_prompt_set("fixed_v1").scoring_context("pos-control-2", "N", " P ", "T", [])
    assert fixed[0]["content"] == "My name is N. Here is some information about me:\n\n P \n\nT"  # fixed_v1 as it was


def test_regularizer_prompt_is_the_originals_round_trip(tok, ps, run, case):
    """Prompts file §7: rendered with the March-2024 template, decoded, re-sent as text (double BOS)."""
    turns = orig_create_turns(run["orig_conv"])
    msgs = orig_answer_messages(text("regularizer") + "\n\n", case["name"].strip(), TASK.strip(), turns)
    expected = orig_chat_prompt_ids(msgs)
    assert prompt_ids(tok, ps.regularizer(case["name"], TASK, run["turns"])) == expected
    assert expected[:3] == [1, 1, 28705]  # the round trip's "<s> [INST]": a "▁" token after the template's BOS
    assert R.encode(mistral_march_2024(msgs), add_special_tokens=True) != expected  # the round trip matters


def test_winrate_answer_prompt_is_the_originals(tok, ps, run, case):
    """Prompts file §9: the same shape without instruction; name and task not stripped."""
    turns = orig_create_turns(run["orig_conv"])
    expected = orig_chat_prompt_ids(orig_answer_messages("", case["name"], TASK, turns))
    assert prompt_ids(tok, ps.winrate_answer(case["name"], TASK, run["turns"])) == expected


@pytest.mark.parametrize("max_length", [1024, 60])
def test_sft_example_is_the_originals(folder, tok, ps, run, case, tmp_path, max_length):
    """Spec §3.6 + §5: message list from the parsed conversation plus m_t's stored answer (as vLLM gave it),
    rendered with the March-2024 template; `_tokenize_fn`'s labels (every assistant turn with its </s>, a
    token merging "]" with a question's first character left out); right truncation. Encoded as sft.py
    does: training_tokenizer of the prepared folder, encode_records."""
    from stargate.records import write_jsonl
    from stargate.training.data import encode_records
    from stargate.training.provenance import training_tokenizer

    final_ids = generated(case, "final")
    turns = orig_create_turns(run["orig_conv"])
    msgs = orig_answer_messages("", case["name"].strip(), TASK.strip(), turns)
    msgs += [{"role": "assistant", "content": R.vllm_text(final_ids)}]
    expected_ids, expected_labels = orig_sft(msgs, max_length)

    reg_prompt = ps.regularizer(case["name"], TASK, run["turns"])
    final_text = decode_output(tok, reg_prompt, prompt_ids(tok, reg_prompt), final_ids)
    data = tmp_path / "A.jsonl"
    record = {"pair": "t|p", "messages": ps.sft_messages(case["name"], TASK, run["turns"], final_text)}
    write_jsonl(data, [record], {"prompt_set": "paper_v1"})
    train_tok, prov, rule = training_tokenizer(folder, data)
    enc = encode_records(train_tok, [record], max_length, labels=rule).examples[0]
    assert enc.input_ids == expected_ids
    assert enc.labels == expected_labels
    assert rule == "prefix_length" and prov["tokenizer_sha256"] == tokenizer_sha256(tok)


def test_sft_mask_leaves_out_the_merged_token_only_under_paper_v1(tok, ps, run, case):
    """Issue item 2: the character-offset rule (fixed_v1's) labels the "](" token, the original did not."""
    from stargate.training.masking import encode_chat

    final = R.vllm_text(generated(case, "final"))
    msgs = ps.sft_messages(case["name"], TASK, run["turns"], final)
    paper = encode_chat(tok, msgs, 1024, labels="prefix_length")
    offsets = encode_chat(tok, msgs, 1024)
    assert paper.input_ids == offsets.input_ids
    differ = [i for i, (a, b) in enumerate(zip(paper.labels, offsets.labels, strict=True)) if a != b]
    merged = [R.pieces[offsets.input_ids[i]] for i in differ]
    assert len(merged) == (2 if case["space"] else 0) and all(t.startswith("]") and len(t) > 1 for t in merged)
    assert [t[1] for t in merged] == [case["space"][k][0] for k in ("q1", "q2") if k in case["space"]]
    assert all(paper.labels[i] == IGNORE_INDEX and offsets.labels[i] != IGNORE_INDEX for i in differ)


def test_oracle_and_judge_messages_are_the_originals(ps, case):
    """Spec §2.4 / prompts file §10: persona verbatim (surrounding whitespace kept), task stripped, the
    answers as stored (with vLLM's space)."""
    assert ps.oracle(case["persona"], TASK + " ") == orig_oracle(case["persona"], TASK)
    a, b = " Response one.", " Response two."
    assert ps.judge(case["persona"], TASK, a, b) == orig_judge(case["persona"], TASK, a, b)


# ------------------------------------------------------------------ the production function itself
def test_every_loader_gives_the_pinned_tokenizer(folder, tok, ps, tmp_path):
    """hf backend, vllm backend (engine faked), SFT training and the role worker's handle: the same tokenizer
    (serialization hash), with the set's chat template, whatever the folder's legacy flag and template."""
    import sys
    from types import ModuleType, SimpleNamespace

    from stargate.backends import load_backend
    from stargate.records import write_jsonl
    from stargate.training.provenance import training_tokenizer

    want = tokenizer_sha256(tok)
    assert tok.chat_template == ps.chat_template != HUB_TEMPLATE
    with load_backend({"backend": "hf", "options": {"device": "cpu"}}, str(folder), prompt_set="paper_v1") as hf:
        assert tokenizer_sha256(hf.tokenizer) == want and hf.tokenizer.chat_template == ps.chat_template

    fake = ModuleType("vllm")
    fake.__version__ = "fake"
    fake.SamplingParams, fake.TokensPrompt = (lambda **kw: kw), (lambda prompt_token_ids: prompt_token_ids)
    fake.LLM = lambda **kw: SimpleNamespace(model_config=SimpleNamespace(max_model_len=4096, dtype="bf16"))
    saved = sys.modules.get("vllm")
    sys.modules["vllm"] = fake
    try:
        vl = load_backend({"backend": "vllm", "options": {}}, str(folder), prompt_set="paper_v1")
    finally:
        if saved is None:
            sys.modules.pop("vllm")
        else:
            sys.modules["vllm"] = saved
    assert tokenizer_sha256(vl.tokenizer) == want

    data = tmp_path / "A.jsonl"
    write_jsonl(data, [], {"prompt_set": "paper_v1"})
    assert tokenizer_sha256(training_tokenizer(folder, data)[0]) == want
    # fixed_v1 (and a data file without a set) keeps the folder's own tokenizer, as before
    write_jsonl(data, [], {"prompt_set": "fixed_v1"})
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(folder)
    assert tokenizer_sha256(training_tokenizer(folder, data)[0]) == tokenizer_sha256(own) != want
    assert tokenizer_sha256(load_tokenizer(folder, "fixed_v1")) == tokenizer_sha256(own)


def test_the_folders_own_tokenizer_would_differ(folder, ps):
    """What the code loaded before the pin (AutoTokenizer of the folder, transformers >= 5) gives other ids on
    paper inputs, differently per legacy flag: without the production function these tests fail."""
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(folder)
    own.chat_template = ps.chat_template
    case = {**CASES["pilot"], "id": "pilot"}
    original = simulate(load_tokenizer(folder, "paper_v1"), ps, case)
    theirs = simulate(own, ps, case)
    wrong = [
        k
        for k in ("q1", "a1", "q2", "a2")
        if theirs["project"][k]["prompt_ids"] != original["original"][k]["prompt_ids"]
    ]
    reg = prompt_ids(own, ps.regularizer(case["name"], TASK, original["turns"]))
    turns = orig_create_turns(original["orig_conv"])
    expected = orig_chat_prompt_ids(orig_answer_messages(text("regularizer") + "\n\n", case["name"], TASK, turns))
    assert wrong or reg != expected
    assert reg != expected  # every legacy setting loses the round trip's "▁" after <s> (issue 21)


def test_a_folder_with_another_tokenizer_is_an_error_naming_both_hashes(tiny_model_dir, tok):
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(StargateError) as err:
        load_tokenizer(tiny_model_dir, "paper_v1")
    msg = str(err.value)
    assert vocabulary_sha256(own) in msg and vocabulary_sha256(tok) in msg and "tokenizer: model" in msg
    # a model of another family on purpose (the Gemma roleplayer ablation): the backend option `tokenizer: model`
    assert tokenizer_sha256(load_tokenizer(tiny_model_dir, "paper_v1", "model")) == tokenizer_sha256(own)
    with pytest.raises(StargateError, match="vocabulary sha256"):
        load_backend_hf(tiny_model_dir, {})
    assert load_backend_hf(tiny_model_dir, {"tokenizer": "model"}).tokenizer.get_vocab() == own.get_vocab()


def load_backend_hf(folder, options):
    from stargate.backends import load_backend

    return load_backend({"backend": "hf", "options": {"device": "cpu", **options}}, str(folder), prompt_set="paper_v1")


def test_pinned_tokenizer_is_the_sentencepiece_model(tok):
    """The pin against the reference beyond the cases: whitespace runs, specials next to text, bytes."""
    samples = ["x" + " " * n + "y" for n in range(1, 40)] + [
        "<s><s> [INST]",
        "a</s> [INST] b",
        "\n\n",
        "🙂 — 梦 naïve",
    ]
    samples += ["<s>[INST]  (x) [/INST](a  b   c", "", "   ", FIXTURE["persona"], GOLD]
    for s in samples:
        assert tok(s, add_special_tokens=False)["input_ids"] == R.encode(s), repr(s)
        assert tok.encode(s) == R.encode(s, add_special_tokens=True)
        ids = R.encode(s)
        assert tok.decode(ids) == R.decode(ids)


# ------------------------------------------------------------------ through a real backend
def test_hf_backend_feeds_and_decodes_like_vllm_033(ps, folder):
    """The hf backend end to end on the prepared folder: the ids it feeds are the original's (double BOS) and
    the text it returns is vLLM 0.3.3's .text of the same greedy continuation."""
    import torch
    from transformers import AutoModelForCausalLM

    from stargate.backends.base import Sampling

    name = FIXTURE["name"]
    prompt = ps.questioner(name, TASK, [], finetuned=False)
    expected_ids = vllm033_ids(orig_conversation(name, TASK, []))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        out = model.generate(torch.tensor([expected_ids]), max_new_tokens=6, do_sample=False, pad_token_id=2)
    new = out[0, len(expected_ids) :].tolist()
    if 2 in new:
        new = new[: new.index(2)]
    with load_backend_hf(folder, {"batch_size": 2}) as backend:
        assert prompt_ids(backend.tokenizer, prompt) == expected_ids
        got = backend.generate([prompt], Sampling(n=1, temperature=0.0, max_tokens=6))
        assert got == [[R.vllm_text(new)]]

        # a scripted continuation (a random model rarely starts with a "▁" piece): the space must survive
        seen = {}
        q1 = generated(CASES["pilot"], "q1")

        def scripted(rows, n, sampling, row_seeds):  # the decode loop's ids, stop token cut
            seen["ids"] = list(rows[0])
            return [q1[:-1]]

        backend._decode = scripted
        got = backend.generate([prompt], Sampling(n=1, temperature=0.0, max_tokens=64))
    assert seen["ids"] == expected_ids
    assert got == [[R.vllm_text(q1)]] and got[0][0].startswith(" What")


def test_vllm_backend_feeds_and_decodes_like_vllm_033(tok, ps):
    """The vllm backend (engine scripted): token ids submitted, and vLLM 0.3.3's text for what comes back."""
    from types import SimpleNamespace

    from stargate.backends.base import Backend, Sampling
    from stargate.backends.vllm_backend import VLLMBackend

    submitted = []
    a1 = generated(CASES["pilot"], "a1")

    def fake_generate(requests, params, use_tqdm=False):
        submitted.extend(requests)
        done = SimpleNamespace(index=0, token_ids=a1, finish_reason="stop")
        return [SimpleNamespace(outputs=[done]) for _ in requests]

    backend = VLLMBackend.__new__(VLLMBackend)
    Backend.__init__(backend)
    backend.tokenizer, backend.max_model_len, backend._special_ids = tok, 32768, set(tok.all_special_ids)
    backend._SamplingParams, backend._TokensPrompt = (lambda **kw: kw), (lambda prompt_token_ids: prompt_token_ids)
    backend.llm = SimpleNamespace(generate=fake_generate)
    name, persona = FIXTURE["name"], FIXTURE["persona"]
    turns = [{"role": "questioner", "text": " What kind of kitchen do you have?"}]
    got = backend.generate([ps.roleplayer(persona, TASK, name, turns)], Sampling(n=1, temperature=0.0, max_tokens=64))
    assert submitted == [
        vllm033_ids(orig_roleplayer(persona, TASK, orig_conversation(name, TASK, [turns[0]["text"]])))
    ]
    assert got == [[R.vllm_text(a1)]] and got[0][0].startswith(" I have")


def test_fixed_set_decodes_and_encodes_plainly(tok):
    """fixed_v1 is the corrected path: chat prompts with one BOS from the template, outputs without the space."""
    fixed = load_prompt_set("fixed_v1")
    prompt = fixed.questioner(FIXTURE["name"], TASK, [], finetuned=False)
    assert not isinstance(prompt, VllmTextPrompt)
    assert decode_output(tok, prompt, [1, 733], generated(CASES["pilot"], "q1")) == FIXTURE["generated"]["q1"]


def test_provenance_hashes(tok):
    meta = provenance("paper_v1", tok)
    assert meta["prompt_set"] == "paper_v1"
    assert all(len(meta[k]) == 64 for k in ("prompt_files_sha256", "chat_template_sha256", "tokenizer_sha256"))
    # the paper set's own template counts, not the tokenizer's
    from stargate.tokenization import build_pinned

    other = build_pinned("mistral_v1_legacy")
    other.chat_template = "{{ 'something else' }}"
    assert provenance("paper_v1", other)["chat_template_sha256"] == meta["chat_template_sha256"]
    assert provenance("fixed_v1", other)["chat_template_sha256"] != meta["chat_template_sha256"]
    assert provenance("fixed_v1", None)["tokenizer_sha256"] is None


def test_generation_sidecar_records_the_hashes(tok, monkeypatch):
    """Every generation stage's .meta.json comes from the generation skeleton: it carries the provenance hashes."""
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

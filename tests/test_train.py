"""Training stage (issue 4, issue 2 item 7): loss mask, truncation, split, collator, a 2-step CPU run with its
model card and W&B offline history, and training from m0 at every iteration."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import struct
from pathlib import Path

import pytest
import torch

from stargate.errors import InputError, StargateError
from stargate.training import launch, tracking
from stargate.training.attention import choose_attn_implementation
from stargate.training.collator import SFTCollator
from stargate.training.data import encode_records, load_sft_records, split_by_pair
from stargate.training.masking import IGNORE_INDEX, check_messages, encode_chat
from stargate.training.spec import TrainingSpec

SMOLLM2_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def base_dir(tiny_model_dir) -> Path:
    """m0: the shared tiny random Llama of tests/conftest.py."""
    return Path(tiny_model_dir)


@pytest.fixture(scope="session")
def tok(base_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_dir)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Training sets WANDB_* and distributed variables in os.environ: restore them afterwards, and make sure
    no W&B login on this machine is picked up (the run must be offline)."""
    saved = dict(os.environ)
    for k in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    os.environ.clear()
    os.environ.update(saved)


def chat(name: str, task: str, qa: list[tuple[str, str]], final: str) -> list[dict]:
    """Spec §3.6 shape: user 'My name is X.\\n\\n<task>', then q/a turns, the task repeated after the last answer."""
    msgs = [{"role": "user", "content": f"My name is {name}.\n\n{task}"}]
    for k, (q, a) in enumerate(qa):
        msgs.append({"role": "assistant", "content": q})
        msgs.append({"role": "user", "content": a + (f"\n\n{task}" if k == len(qa) - 1 else "")})
    msgs.append({"role": "assistant", "content": final})
    return msgs


def write_sft(path: Path, n: int, seed: int = 0, long_every: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            final = "Here is a plan for you. " * (
                rng.randint(2, 8) + (60 if long_every and i % long_every == 0 else 0)
            )
            msgs = chat(
                f"P{i}",
                f"Task {i}: plan a weekend trip.",
                [("Where would you like to go? " * rng.randint(1, 3), "Somewhere by the sea.")],
                final,
            )
            fh.write(json.dumps({"pair": f"A-t{i:04d}|A-p01", "messages": msgs}) + "\n")
    return path


def spec_for_test(**over) -> TrainingSpec:
    base = dict(
        max_length=256,
        learning_rate=1e-3,
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        validation_fraction=0.2,
        logging_steps=1,
        warmup_ratio=0.0,
        max_steps=2,
    )
    base.update(over)
    return TrainingSpec.from_dict(base)


def run_args(base, data, out, spec: TrainingSpec, iteration=1, wandb_dir=None) -> argparse.Namespace:
    return argparse.Namespace(
        base_model=str(base),
        data=str(data),
        output=str(out),
        spec=json.dumps(spec.to_dict()),
        iteration=iteration,
        run_name="test",
        gpus=0,
        wandb_dir=str(wandb_dir) if wandb_dir else None,
    )


def state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def read_wandb_history(run_file: Path) -> list[dict]:
    """Decode the history records of an offline `run-*.wandb` file (LevelDB-log framing of protobuf Records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, payloads, buf = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            payloads.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            payloads.append(buf + chunk)
    history = []
    for p in payloads:
        rec = pb.Record()
        rec.ParseFromString(p)
        if rec.WhichOneof("record_type") == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
    return history


# ----------------------------------------------------------------------------- loss mask
def hand_built(tok, segments: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    ids, labels = [], []
    for text, trained in segments:
        seg = tok(text, add_special_tokens=False)["input_ids"]
        ids += seg
        labels += seg if trained else [IGNORE_INDEX] * len(seg)
    return ids, labels


def test_loss_mask_is_exactly_the_assistant_turns_chatml(tok):
    msgs = chat("Zara", "Plan a trip.", [("Where to?", "Rome.")], "Day 1: the Forum.")
    expected_ids, expected_labels = hand_built(tok, [
        (SMOLLM2_SYSTEM + "<|im_start|>user\nMy name is Zara.\n\nPlan a trip.<|im_end|>\n<|im_start|>assistant\n", False),
        ("Where to?<|im_end|>", True),
        ("\n<|im_start|>user\nRome.\n\nPlan a trip.<|im_end|>\n<|im_start|>assistant\n", False),
        ("Day 1: the Forum.<|im_end|>", True),
        ("\n", False),
    ])  # fmt: skip
    enc = encode_chat(tok, msgs, max_length=1024)
    assert enc.input_ids == expected_ids
    assert enc.labels == expected_labels
    assert not enc.truncated
    # every assistant turn ends with its end-of-turn token, and that token is trained
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    trained = [t for t in enc.labels if t != IGNORE_INDEX]
    assert trained.count(im_end) == 2
    assert tok.decode(trained) == "Where to?<|im_end|>Day 1: the Forum.<|im_end|>"


def test_loss_mask_mistral_style_template_matches_paper(tok):
    """With an [INST] template (Mistral's shape: the [/INST] closes the user turn, `</s>` the assistant's), the
    mask is the paper's: user turns incl. BOS and [INST]..[/INST] masked, each answer + EOS trained."""
    mistral = tok.__class__.from_pretrained(tok.name_or_path)
    mistral.chat_template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
        "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"
    )
    bos, eos = mistral.bos_token, mistral.eos_token
    msgs = chat("Zara", "Plan a trip.", [("Where to?", "Rome.")], "Day 1: the Forum.")
    expected_ids, expected_labels = hand_built(mistral, [
        (f"{bos}[INST] My name is Zara.\n\nPlan a trip. [/INST]", False),
        (f"Where to?{eos}", True),
        ("[INST] Rome.\n\nPlan a trip. [/INST]", False),
        (f"Day 1: the Forum.{eos}", True),
    ])  # fmt: skip
    enc = encode_chat(mistral, msgs, max_length=1024)
    assert enc.input_ids == expected_ids
    assert enc.labels == expected_labels


def test_three_question_conversation_trains_every_question_and_the_answer(tok):
    msgs = chat("Ann", "Cook dinner.", [("Q1?", "A1."), ("Q2?", "A2."), ("Q3?", "A3.")], "Final.")
    enc = encode_chat(tok, msgs, max_length=1024)
    trained = tok.decode([t for t in enc.labels if t != IGNORE_INDEX])
    assert trained == "Q1?<|im_end|>Q2?<|im_end|>Q3?<|im_end|>Final.<|im_end|>"


def test_truncation_is_right_side_and_counted(tok, tmp_path):
    path = write_sft(tmp_path / "sft.jsonl", 10, long_every=3)  # examples 0, 3, 6, 9 are long
    records = load_sft_records(path)
    full = [len(encode_chat(tok, r["messages"], 10**6).input_ids) for r in records]
    max_length = 150
    assert sum(n > max_length for n in full) == 4 and max(n for n in full if n <= max_length) > 60
    split = encode_records(tok, records, max_length)
    assert split.n_truncated == 4
    assert split.stats()["n_truncated"] == 4
    for r, enc in zip(records, split.examples, strict=True):
        untruncated = encode_chat(tok, r["messages"], 10**6)
        assert enc.input_ids == untruncated.input_ids[:max_length]  # right truncation
        assert enc.labels == untruncated.labels[:max_length]
    # a max_length inside the first user turn leaves nothing to learn: dropped and counted
    tiny = encode_records(tok, records, 20)
    assert tiny.n_dropped_no_labels == 10 and tiny.n_truncated == 10 and not tiny.examples


def test_bad_records_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"pair": "p1", "messages": chat("A", "T", [], "F")}
    bad = {"pair": "p2", "messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:2: .*role 'user', expected 'assistant'"):
        load_sft_records(path)
    assert check_messages([{"role": "user", "content": "x"}]).startswith("the last message must be an assistant")
    assert check_messages([{"role": "system", "content": "s"}, *good["messages"]]) is None


def test_split_is_seeded_and_by_pair():
    records = [{"pair": f"p{i // 2}", "messages": []} for i in range(40)]  # 20 pairs, 2 records each
    tr1, ev1 = split_by_pair(records, 0.1, seed=7)
    tr2, ev2 = split_by_pair(records, 0.1, seed=7)
    assert (tr1, ev1) == (tr2, ev2) and len(ev1) == 4  # 2 pairs held out
    assert {records[i]["pair"] for i in ev1}.isdisjoint({records[i]["pair"] for i in tr1})
    assert split_by_pair(records, 0.1, seed=8)[1] != ev1
    assert split_by_pair(records[:2], 0.05, seed=1) == ([0, 1], [])  # one pair: nothing to hold out
    assert len(split_by_pair(records[:4], 0.05, seed=1)[1]) == 2  # 2 pairs, 5 %: still one held out


def test_collator_attention_mask_keeps_in_sequence_eos(tok):
    """pad == <|im_end|> for SmolLM2: the paper's `input_ids != pad` mask would hide every end of turn."""
    assert tok.pad_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    a = encode_chat(tok, chat("A", "T", [("Q?", "A.")], "F."), 1024)
    b = encode_chat(tok, chat("B", "T", [], "F."), 1024)
    batch = SFTCollator(tok.pad_token_id)(
        [{"input_ids": a.input_ids, "labels": a.labels}, {"input_ids": b.input_ids, "labels": b.labels}]
    )
    assert batch["attention_mask"][0].tolist() == [1] * len(a.input_ids)
    assert batch["attention_mask"][1].tolist() == [1] * len(b.input_ids) + [0] * (len(a.input_ids) - len(b.input_ids))
    assert batch["labels"][1, len(b.input_ids) :].eq(IGNORE_INDEX).all()
    assert (batch["input_ids"][0] == tok.pad_token_id).sum() >= 3  # real <|im_end|> tokens, all attended


# ----------------------------------------------------------------------------- spec, attention, launch, W&B
def test_spec_checks_and_effective_batch():
    spec = TrainingSpec.from_dict({"method": "sft"})
    assert (spec.learning_rate, spec.per_device_batch_size, spec.gradient_accumulation_steps) == (2e-5, 4, 16)
    assert spec.effective_batch(1) == 64 and spec.accumulation_for(4) == 4 and spec.effective_batch(4) == 64
    assert spec.accumulation_for(2) == 8 and spec.effective_batch(2) == 64
    with pytest.raises(StargateError, match="unknown key"):
        TrainingSpec.from_dict({"method": "sft", "lr": 1})
    with pytest.raises(StargateError, match=r"training\.method"):
        TrainingSpec.from_dict({"method": "ppo"})
    with pytest.raises(StargateError, match=r"training\.warmup_ratio"):
        TrainingSpec.from_dict({"warmup_ratio": 1.0})


def test_warmup_is_the_ceil_of_the_ratio_on_any_transformers(tmp_path):
    """transformers 4.x truncated warmup_steps=0.1 to no warmup; 5.x reads it as a ratio. Ours: computed."""
    from transformers import TrainingArguments

    from stargate.training.trainer_base import trainer_class, warmup_steps_for

    assert warmup_steps_for(0.1, 185) == 19  # the paper's run: 185 optimizer steps, 19 warmup (transformers 4.39)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=1.0,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        use_cpu=True,
        report_to="none",
    )
    trainer = trainer_class(0.1, "tokens")(model=torch.nn.Linear(2, 2), args=args)
    trainer.create_optimizer()
    sched = trainer.create_scheduler(185)
    lrs = []
    for _ in range(21):
        lrs.append(sched.get_last_lr()[0])
        trainer.optimizer.step()
        sched.step()
    assert trainer.warmup_steps == 19
    assert lrs[0] == 0 and lrs[1] == pytest.approx(1 / 19) and lrs[18] == pytest.approx(18 / 19)
    assert lrs[19] == pytest.approx(1.0) and lrs[20] < 1.0


def test_numerics_pure_bf16_or_fp32_master_weights(base_dir, tmp_path):
    from transformers import AutoModelForCausalLM, TrainingArguments

    from stargate.training.trainer_base import numerics, trainer_class

    pure = TrainingSpec.from_dict({"bf16": True, "master_weights": "bf16"})
    assert numerics(pure, deepspeed=False) == (torch.bfloat16, numerics(pure, False)[1])
    assert "pure bf16" in numerics(pure, False)[1]
    mixed = TrainingSpec.from_dict({"bf16": True})
    assert numerics(mixed, deepspeed=False)[0] == torch.float32  # fp32 weights, bf16 autocast
    assert numerics(mixed, deepspeed=True)[0] == torch.bfloat16  # ZeRO keeps its own fp32 master copy
    with pytest.raises(StargateError, match=r"training\.master_weights.*ZeRO keeps fp32"):
        TrainingSpec.from_dict({"bf16": True, "master_weights": "bf16", "deepspeed": "zero3"})
    with pytest.raises(StargateError, match=r"training\.master_weights.*need bf16: true"):
        TrainingSpec.from_dict({"master_weights": "bf16"})
    with pytest.raises(StargateError, match=r"training\.loss_weighting"):
        TrainingSpec.from_dict({"loss_weighting": "sequences"})
    # micro_batch: no num_items_in_batch reaches the model, so the Trainer averages micro-batch means
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert trainer_class(0.0, "tokens")(model=model, args=args).model_accepts_loss_kwargs is True
    assert trainer_class(0.0, "micro_batch")(model=model, args=args).model_accepts_loss_kwargs is False


def test_loss_weighting_gradients(base_dir, tok, tmp_path):
    """One optimizer step over 2 micro-batches of very different lengths: micro_batch gives the gradient of the
    mean of the two per-example token means (transformers 4.39, the paper), tokens the token-weighted mean."""
    from transformers import AutoModelForCausalLM, TrainerCallback, TrainingArguments

    from stargate.training.collator import EncodedDataset, SFTCollator
    from stargate.training.trainer_base import trainer_class

    records = [
        {"pair": "a", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."}]},
        {
            "pair": "b",
            "messages": [
                {"role": "user", "content": "Tell me"},
                {"role": "assistant", "content": "A much longer answer " * 12},
            ],
        },
    ]
    examples = encode_records(tok, records, 256).examples
    collate = SFTCollator(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    grads = {}

    class Grab(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            grads["g"] = model.model.norm.weight.grad.detach().clone()

    got = {}
    for weighting in ("micro_batch", "tokens"):
        args = TrainingArguments(
            output_dir=str(tmp_path / weighting),
            per_device_train_batch_size=1,
            gradient_accumulation_steps=2,
            max_steps=1,
            learning_rate=0.0,
            max_grad_norm=0.0,
            use_cpu=True,
            report_to="none",
            remove_unused_columns=False,
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
        )
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        trainer = trainer_class(0.0, weighting)(
            model=model, args=args, data_collator=collate, train_dataset=EncodedDataset(examples), callbacks=[Grab()]
        )
        trainer.train()
        got[weighting] = grads["g"]

    def reference(weighted: bool):
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        losses, counts = [], []
        for ex in examples:
            batch = collate([{"input_ids": ex.input_ids, "labels": ex.labels}])
            losses.append(model(**batch).loss)  # the example's own token mean
            counts.append(int((batch["labels"][0, 1:] != IGNORE_INDEX).sum()))
        total = (
            sum(lo * n for lo, n in zip(losses, counts, strict=True)) / sum(counts) if weighted else sum(losses) / 2
        )
        total.backward()
        return model.model.norm.weight.grad

    assert torch.allclose(got["micro_batch"], reference(False), atol=1e-6)
    assert torch.allclose(got["tokens"], reference(True), atol=1e-6)
    assert not torch.allclose(got["micro_batch"], got["tokens"], atol=1e-6)


def test_sft_under_paper_v1_uses_the_shipped_chat_template(base_dir, tmp_path):
    from transformers import AutoTokenizer

    from stargate.prompts import load_prompt_set
    from stargate.records import write_jsonl
    from stargate.training.provenance import use_prompt_set_template

    data = tmp_path / "A.jsonl"
    recs = [{"pair": "t|p", "messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}]
    write_jsonl(data, recs, {"prompt_set": "paper_v1"})
    tok = AutoTokenizer.from_pretrained(base_dir)
    own = tok.chat_template
    prov = use_prompt_set_template(tok, data)
    paper = load_prompt_set("paper_v1").chat_template
    assert tok.chat_template == paper != own
    assert prov["prompt_set"] == "paper_v1" and len(prov["tokenizer_sha256"]) == 64
    write_jsonl(data, recs, {"prompt_set": "fixed_v1"})
    tok = AutoTokenizer.from_pretrained(base_dir)
    assert use_prompt_set_template(tok, data)["prompt_set"] == "fixed_v1" and tok.chat_template == own
    write_jsonl(data, recs, {"prompt_set": "nope_v9"})
    with pytest.raises(InputError, match=r"A\.jsonl\.meta\.json: names prompt set 'nope_v9'.*fix: rebuild"):
        use_prompt_set_template(tok, data)


def test_attention_choice_on_cpu():
    assert choose_attn_implementation("auto", on_gpu=False, bf16=True)[0] == "sdpa"
    assert choose_attn_implementation("eager", on_gpu=False, bf16=False)[0] == "eager"
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(StargateError, match="flash-attn is not installed"):
            choose_attn_implementation("flash_attention_2", on_gpu=True, bf16=True)


def _fake_flash_attn(root: Path, init: str) -> None:
    """An installed flash-attn (module and dist-info metadata) whose `__init__` is `init`."""
    (root / "flash_attn").mkdir(parents=True)
    (root / "flash_attn" / "__init__.py").write_text(init)
    (root / "flash_attn-2.7.4.dist-info").mkdir()
    (root / "flash_attn-2.7.4.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: flash_attn\nVersion: 2.7.4\n"
    )


@pytest.fixture
def attn_log():
    """The stargate logger's records (it does not propagate to the root logger that caplog watches)."""
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("stargate")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_flash_attn_that_does_not_import_falls_back_to_sdpa(tmp_path, monkeypatch, attn_log):
    """Issue 20 finding 5: a flash-attn wheel built for another torch is installed (metadata present) but its
    import fails with "undefined symbol": auto picks sdpa and logs why; asking for it explicitly is an error."""
    import importlib.metadata
    import sys

    _fake_flash_attn(
        tmp_path,
        'raise ImportError("/site/flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so: undefined symbol: '
        '_ZN3c105ErrorC2ENS_14SourceLocationESs")\n',
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "flash_attn", raising=False)
    assert importlib.metadata.version("flash_attn") == "2.7.4"  # installed, as far as metadata goes
    choice, why = choose_attn_implementation("auto", on_gpu=True, bf16=True)
    assert choice == "sdpa" and "does not import" in why and "undefined symbol" in why
    logged = "\n".join(r.getMessage() for r in attn_log)
    assert "falling back to sdpa" in logged and "undefined symbol" in logged
    assert "attention implementation: sdpa" in logged
    with pytest.raises(StargateError, match="flash_attention_2 requested but flash-attn is installed but does not"):
        choose_attn_implementation("flash_attention_2", on_gpu=True, bf16=True)
    assert choose_attn_implementation("auto", on_gpu=False, bf16=True) == ("sdpa", "training on CPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback when the kernel cannot run")
def test_flash_attn_whose_kernel_fails_falls_back_to_sdpa(tmp_path, monkeypatch, attn_log):
    """flash-attn imports, but its tiny kernel call fails (here: no CUDA at all): sdpa, with the reason."""
    import sys

    _fake_flash_attn(tmp_path, '__version__ = "2.7.4"\n\ndef flash_attn_func(q, k, v, causal=False):\n    return q\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "flash_attn", raising=False)
    choice, why = choose_attn_implementation("auto", on_gpu=True, bf16=True)
    assert choice == "sdpa" and why.startswith("flash-attn 2.7.4 imports but its kernel failed"), why
    assert any("falling back to sdpa" in r.getMessage() for r in attn_log)


def test_multi_gpu_relaunch_command_and_gpu_checks(monkeypatch):
    cmd = launch.launch_command(4, ["--gpus", "4"], port=29500)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and "--multi_gpu" in cmd
    assert cmd[-4:] == ["--module", "stargate.stages.train", "--gpus", "4"]
    if not torch.cuda.is_available():
        with pytest.raises(StargateError, match="no CUDA device"):
            launch.check_gpus(2)
    launch.check_gpus(0)  # CPU training asks for no device, even where CUDA is absent: must not raise
    with pytest.raises(StargateError, match="must be >= 0"):
        launch.check_gpus(-1)


def test_wandb_offline_unless_logged_in(tmp_path):
    netrc = tmp_path / "netrc"
    env = {"NETRC": str(netrc)}
    assert not tracking.logged_in(env)
    netrc.write_text("machine api.wandb.ai\n  login user\n  password not-a-real-key\n")
    netrc.chmod(0o600)
    assert tracking.logged_in(env)
    assert tracking.logged_in({"NETRC": str(tmp_path / "none"), "WANDB_API_KEY": "x"})


# ----------------------------------------------------------------------------- training runs
def test_two_step_cpu_run_changes_weights_writes_card_and_wandb_history(base_dir, tmp_path, clean_env):
    from stargate.stages import train

    data = write_sft(tmp_path / "A.jsonl", 10, long_every=5)
    out, wb = tmp_path / "models" / "m1", tmp_path / "logs" / "wandb" / "m1"
    spec = spec_for_test(max_length=256)
    train.run(run_args(base_dir, data, out, spec, iteration=1, wandb_dir=wb))

    # a loadable HF folder with tokenizer and chat template, weights changed
    names = {p.name for p in out.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "chat_template.jinja",
        "README.md",
        "train_metrics.json",
    } <= names
    assert not any(n.endswith(".bin") for n in names)
    before, after = state(base_dir), state(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).chat_template

    metrics = json.loads((out / "train_metrics.json").read_text())
    res = metrics["results"]
    assert res["global_step"] == 2 and res["n_examples"] == 10
    assert res["n_truncated"] == 2  # examples 0 and 5 are longer than 256 tokens (about 550), the rest < 150
    assert res["train"]["n_examples"] == 8 and res["eval"]["n_examples"] == 2 and len(metrics["eval_pairs"]) == 2
    assert res["train_loss"] > 0 and res["eval_loss"] > 0 and res["train_tokens_per_s"] > 0
    assert metrics["runtime"]["warmup_steps"] == 0 and metrics["runtime"]["numerics"] == "fp32 throughout"
    assert metrics["provenance"]["prompts"]["prompt_set"] is None  # hand-written data: no sidecar
    import hashlib

    data_sha = hashlib.sha256(data.read_bytes()).hexdigest()
    assert metrics["provenance"]["data"]["sha256"] == data_sha

    card = (out / "README.md").read_text()
    for needle in (
        str(base_dir),
        str(data),
        data_sha,
        "iteration 1",
        "2403.19154",
        "@inproceedings",
        "| truncated at max_length (256) | ",
        "| learning_rate | 0.001 |",
        "| split_seed | 42 |",
    ):
        assert needle in card, needle

    # W&B: offline, under the log area (not in the model folder), loss history recorded, no key written
    assert metrics["wandb"]["mode"] == "offline"
    runs = list((wb / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    assert (runs[0].parent / tracking.FINISHED).exists()  # kept by the next training of m1 (a killed run's is not)
    losses = [h["train/loss"] for h in read_wandb_history(runs[0]) if "train/loss" in h]
    assert len(losses) == 2 and losses == [h["loss"] for h in metrics["log_history"] if "loss" in h]
    assert not (out / "wandb").exists()
    assert not list(tmp_path.glob("models/.m1*"))  # no partial or work folder left behind


def test_every_iteration_trains_from_m0_not_from_the_previous_model(base_dir, tmp_path, clean_env):
    """m2 is trained on m1's data but initialised from m0: its weights at step 0 are m0's, not m1's."""
    from transformers import TrainerCallback

    from stargate.training.driver import train as train_sft
    from stargate.training.provenance import weights_sha256

    class Initial(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    spec = spec_for_test(wandb_project=None)
    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    cb1, cb2 = Initial(), Initial()
    train_sft(
        base_model=base_dir,
        data=write_sft(tmp_path / "m0_A.jsonl", 6, seed=1),
        output=m1,
        spec=spec,
        iteration=1,
        run_name="t",
        callbacks=[cb1],
    )
    train_sft(
        base_model=base_dir,
        data=write_sft(tmp_path / "m1_B.jsonl", 6, seed=2),
        output=m2,
        spec=spec,
        iteration=2,
        run_name="t",
        callbacks=[cb2],
    )
    m0_w, m1_w, m2_w = state(base_dir), state(m1), state(m2)
    assert m0_w.keys() == m1_w.keys() == m2_w.keys()  # (the tied lm_head is not stored)
    for k, v in m0_w.items():
        assert torch.equal(cb2.weights[k], v), k  # m2 starts from m0 ...
        assert torch.equal(cb1.weights[k], v), k
    assert any(not torch.equal(cb2.weights[k], m1_w[k]) for k in m1_w)  # ... not from m1
    assert any(not torch.equal(m2_w[k], m1_w[k]) for k in m2_w)
    card = json.loads((m2 / "train_metrics.json").read_text())["provenance"]
    assert card["base_model"]["path"] == str(base_dir)
    assert card["base_model"]["weights_sha256"] == weights_sha256(base_dir) != weights_sha256(m1)


def test_refuses_to_overwrite_and_reports_bad_data(base_dir, tmp_path, clean_env):
    from stargate.training.driver import train as train_sft

    out = tmp_path / "m1"
    out.mkdir()
    (out / "x").write_text("old")
    with pytest.raises(StargateError, match="already exists"):
        train_sft(
            base_model=base_dir,
            data=write_sft(tmp_path / "d.jsonl", 4),
            output=out,
            spec=spec_for_test(),
            iteration=1,
            run_name="t",
        )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        train_sft(
            base_model=base_dir, data=empty, output=tmp_path / "m1b", spec=spec_for_test(), iteration=1, run_name="t"
        )


def test_api_key_is_never_written(base_dir, tmp_path, clean_env, monkeypatch):
    """Logged in (a key in the environment) but WANDB_MODE=offline set by the user: the user's mode wins, and the
    key appears in no file of the checkpoint or the W&B folder."""
    from stargate.stages import train

    secret = "fakekey0123456789abcdef0123456789abcdef0123"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out, wb = tmp_path / "m1", tmp_path / "wb"
    train.run(run_args(base_dir, write_sft(tmp_path / "d.jsonl", 4), out, spec_for_test(max_steps=1), wandb_dir=wb))
    assert json.loads((out / "train_metrics.json").read_text())["wandb"]["mode"] == "offline"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 10
    assert not [p for p in files if secret.encode() in p.read_bytes()]

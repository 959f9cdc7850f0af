"""GPU smoke run (issue 20, item 7): the GPU code paths of a paper job on one CUDA GPU, with no network.

* a tiny random-weight Mistral-architecture model built from a config, with the paper's tokenizer (prompt set
  paper_v1 pins it: stargate/tokenization.py, rebuilt from mistral-common's SentencePiece model);
* the vllm backend's generation (n samples, per-request seeds, greedy) and summed log-probs against the hf
  backend's, both fp32 on the GPU, tokenized as the paper run tokenizes (prompt_set paper_v1);
* one SFT step of `stargate train --gpus 1` in pure bf16 (the paper's numerics), with flash-attn where it
  imports and runs (training/attention.py), and one with DeepSpeed ZeRO-2;
* seeded (per-request, the paper default) vs unseeded sampling throughput of a Mistral-7B-shaped engine with
  dummy weights (printed: run with -s).

Run in an environment with the CUDA build of vllm and the training stack (envs/vllm.yaml has vllm and
stargate's dependencies; DeepSpeed is in envs/train.yaml: point STARGATE_TRAIN_PYTHON at that env's python to
run the training steps there):

    HF_HUB_OFFLINE=1 python -m pytest -m gpu tests/test_gpu_smoke.py -s

`gpu`-marked tests are deselected by default (pyproject.toml addopts) and skipped where CUDA is not available
(tests/conftest.py). Budget: under 10 minutes on one H100 (two vLLM engine starts dominate). The model builder
runs on CPU in the default suite (test_smoke_model_builds_on_cpu)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMPT_SET = "paper_v1"
ABS_TOL, REL_TOL = 0.02, 1e-3  # docs/vllm.md: |vllm - hf| per summed target, both fp32

# Mistral-7B-Instruct-v0.2's shape (config only: vLLM fills dummy weights), and a tiny one of the same architecture
MISTRAL_7B = dict(
    hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
    max_position_embeddings=32768, rope_theta=1e6,
)  # fmt: skip
TINY = dict(
    hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=4096, rope_theta=1e6,
)  # fmt: skip


def paper_tokenizer():
    """The tokenizer prompt set paper_v1 pins, with the set's chat template (no download)."""
    from stargate.prompts import load_prompt_set
    from stargate.tokenization import build_pinned

    prompt_set = load_prompt_set(PROMPT_SET)
    tok = build_pinned(prompt_set.tokenizer)
    tok.chat_template = prompt_set.chat_template
    return tok


def build_mistral(folder: Path, shape: dict, weights: bool = True, dtype: str = "float32") -> Path:
    """A Mistral-architecture HF folder of `shape` with the paper tokenizer: random weights (seeded), or the
    config alone (`weights=False`, for vLLM's load_format=dummy)."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tok = paper_tokenizer()
    cfg = MistralConfig(
        vocab_size=len(tok), sliding_window=None, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, torch_dtype=dtype, **shape,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    if weights:
        torch.manual_seed(0)
        MistralForCausalLM(cfg).to(getattr(torch, dtype)).save_pretrained(folder)
    else:
        cfg.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_sft_data(path: Path, n: int = 32) -> Path:
    """Chats in the SFT format (spec §3.6): a question, an answer, a final response."""
    with path.open("w") as fh:
        for i in range(n):
            msgs = [
                {"role": "user", "content": f"Task {i}: plan a weekend trip."},
                {"role": "assistant", "content": "Where would you like to go?"},
                {"role": "user", "content": "Somewhere by the sea."},
                {"role": "assistant", "content": f"Try the coast near town {i}. " * 12},
            ]
            fh.write(json.dumps({"pair": f"A-t{i:04d}|A-p01", "messages": msgs}) + "\n")
    return path


def train_one_step(base: Path, data: Path, out: Path, gpus: int, **spec) -> dict:
    """`stargate train` (the rule's command) for one optimizer step; its train_metrics.json."""
    spec = {
        "max_length": 512, "per_device_batch_size": 4, "gradient_accumulation_steps": 1, "max_steps": 1,
        "validation_fraction": 0.1, "warmup_ratio": 0.0, "logging_steps": 1, "wandb_project": None, **spec,
    }  # fmt: skip
    python = os.environ.get("STARGATE_TRAIN_PYTHON", sys.executable)
    cmd = [
        python, "-m", "stargate", "train", "--base-model", str(base), "--data", str(data), "--output", str(out),
        "--spec", json.dumps(spec), "--iteration", "1", "--run-name", "smoke", "--gpus", str(gpus),
    ]  # fmt: skip
    env = dict(os.environ, WANDB_MODE="disabled", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return json.loads((out / "train_metrics.json").read_text())


CHATS = [
    [{"role": "user", "content": "Can you recommend a book?"}],
    [{"role": "user", "content": "Help me plan a birthday dinner."}],
    [
        {"role": "user", "content": "What should I cook tonight?"},
        {"role": "assistant", "content": "Do you have any dietary restrictions?"},
        {"role": "user", "content": "I am vegetarian and I dislike mushrooms."},
    ],
]
RAW = "<s>[INST] Name three colours. [/INST]"
GOLD = [
    "Sure! What genres do you enjoy, and do you prefer fiction or non-fiction?",
    "How many guests are coming, and does anyone have allergies?",
    "Try a chickpea curry with spinach: it is quick, filling and has no mushrooms at all.",
]


# ------------------------------------------------------------------------------------------------ CPU part
def test_smoke_model_builds_on_cpu(tmp_path):
    """The GPU tests' model builder, on CPU: a Mistral-architecture folder with the paper tokenizer that
    transformers loads and runs, and a config-only 7B-shaped folder for vLLM's dummy weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tiny = build_mistral(tmp_path / "tiny", TINY)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    tok = AutoTokenizer.from_pretrained(tiny)
    assert type(model).__name__ == "MistralForCausalLM" and model.config.vocab_size == len(tok) == 32000
    assert model.dtype == torch.float32 and model.num_parameters() == 17_564_928  # 16.4 M of it embeddings
    ids = tok.apply_chat_template(CHATS[0], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert ids[0] == tok.bos_token_id and "[INST] Can you recommend a book? [/INST]" in tok.decode(ids)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), 32000) and torch.isfinite(logits).all()
    big = build_mistral(tmp_path / "mistral-7b", MISTRAL_7B, weights=False, dtype="bfloat16")
    cfg = AutoConfig.from_pretrained(big)
    assert not (big / "model.safetensors").exists()
    params = 2 * cfg.vocab_size * cfg.hidden_size + cfg.num_hidden_layers * (
        2 * cfg.hidden_size * cfg.hidden_size  # q, o
        + 2 * cfg.hidden_size * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)  # k, v
        + 3 * cfg.hidden_size * cfg.intermediate_size  # gate, up, down
    )
    assert abs(params - 7.24e9) < 0.01e9  # Mistral-7B's published parameter count (without norms)


def test_gpu_tests_are_skipped_cleanly_without_cuda(tmp_path):
    """`pytest -m gpu` where CUDA is not available: every gpu test is collected and skipped with the reason
    (tests/conftest.py), none errors."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the gpu tests run")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu", "-p", "no:cacheprovider", __file__,
           f"--basetemp={tmp_path / 'bt'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "4 skipped" in out and "needs a CUDA GPU" in out, out[-3000:]
    assert "passed" not in out.splitlines()[-1] and "error" not in out.splitlines()[-1], out[-3000:]


# ------------------------------------------------------------------------------------------------ GPU part
@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return build_mistral(tmp_path_factory.mktemp("tiny-mistral"), TINY)


@pytest.mark.gpu
def test_vllm_generates_and_scores_as_the_hf_backend(tiny_mistral):
    pytest.importorskip("vllm")
    from stargate.backends import Sampling, load_backend

    role = {"backend": "vllm", "options": {"dtype": "float32", "gpu_memory_utilization": 0.25, "enforce_eager": True,
                                           "max_model_len": 2048}}  # fmt: skip
    t0 = time.perf_counter()
    vllm = load_backend(role, str(tiny_mistral), gpus=1, prompt_set=PROMPT_SET)
    print(f"\nvLLM engine start (tiny, eager): {time.perf_counter() - t0:.1f} s")
    try:
        sampled = Sampling(n=3, temperature=0.9, top_p=0.9, max_tokens=16, seed=1)
        seeds = [11, 22, 33]
        first = vllm.generate(CHATS, sampled, seeds)
        assert [len(o) for o in first] == [3, 3, 3] and any(len(set(o)) > 1 for o in first)
        assert vllm.generate(CHATS[::-1], sampled, seeds[::-1]) == first[::-1]  # a prompt's seed, not its company
        greedy = vllm.generate([*CHATS, RAW], Sampling(n=2, temperature=0.0, max_tokens=12))
        assert all(o[0] == o[1] for o in greedy)
        got = vllm.score([*CHATS, RAW], [*GOLD, " Red, green and blue."])
    finally:
        vllm.close()
    hf = load_backend(
        {"backend": "hf", "options": {"dtype": "float32", "device": "cuda", "batch_size": 4}},
        str(tiny_mistral),
        gpus=1,
        prompt_set=PROMPT_SET,
    )
    try:
        ref_greedy = hf.generate([*CHATS, RAW], Sampling(n=1, temperature=0.0, max_tokens=12))
        ref = hf.score([*CHATS, RAW], [*GOLD, " Red, green and blue."])
    finally:
        hf.close()
    assert [o[0] for o in greedy] == [o[0] for o in ref_greedy]
    assert [s.n_tokens for s in got] == [s.n_tokens for s in ref] and all(s.n_tokens > 3 for s in ref)
    worst = max(abs(g.logprob - r.logprob) for g, r in zip(got, ref, strict=True))
    print(f"max |vllm - hf| summed log-prob (fp32, cuda): {worst:.2e} nats over {len(got)} targets")
    for g, r in zip(got, ref, strict=True):
        assert math.isclose(g.logprob, r.logprob, abs_tol=ABS_TOL, rel_tol=REL_TOL), (g, r)


@pytest.mark.gpu
def test_seeded_and_unseeded_sampling_throughput(tmp_path):
    """Per-request seeds (the paper default: a prompt's samples do not depend on its batch) put vLLM's sampler on
    its per-row path; the same requests without seeds show what that costs. Printed, not asserted."""
    pytest.importorskip("vllm")
    from vllm import SamplingParams, TokensPrompt

    from stargate.backends import Sampling, load_backend

    folder = build_mistral(tmp_path / "mistral-7b", MISTRAL_7B, weights=False, dtype="bfloat16")
    role = {"backend": "vllm", "options": {"dtype": "bfloat16", "gpu_memory_utilization": 0.5, "max_model_len": 4096,
                                           "engine_args": {"load_format": "dummy"}}}  # fmt: skip
    t0 = time.perf_counter()
    engine = load_backend(role, str(folder), gpus=1, prompt_set=PROMPT_SET)
    print(f"\nvLLM engine start (Mistral-7B shape, dummy weights, CUDA graphs): {time.perf_counter() - t0:.1f} s")
    words = "alpha beta gamma delta river stone cloud apple music window garden paper light table".split()
    prompts = [" ".join(f"{words[(i + j) % len(words)]}{j}" for j in range(300)) for i in range(256)]
    try:
        engine.generate(prompts[:8], Sampling(max_tokens=8))  # warm-up
        rates = {}
        for label in ("seeded", "unseeded", "seeded"):
            t = time.perf_counter()
            if label == "seeded":  # the backend's own path: one request seed per prompt
                engine.stats.n_tokens_out = 0
                engine.generate(prompts, Sampling(temperature=0.9, top_p=0.9, max_tokens=64, seed=1))
                n_out = engine.stats.n_tokens_out
            else:  # the same token ids, one SamplingParams without a seed
                ids = [engine.tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
                params = SamplingParams(temperature=0.9, top_p=0.9, max_tokens=64)
                outs = engine.llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
                n_out = sum(len(o.outputs[0].token_ids) for o in outs)
            rates[label] = n_out / (time.perf_counter() - t)
            print(f"{label:>9} sampling T0.9 top-p 0.9: {n_out} tokens, {rates[label]:.0f} new tok/s (256 x ~1k)")
    finally:
        engine.close()
    print(f"per-request seeds cost {100 * (1 - rates['seeded'] / rates['unseeded']):.0f} % of sampled throughput")
    assert all(r > 0 for r in rates.values())


@pytest.mark.gpu
def test_one_sft_step_in_bf16_with_flash_attn_where_it_imports(tiny_mistral, tmp_path):
    from stargate.training.attention import flash_attn_usable

    usable, why = flash_attn_usable(on_gpu=True)
    print(f"\nflash-attn: {why}")
    data = write_sft_data(tmp_path / "A.jsonl")
    metrics = train_one_step(
        tiny_mistral, data, tmp_path / "m1", 1, bf16=True, master_weights="bf16", deepspeed=None,
        attn_implementation="auto",
    )  # fmt: skip
    rt, res = metrics["runtime"], metrics["results"]
    print(
        f"bf16 step: attn {rt['attn_implementation']} ({rt['attn_reason']}), peak {res['peak_gpu_memory_gib']:.2f} GiB"
    )
    assert rt["attn_implementation"] == ("flash_attention_2" if usable else "sdpa")
    assert res["global_step"] == 1 and math.isfinite(res["train_loss"]) and res["peak_gpu_memory_gib"] > 0


@pytest.mark.gpu
def test_one_sft_step_with_deepspeed_zero2(tiny_mistral, tmp_path):
    python = os.environ.get("STARGATE_TRAIN_PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import deepspeed"], capture_output=True).returncode != 0:
        pytest.skip(f"deepspeed is not importable by {python} (envs/train.yaml has it: STARGATE_TRAIN_PYTHON)")
    data = write_sft_data(tmp_path / "A.jsonl")
    metrics = train_one_step(
        tiny_mistral, data, tmp_path / "m1", 1, bf16=True, master_weights="fp32", deepspeed="zero2",
    )  # fmt: skip
    rt, res = metrics["runtime"], metrics["results"]
    print(f"\nZeRO-2 step: {rt['numerics']}, peak {res['peak_gpu_memory_gib']:.2f} GiB")
    assert rt["deepspeed_config"].endswith("config/deepspeed/zero2.json")
    assert res["global_step"] == 1 and math.isfinite(res["train_loss"])

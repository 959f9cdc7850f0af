"""Training throughput and peak memory of a randomly initialised model of a chosen size (no download).

For a lent GPU machine (issue 4): nothing can be downloaded there, so the model is built from a config
and the data are synthetic chats in the SFT format. The run goes through the same `train_sft` as the
pipeline, so the figures are those of the train rule. Example (a ~1.1B Llama, sdpa vs flash-attn):

    python -m stargate.training.bench --tokenizer resources/models/smollm2 --out /tmp/bench \\
        --hidden 2048 --layers 22 --heads 32 --kv-heads 4 --intermediate 5632 --seq 1024 --gpus 1 --bf16 \\
        --attn sdpa --steps 20

It prints one JSON line (tokens/s, peak GPU memory, step time) and writes it to <out>/bench.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

from ..log import get_logger

log = get_logger(__name__)

WORDS = "plan trip budget museum hiking quiet food train hotel morning evening friends family city coast".split()


def build_model(tokenizer_dir: Path, folder: Path, a: argparse.Namespace) -> int:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        vocab_size=len(tok),
        max_position_embeddings=max(2048, a.seq),
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16 if a.bf16 else torch.float32)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model.num_parameters()


def write_data(path: Path, n: int, seq: int, seed: int = 0) -> None:
    """Chats longer than `seq` tokens (a user turn, a question, an answer, a long final answer): training cuts
    every one to exactly `seq` tokens, so each step sees batch x seq tokens."""
    rng = random.Random(seed)
    words = max(8, seq)
    with path.open("w") as fh:
        for i in range(n):
            final = " ".join(rng.choice(WORDS) for _ in range(words))
            msgs = [
                {"role": "user", "content": f"My name is P{i}.\n\nHelp me plan a trip."},
                {"role": "assistant", "content": "Where would you like to go, and when?"},
                {"role": "user", "content": "The coast, in May.\n\nHelp me plan a trip."},
                {"role": "assistant", "content": final},
            ]
            fh.write(json.dumps({"pair": f"bench-{i}", "messages": msgs}) + "\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m stargate.training.bench", description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True, help="a folder with a tokenizer + chat template")
    p.add_argument("--out", required=True)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--layers", type=int, default=22)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--seq", type=int, default=1024, help="tokens per example (also training.max_length)")
    p.add_argument("--batch", type=int, default=4, help="per-device batch")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--attn", default="sdpa", choices=["auto", "sdpa", "eager", "flash_attention_2"])
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--deepspeed", default=None, help="zero2 | zero3 | a JSON path")
    p.add_argument("--gpus", type=int, default=0)
    a = p.parse_args(argv)

    from .driver import train
    from .spec import TrainingSpec

    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    n_params = build_model(Path(a.tokenizer), out / "m0", a)
    log.info("built a random Llama with %.1fM params in %.1fs", n_params / 1e6, time.perf_counter() - t0)
    write_data(out / "sft.jsonl", a.batch * a.steps + 1, a.seq)
    spec = TrainingSpec.from_dict(
        {
            "max_length": a.seq,
            "per_device_batch_size": a.batch,
            "gradient_accumulation_steps": 1,
            "max_steps": a.steps,
            "validation_fraction": 0.0,
            "warmup_ratio": 0.0,
            "logging_steps": max(1, a.steps // 5),
            "bf16": a.bf16,
            "attn_implementation": a.attn,
            "gradient_checkpointing": a.gradient_checkpointing,
            "deepspeed": a.deepspeed,
            "wandb_project": None,
        }
    )
    info = train(
        base_model=out / "m0", data=out / "sft.jsonl", output=out / "m1", spec=spec, iteration=1, run_name="bench",
        gpus=a.gpus,
    )  # fmt: skip
    res = info["results"]
    summary = {
        "params_m": round(n_params / 1e6, 1),
        "seq": a.seq,
        "batch": a.batch,
        "steps": res["global_step"],
        "attn": info["runtime"]["attn_implementation"],
        "dtype": info["runtime"]["dtype"],
        "device": info["runtime"]["device"],
        "deepspeed": a.deepspeed,
        "gradient_checkpointing": a.gradient_checkpointing,
        "train_runtime_s": round(res["train_runtime_s"], 2),
        "s_per_step": round(res["train_runtime_s"] / max(1, res["global_step"]), 3),
        "tokens_per_s": round(res["train_tokens_per_s"] or 0.0, 1),
        "peak_gpu_memory_gib": None if res["peak_gpu_memory_gib"] is None else round(res["peak_gpu_memory_gib"], 2),
    }
    (out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

"""Benchmark the local backends on the same prompts: generation and scoring throughput, and score agreement.

Each backend runs in its own child process (one model load each, no CPU or memory shared with the other),
with the Python that runs this script; use the vllm environment, which has both transformers and vllm:

    HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python bench/backends.py
    .venv-vllm/bin/python bench/backends.py --backends hf vllm vllm:bfloat16 --batch-sizes 1 8 32 \
        --max-tokens 64 --pairs 64 --json results/bench.json
    # on a GPU node: --backends hf:bfloat16 vllm:bfloat16 --option device=cuda --batch-sizes 1 32 256

Generation: for each batch size B, B distinct chat prompts are generated greedily in one `generate` call
(the hf backend with batch_size=B; vllm receives all B at once and schedules them itself). Throughput is
new tokens (end-of-turn excluded) per second of wall time. Scoring: `--pairs` (context, target) pairs in
one `score` call; pairs/s, and tokens/s counting every token fed (context + target). The table also gives
the largest |difference| between each backend's summed log-probs and the first backend's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "resources" / "models" / "smollm2"

TOPICS = [
    "plan a birthday dinner for my sister",
    "choose a laptop for university",
    "start running again after an injury",
    "write a cover letter for a nursing job",
    "pick a houseplant for a dark flat",
    "learn basic Spanish in three months",
    "organise a weekend trip to the mountains",
    "save money on groceries",
    "pick a board game for six friends",
    "set up a home workout routine",
    "choose a dog breed for a small house",
    "prepare for a job interview in finance",
    "cook a vegetarian meal for guests",
    "decorate a small bedroom",
    "improve my sleep",
    "read more books this year",
]
DETAILS = [
    "I have about two hours a week.",
    "My budget is limited.",
    "I have never done this before.",
    "I want something I can keep doing for years.",
]
GOLD = (
    "Here is a simple plan. First, decide what matters most to you and write it down. Then pick two or three "
    "options that fit your time and budget, try the easiest one this week, and keep notes on what worked. After "
    "a month, drop what you did not enjoy and build on the rest. Small, steady steps beat big plans."
)


def chat_prompts(n: int) -> list[list[dict[str, str]]]:
    return [
        [
            {
                "role": "user",
                "content": f"Can you help me {TOPICS[i % len(TOPICS)]}? {DETAILS[(i // len(TOPICS)) % len(DETAILS)]}"
                + (f" (request {i})" if i >= len(TOPICS) * len(DETAILS) else ""),
            }
        ]
        for i in range(n)
    ]


def scoring_pairs(n: int) -> tuple[list[list[dict[str, str]]], list[str]]:
    contexts, targets = [], []
    for i, chat in enumerate(chat_prompts(n)):
        contexts.append(
            [
                {"role": "system", "content": "You are a helpful assistant. Ask questions to learn about the user."},
                *chat,
                {"role": "assistant", "content": "Before I answer: what have you already tried, and what went wrong?"},
                {"role": "user", "content": f"I tried once, number {i}, but I gave up after a week."},
            ]
        )
        targets.append(GOLD if i % 2 == 0 else GOLD.replace("Small, steady", "Patient, regular"))
    return contexts, targets


# ----------------------------------------------------------------------------------------------- child
def run_child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from stargate.backends import load_backend
    from stargate.backends.base import Sampling
    from stargate.encoding.spans import render_for_scoring

    name, _, dtype = args.child.partition(":")
    options = {"dtype": dtype or args.dtype}
    if name == "vllm":
        options.update(enforce_eager=args.enforce_eager, max_model_len=args.max_model_len)
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)  # numbers, true/false, lists
        except ValueError:
            options[key] = value
    result: dict = {
        "backend": args.child,
        "options": options,
        "generate": [],
        "score": {},
        "load_avg_start": os.getloadavg()[0],
    }
    t0 = time.perf_counter()
    backend = load_backend({"backend": name, "options": options}, str(args.model))
    result["load_s"] = time.perf_counter() - t0

    backend.generate(chat_prompts(2), Sampling(max_tokens=8))  # warm-up (kernels, allocator)
    for b in args.batch_sizes:
        if name == "hf":
            backend.batch_size = b
        prompts = chat_prompts(b)
        before = backend.stats.n_tokens_out
        t0 = time.perf_counter()
        outs = backend.generate(prompts, Sampling(n=1, temperature=0.0, max_tokens=args.max_tokens, seed=0))
        dt = time.perf_counter() - t0
        tokens = backend.stats.n_tokens_out - before
        result["generate"].append(
            {"batch": b, "tokens": tokens, "seconds": dt, "tok_s": tokens / dt, "sample": outs[0][0][:80]}
        )

    contexts, targets = scoring_pairs(args.pairs)
    if name == "hf":
        backend.batch_size = args.score_batch_size
    fed = sum(len(render_for_scoring(backend.tokenizer, c, t)[0]) for c, t in zip(contexts, targets, strict=True))
    backend.score(contexts[:2], targets[:2])  # warm-up
    t0 = time.perf_counter()
    scores = backend.score(contexts, targets)
    dt = time.perf_counter() - t0
    result["score"] = {
        "pairs": len(scores),
        "tokens_fed": fed,
        "target_tokens": sum(s.n_tokens for s in scores),
        "seconds": dt,
        "pairs_s": len(scores) / dt,
        "tok_s": fed / dt,
        "logprobs": [s.logprob for s in scores],
    }
    result["load_avg_end"] = os.getloadavg()[0]
    backend.close()
    Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------- parent
def run_parent(args: argparse.Namespace) -> None:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    results = []
    for spec in args.backends:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = Path(f.name)
        cmd = [
            sys.executable,
            __file__,
            "--child",
            spec,
            "--result",
            str(out),
            "--model",
            str(args.model),
            "--dtype",
            args.dtype,
            "--max-tokens",
            str(args.max_tokens),
            "--pairs",
            str(args.pairs),
            "--score-batch-size",
            str(args.score_batch_size),
            "--max-model-len",
            str(args.max_model_len),
            "--batch-sizes",
            *map(str, args.batch_sizes),
        ]
        if not args.enforce_eager:
            cmd.append("--no-enforce-eager")
        for item in args.option:
            cmd += ["--option", item]
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        print(f"# running {spec} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL if not args.verbose else None,
            stderr=subprocess.PIPE if not args.verbose else None,
            text=True,
        )
        if proc.returncode != 0:
            sys.stderr.write((proc.stderr or "")[-4000:])
            raise SystemExit(f"benchmark of {spec} failed (exit {proc.returncode})")
        res = json.loads(out.read_text())
        out.unlink()
        res["wall_s"] = time.perf_counter() - t0
        results.append(res)

    ref = results[0]["score"]["logprobs"]
    for res in results:
        lps = res["score"]["logprobs"]
        res["score"]["max_abs_diff_vs_first"] = max(abs(a - b) for a, b in zip(lps, ref, strict=True))
    print(f"model {args.model} | {platform.machine()} {os.cpu_count()} CPUs | greedy, max_tokens {args.max_tokens}")
    for res in results:
        print(
            f"  {res['backend']}: options {res['options']}, 1-min load average {res['load_avg_start']:.1f} at start, "
            f"{res['load_avg_end']:.1f} at end, {res['wall_s']:.0f}s in all"
        )
    print()
    print("generation (tokens/s of new tokens, one generate() call of B prompts)")
    header = "| backend | load s | " + " | ".join(f"B={b}" for b in args.batch_sizes) + " |"
    print(header)
    print("|" + "---|" * (2 + len(args.batch_sizes)))
    for res in results:
        cells = [f"{g['tok_s']:.1f} ({g['tokens']} tok, {g['seconds']:.1f}s)" for g in res["generate"]]
        print(f"| {res['backend']} | {res['load_s']:.1f} | " + " | ".join(cells) + " |")
    print()
    s0 = results[0]["score"]
    print(f"scoring ({s0['pairs']} pairs, {s0['tokens_fed']} tokens fed, {s0['target_tokens']} target tokens)")
    print(f"| backend | pairs/s | tokens/s | seconds | max abs diff vs {results[0]['backend']} (nats) |")
    print("|---|---|---|---|---|")
    for res in results:
        s = res["score"]
        print(
            f"| {res['backend']} | {s['pairs_s']:.2f} | {s['tok_s']:.0f} | {s['seconds']:.1f} | "
            f"{s['max_abs_diff_vs_first']:.4f} |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="a local Hugging Face model folder")
    p.add_argument("--backends", nargs="+", default=["hf", "vllm"], help="NAME[:DTYPE], e.g. hf vllm vllm:bfloat16")
    p.add_argument("--dtype", default="float32", help="dtype when a backend spec names none")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--pairs", type=int, default=64, help="scoring pairs")
    p.add_argument("--score-batch-size", type=int, default=16, help="hf scoring batch size")
    p.add_argument("--max-model-len", type=int, default=2048, help="vllm max_model_len")
    p.add_argument("--no-enforce-eager", dest="enforce_eager", action="store_false", help="let vllm compile/graph")
    p.add_argument("--option", action="append", default=[], help="extra backend option KEY=VALUE (repeatable)")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the children (default: the library's choice)")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--verbose", action="store_true", help="show the children's logs")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        run_child(args)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()

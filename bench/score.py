"""Scoring throughput of the hf backend against the machine's matmul floor.

    python bench/score.py                                   # resources/models/smollm2, fp32
    python bench/score.py --model DIR --pairs 64 --context-words 300 --threads 2

Scores `--pairs` (chat context, gold target) pairs in one call, once with the backend's scoring (logits at
target positions only) and once through the full-logits path (lm_head at every position, as before), and
prints target tokens/s, fed tokens/s, achieved GFLOP/s (2 x parameters x fed tokens, plus the lm_head over
the positions it ran on) and the machine's fp32 matmul GFLOP/s from a square GEMM: the floor any forward
pass is bound by. Wall and CPU (user+sys, this process) are both printed: on a shared machine trust CPU.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def matmul_gflops(torch, n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "resources" / "models" / "smollm2"))
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--context-words", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    import torch

    from stargate.backends import load_backend

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = load_backend(
        {"backend": "hf", "options": {"dtype": "float32", "batch_size": args.batch_size}}, args.model
    )
    words = "I like quiet places, cheap food and long walks with my dog near the river".split()
    contexts = [
        [{"role": "user", "content": " ".join(words[(i + j) % len(words)] for j in range(args.context_words + 7 * i))}]
        for i in range(args.pairs)
    ]
    targets = [("Here is a plan that fits what you told me. " * (2 + i % 4)).strip() for i in range(args.pairs)]
    model = backend.model
    n_params = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    vocab, hidden = model.config.vocab_size, model.config.hidden_size
    floor = matmul_gflops(torch)
    print(
        f"model {args.model}: {n_params / 1e6:.1f} M non-embedding parameters, vocab {vocab}; torch threads {torch.get_num_threads()}"
    )
    print(f"fp32 matmul floor: {floor:.1f} GFLOP/s")
    cut = backend.score(contexts, targets)  # warm-up and reference
    for name in ("target positions", "full logits"):
        if name == "full logits":
            keep = [0]

            def full(*a, orig=model.forward, keep=keep, **k):
                k.pop("logits_to_keep", None)  # the lm_head over every position, sliced afterwards
                out = orig(*a, **k)
                out.logits = out.logits[:, -keep[0] :]
                return out

            def batch(rows, orig=backend._score_batch, keep=keep):
                keep[0] = max(e - s for _, s, e in rows)
                return orig(rows)

            model.forward, backend._score_batch = full, batch
        backend.stats.seconds, backend.stats.n_tokens_in = 0.0, 0
        c0, t0 = cpu_s(), time.perf_counter()
        got = backend.score(contexts, targets)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        fed, tgt = backend.stats.n_tokens_in, sum(s.n_tokens for s in got)
        head_positions = tgt if name == "target positions" else fed
        gflop = (2 * n_params * fed + 2 * hidden * vocab * head_positions) / 1e9
        diff = max(abs(a.logprob - b.logprob) for a, b in zip(got, cut, strict=True))
        print(
            f"{name:>17}: {wall:6.2f} s wall {cpu:6.2f} s CPU | {tgt / wall:7.1f} target tok/s {fed / wall:8.1f} fed tok/s"
            f" | {gflop / wall:6.1f} GFLOP/s = {100 * gflop / wall / floor:4.0f}% of floor | max |diff| {diff:.2e}"
        )


if __name__ == "__main__":
    main()

"""`stargate <stage> ...`: one subcommand per pipeline stage. Parses arguments and runs the stage.

Each stage module provides `add_arguments(parser)` and `run(args)`; modules are imported only when
their subcommand runs, so `stargate --help` stays fast and a CPU box never imports vLLM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import DISK_FULL_ERRNOS, DiskFullError, StargateError
from .jobclaim import claim_job
from .progress import heartbeat

STAGES = {
    "prepare-model": ("stargate.stages.prepare_model", "convert/download a model into a HF folder"),
    "model-recipe": ("stargate.stages.model_recipe", "what a prepared model folder is made from"),
    "tasks": ("stargate.stages.tasks", "extract the tasks of a split"),
    "personas": ("stargate.stages.personas", "persona texts of a split (file or generated)"),
    "names": ("stargate.stages.names", "find each persona's name"),
    "oracle": ("stargate.stages.oracle", "gold responses per persona-task pair"),
    "simulate": ("stargate.stages.simulate", "all turns of a shard's conversations, each model loaded once"),
    "questioner-turn": (
        "stargate.stages.questioner_turn",
        "by hand: one Questioner turn over files (a prompt's replies without a whole simulation; rules run `simulate`)",
    ),
    "roleplayer-turn": (
        "stargate.stages.roleplayer_turn",
        "by hand: one Roleplayer turn over files (a prompt's replies without a whole simulation; rules run `simulate`)",
    ),
    "pool": ("stargate.stages.pool", "pool finished conversations of all turns and shards"),
    "score": ("stargate.stages.score", "log p(gold) under m0 for one condition"),
    "shuffle": ("stargate.stages.shuffle", "the shuffled-persona control conversations"),
    "topk": ("stargate.stages.topk", "keep the best k conversations per pair"),
    "select": ("stargate.stages.select", "dpo/rwr: best-worst pairs or weights of the scored conversations"),
    "regularize": ("stargate.stages.regularize", "m_t's final answers after its kept conversations"),
    "sft-data": ("stargate.stages.sft_data", "chat-format SFT examples"),
    "rollout-prompts": ("stargate.stages.rollout_prompts", "the pairs an online method (grpo) plays rollouts on"),
    "train": ("stargate.stages.train", "fine-tune m_{t+1} from m0"),
    "winrate-answer": ("stargate.stages.winrate_answer", "answers for the win-rate evaluation"),
    "judge": ("stargate.stages.judge", "judge m_t's answers against m0's"),
    "audit-judge": ("stargate.stages.audit_judge", "does a Roleplayer reply contradict its persona (judge pass)"),
    "specificity": ("stargate.stages.specificity", "rate each test task general or user-specific (judge role)"),
    "turn-credit": ("stargate.stages.turn_credit", "m0's log p(gold) after each question: which question helped"),
    "turn-credit-table": ("stargate.stages.turn_credit_table", "mean gain per question and questioner (CSV)"),
    "summarize": ("stargate.stages.summarize", "log-prob curves and win rates (CSV, JSON, PNG)"),
    "report-tables": ("stargate.stages.report_tables", "the report's tables as one HTML page"),
    "world-report": ("stargate.stages.world_report", "learning-world figures: curve, bootstrap, what it asks"),
    "method-comparison": (
        "stargate.stages.method_comparison",
        "by hand (make run-online): an offline and an online run side by side, with the budget",
    ),
    "chat": ("stargate.stages.chat", "talk to a trained Questioner in the terminal"),
    "cost": ("stargate.stages.cost", "estimate API tokens and money a config will spend"),
    "compare": (
        "stargate.stages.compare",
        "two runs' summaries side by side: which differences exceed the noise floor",
    ),
    "plan": ("stargate.plan.cli", "GPU memory fit and GPU-hours of a config on a profile, before submitting"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stargate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")
    wanted = argv[0] if argv and argv[0] in STAGES else None
    for name, (module, help_text) in STAGES.items():
        p = sub.add_parser(name, help=help_text)
        if name == wanted:  # only the chosen stage's module is imported
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "StorageFull")


def disk_full(exc: BaseException, output: str | None) -> DiskFullError | None:
    """A full disk met by a library's own writer (model weights, a tokenizer, a W&B run), as a short
    error: an OSError ENOSPC/EDQUOT, or one that safetensors/torch wrapped in their own exception."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return DiskFullError(seen.filename or output or "an output of this stage", os.strerror(seen.errno).lower())
        if any(t in str(seen) for t in DISK_FULL_TEXTS):
            return DiskFullError(output or "an output of this stage")
        seen = seen.__cause__ or seen.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        # an earlier run of this same job still alive (its head was killed): wait, and adopt its result
        with claim_job(args.stage, argv) as claim:
            if claim.adopted:
                return 0
            if hasattr(args, "gpus"):
                from .gpus import claim_gpus

                claim_gpus(args.gpus or 0)
            alive = heartbeat(args.stage)  # a line every ~15 s in the log, however long one call takes
            try:
                args._run(args)
            finally:
                alive.set()
    except StargateError as exc:
        print(f"stargate {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        full = disk_full(exc, getattr(args, "output", None))
        if full is None:
            raise
        print(f"stargate {args.stage}: error: {full}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

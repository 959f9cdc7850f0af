"""`stargate train`: fine-tune m_{t+1} from m0 on m_t's SFT data (spec §3.7, §5).

    stargate train --base-model resources/models/smollm2 --data results/m0/sft/A.jsonl \\
        --output results/models/m1 --spec '{"method": "sft", ...}' --iteration 1 --run-name default --gpus 0

--gpus 0 trains on CPU, 1 on one GPU; with N > 1 the command re-executes itself under
`accelerate launch` with N processes (DeepSpeed from training.deepspeed), so a Snakemake rule stays one
shell line. See docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import StargateError
from ..leftovers import remove
from ..log import get_logger
from ..training import launch, tracking
from ..training.spec import TrainingSpec

log = get_logger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-model", required=True, help="m0's model folder (every m_{t+1} is trained from m0)")
    p.add_argument("--data", required=True, help="SFT data: results/m{t}/sft/{split}.jsonl")
    p.add_argument("--output", required=True, help="checkpoint folder to create: results/models/m{t+1}")
    p.add_argument("--spec", required=True, help="the `training` config slice as JSON")
    p.add_argument("--iteration", required=True, type=int, help="t+1, the index of the model produced")
    p.add_argument("--run-name", default="stargate", help="config run_name (W&B run and model card)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs given to the job: 0 = CPU, N > 1 = N processes")
    p.add_argument("--wandb-dir", default=None, help="W&B folder (default: <output>.wandb beside the checkpoint)")
    p.add_argument("--init-model", default=None, help="a continuing method's start: m_{t-1}'s folder (default m0)")
    p.add_argument("--roles", default=None, help="an online method's roles as JSON (the train rule builds it)")


def child_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        "--base-model", str(args.base_model), "--data", str(args.data), "--output", str(args.output),
        "--spec", args.spec, "--iteration", str(args.iteration), "--run-name", args.run_name,
        "--gpus", str(args.gpus),
    ]  # fmt: skip
    if args.wandb_dir:
        argv += ["--wandb-dir", str(args.wandb_dir)]
    if getattr(args, "init_model", None):
        argv += ["--init-model", str(args.init_model)]
    if getattr(args, "roles", None):
        argv += ["--roles", args.roles]
    return argv


def clear_killed_run(output: Path, wandb_dir: Path) -> None:
    """What a killed training of this model left: its build folders and its unfinished W&B run."""
    for name in (f".{output.name}.partial", f".{output.name}.work"):
        remove(output.with_name(name), "left by a killed training of this model")
    tracking.clear_unfinished_runs(wandb_dir)


def run(args: argparse.Namespace) -> None:
    spec = TrainingSpec.from_json(args.spec)
    if args.iteration < 1:
        raise StargateError(f"--iteration must be >= 1 (the model produced, m1 or later), got {args.iteration}")
    if not launch.is_launched():  # once, before any training process starts
        output = Path(args.output)
        clear_killed_run(output, Path(args.wandb_dir) if args.wandb_dir else tracking.default_dir(output))
    if args.gpus > 1 and not launch.is_launched():
        launch.check_gpus(args.gpus)
        launch.relaunch(args.gpus, child_argv(args))
        return
    from ..training.driver import train  # torch and transformers: only in the process that trains

    train(
        base_model=args.base_model,
        data=args.data,
        output=args.output,
        spec=spec,
        iteration=args.iteration,
        run_name=args.run_name,
        gpus=args.gpus,
        wandb_dir=args.wandb_dir,
        init_model=getattr(args, "init_model", None),
        roles=roles_of(args, spec),
    )


def roles_of(args: argparse.Namespace, spec: TrainingSpec) -> dict | None:
    """The roles JSON an online method needs (checked here: a by-hand call without it is a clear error)."""
    text = getattr(args, "roles", None)
    if not spec.training_method.online:
        return None
    if not text:
        raise StargateError(f"training.method {spec.method} plays rollouts: pass --roles (the train rule does)")
    try:
        roles = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StargateError(f"--roles is not valid JSON: {exc}") from None
    missing = [r for r in spec.training_method.roles if r not in roles]
    if missing:
        raise StargateError(f"--roles lacks {', '.join(missing)}")
    return roles


def main(argv: list[str] | None = None) -> None:
    """Entry for `python -m stargate.stages.train` (what `accelerate launch` runs in each process)."""
    parser = argparse.ArgumentParser(prog="stargate train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run(args)
    except StargateError as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""`stargate chat MODEL`: talk to a (trained) Questioner in the terminal.

    stargate chat results/models/m2                      # a fine-tuned Questioner (hf backend)
    stargate chat resources/models/smollm2 --turns 2     # m0, with the elicitation instruction
    stargate chat gpt-4o --role '{"backend": "openai"}'  # any backend, through a role config

It asks up to --turns clarifying questions; you answer each (an empty line stops the questions early);
then it gives its personalised final answer. The prompts are the pipeline's own (`--prompts`): the
Questioner prompt of the simulation (m0 with the instruction, a fine-tuned model in its trained format) and
the final-answer prompt of the regularizer (m0) or of the SFT examples (fine-tuned). Reads standard input,
so it can be scripted: `printf 'Ana\\nPlan a trip.\\nThe sea.\\n' | stargate chat MODEL --turns 1`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..backends import Sampling, load_backend
from ..errors import StargateError
from ..prompts import load_prompt_set

DEFAULT_ROLE = {"backend": "hf", "sampling": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 200, "seed": 1}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model folder (hf, vllm), API model name (openai) or a label (scripted)")
    p.add_argument("--role", help="role config as JSON or a JSON/YAML file: {backend, options, sampling}")
    p.add_argument("--prompts", default="fixed_v1", help="prompt set (fixed_v1 suits any chat model)")
    p.add_argument("--turns", type=int, default=3, help="most clarifying questions before the answer")
    p.add_argument("--name", help="your name (asked on standard input when absent)")
    p.add_argument("--task", help="your request (asked on standard input when absent)")
    p.add_argument(
        "--finetuned",
        choices=("auto", "yes", "no"),
        default="auto",
        help="prompt format: auto = yes when MODEL has a train_metrics.json (a stargate fine-tune)",
    )
    p.add_argument("--gpus", type=int, default=0, help="GPUs for a local model (0 = CPU)")


def read_role(text: str | None) -> dict[str, Any]:
    if not text:
        return json.loads(json.dumps(DEFAULT_ROLE))
    if not text.lstrip().startswith("{") and Path(text).is_file():
        path = Path(text)
        import yaml

        role = yaml.safe_load(path.read_text(encoding="utf-8"))
    else:
        try:
            role = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StargateError(f"--role is neither a file nor valid JSON: {exc}") from None
    if not isinstance(role, dict) or "backend" not in role:
        raise StargateError("--role must be a mapping with at least a `backend` (hf, vllm, openai, scripted)")
    return role


def ask(prompt: str) -> str | None:
    """One line from standard input (None at end of input); the prompt goes to stdout like a terminal's."""
    print(prompt, end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        print()
        return None
    return line.rstrip("\n")


def run(args: argparse.Namespace) -> None:
    if args.turns < 0:
        raise StargateError("--turns must be >= 0")
    prompts = load_prompt_set(args.prompts)
    finetuned = {"yes": True, "no": False}.get(args.finetuned, (Path(args.model) / "train_metrics.json").is_file())
    role = read_role(args.role)
    sampling = Sampling.from_config(role.get("sampling") or {}, n=1)
    name = args.name or ask("Your name: ")
    task = args.task or ask("Your request: ")
    if not name or not task:
        raise StargateError("a name and a request are needed (--name, --task or two lines on standard input)")
    turns: list[dict[str, str]] = []
    with load_backend(role, args.model, gpus=args.gpus, stage="chat", prompt_set=args.prompts) as backend:

        def say(prompt) -> str:
            seed = sampling.seed + len(turns)  # a new seed per turn; the same dialogue replays the same
            out = backend.generate([prompt], sampling, [seed])[0][0]
            return (out or "").strip()

        for _ in range(args.turns):
            question = say(prompts.questioner(name, task, turns, finetuned))
            print(f"Assistant: {question}", flush=True)
            answer = ask("You: ")
            if not answer:
                break
            turns += [{"role": "questioner", "text": question}, {"role": "roleplayer", "text": answer}]
        if turns:
            final_prompt = (
                prompts.winrate_answer(name, task, turns) if finetuned else prompts.regularizer(name, task, turns)
            )
        else:  # nothing elicited: answer the request as asked
            final_prompt = [{"role": "user", "content": f"My name is {name.strip()}.\n\n{task.strip()}"}]
        print(f"Assistant (answer): {say(final_prompt)}", flush=True)

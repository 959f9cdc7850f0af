"""`grpo`: online RL of the Questioner against the simulated user (TRL's GRPOTrainer with a multi-turn
`rollout_func`). Each step, `prompts_per_step` persona-task pairs of the split are played `group_size` times
each by the policy against the Roleplayer role (online/rollout.py); every conversation gets the configured
reward (stargate/rewards/: m0's log p(gold), m0's belief gain about the persona, or the world's ground truth),
advantages are the rewards standardised within each pair's group, and the loss (TRL's, with a KL penalty of
`kl_coef` to m0) falls on the policy's own tokens only: SFT's label mask, as `env_mask`.

m_1 starts from m0; m_t (t > 1) continues from m_{t-1} on the next split (A, B, A, ...), always with m0 as the
KL reference, `steps` optimizer steps per iteration. Checkpoints (weights, optimizer, scheduler, RNG) are
written every `save_steps` steps beside the output; a killed job rerun resumes from the last one. The
rollouts (pair, turns, reward, step) are written to the model folder's rollouts.jsonl.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import InputError, StargateError
from ...log import get_logger
from ...records import read_jsonl
from .base import TrainerContext, TrainingMethod

log = get_logger(__name__)


@dataclass(frozen=True)
class GRPOKnobs:
    reward: str
    group_size: int
    prompts_per_step: int
    steps: int
    kl_coef: float
    turns: int | None
    final_answer: bool
    instructed: bool
    distractors: int
    distractor_seed: int
    save_steps: int


class PromptRecords:
    """The split's rollout prompts as TRL's dataset (one row per pair; the prompt is the pair key)."""

    def __init__(self, records: list[dict]):
        self.examples = records
        self.n_records, self.n_truncated, self.n_dropped_no_labels = len(records), 0, 0
        self.lengths: list[int] = []
        self.weights = [1.0] * len(records)

    def stats(self) -> dict[str, Any]:
        return {"n_records": self.n_records, "n_examples": len(self.examples), "n_truncated": 0,
                "n_dropped_no_labels": 0, "n_tokens": 0, "n_label_tokens": 0,
                "max_length_before_truncation": 0, "median_length_before_truncation": 0}  # fmt: skip


class GRPO(TrainingMethod):
    name = "grpo"
    block = "grpo"
    online = True
    continues = True
    card = (
        "online GRPO (TRL) against the simulated user on the persona-task pairs of m{p}'s split, each "
        "conversation rewarded as training.grpo.reward says"
    )
    roles: ClassVar[tuple[str, ...]] = ("questioner", "roleplayer", "scorer")

    def knobs(self, block: dict[str, Any] | None) -> GRPOKnobs:
        b = block or {}
        return GRPOKnobs(
            reward=str(b["reward"]), group_size=int(b["group_size"]), prompts_per_step=int(b["prompts_per_step"]),
            steps=int(b["steps"]), kl_coef=float(b["kl_coef"]), turns=b.get("turns"),
            final_answer=bool(b["final_answer"]), instructed=bool(b["instructed"]),
            distractors=int(b["distractors"]), distractor_seed=int(b["distractor_seed"]),
            save_steps=int(b["save_steps"]),
        )  # fmt: skip

    def instructed(self, training: dict[str, Any]) -> bool:
        return bool(training["grpo"]["instructed"])

    def needs_gold(self, training: dict[str, Any]) -> bool:
        from ...rewards.registry import get_reward

        return get_reward(training["grpo"]["reward"]).needs_gold

    def check_config(self, config: dict[str, Any]) -> list[str]:
        problems = super().check_config(config)
        grpo = config["training"]["grpo"]
        if config["prompts"] == "paper_v1":
            problems.append("training.method: grpo renders chats; prompts paper_v1 builds raw strings: use fixed_v1")
        if grpo["reward"] == "world":
            program = str((config["roles"]["roleplayer"].get("options") or {}).get("program") or "")
            if not program.startswith("stargate.world"):
                problems.append(
                    "training.grpo.reward: world needs the learning world's Roleplayer (config/world.yaml)"
                )
        return problems

    # ------------------------------------------------------------------ data (stage rollout_prompts)
    def load_records(self, data: Path) -> list[dict]:
        records = read_jsonl(data, required=("pair", "name", "task", "persona"))
        if not records:
            raise InputError(data, "no rollout prompts", fix="rebuild it with the rollout_prompts stage")
        return records

    def encode(self, tokenizer: Any, records: list[dict], max_length: int, labels: str) -> PromptRecords:
        return PromptRecords(records)

    # ------------------------------------------------------------------ train
    def arguments(self, knobs: GRPOKnobs) -> tuple[type, dict[str, Any]]:
        from trl import GRPOConfig

        return GRPOConfig, {
            "num_generations": knobs.group_size,
            "per_device_train_batch_size": knobs.group_size * knobs.prompts_per_step,
            "gradient_accumulation_steps": 1,
            "beta": knobs.kl_coef,
            "max_steps": knobs.steps,
            "save_strategy": "steps",
            "save_steps": knobs.save_steps,
            "eval_strategy": "no",
            "loss_type": "dapo",  # TRL's default: token-level normalisation across the group
            "log_completions": False,
        }

    def resumable(self) -> bool:
        return True

    def build_trainer(self, ctx: TrainerContext) -> Any:
        import os

        from datasets import Dataset
        from trl import GRPOTrainer

        from ...backends import Sampling, load_backend
        from ...prompts import load_prompt_set
        from ...rewards.base import Rollout
        from ...rewards.registry import get_reward
        from ..online.rollout import MultiTurnRollout, PolicySampling

        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is TRL's documented multi-turn hook
        knobs: GRPOKnobs = ctx.spec.knobs
        roles = ctx.roles
        prompts = load_prompt_set(ctx.prompt_set)
        records = ctx.train_split.examples
        pairs = {
            r["pair"]: Rollout(pair=r["pair"], name=r["name"], task=r["task"], persona=r["persona"], turns=[],
                               gold=r.get("gold"), distractors=tuple(r.get("distractors") or ()))
            for r in records
        }  # fmt: skip
        q = roles["questioner"]["sampling"]
        answer = (roles.get("answerer") or {}).get("sampling") or q
        rp = roles["roleplayer"]
        # an hf/vllm Roleplayer gets the job's last `roleplayer_gpus` GPUs (train rule resource roleplayer_gpu)
        gpus = int(roles.get("roleplayer_gpus") or 0)
        roleplayer = load_backend(rp["spec"], rp["model"], gpus=gpus, stage="train", prompt_set=ctx.prompt_set)
        reward_cls = get_reward(knobs.reward)
        scorer = None
        if reward_cls.needs_scorer:
            scorer = load_backend(roles["scorer"]["spec"], str(ctx.base_model), gpus=0, stage="train",
                                  prompt_set=ctx.prompt_set)  # fmt: skip
        reward = reward_cls(prompts=prompts, scorer=scorer)
        rollout = MultiTurnRollout(
            tokenizer=ctx.tokenizer, prompts=prompts, pairs=pairs, roleplayer=roleplayer,
            roleplayer_sampling=Sampling.from_config(rp["spec"].get("sampling") or {}),
            sampling=PolicySampling(float(q["temperature"]), float(q["top_p"]), int(q["max_tokens"]),
                                    int(answer["max_tokens"])),
            turns=int(knobs.turns or roles["max_turns"]), final_answer=knobs.final_answer,
            instructed=knobs.instructed, max_length=ctx.spec.max_length, labels=ctx.label_rule,
            log_path=ctx.work_dir / "rollouts.jsonl",
        )  # fmt: skip
        self.rollout = rollout

        def reward_fn(prompts=None, completions=None, rollout=None, **_):
            values = [
                float(v) for v in reward([Rollout(**{k: v for k, v in r.items() if k != "final"}) for r in rollout])
            ]
            step = int(getattr(trainer.state, "global_step", 0))
            self.rollout.log(step, rollout, values)
            return values

        reward_fn.__name__ = f"reward_{knobs.reward}"
        dataset = Dataset.from_list([{"prompt": r["pair"]} for r in records])
        # the KL reference is m0 whichever model the policy starts from: TRL builds it from the policy's
        # recorded origin
        ctx.model.config._name_or_path = str(ctx.base_model)
        trainer = ctx.trainer_class(GRPOTrainer)(
            model=ctx.model,
            reward_funcs=[reward_fn],
            args=ctx.args,
            train_dataset=dataset,
            processing_class=ctx.tokenizer,
            callbacks=ctx.callbacks,
            rollout_func=rollout,
        )
        return trainer

    def after_train(self, trainer: Any, folder: Path, work_dir: Path) -> dict[str, Any]:
        """The rollout log (the last record of each step and index: a resumed run redoes the steps after its
        checkpoint) into the model folder, and the budget figures for the report."""
        src = work_dir / "rollouts.jsonl"
        last: dict[tuple[int, int], dict] = {}
        if src.is_file():
            for line in src.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                last[(rec["step"], rec["index"])] = rec
        recs = [last[k] for k in sorted(last)]
        with (folder / "rollouts.jsonl").open("w", encoding="utf-8") as fh:
            for rec in recs:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
        if not recs:
            raise StargateError("grpo: no rollout was logged")
        return {"n_rollouts": len(recs), "policy_tokens_generated": self.rollout.policy_tokens}

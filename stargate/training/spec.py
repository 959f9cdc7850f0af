"""The `training` config slice as a typed, checked object.

Defaults are the paper's values (spec §5) except where a CPU run needs otherwise (bf16 off). The workflow
validates the slice against config/schema.yaml before a job starts; these checks repeat the ones that
matter for a by-hand `stargate train --spec '{...}'` call, so a bad value stops with the key's name.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import StargateError

METHODS = ("sft",)  # "dpo" comes in its own issue; add it to TRAINERS in stargate/training/__init__.py
ATTN_CHOICES = ("auto", "sdpa", "eager", "flash_attention_2")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
DEEPSPEED_NAMES = ("zero2", "zero3")
MASTER_WEIGHTS = ("fp32", "bf16")
LOSS_WEIGHTING = ("tokens", "micro_batch")


@dataclass(frozen=True)
class TrainingSpec:
    method: str = "sft"
    max_length: int = 1024
    learning_rate: float = 2e-5
    epochs: float = 1
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 16  # for ONE process; divided by the number of processes
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool = False
    # fp32: bf16 compute, fp32 weights and AdamW states (mixed precision; what ZeRO always does).
    # bf16: weights, gradients and AdamW states all bf16 (the paper's run, spec §5); needs bf16, no DeepSpeed.
    master_weights: str = "fp32"
    # tokens: loss = sum over all label tokens of the accumulated batch / their count (transformers >= 4.46).
    # micro_batch: the mean of each micro-batch's token mean, as transformers 4.39 computed it for the paper.
    loss_weighting: str = "tokens"
    validation_fraction: float = 0.05
    seed: int = 42
    split_seed: int = 42
    gradient_checkpointing: bool = False
    deepspeed: str | None = None
    attn_implementation: str = "auto"
    logging_steps: int = 5
    wandb_project: str | None = "stargate"
    save_checkpoints: bool = False
    max_steps: int | None = None  # None: run `epochs` full epochs (smoke tests set a small number)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSpec:
        if not isinstance(data, dict):
            raise StargateError(f"training: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StargateError(f"training: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        spec = cls(**{k: v for k, v in data.items() if k in known})
        spec.check()
        return spec

    @classmethod
    def from_json(cls, text: str) -> TrainingSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StargateError(f"--spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        def bad(key: str, why: str) -> StargateError:
            return StargateError(f"training.{key}: {why} (got {getattr(self, key)!r})")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        if self.method not in METHODS:
            raise bad("method", f"must be one of {', '.join(METHODS)}")
        for key in ("max_length", "per_device_batch_size", "gradient_accumulation_steps", "logging_steps"):
            if not is_int(getattr(self, key)) or getattr(self, key) < 1:
                raise bad(key, "must be an integer >= 1")
        for key in ("seed", "split_seed"):
            if not is_int(getattr(self, key)) or getattr(self, key) < 0:
                raise bad(key, "must be an integer >= 0")
        if not is_num(self.learning_rate) or self.learning_rate < 0:
            raise bad("learning_rate", "must be a number >= 0")
        if not is_num(self.epochs) or self.epochs <= 0:
            raise bad("epochs", "must be a number > 0")
        if not is_num(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            raise bad("warmup_ratio", "must be in [0, 1)")
        if not is_num(self.validation_fraction) or not 0 <= self.validation_fraction < 1:
            raise bad("validation_fraction", "must be in [0, 1)")
        if not is_num(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "must be a number >= 0")
        if not is_num(self.max_grad_norm) or self.max_grad_norm < 0:
            raise bad("max_grad_norm", "must be a number >= 0 (0 disables clipping)")
        if self.lr_scheduler not in SCHEDULERS:
            raise bad("lr_scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        if self.attn_implementation not in ATTN_CHOICES:
            raise bad("attn_implementation", f"must be one of {', '.join(ATTN_CHOICES)}")
        for key in ("bf16", "gradient_checkpointing", "save_checkpoints"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "must be true or false")
        if self.deepspeed is not None and not isinstance(self.deepspeed, str):
            raise bad("deepspeed", f"must be null, {' or '.join(DEEPSPEED_NAMES)}, or a path to a JSON file")
        if self.master_weights not in MASTER_WEIGHTS:
            raise bad("master_weights", f"must be one of {', '.join(MASTER_WEIGHTS)}")
        if self.master_weights == "bf16" and not self.bf16:
            raise bad("master_weights", "bf16 master weights need bf16: true (or set master_weights: fp32)")
        if self.master_weights == "bf16" and self.deepspeed is not None:
            raise bad(
                "master_weights",
                f"bf16 master weights cannot be combined with deepspeed {self.deepspeed!r}: ZeRO keeps fp32 master "
                "weights and optimizer states. Set deepspeed: null for the paper's pure bf16, or master_weights: fp32",
            )
        if self.loss_weighting not in LOSS_WEIGHTING:
            raise bad("loss_weighting", f"must be one of {', '.join(LOSS_WEIGHTING)}")
        if self.max_steps is not None and (not is_int(self.max_steps) or self.max_steps < 1):
            raise bad("max_steps", "must be null or an integer >= 1")
        if self.wandb_project is not None and (not isinstance(self.wandb_project, str) or not self.wandb_project):
            raise bad("wandb_project", "must be a non-empty string, or null to turn W&B off")

    # ------------------------------------------------------------------ derived values
    def accumulation_for(self, world_size: int) -> int:
        """Gradient-accumulation steps per process that keep the configured effective batch on N processes."""
        return max(1, self.gradient_accumulation_steps // max(1, world_size))

    def effective_batch(self, world_size: int) -> int:
        return self.per_device_batch_size * self.accumulation_for(world_size) * max(1, world_size)


def repo_root() -> Path:
    """The checkout this package lives in (config/deepspeed/ is found there when cwd is elsewhere)."""
    return Path(__file__).resolve().parents[2]


def resolve_deepspeed_config(value: str | None, cwd: Path | None = None) -> Path | None:
    """`zero2` / `zero3` -> config/deepspeed/<name>.json (relative to cwd, else the checkout); a path as is."""
    if value is None:
        return None
    if value in DEEPSPEED_NAMES:
        rel = Path("config") / "deepspeed" / f"{value}.json"
        for base in (cwd or Path.cwd(), repo_root()):
            if (base / rel).is_file():
                return (base / rel).resolve()
        raise StargateError(f"training.deepspeed: {rel} not found (looked in {cwd or Path.cwd()} and {repo_root()})")
    path = Path(value)
    if not path.is_file():
        raise StargateError(
            f"training.deepspeed: {value!r} is neither {' nor '.join(DEEPSPEED_NAMES)} nor an existing JSON file"
        )
    return path.resolve()


def load_deepspeed_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StargateError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(cfg, dict) or "zero_optimization" not in cfg:
        raise StargateError(f"{path}: a DeepSpeed config needs a 'zero_optimization' section")
    return cfg

"""The `training` config slice as a typed object.

Keys, limits and defaults (the paper's values, spec §5, except bf16 off for CPU) are defined once, in
config/schema.yaml; a by-hand `stargate train --spec '{...}'` call is checked against the same schema.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import validate_slice
from ..errors import StargateError
from .methods.base import TrainingMethod
from .methods.registry import get_method, method_blocks

DEEPSPEED_NAMES = ("zero2", "zero3")


@dataclass(frozen=True)
class TrainingSpec:
    """The `training` slice, typed. Names, types, limits and defaults live in config/schema.yaml only."""

    method: str
    max_length: int
    learning_rate: float
    epochs: float
    lr_scheduler: str
    warmup_ratio: float
    per_device_batch_size: int
    gradient_accumulation_steps: int  # for ONE process; divided by the number of processes
    weight_decay: float
    max_grad_norm: float
    bf16: bool
    # fp32: bf16 compute, fp32 weights and AdamW states (mixed precision; what ZeRO always does).
    # bf16: weights, gradients and AdamW states all bf16 (the paper's run, spec §5); needs bf16, no DeepSpeed.
    master_weights: str
    # tokens: loss = sum over all label tokens of the accumulated batch / their count (transformers >= 4.46).
    # micro_batch: the mean of each micro-batch's token mean, as transformers 4.39 computed it for the paper.
    loss_weighting: str
    validation_fraction: float
    seed: int
    split_seed: int
    gradient_checkpointing: bool
    deepspeed: str | None
    attn_implementation: str
    logging_steps: int
    wandb_project: str | None
    save_checkpoints: bool
    max_steps: int | None  # None: run `epochs` full epochs (smoke tests set a small number)
    # the final answer after each used conversation: self (m_t's, the paper), gold (the oracle's), none
    regularizer: str
    # every method's knob block (`training.<block>`, filled from the schema), by block name; `knobs` types the
    # method's own (methods/<method>.py)
    blocks: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSpec:
        """Validate against the schema's `training` object (unknown keys, types, limits) and fill defaults."""
        if not isinstance(data, dict):
            raise StargateError(f"training: expected a mapping, got {type(data).__name__}")
        data = dict(data)
        data.setdefault("method", "sft")
        filled = validate_slice(data, "training", where="training")
        get_method(filled["method"])  # an unknown name (schema and registry disagree) fails here
        blocks = {b: filled[b] for b in method_blocks() if b in filled}
        spec = cls(**{f.name: filled[f.name] for f in fields(cls) if f.name != "blocks"}, blocks=blocks)
        spec.check()
        return spec

    def check(self) -> None:
        """What the schema cannot say: combinations of keys."""
        if self.master_weights == "bf16" and not self.bf16:
            raise StargateError(
                "training.master_weights: bf16 master weights need bf16: true (or set master_weights: fp32)"
            )
        if self.master_weights == "bf16" and self.deepspeed is not None:
            raise StargateError(
                f"training.master_weights: bf16 master weights cannot be combined with deepspeed {self.deepspeed!r}: "
                "ZeRO keeps fp32 master weights and optimizer states. Set deepspeed: null for the paper's pure bf16, "
                "or master_weights: fp32"
            )

    @classmethod
    def from_json(cls, text: str) -> TrainingSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StargateError(f"--spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The slice as configured: the shared keys, then each method's block under its own name."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "blocks"}
        return {**out, **{b: dict(v) for b, v in self.blocks.items()}}

    @property
    def training_method(self) -> TrainingMethod:
        return get_method(self.method)

    @property
    def knobs(self) -> Any:
        """The method's own knobs, typed (None for a method without any)."""
        method = self.training_method
        return method.knobs(self.blocks.get(method.block)) if method.block else None

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

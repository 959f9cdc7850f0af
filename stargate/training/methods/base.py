"""What a training method is: one object per `training.method`, asked by every stage and rule that differs by
method (selection, data building, the training run, the model card, the rules' inputs).

A method is a subclass of `TrainingMethod` in its own module of this package, listed in registry.py, with a
`training.<block>` object in config/schema.yaml when it has knobs. Nothing else names a method: the select,
sft_data and train stages, rules/sft.smk and rules/train.smk, the card and the summary read these attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import StargateError


@dataclass(frozen=True)
class TrainerContext:
    """What the shared driver (training/driver.py) hands a method to build its trainer."""

    spec: Any  # TrainingSpec
    args: Any  # the method's TrainingArguments subclass instance
    model: Any
    load_model: Callable[[], Any]  # another copy of m0, as loaded for `model` (DPO's frozen reference)
    trainer_class: Callable[[type | None], type]  # the driver's Trainer (numerics fixed) over a base class
    train_split: Any  # data.EncodedSplit
    eval_split: Any
    tokenizer: Any
    pad_id: int
    callbacks: list
    # what an online method plays its rollouts with
    base_model: Path | None = None  # m0's folder (the KL reference, the rewards' scorer)
    prompt_set: str | None = None  # the prompt set the data was written under
    label_rule: str = "char_offsets"
    roles: dict[str, Any] | None = None  # the roles' specs (stargate train --roles)
    work_dir: Path | None = None  # the job's checkpoint folder beside the output


class TrainingMethod:
    """A training method. Class attributes say what the workflow needs; methods do the method's work."""

    name: ClassVar[str]
    # the `training.<block>` object of its knobs (None: none); only its own block is recorded by the train rule
    block: ClassVar[str | None] = None
    # True: trains on the `select` stage's choice among every scored conversation; False: on the top-k
    selects: ClassVar[bool] = False
    # the keys of its block its selection reads (the select rule records these only: a trainer knob such as
    # dpo.beta reruns training, not the selection)
    select_keys: ClassVar[tuple[str, ...]] = ()
    # online: trains on rollouts it plays itself (stage rollout_prompts gives the pairs), not on the loop's data
    online: ClassVar[bool] = False
    # m_t starts from m_{t-1} (m0 stays the reference); False: every m_t is trained from m0 (the paper)
    continues: ClassVar[bool] = False
    # the roles the train job runs (online methods): their specs reach `stargate train --roles`
    roles: ClassVar[tuple[str, ...]] = ()
    # the fewest conversations per pair the method can use (checked at load: simulation.conversations_per_pair)
    min_conversations_per_pair: ClassVar[int] = 1
    # the model card's phrase for the data; {p} is the iteration whose conversations it trains on
    card: ClassVar[str]

    # ------------------------------------------------------------------ config
    def knobs(self, block: dict[str, Any] | None) -> Any:
        """The method's typed knobs from its filled config block (None without a block)."""
        return None

    def check_config(self, config: dict[str, Any]) -> list[str]:
        """Problems of a filled config under this method, each naming the key and the fix (none by default)."""
        n = config["simulation"]["conversations_per_pair"]
        if n < self.min_conversations_per_pair:
            return [
                f"training.method: {self.name} needs at least {self.min_conversations_per_pair} conversations per "
                f"pair, simulation.conversations_per_pair is {n}; raise it"
            ]
        return []

    def instructed(self, training: dict[str, Any]) -> bool:
        """Whether its m_t (t >= 1) is prompted with the Questioner instruction, as m0 is (simulate --instructed);
        False: the fine-tuned models' bare prompt, as their training data has it (the paper)."""
        return False

    def needs_gold(self, training: dict[str, Any]) -> bool:
        """Whether the training job reads the Oracle's gold responses (online methods; offline ones read them
        through the scores)."""
        return False

    # ------------------------------------------------------------------ stage `select` (only when `selects`)
    def select(
        self, convs: dict[tuple[str, int], dict], scores: dict[str, list[tuple[float, int]]], knobs: dict, source: str
    ) -> tuple[list[dict], dict[str, Any]]:
        """The conversations to train on (records with the fields this method adds), and the output's meta.
        `scores`: pair -> [(m0's log p(gold), conv)]; `knobs`: the `select_keys` of its block; `source`: the
        scores' file, for messages."""
        raise StargateError(f"training.method {self.name} trains on the top-k conversations, not a selection")

    # ------------------------------------------------------------------ stage `sft_data`
    def check_used(self, convs: list[dict], path: str | Path) -> None:
        """The used conversations carry what this method's records need."""

    def records(self, examples: list[tuple[dict, list[dict]]], source: str | Path) -> list[dict]:
        """Training records from (conversation record, chat messages) pairs."""
        return [{"pair": c["pair"], "conv": c["conv"], "messages": m} for c, m in examples]

    # ------------------------------------------------------------------ stage `train`
    def load_records(self, data: Path) -> list[dict]:
        """The training records of `data`, checked."""
        from ..data import load_sft_records

        return load_sft_records(data)

    def encode(self, tokenizer: Any, records: list[dict], max_length: int, labels: str) -> Any:
        """The records tokenized for the trainer (data.EncodedSplit)."""
        from ..data import encode_records

        return encode_records(tokenizer, records, max_length, self.encoder(labels), labels)

    def encoder(self, labels: str) -> Callable | None:
        """`encode(tokenizer, record, max_length)` of a record, None: its `messages` chat (SFT's encoding)."""
        return None

    def arguments(self, knobs: Any) -> tuple[type, dict[str, Any]]:
        """The TrainingArguments class and the method's own arguments beside the shared ones."""
        from transformers import TrainingArguments

        return TrainingArguments, {}

    def resumable(self) -> bool:
        """Whether a killed job's rerun resumes from the checkpoints it left beside the output."""
        return False

    def build_trainer(self, ctx: TrainerContext) -> Any:
        raise NotImplementedError

    def after_train(self, trainer: Any, folder: Path, work_dir: Path) -> dict[str, Any]:
        """Files the method adds to the finished model folder; returns figures for train_metrics.json."""
        return {}

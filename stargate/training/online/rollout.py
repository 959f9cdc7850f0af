"""One GRPO rollout batch: every conversation is played out in full, the policy asking and the Roleplayer role
answering (any backend), for the configured turns, and ends with the policy's final answer or its last question.

The token sequence the loss sees is the conversation's chat, encoded by SFT's own code (masking.encode_chat,
the same label rule), so exactly the tokens SFT trains on (the policy's questions and final answer, each with
its end-of-turn token) carry the loss: TRL's `env_mask` is 1 on SFT's label positions and 0 on the user's
(Roleplayer's) turns and the template's headers. Each question is sampled from the rendering of the chat so far
(the prompt set's Questioner messages with the generation prompt), a prefix of that encoded chat.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...backends.base import Sampling
from ...encoding.spans import render_chat
from ...errors import StargateError
from ...rewards.base import Rollout
from ..masking import IGNORE_INDEX, encode_chat


@dataclass(frozen=True)
class PolicySampling:
    temperature: float
    top_p: float
    max_new_tokens: int
    answer_max_new_tokens: int


def completion_split(ids: list[int], labels: list[int]) -> tuple[list[int], list[int], list[int]]:
    """prompt ids (up to the first trained token), completion ids, and the completion's env_mask (1 = the
    policy's own token, in the loss; 0 = the user's turn or a template header)."""
    first = next((i for i, x in enumerate(labels) if x != IGNORE_INDEX), None)
    if first is None:
        raise StargateError("a rollout has no policy token left within training.max_length; raise it")
    return ids[:first], ids[first:], [int(x != IGNORE_INDEX) for x in labels[first:]]


def rollout_messages(prompts: Any, r: Rollout, instructed: bool, final: str | None) -> list[dict]:
    """The chat the loss is computed on: the Questioner's messages (with the instruction when `instructed`),
    then the final answer after the task repeated (`final`), or, without one, ending with the last question."""
    turns = r.turns if final is not None else r.turns[:-1]
    msgs = prompts.questioner(r.name, r.task, turns, not instructed)
    if isinstance(msgs, str):
        raise StargateError(
            f"online training renders chats; prompt set {prompts.name!r} builds raw strings (paper_v1): use fixed_v1"
        )
    msgs = [dict(m) for m in msgs]
    if final is None:
        return msgs
    msgs[-1]["content"] = msgs[-1]["content"].strip() + "\n\n" + r.task.strip()
    return msgs + [{"role": "assistant", "content": final.strip()}]


class MultiTurnRollout:
    """TRL's `rollout_func(prompts, trainer)`: each prompt is a pair key of the split's rollout prompts."""

    def __init__(
        self,
        *,
        tokenizer: Any,
        prompts: Any,
        pairs: dict[str, Rollout],
        roleplayer: Any,
        roleplayer_sampling: Sampling,
        sampling: PolicySampling,
        turns: int,
        final_answer: bool,
        instructed: bool,
        max_length: int,
        labels: str,
        log_path: Path | None = None,
    ):
        self.tokenizer, self.prompts, self.pairs = tokenizer, prompts, pairs
        self.roleplayer, self.roleplayer_sampling, self.sampling = roleplayer, roleplayer_sampling, sampling
        self.turns, self.final_answer, self.instructed = turns, final_answer, instructed
        self.max_length, self.labels, self.log_path = max_length, labels, log_path
        self.policy_tokens = 0  # tokens the policy generated (the online budget the report states)

    # ------------------------------------------------------------------ generation
    def generate(self, model: Any, chats: list[list[dict]], max_new_tokens: int) -> list[str]:
        import torch

        texts = [render_chat(self.tokenizer, c, add_generation_prompt=True) for c in chats]
        pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        )
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model.generate(
                    input_ids=enc["input_ids"].to(model.device),
                    attention_mask=enc["attention_mask"].to(model.device),
                    do_sample=True,
                    temperature=self.sampling.temperature,
                    top_p=self.sampling.top_p,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad_id,
                )
        finally:
            model.train(was_training)
        new = out[:, enc["input_ids"].shape[1] :]
        texts_out = []
        for row in new.tolist():
            row = [t for t in row if t != pad_id]
            self.policy_tokens += len(row)
            texts_out.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts_out

    def play(self, model: Any, keys: list[str]) -> list[Rollout]:
        """Every conversation of the batch, turn by turn (all conversations of a turn in one generation)."""
        rolls = [self.pairs[k] for k in keys]
        turns: list[list[dict]] = [[] for _ in rolls]
        for _ in range(self.turns):
            chats = [
                self.prompts.questioner(r.name, r.task, t, not self.instructed)
                for r, t in zip(rolls, turns, strict=True)
            ]
            for t, q in zip(turns, self.generate(model, chats, self.sampling.max_new_tokens), strict=True):
                t.append({"role": "questioner", "text": q})
            asks = [self.prompts.roleplayer(r.persona, r.task, r.name, t) for r, t in zip(rolls, turns, strict=True)]
            replies = self.roleplayer.generate(asks, self.roleplayer_sampling)
            for t, rep in zip(turns, replies, strict=True):
                t.append({"role": "roleplayer", "text": (rep[0] or "").strip()})
        return [Rollout(**{**asdict(r), "turns": t}) for r, t in zip(rolls, turns, strict=True)]

    # ------------------------------------------------------------------ TRL's interface
    def __call__(self, prompts: list, trainer: Any) -> dict[str, Any]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        keys = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        rolls = self.play(model, keys)
        finals: list[str | None] = [None] * len(rolls)
        if self.final_answer:
            chats = [rollout_messages(self.prompts, r, self.instructed, "")[:-1] for r in rolls]
            finals = self.generate(model, chats, self.sampling.answer_max_new_tokens)
        prompt_ids, completion_ids, env_mask = [], [], []
        for r, final in zip(rolls, finals, strict=True):
            enc = encode_chat(
                self.tokenizer, rollout_messages(self.prompts, r, self.instructed, final), self.max_length, self.labels
            )
            p, c, m = completion_split(enc.input_ids, enc.labels)
            prompt_ids.append(p)
            completion_ids.append(c)
            env_mask.append(m)
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": None,  # sampled by the training model itself: TRL recomputes them
            "env_mask": env_mask,
            "rollout": [{**asdict(r), "final": f} for r, f in zip(rolls, finals, strict=True)],
        }

    def log(self, step: int, rollouts: list[dict], rewards: list[float]) -> None:
        if self.log_path is None:
            return
        with self.log_path.open("a", encoding="utf-8") as fh:
            for i, (r, v) in enumerate(zip(rollouts, rewards, strict=True)):
                rec = {
                    "step": step,
                    "index": i,
                    "pair": r["pair"],
                    "reward": v,
                    "turns": r["turns"],
                    "final": r["final"],
                }
                fh.write(json.dumps(rec, sort_keys=True) + "\n")

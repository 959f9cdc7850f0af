"""Online training (training.method grpo, issue 23): the rollout's loss mask is SFT's label mask, the three
rewards compute what they say, a tiny GRPO run trains through TRL, and a killed run resumes from its last
checkpoint (optimizer, scheduler and RNG included) to the same weights as an uninterrupted one."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from test_train import clean_env, state  # noqa: F401  (fixtures and helpers)

from stargate.backends.base import Score
from stargate.prompts import load_prompt_set
from stargate.records import read_jsonl, read_meta
from stargate.rewards.base import Rollout
from stargate.rewards.info_gain import BELIEF_PROMPT, log_softmax_at
from stargate.rewards.registry import get_reward
from stargate.training.masking import IGNORE_INDEX, encode_chat
from stargate.training.online.rollout import completion_split, rollout_messages
from stargate.training.spec import TrainingSpec

TURNS = [
    {"role": "questioner", "text": "Where would you like to go?"},
    {"role": "roleplayer", "text": "The sea, and I dislike long sentences."},
    {"role": "questioner", "text": "Budget?"},
    {"role": "roleplayer", "text": "Low."},
]
ROLL = Rollout(
    pair="A-t0001|A-p00", name="Maya", task="Plan a trip.", persona="Maya is a nurse who hikes.", turns=TURNS
)


@pytest.mark.parametrize("final", [None, "Camp by the sea."])
def test_rollout_loss_falls_on_the_policys_tokens_exactly_as_sfts_mask(tiny_model_dir, final):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = load_prompt_set("fixed_v1")
    msgs = rollout_messages(prompts, ROLL, instructed=True, final=final)
    enc = encode_chat(tok, msgs, 1024)
    p, c, m = completion_split(enc.input_ids, enc.labels)
    assert p + c == enc.input_ids and len(m) == len(c)
    # env_mask is SFT's label mask over the completion: the same positions, no more, no fewer
    assert [i for i, x in enumerate(m) if x] == [i - len(p) for i, x in enumerate(enc.labels) if x != IGNORE_INDEX]
    trained = tok.decode([t for t, x in zip(c, m, strict=True) if x])
    assert "Where would you like to go?" in trained and "Budget?" in trained
    assert "dislike" not in trained and "Low." not in trained and "Maya" not in trained  # the user's turns
    if final:
        assert "Camp by the sea." in trained and msgs[-2]["content"].endswith("Plan a trip.")
    else:
        assert msgs[-1] == {"role": "assistant", "content": "Budget?"}  # ends with the last question
    # the first message is the Questioner's instructed prompt, as m0 is asked in the simulation
    assert msgs[0] == prompts.questioner("Maya", "Plan a trip.", [], False)[0]


class TableScorer:
    """A scorer whose log-probabilities come from a function of (context text, target)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def score(self, contexts, targets):
        self.calls.append((contexts, targets))
        return [Score(self.fn(json.dumps(c), t), 1) for c, t in zip(contexts, targets, strict=True)]


def test_info_gain_is_the_rise_of_the_true_personas_belief():
    true, others = "Maya is a nurse who hikes.", ("Tomas is a carpenter.", "Ann is a pilot.")
    roll = Rollout(**{**ROLL.__dict__, "distractors": others})

    def fn(ctx, target):  # the conversation mentions the sea: the true persona gains 2 nats, the others none
        return -10.0 + (2.0 if target == true and "sea" in ctx else 0.0)

    reward = get_reward("info_gain")(scorer=TableScorer(fn))
    (value,) = reward([roll])
    expected = log_softmax_at([-8.0, -10.0, -10.0], 0) - log_softmax_at([-10.0, -10.0, -10.0], 0)
    assert value == pytest.approx(expected) and value > 0
    assert "history" not in BELIEF_PROMPT.format(history="x")  # the prompt is filled
    # per-turn credit: the first question alone revealed the sea, the second added nothing
    first, both = reward.per_turn(roll)
    assert first == pytest.approx(both) == pytest.approx(expected)


def test_gold_logprob_scores_the_gold_after_the_conversation_like_the_score_stage():
    prompts = load_prompt_set("fixed_v1")
    scorer = TableScorer(lambda ctx, target: -3.5 if "Budget?" in ctx else -9.0)
    reward = get_reward("gold_logprob")(prompts=prompts, scorer=scorer)
    assert reward([Rollout(**{**ROLL.__dict__, "gold": "Go camping."})]) == [-3.5]
    contexts, targets = scorer.calls[0]
    assert targets == ["Go camping."]
    assert contexts[0] == prompts.scoring_context("qa-experimental", "Maya", ROLL.persona, "Plan a trip.", TURNS)
    with pytest.raises(Exception, match="no gold"):
        reward([ROLL])


def test_world_reward_is_the_share_of_relevant_attributes_elicited():
    from stargate.world.data import make_personas
    from stargate.world.facts import ATTRIBUTES, TASKS

    task = TASKS[0]
    persona = next(iter(make_personas().values()))[0]
    from stargate.world.reading import attributes_in

    attrs = attributes_in(persona)
    said = ATTRIBUTES[task.relevant[0]][1][attrs[task.relevant[0]]][0]
    turns = [{"role": "questioner", "text": "?"}, {"role": "roleplayer", "text": said}]
    roll = Rollout(pair="p", name="X", task=task.text, persona=persona, turns=turns)
    assert get_reward("world")()([roll]) == [0.5]


# ----------------------------------------------------------------------------- tiny runs through TRL
def rollout_prompts(data_files, out: Path) -> Path:
    from stargate.stages import rollout_prompts as stage

    stage.run(
        argparse.Namespace(
            method="grpo", tasks=str(data_files["tasks"]), personas=str(data_files["personas"]),
            gold=str(data_files["gold"]), distractors=1, distractor_seed=0, prompts="fixed_v1", output=str(out),
        )
    )  # fmt: skip
    return out


ROLES = {
    "questioner": {"sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 6, "seed": 1}},
    "answerer": {"sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 6, "seed": 1}},
    "roleplayer": {"spec": {"backend": "scripted", "options": {"reply": "I love the sea."}}, "model": "fixed"},
    "scorer": {"spec": {"backend": "hf", "options": {"dtype": "float32", "batch_size": 8}}},
    "max_turns": 1,
}


def grpo_run(tiny_model_dir, data, out, steps, save_steps=10, callbacks=None):
    from stargate.training.driver import train

    spec = TrainingSpec.from_dict(
        {"method": "grpo", "max_length": 1024, "learning_rate": 1e-3, "logging_steps": 1, "warmup_ratio": 0.0,
         "validation_fraction": 0.0, "wandb_project": None, "seed": 3,
         "grpo": {"reward": "gold_logprob", "group_size": 2, "prompts_per_step": 2, "steps": steps,
                  "save_steps": save_steps, "final_answer": True}}
    )  # fmt: skip
    return train(base_model=tiny_model_dir, data=data, output=out, spec=spec, iteration=1, run_name="test",
                 roles=ROLES, callbacks=callbacks)  # fmt: skip


def test_tiny_grpo_run_trains_the_policy_through_trl(tiny_model_dir, data_files, tmp_path, clean_env):  # noqa: F811
    data = rollout_prompts(data_files, tmp_path / "A.jsonl")
    assert read_meta(data)["method"] == "grpo" and len(read_jsonl(data)) == 6
    assert all(len(r["distractors"]) == 1 and r["gold"] for r in read_jsonl(data))
    out = tmp_path / "m1"
    info = grpo_run(tiny_model_dir, data, out, steps=2)
    assert info["results"]["global_step"] == 2 and info["spec"]["method"] == "grpo"
    assert any("reward" in k for h in info["log_history"] for k in h)  # TRL's reward metrics were logged
    rolls = read_jsonl(out / "rollouts.jsonl")
    assert len(rolls) == 2 * 2 * 2  # steps x pairs x group
    assert all(math.isfinite(r["reward"]) and r["turns"][1]["text"] == "I love the sea." and r["final"] for r in rolls)
    before, after = state(tiny_model_dir), state(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert "online GRPO" in (out / "README.md").read_text()


class Killed(Exception):
    pass


@pytest.mark.slow
def test_a_killed_grpo_run_resumes_from_its_last_checkpoint(tiny_model_dir, data_files, tmp_path, clean_env):  # noqa: F811
    from transformers import TrainerCallback

    data = rollout_prompts(data_files, tmp_path / "A.jsonl")
    clean = tmp_path / "clean" / "m1"
    clean.parent.mkdir()
    grpo_run(tiny_model_dir, data, clean, steps=4, save_steps=2)

    class KillAfter3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Killed

    crashed = tmp_path / "crashed" / "m1"
    crashed.parent.mkdir()
    with pytest.raises(Killed):
        grpo_run(tiny_model_dir, data, crashed, steps=4, save_steps=2, callbacks=[KillAfter3()])
    assert not crashed.exists() and (crashed.parent / "m1.checkpoints" / "checkpoint-2").is_dir()
    info = grpo_run(tiny_model_dir, data, crashed, steps=4, save_steps=2)
    assert info["results"]["global_step"] == 4
    a, b = state(clean), state(crashed)
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run's weights differ from the uninterrupted run's"
    assert read_jsonl(crashed / "rollouts.jsonl") == read_jsonl(clean / "rollouts.jsonl")


def test_the_paper_grpo_overlay_dry_runs_with_continued_policies_and_no_offline_data(tmp_path):
    """config/paper-grpo.yaml on config/paper.yaml: rollout prompts for splits A and B, m2 continues from m1,
    both train jobs get the roles, no training-split simulation or SFT data, and the test split simulates
    every m_t with the Questioner instruction (as the policy was trained)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--cores", "2", "-s", str(repo / "Snakefile"),
         "--configfile", str(repo / "config/paper.yaml"), str(repo / "config/paper-grpo.yaml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    shells = [line.removeprefix("Shell command: ") for line in out.stdout.splitlines() if "Shell command: " in line]
    trains = sorted(s for s in shells if s.startswith("stargate train "))
    assert len(trains) == 2 and all("--roles " in s for s in trains)
    assert "--init-model results/models/m1" in trains[1] and "--init-model" not in trains[0]
    assert sum(s.startswith("stargate rollout-prompts") for s in shells) == 2
    assert not any(s.startswith(("stargate sft-data", "stargate regularize", "stargate select")) for s in shells)
    sims = [s for s in shells if s.startswith("stargate simulate")]
    assert sims and all("test.jsonl" in s for s in sims)  # only the evaluation simulates
    assert all(("--instructed" in s) == ("--iteration 0 " not in s) for s in sims)


def test_turn_credit_scores_the_gold_after_each_question(tiny_model_dir, data_files, tmp_path, monkeypatch):
    """Per-turn credit (evaluation.turn_credit): m0's log p(gold) after 0, 1, 2 exchanges, each gain the
    difference of consecutive ones, the info_gain column alike; the table's mean gain per question."""
    import csv

    from conftest import role_json

    from stargate import backends
    from stargate.records import write_jsonl
    from stargate.stages import generation, turn_credit, turn_credit_table

    loads = []
    real_load = generation.load_backend
    counted = lambda *a, **k: loads.append(a[1]) or real_load(*a, **k)  # noqa: E731
    monkeypatch.setattr(generation, "load_backend", counted)
    monkeypatch.setattr(backends, "load_backend", counted)
    convs = [{"pair": "A-t0001|A-p00", "conv": c, "target_turns": 2, "turns": TURNS} for c in range(2)]
    write_jsonl(tmp_path / "m1" / "credit" / "conv.jsonl", convs, {"stage": "pool"})
    out = tmp_path / "m1" / "credit" / "test.jsonl"
    turn_credit.run(
        argparse.Namespace(
            conversations=str(tmp_path / "m1" / "credit" / "conv.jsonl"), gold=str(data_files["gold"]),
            tasks=str(data_files["tasks"]), personas=str(data_files["personas"]), prompts="fixed_v1",
            role=role_json(), model=str(tiny_model_dir), gpus=0, info_gain=True, distractors=1,
            distractor_seed=0, output=str(out),
        )
    )  # fmt: skip
    rows = read_jsonl(out)
    assert loads == [str(tiny_model_dir)]  # m0 loaded once: the gold's scorer and the belief model
    assert [r["k"] for r in rows] == [0, 1, 2, 0, 1, 2]
    assert rows[0]["gain"] is None and rows[0]["info_gain"] == pytest.approx(0.0, abs=1e-9)
    for a, b in zip(rows, rows[1:], strict=False):
        if b["k"]:
            assert b["gain"] == pytest.approx(b["logprob"] - a["logprob"])
            assert b["info_gain_gain"] == pytest.approx(b["info_gain"] - a["info_gain"])
    assert len({r["logprob"] for r in rows[:3]}) == 3  # each cut is its own context
    table = tmp_path / "turn_credit.csv"
    turn_credit_table.run(argparse.Namespace(credit=[str(out)], output=str(table)))
    got = list(csv.DictReader(table.open()))
    assert [(r["t"], r["question"], r["n"]) for r in got] == [("1", "1", "2"), ("1", "2", "2")]
    assert float(got[0]["mean_gain"]) == pytest.approx(rows[1]["gain"])

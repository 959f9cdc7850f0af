"""The learning world (issue 13): the scripted Roleplayer reveals an attribute only when asked about it, the
gold uses the task's relevant attributes, the reward (m0 log p(gold)) sees the difference, the judge counts
used facts, and the checked-in data is what the world writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stargate import world
from stargate.backends import Sampling, load_backend
from stargate.prompts import load_prompt_set

REPO = Path(__file__).resolve().parents[1]
PERSONA = world.persona_text(
    "Ana",
    {
        "diet": "vegetarian",
        "cooking": "beginner",
        "budget": "tight",
        "scenery": "beaches",
        "genre": "poetry",
        "time": "short",
        "fitness": "athlete",
        "injury": "knee",
    },
)
DINNER = world.TASKS[0].text  # relevant: diet, cooking


def roleplayer_prompt(question: str) -> list[dict]:
    """The fixed_v1 Roleplayer prompt the pipeline builds for a one-question conversation."""
    turns = [{"role": "questioner", "text": question}]
    return load_prompt_set("fixed_v1").roleplayer(PERSONA, DINNER, "Ana", turns)


def reply(question: str) -> str:
    backend = load_backend(
        {"backend": "scripted", "options": {"program": "stargate.world:roleplayer"}}, "world", stage="test"
    )
    return backend.generate([roleplayer_prompt(question)], Sampling())[0][0]


def test_a_question_about_an_attribute_reveals_it_and_only_it():
    assert reply("Do you follow any particular diet?") == "I am vegetarian, so no meat or fish."
    both = reply("What food do you like, and how experienced are you in the kitchen?")
    assert "vegetarian" in both and "beginner cook" in both
    budget = reply("How much money would you like to spend?")
    assert "budget is tight" in budget and "vegetarian" not in budget


def test_a_question_about_nothing_gets_a_vague_answer():
    for q in ("Tell me more about yourself!", "What would make tonight special?", ""):
        assert reply(q) == world.VAGUE
    # the persona's own attributes in the prompt are not mistaken for the question
    assert "vegetarian" in json.dumps(roleplayer_prompt("Hi?")) and reply("Hi?") == world.VAGUE


def test_only_the_latest_question_counts():
    turns = [
        {"role": "questioner", "text": "What is your diet?"},
        {"role": "roleplayer", "text": "I am vegetarian, so no meat or fish."},
        {"role": "questioner", "text": "Anything else?"},
    ]
    prompt = load_prompt_set("fixed_v1").roleplayer(PERSONA, DINNER, "Ana", turns)
    assert world.roleplayer(prompt) == world.VAGUE


def test_gold_uses_the_relevant_attributes_only():
    oracle = load_prompt_set("fixed_v1").oracle(PERSONA, DINNER)
    gold = world.gold(oracle)
    assert gold.startswith("Ana, since you are vegetarian and you are a beginner cook")
    assert "budget" not in gold and "beach" not in gold
    trip = world.gold(load_prompt_set("fixed_v1").oracle(PERSONA, world.TASKS[1].text))
    assert "budget is tight" in trip and "beaches" in trip and "vegetarian" not in trip


def test_elicited_share_and_judge():
    asked = [{"role": "questioner", "text": "Diet?"}, {"role": "roleplayer", "text": reply("Diet?")}]
    vague = [{"role": "questioner", "text": "Hi?"}, {"role": "roleplayer", "text": reply("Hi?")}]
    assert world.elicited(asked, PERSONA, DINNER) == 0.5 and world.elicited(vague, PERSONA, DINNER) == 0.0
    prompts = load_prompt_set("fixed_v1")
    good = "As a vegetarian beginner cook, try a simple veggie pasta."
    plain = "Try a steak."
    assert world.judge(prompts.judge(PERSONA, DINNER, plain, good)).endswith("Final Response: B")
    assert world.judge(prompts.judge(PERSONA, DINNER, good, plain)).endswith("Final Response: A")
    assert prompts.parse_verdict(world.judge(prompts.judge(PERSONA, DINNER, plain, plain))) is None  # a tie


@pytest.mark.slow
def test_smollm2_reward_is_higher_when_the_relevant_attributes_were_elicited(tmp_path):
    """With m0 = SmolLM2-135M (the world's scorer), eliciting both relevant facts raises log p(gold)."""
    from conftest import smollm2_dir

    from stargate.stages.prepare_model import convert_gguf

    folder = tmp_path / "smollm2"
    convert_gguf(smollm2_dir(), "SmolLM2-135M-Instruct.Q4_1.gguf", folder)
    from stargate.config import load_config

    scorer = load_config(REPO / "config" / "world.yaml")["roles"]["scorer"]  # bf16, as the world scores
    backend = load_backend({"backend": "hf", "options": scorer["options"]}, str(folder))
    prompts = load_prompt_set("fixed_v1")
    gold = world.gold(prompts.oracle(PERSONA, DINNER))
    q_good, q_bad = "What do you eat, and how experienced a cook are you?", "What is your budget?"
    convs = [[{"role": "questioner", "text": q}, {"role": "roleplayer", "text": reply(q)}] for q in (q_good, q_bad)]
    good, bad = backend.score(
        [prompts.scoring_context("qa-experimental", "Ana", PERSONA, DINNER, c) for c in convs], [gold, gold]
    )
    assert good.logprob > bad.logprob + 5


def test_checked_in_world_data_is_what_the_world_writes(tmp_path):
    world.write_data(tmp_path)
    for name in ("tasks.json", "personas.json"):
        assert (tmp_path / name).read_text() == (REPO / "data" / "world" / name).read_text(), name


def test_world_config_roles_run_the_world_programs():
    """config/world.yaml's roles, opened as the stages open them (role JSON, model label, prompt set), reply
    with the world's programs: the Roleplayer turn reveals the asked-about attribute, the Oracle writes the
    world's gold, the judge prefers the answer using the persona's relevant facts."""
    import argparse
    from types import SimpleNamespace

    from stargate.config import load_config
    from stargate.stages import generation, roleplayer_turn

    cfg = load_config(REPO / "config" / "world.yaml")
    prompts = load_prompt_set(cfg["prompts"])

    def role_args(role: str) -> argparse.Namespace:
        spec = cfg["roles"][role]
        role_json = json.dumps({k: spec[k] for k in ("backend", "options", "sampling") if k in spec})
        return argparse.Namespace(role=role_json, model=spec.get("model", "m0"), gpus=0, prompts=cfg["prompts"])

    persona = world.make_personas()["A"][0]  # a persona of data/world
    name, attrs, task = world.name_in(persona), world.attributes_in(persona), world.TASKS[1]  # budget, scenery
    by_key = {"p": SimpleNamespace(persona=persona, task=task.text, name=name)}
    convs = [
        {"pair": "p", "conv": i, "turns": [{"role": "questioner", "text": q}]}
        for i, q in enumerate(("How much money would you like to spend?", "Anything special?"))
    ]
    roleplayer_turn.answer(role_args("roleplayer"), prompts, by_key, convs, 1)
    assert [c["turns"][-1]["text"] for c in convs] == [world.ATTRIBUTES["budget"][1][attrs["budget"]][0], world.VAGUE]

    gold = generation.generate(role_args("oracle"), "oracle", [prompts.oracle(persona, task.text)], [("p",)])
    assert gold.outputs == [[world.gold_for(name, task, attrs)]]
    assert gold.outputs[0][0].startswith(f"{name}, since ")

    good, plain = f"A {attrs['budget']} trip to the {attrs['scenery']}.", "Stay home."
    judged = generation.generate(
        role_args("judge"),
        "judge",
        [prompts.judge(persona, task.text, plain, good), prompts.judge(persona, task.text, good, plain)],
        [("p", 0), ("p", 1)],
    )
    assert [prompts.parse_verdict(o[0]) for o in judged.outputs] == ["b", "a"]


def test_a_bad_program_is_a_clear_error():
    from stargate.errors import StargateError

    with pytest.raises(StargateError, match="cannot be loaded"):
        load_backend({"backend": "scripted", "options": {"program": "stargate.world:nothing"}}, "x")


def test_paired_bootstrap_interval_is_the_summarys_own():
    """world.json's m_t - m0 and logprob_differences.csv's are one computation: the same interval."""
    import pandas as pd

    from stargate.evaluation.logprobs import paired_difference
    from stargate.stages.world_report import paired_bootstrap

    rows = lambda values: [{"pair": f"p{i // 2}", "conv": i % 2, "logprob": v} for i, v in enumerate(values)]  # noqa: E731
    base = rows([float(i) for i in range(80)])
    up = rows([float(i) + 2.0 + (0.5 if i % 2 else -0.5) for i in range(80)])
    same = rows([float(i) + (1.0 if (i // 2) % 2 else -1.0) for i in range(80)])
    shifted = paired_bootstrap(base, up, 2000, 1)
    assert shifted["mean"] == pytest.approx(2.0) and shifted["n_pairs"] == 40
    assert shifted["ci95"][0] <= 2.0 <= shifted["ci95"][1]
    noise = paired_bootstrap(base, same, 2000, 1)
    assert noise["ci95"][0] < 0 < noise["ci95"][1]
    summary = paired_difference(pd.DataFrame(base), pd.DataFrame(same), 2000, 1)
    assert noise["ci95"] == [summary["ci_low"], summary["ci_high"]] and noise["mean"] == summary["difference"]

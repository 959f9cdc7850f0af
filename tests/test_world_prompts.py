"""The learning world reads the project's own rendered prompts back (stargate/world/reading.py): the persona's
'- name: value' lines, the task, the user's name, the Assistant's latest question, the two answers a judge
compares. Each prompt the world reads is rendered here with every shipped prompt set, and what the world
reads from it is checked field by field, so a template wording change that the world would misread (an
anchor reworded, a line the attribute pattern matches) fails here instead of silently changing the world."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stargate import world
from stargate.prompts import available_sets, load_prompt_set

REPO = Path(__file__).resolve().parents[1]
PERSONAS = world.make_personas()  # the personas of data/world, per split
ALL_PERSONAS = [p for split in PERSONAS.values() for p in split]
SETS = available_sets()


def _attrs(persona: str) -> dict[str, str]:
    """The persona's attributes as written (persona_text's lines), independently of the world's parser."""
    return dict(line[2:].split(": ") for line in persona.splitlines() if line.startswith("- "))


def test_every_world_config_uses_a_checked_set():
    """The sets below are all shipped sets, among them every set a config runs the world's programs with."""
    used = set()
    for path in (REPO / "config").rglob("*.yaml"):
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        roles = cfg.get("roles") if isinstance(cfg, dict) else None
        programs = [str(((r or {}).get("options") or {}).get("program")) for r in (roles or {}).values()]
        if any(p.startswith("stargate.world") for p in programs):
            used.add(cfg.get("prompts", "fixed_v1"))
    assert "fixed_v1" in used, "config/world.yaml no longer runs the world's programs: update this test"
    assert used <= set(SETS)


@pytest.mark.parametrize("prompt_set", SETS)
def test_roleplayer_prompt_gives_the_latest_question_and_the_persona(prompt_set):
    ps = load_prompt_set(prompt_set)
    questions = ["What do you usually eat?", "And how much money can you spend?", "How often do you cook?"]
    answers = ["I am vegan, no animal products at all.", "My budget is tight, I need to save money."]
    for persona in ALL_PERSONAS:
        name, attrs = world.name_in(persona), _attrs(persona)
        for task in world.TASKS:
            for n in range(1, len(questions) + 1):
                turns = []
                for i in range(n):
                    turns.append({"role": "questioner", "text": questions[i]})
                    if i < n - 1:
                        turns.append({"role": "roleplayer", "text": answers[i]})
                text = world.prompt_text(ps.roleplayer(persona, task.text, name, turns))
                assert world.last_question(text) == questions[n - 1], (prompt_set, n, text[-300:])
                assert world.attributes_in(text) == attrs, (prompt_set, persona)
    # and so the Roleplayer program answers the latest question from the persona
    persona = ALL_PERSONAS[0]
    turns = [{"role": "questioner", "text": "Tell me about your diet."}]
    reply = world.roleplayer(ps.roleplayer(persona, world.TASKS[0].text, world.name_in(persona), turns))
    assert reply == world.ATTRIBUTES["diet"][1][_attrs(persona)["diet"]][0]


@pytest.mark.parametrize("prompt_set", SETS)
def test_oracle_prompt_gives_the_name_task_and_persona(prompt_set):
    ps = load_prompt_set(prompt_set)
    for persona in ALL_PERSONAS:
        name, attrs = persona.splitlines()[0].removeprefix("My name is ").rstrip("."), _attrs(persona)
        for task in world.TASKS:
            text = world.prompt_text(ps.oracle(persona, task.text))
            assert world.name_in(text) == name, (prompt_set, text[:300])
            assert world.task_in(text) == task
            assert world.attributes_in(text) == attrs
            assert world.gold(ps.oracle(persona, task.text)) == world.gold_for(name, task, attrs)


@pytest.mark.parametrize("prompt_set", SETS)
def test_judge_prompt_gives_the_two_answers_task_and_persona(prompt_set):
    ps = load_prompt_set(prompt_set)
    answer_a = "Try a simple vegan pasta.\n\nIt is cheap and quick."
    answer_b = "Book a trip to the mountains."
    for persona in ALL_PERSONAS:
        attrs = _attrs(persona)
        for task in world.TASKS:
            text = world.prompt_text(ps.judge(persona, task.text, answer_a, answer_b))
            a, b = world.responses_in(text)
            assert (a.strip(), b.strip()) == (answer_a, answer_b), (prompt_set, a, b)
            assert world.task_in(text) == task
            assert world.attributes_in(text) == attrs
    # and so the judge program's verdict follows the answers' facts, in either order, and parses
    persona, task = ALL_PERSONAS[0], world.TASKS[0]
    attrs = _attrs(persona)
    good = " and ".join(attrs[r] for r in task.relevant) + " it is."
    verdicts = [
        ps.parse_verdict(world.judge(ps.judge(persona, task.text, x, y)))
        for x, y in ((good, "Try a steak."), ("Try a steak.", good))
    ]
    assert verdicts == ["a", "b"]

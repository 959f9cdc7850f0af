"""The three programs the world's roles run behind the `scripted` backend (`program: "stargate.world:<name>"`
in config/world.yaml): the Roleplayer (`roleplayer`), the Oracle's gold response (`gold`), the judge
(`judge`); and `elicited`, what share of a task's relevant attributes a conversation revealed."""

from __future__ import annotations

from typing import Any

from .facts import ATTRIBUTES, TASK_BY_TEXT, VAGUE, Task
from .reading import asked_about, attributes_in, last_question, name_in, prompt_text, responses_in, task_in


def answer_to(question: str, attrs: dict[str, str]) -> str:
    """What the user says: the asked-about attributes' statements, or a vague reply."""
    said = [ATTRIBUTES[a][1][attrs[a]][0] for a in asked_about(question) if a in attrs]
    return " ".join(said) if said else VAGUE


def roleplayer(prompt: Any, k: int = 0, seed: int = 0) -> str:
    text = prompt_text(prompt)
    return answer_to(last_question(text), attributes_in(text))


def gold_for(name: str, task: Task, attrs: dict[str, str]) -> str:
    a, b = (ATTRIBUTES[r][1][attrs[r]][1] for r in task.relevant)
    va, vb = (attrs[r] for r in task.relevant)
    return f"{name}, since {a} and {b}, the best {task.topic} for you is a {va} and {vb} {task.topic}."


def gold(prompt: Any, k: int = 0, seed: int = 0) -> str:
    text = prompt_text(prompt)
    return gold_for(name_in(text), task_in(text), attributes_in(text))


def relevant_used(answer: str, task: Task, attrs: dict[str, str]) -> int:
    """How many of the task's relevant attribute values an answer mentions (by value or gold phrase)."""
    low = answer.lower()
    used = 0
    for r in task.relevant:
        phrase = ATTRIBUTES[r][1][attrs[r]][1].lower().removeprefix("you ").split()
        used += attrs[r].lower() in low or all(w in low for w in phrase[-2:])
    return used


def judge(prompt: Any, k: int = 0, seed: int = 0) -> str:
    """'Final Response: A|B' for the answer using more relevant attribute values; a tie is unparsable."""
    text = prompt_text(prompt)
    a, b = responses_in(text)
    task, attrs = task_in(text), attributes_in(text)
    ua, ub = relevant_used(a, task, attrs), relevant_used(b, task, attrs)
    verdict = "A" if ua > ub else "B" if ub > ua else "tie"
    return f"Comparison: A uses {ua}, B uses {ub} of the relevant facts.\nFinal Response: {verdict}"


def elicited(conversation_turns: list[dict], persona: str, task_text: str) -> float:
    """Share of the task's relevant attributes the user revealed in a conversation."""
    attrs, task = attributes_in(persona), TASK_BY_TEXT[task_text.strip()]
    said = " ".join(t["text"] for t in conversation_turns if t["role"] == "roleplayer")
    hits = sum(ATTRIBUTES[r][1][attrs[r]][0] in said for r in task.relevant)
    return hits / len(task.relevant)

"""A world where the STaR-GATE loop visibly learns on a laptop (issue 13), in the spirit of TriPosT's scripted
verifiers: the users are simulated by code, so the world is cheap and honest, and the method is unchanged.

* Personas have structured attributes (diet, budget, ...), one value each.
* Each task's good answer depends on two of them (a dinner on diet and cooking skill, a trip on budget and
  scenery, ...).
* The Roleplayer (`roleplayer`) reveals an attribute only when the latest question is about it (its keywords)
  and answers vaguely otherwise.
* The Oracle's gold response (`gold`) states the task's relevant attributes and a suggestion built from them.
* The reward is still the paper's: m0's log p(gold | conversation). A conversation that elicited the relevant
  attributes lets m0 predict the gold's words, so top-k keeps the questions that ask about them.
* The judge (`judge`) prefers the answer that uses more of the user's relevant attribute values.

The three programs run behind the `scripted` backend (`options: {program: stargate.world:roleplayer}`), so
they work through the role interface with any simulation design. Personas and tasks are written to
data/world/*.json by `python -m stargate.world data/world` (checked in; a test keeps them in sync).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# attribute -> (keywords a question must contain to be "about" it, {value: (what the user says, gold phrase)})
ATTRIBUTES: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, str]]]] = {
    "diet": (
        ("diet", "eat", "food", "meat", "vegetarian", "vegan", "allerg", "cuisine", "dish", "meal", "restriction"),
        {
            "vegetarian": ("I am vegetarian, so no meat or fish.", "you are vegetarian"),
            "vegan": ("I am vegan, no animal products at all.", "you are vegan"),
            "pescatarian": ("I eat fish but never meat.", "you eat fish but no meat"),
        },
    ),
    "cooking": (
        ("cook", "skill", "experience", "kitchen", "recipe", "level", "comfortable"),
        {
            "beginner": ("I am a beginner cook and burn most things.", "you are a beginner cook"),
            "expert": ("I am an experienced cook and love a challenge.", "you are an experienced cook"),
        },
    ),
    "budget": (
        ("budget", "money", "spend", "cost", "price", "afford", "expensive", "cheap", "financ"),
        {
            "tight": ("My budget is tight, I need to save money.", "your budget is tight"),
            "generous": ("My budget is generous, money is no problem.", "your budget is generous"),
        },
    ),
    "scenery": (
        ("beach", "mountain", "city", "cities", "place", "destination", "climate", "weather", "nature", "outdoor"),
        {
            "beaches": ("I love warm beaches and the sea.", "you love warm beaches"),
            "mountains": ("I love quiet mountains and hiking trails.", "you love quiet mountains"),
            "cities": ("I love big cities with museums.", "you love big cities"),
        },
    ),
    "genre": (
        ("genre", "read", "book", "fiction", "novel", "author", "story", "stories", "topic", "subject"),
        {
            "scifi": ("I enjoy science fiction about space.", "you enjoy science fiction"),
            "history": ("I enjoy history, especially ancient Rome.", "you enjoy history"),
            "poetry": ("I enjoy poetry and short verses.", "you enjoy poetry"),
        },
    ),
    "time": (
        ("time", "long", "hour", "minute", "busy", "schedule", "often", "free"),
        {
            "short": ("I only have about twenty minutes a day.", "you only have twenty minutes"),
            "long": ("I have whole afternoons free.", "you have whole afternoons free"),
        },
    ),
    "fitness": (
        ("fit", "exercise", "active", "sport", "shape", "workout", "train", "run", "physical"),
        {
            "beginner": ("I rarely exercise and get tired quickly.", "you rarely exercise"),
            "athlete": ("I run every morning and I am very fit.", "you run every morning"),
        },
    ),
    "injury": (
        ("injur", "pain", "knee", "back", "limit", "condition", "health", "medical", "hurt"),
        {
            "knee": ("I have a bad knee, so no jumping.", "you have a bad knee"),
            "healthy": ("I have no injuries or health problems.", "you have no injuries"),
        },
    ),
}

VAGUE = "Hmm, I am not sure. What would you suggest?"


@dataclass(frozen=True)
class Task:
    text: str
    relevant: tuple[str, str]
    topic: str  # "a dinner", "a trip": how the gold names its suggestion


TASKS = (
    Task("Can you suggest a dinner I could cook tonight?", ("diet", "cooking"), "dinner"),
    Task("Where should I go on vacation this year?", ("budget", "scenery"), "vacation"),
    Task("Can you recommend a book for me?", ("genre", "time"), "book"),
    Task("Can you make me a simple exercise plan?", ("fitness", "injury"), "exercise plan"),
    Task("What should I have for lunch at work?", ("diet", "budget"), "lunch"),
    Task("How should I spend my free Saturday?", ("scenery", "time"), "Saturday"),
    Task("What gift should I buy for my brother?", ("budget", "genre"), "gift"),
    Task("How can I relax after a long day?", ("time", "fitness"), "evening"),
)
TASK_BY_TEXT = {t.text: t for t in TASKS}
NAMES = (
    "Ana", "Ben", "Chloe", "David", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko", "Luis",
    "Maya", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yara",
)  # fmt: skip
SPLIT_PERSONAS = {"A": 4, "B": 4, "test": 6}  # 32 training pairs per split, 48 test pairs
ATTR_LINE = re.compile(r"^- (\w+): (\w+)$", re.M)


# ----------------------------------------------------------------------------- data
def persona_text(name: str, attrs: dict[str, str]) -> str:
    return f"My name is {name}.\n" + "\n".join(f"- {k}: {v}" for k, v in attrs.items())


def make_personas(seed: int = 13) -> dict[str, list[str]]:
    """Personas per split: a name and one value per attribute, drawn with a private RNG."""
    rng = random.Random(seed)
    names = iter(NAMES)
    out: dict[str, list[str]] = {}
    for split, n in SPLIT_PERSONAS.items():
        out[split] = [
            persona_text(next(names), {a: rng.choice(sorted(vals)) for a, (_, vals) in ATTRIBUTES.items()})
            for _ in range(n)
        ]
    return out


def write_data(folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    about = "Written by `python -m stargate.world data/world` from stargate/world/__init__.py; do not edit."
    tasks = {"_about": about, **{s: [t.text for t in TASKS] for s in SPLIT_PERSONAS}}
    personas = {"_about": about, **make_personas()}
    for name, obj in (("tasks", tasks), ("personas", personas)):
        (folder / f"{name}.json").write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- reading prompts
def prompt_text(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(str(m.get("content", "")) for m in prompt)


def attributes_in(text: str) -> dict[str, str]:
    """The persona's attributes, from its '- name: value' lines anywhere in a prompt."""
    return {k: v for k, v in ATTR_LINE.findall(text) if k in ATTRIBUTES and v in ATTRIBUTES[k][1]}


def task_in(text: str) -> Task:
    found = [t for t in TASKS if t.text in text]
    if len(found) != 1:
        raise ValueError(f"the world knows no task in this prompt: {text[:200]!r}")
    return found[0]


def name_in(text: str) -> str:
    m = re.search(r"My name is (\w+)", text)
    return m.group(1) if m else "friend"


def asked_about(question: str) -> list[str]:
    """The attributes a question is about: those with a keyword in it (word starts, case-insensitive)."""
    q = question.lower()
    return [a for a, (words, _) in ATTRIBUTES.items() if any(re.search(rf"\b{w}", q) for w in words)]


def last_question(text: str) -> str:
    """The Assistant's latest question in the Roleplayer prompt's history ('AI Assistant: ...' lines)."""
    start = text.rfind("AI Assistant:")
    if start < 0:
        return ""
    body = text[start + len("AI Assistant:") :]
    end = body.rfind("\nYou:")
    return (body[:end] if end >= 0 else body).strip()


# ----------------------------------------------------------------------------- the three programs
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
    a = text.split("Assistant Response A:", 1)[-1].split("Assistant Response B:", 1)[0]
    b = text.split("Assistant Response B:", 1)[-1].split("FIRST, provide", 1)[0]
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

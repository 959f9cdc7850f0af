"""How the world's programs read the project's own rendered prompts (stargate/prompts) back: the persona's
'- name: value' lines, the task, the user's name, the Assistant's latest question, the two answers a judge
prompt compares. These depend on the templates' wording: tests/test_world_prompts.py renders every prompt the
world reads, with every shipped prompt set, and checks what is read here, so a wording change fails there.
"""

from __future__ import annotations

import re
from typing import Any

from .facts import ATTRIBUTES, TASKS, Task

ATTR_LINE = re.compile(r"^- (\w+): (\w+)$", re.M)


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


def responses_in(text: str) -> tuple[str, str]:
    """The two answers a judge prompt compares, unstripped: after 'Assistant Response A:' up to 'Assistant
    Response B:', and after that up to the instructions ('FIRST, provide')."""
    a = text.split("Assistant Response A:", 1)[-1].split("Assistant Response B:", 1)[0]
    b = text.split("Assistant Response B:", 1)[-1].split("FIRST, provide", 1)[0]
    return a, b

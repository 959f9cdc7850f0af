"""The Roleplayer audit's judge pass (evaluation.roleplayer_audit.judge): a judge role reads a Roleplayer
reply with the persona, the task and the question it answers, and says whether the reply contradicts the
persona (a fact or preference the persona rules out) or speaks as the assistant rather than the user.

The prompt is this module's text (its edits rerun the pass through the code fingerprint); the system
message is the prompt set's judge_system. The cheap checks (stargate.evaluation.roleplayer_audit) run on
every turn; this pass on a seeded sample of at most `max_turns` Roleplayer turns per questioner (trial 1),
so its cost is bounded and priced by `stargate cost`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

AUDIT_USER = """A language model is role-playing a user with the background below. An assistant asked the user a clarifying question about the user's request, and the role-playing model replied as the user. Check the reply.

User Background: {persona}

User Request: {task}

Assistant's Question: {question}

User's Reply: {reply}

FIRST, in no more than 40 words, name any statement of the reply that contradicts the user's background (a fact or preference the background rules out), or that the assistant rather than the user would say. Details the background does not mention are not contradictions.

SECOND, on a new line, state only "Verdict: CONSISTENT" or "Verdict: CONTRADICTS".

Explanation: <explanation>

Verdict: <CONSISTENT or CONTRADICTS>"""

VERDICT = re.compile(r"Verdict:\s*[\"'*<\[(]*\s*(CONSISTENT|CONTRADICTS)\b", re.IGNORECASE)

Turn = tuple[str, int, int]  # (pair, conv, index of the turn in the conversation)


def prompt(prompt_set, persona: str, task: str, question: str, reply: str) -> list[dict]:
    user = AUDIT_USER.format(persona=persona, task=task.strip(), question=question.strip(), reply=reply.strip())
    return [{"role": "system", "content": prompt_set.texts["judge_system"]}, {"role": "user", "content": user}]


def parse(text: str | None) -> bool | None:
    """True: the reply contradicts the persona; False: consistent; None: refused or no verdict line."""
    if text is None:
        return None
    found = VERDICT.findall(text)
    return found[-1].upper() == "CONTRADICTS" if found else None


def roleplayer_turns(conversations: Sequence[dict]) -> list[tuple[Turn, str, str]]:
    """((pair, conv, k), question, reply) of every Roleplayer turn, in file order; the question is the
    Questioner turn before it (empty when none)."""
    out = []
    for c in conversations:
        question = ""
        for k, turn in enumerate(c["turns"]):
            if turn["role"] == "roleplayer":
                out.append(((c["pair"], int(c.get("conv") or 0), k), question, turn["text"] or ""))
            else:
                question = turn["text"] or ""
    return out


def sample(turns: list, max_turns: int, seed: int) -> list:
    """At most `max_turns` of the turns: a seeded sample, kept in file order (all of them when fewer)."""
    if len(turns) <= max_turns:
        return list(turns)
    keep = sorted(random.Random(seed).sample(range(len(turns)), max_turns))
    return [turns[i] for i in keep]

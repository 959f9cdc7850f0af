"""Cheap checks of every Roleplayer turn (the simulated user), per run: did it stay the user?

Text is compared as lowercase word tokens (runs of letters, digits and apostrophes). Per Roleplayer turn:

- reveals_persona: the turn repeats the persona text wholesale: it shares a run of >= `ngram` (12)
  consecutive tokens with the persona, or it holds >= `persona_share` (60 %) of the persona's distinct
  content words (tokens of >= 4 letters not in STOPWORDS; personas with fewer than 8 such words only by the
  n-gram rule).
- answers_task: the turn answers the task instead of replying as the user: it holds >= `task_share` (50 %)
  of the task's content words AND looks like an answer: an answer phrase ("here are", "step 1", "i hope this
  helps", ...) or >= 3 list lines ("1.", "-", "*"). A user restating their request has the task's words but
  no answer form; a user listing their own facts has list lines but not the task's words.
- breaks_character: an assistant or model phrase ("as an ai", "language model", "i am an assistant",
  "my persona", ...; BREAKS).
- contradicts_persona: only with a `judge(persona, task, turn) -> bool | None` callable, or `verdicts`, the
  judge pass's answers by (pair, conv, turn index) (stargate.evaluation.audit_judge: a seeded sample of the
  turns); its share is over the turns with a verdict. Without either the check is not run and its count and
  share are None.

`audit` returns per check the count, the share of Roleplayer turns and up to `examples` flagged turns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from ..errors import StargateError

TOKEN = re.compile(r"[a-z0-9']+")
STOPWORDS = frozenset(
    "about after also been before being could does doing from have having here into just like make more most "
    "much need only other over some such than that their them then there these they this those very want what "
    "when where which while will with would your yours i'm you're it's don't".split()
)
ANSWER_PHRASES = re.compile(
    r"\b(here are|here is|here's (a|an|the|some|my)|step \d|steps to|i hope this helps|in conclusion|"
    r"to summarize|i recommend that you|you could try|you can try|let me know if you have)\b"
)
LIST_LINE = re.compile(r"^\s*(\d+[.)]|[-*•])\s+\S", re.MULTILINE)
BREAKS = re.compile(
    r"\b(as an ai|an ai (language )?model|as a (large )?language model|language model|i am an (ai|assistant)|"
    r"i'm an (ai|assistant)|as an assistant|i am a chatbot|i'm a chatbot|as a roleplayer|my persona|"
    r"the persona|i do not have personal|i don't have personal|i cannot (roleplay|role-play|pretend))\b"
)
CHECKS = ("reveals_persona", "answers_task", "breaks_character", "contradicts_persona")
MIN_PERSONA_WORDS = 8


def tokens(text: str) -> list[str]:
    return TOKEN.findall((text or "").lower())


def content_words(text: str) -> set[str]:
    return {t for t in tokens(text) if len(t) >= 4 and t not in STOPWORDS}


def _ngrams(toks: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def reveals_persona(turn: str, persona: str, ngram: int = 12, persona_share: float = 0.6) -> bool:
    if _ngrams(tokens(turn), ngram) & _ngrams(tokens(persona), ngram):
        return True
    words = content_words(persona)
    return len(words) >= MIN_PERSONA_WORDS and len(words & content_words(turn)) >= persona_share * len(words)


def answers_task(turn: str, task: str, task_share: float = 0.5) -> bool:
    words = content_words(task)
    if not words or len(words & content_words(turn)) < task_share * len(words):
        return False
    return bool(ANSWER_PHRASES.search(turn.lower())) or len(LIST_LINE.findall(turn)) >= 3


def breaks_character(turn: str) -> bool:
    return bool(BREAKS.search((turn or "").lower().replace("’", "'")))


def audit(
    conversations: Sequence[dict],
    personas: Mapping[str, str],
    tasks: Mapping[str, str],
    judge: Callable[[str, str, str], bool | None] | None = None,
    examples: int = 3,
    verdicts: Mapping[tuple[str, int, int], bool | None] | None = None,
    ngram: int = 12,
    persona_share: float = 0.6,
    task_share: float = 0.5,
) -> dict:
    """Counts, shares and examples of each check over every Roleplayer turn of the conversations (records
    with `pair`, `conv` and `turns` [{role, text}]); `personas` and `tasks` by pair key."""
    counts = dict.fromkeys(CHECKS, 0)
    shown: dict[str, list[dict]] = {c: [] for c in CHECKS}
    n_turns = judged = 0
    for c in conversations:
        persona, task = personas.get(c["pair"]), tasks.get(c["pair"])
        if persona is None or task is None:
            raise StargateError(f"roleplayer audit: no persona or task for pair {c['pair']}")
        for k, turn in enumerate(c["turns"]):
            if turn["role"] != "roleplayer":
                continue
            n_turns += 1
            text = turn["text"] or ""
            flags = {
                "reveals_persona": reveals_persona(text, persona, ngram, persona_share),
                "answers_task": answers_task(text, task, task_share),
                "breaks_character": breaks_character(text),
                "contradicts_persona": (
                    judge(persona, task, text)
                    if judge is not None
                    else None
                    if verdicts is None
                    else verdicts.get((c["pair"], int(c.get("conv") or 0), k))
                ),
            }
            judged += flags["contradicts_persona"] is not None
            for check, hit in flags.items():
                if hit:
                    counts[check] += 1
                    if len(shown[check]) < examples:
                        shown[check].append({"pair": c["pair"], "conv": c.get("conv"), "turn": k, "text": text[:500]})
    out = {"n_turns": n_turns, "n_judged": judged, "checks": {}}
    for check in CHECKS:
        base = judged if check == "contradicts_persona" else n_turns
        ran = check != "contradicts_persona" or judge is not None or verdicts is not None
        out["checks"][check] = {
            "count": counts[check] if ran else None,
            "share": counts[check] / base if ran and base else None,
            "examples": shown[check],
        }
    return out

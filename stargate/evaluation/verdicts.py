"""Judge replies to outcomes: the prompt set's own verdict parser first (the paper's rule for paper_v1, a
tolerant one for fixed_v1), then an explicit tie ("Final Response: tie", "both", "neither") is told apart
from a reply with no usable verdict. None from a backend is a refusal (content filter)."""

from __future__ import annotations

import re

TIE = re.compile(r"Final Response:\s*[\"'*<\[(]*\s*(tie|both|neither|equal(ly)?( good)?|draw)\b", re.IGNORECASE)


def classify(text: str | None, prompt_set) -> str:
    """'a', 'b', 'tie', 'unparsable' or 'refused'."""
    if text is None:
        return "refused"
    verdict = prompt_set.parse_verdict(text)
    if verdict in ("a", "b"):
        return verdict
    return "tie" if TIE.search(text) else "unparsable"


def outcome_for_candidate(verdict: str, candidate_position: str) -> str:
    """m_t's outcome from a verdict letter and where m_t's answer was shown."""
    if verdict in ("a", "b"):
        return "win" if verdict.upper() == candidate_position else "loss"
    return verdict  # tie, unparsable, refused

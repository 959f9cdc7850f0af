"""Judge replies to outcomes, with the verdict format the prompt set's own files state.

The judge template ends with its answer line (paper_v1's judge_user.txt: `Final Response: <"A" or "B">`):
its anchor and the two letters are the verdict format, read from that file, never written here. The
manifest's `verdict` key says how strictly a reply is read: `paper` = the text after the anchor, lower-cased
and stripped, must be a letter (the original's rule); anything else (fixed_v1's `robust`) = the first letter
after the anchor, quotes and markdown around it allowed. Then an explicit tie ("Final Response: tie", "both",
"neither") is told apart from a reply with no usable verdict. None from a backend is a refusal (content
filter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from ..errors import StargateError

# the answer line of a judge template: `<anchor>: <"X" or "Y">`, X for the answer shown first
ANSWER_LINE = re.compile(r'^(?P<anchor>[^\n<]*\S:)[ \t]*<"(?P<first>\w+)" or "(?P<second>\w+)">[ \t]*$', re.MULTILINE)
TIE_WORDS = r"(tie|both|neither|equal(ly)?( good)?|draw)\b"
QUOTES = r"[\"'*<\[(]*"  # what a robust reading skips between the anchor and the letter


@dataclass(frozen=True)
class VerdictFormat:
    """How one prompt set's judge states its verdict and how strictly a reply is read."""

    anchor: str  # "Final Response:"
    letters: tuple[str, str]  # the letters of the answers shown first (A) and second (B)
    rule: str  # the manifest's `verdict`: paper (exact) or robust

    @property
    def completions(self) -> list[str]:
        """The two verdict lines a forced choice scores ("Final Response: A", "Final Response: B")."""
        return [f"{self.anchor} {letter}" for letter in self.letters]

    def parse(self, text: str) -> str | None:
        """'a', 'b' (the letter, lower-cased), or None (a tie or no verdict)."""
        letters = [letter.lower() for letter in self.letters]
        if self.rule == "paper":
            cut = text.find(self.anchor)
            v = text[cut + len(self.anchor) :].lower().strip() if cut >= 0 else ""
            return v if v in letters else None
        alternatives = "|".join(re.escape(letter) for letter in self.letters)
        m = re.search(rf"{re.escape(self.anchor)}\s*{QUOTES}\s*({alternatives})\b", text, re.IGNORECASE)
        return m.group(1).lower() if m else None

    def is_tie(self, text: str) -> bool:
        return re.search(rf"{re.escape(self.anchor)}\s*{QUOTES}\s*{TIE_WORDS}", text, re.IGNORECASE) is not None

    def classify(self, text: str | None) -> str:
        """'a', 'b', 'tie', 'unparsable' or 'refused'."""
        if text is None:
            return "refused"
        verdict = self.parse(text)
        if verdict is not None:
            return verdict
        return "tie" if self.is_tie(text) else "unparsable"


def verdict_format(prompt_set) -> VerdictFormat:
    """The verdict format of a prompt set: the answer line of its judge template, its manifest's `verdict`."""
    return _format(prompt_set.name, prompt_set.texts["judge_user"], str(prompt_set.manifest.get("verdict")))


@cache
def _format(name: str, judge_user: str, rule: str) -> VerdictFormat:
    lines = ANSWER_LINE.findall(judge_user)
    if not lines:
        raise StargateError(
            f"prompt set '{name}': the judge template (judge_user) has no answer line such as "
            '\'Final Response: <"A" or "B">\' (its last line of that shape states the verdict format)'
        )
    anchor, first, second = lines[-1]
    if first.lower() != "a" or second.lower() != "b":
        raise StargateError(
            f'prompt set \'{name}\': the judge template\'s answer line offers "{first}" or "{second}"; '
            "verdicts are read as A (the answer shown first) or B (shown second)"
        )
    return VerdictFormat(anchor=anchor, letters=(first, second), rule=rule)


def classify(text: str | None, prompt_set) -> str:
    """'a', 'b', 'tie', 'unparsable' or 'refused', as the prompt set's verdict format reads `text`."""
    fmt = prompt_set if isinstance(prompt_set, VerdictFormat) else verdict_format(prompt_set)
    return fmt.classify(text)


def outcome_for_candidate(verdict: str, candidate_position: str) -> str:
    """m_t's outcome from a verdict letter and where m_t's answer was shown."""
    if verdict in ("a", "b"):
        return "win" if verdict.upper() == candidate_position else "loss"
    return verdict  # tie, unparsable, refused

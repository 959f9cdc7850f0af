"""Replies dropped under the paper's protocol, counted, with a cap beyond which the stage fails.

The original's GPT-4 judge verdicts that were refused by Azure's content filter or unparsable were left
out of the win rate (289 / 293 / 291 of 300 valid for m1 / m2 / m3, spec §6.2). Here a reply is
- refused: the backend returned None in place of its text (the openai backend does so for a content-filter
  refusal when the role sets `refusals: count`; otherwise it raises);
- unusable: text came back but the stage cannot use it (a blank gold response, a verdict with no A/B).
Both are dropped from what the stage produces and counted in the artifact's .meta.json. A cap (a
fraction of all items) keeps a systematic failure, e.g. a judge that never answers in the format, from
passing as a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import StargateError
from ..log import get_logger

log = get_logger(__name__)


@dataclass
class Dropped:
    total: int
    refused: list[str] = field(default_factory=list)  # item keys
    unusable: list[str] = field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        return len(self.refused) + len(self.unusable)

    @property
    def fraction(self) -> float:
        return self.n_dropped / self.total if self.total else 0.0

    def meta(self, cap: float) -> dict:
        return {
            "n_refused": len(self.refused),
            "n_unusable": len(self.unusable),
            "n_dropped": self.n_dropped,
            "dropped_fraction": round(self.fraction, 6),
            "max_dropped_fraction": cap,
            "refused": self.refused,
            "unusable": self.unusable,
        }

    def check(self, cap: float, what: str, cap_key: str) -> None:
        """Fail when more than `cap` of the items were dropped; log the count otherwise."""
        if not self.n_dropped:
            return
        e = self.refused[:1] or self.unusable[:1]
        text = (
            f"{self.n_dropped} of {self.total} {what} dropped ({len(self.refused)} refused by a content filter, "
            f"{len(self.unusable)} unusable; e.g. {e[0]})"
        )
        if self.fraction > cap:
            raise StargateError(
                f"{text}: {self.fraction:.1%} is above {cap_key} = {cap}. Look at the log for the "
                f"dropped items; raise {cap_key} to accept them (paid replies are cached, a rerun "
                "costs nothing), or change the model or prompt"
            )
        log.warning("%s (within %s = %s; counted in the artifact's .meta.json)", text, cap_key, cap)


def add_cap_argument(parser, default: float, key: str) -> None:
    parser.add_argument(
        "--max-dropped-fraction",
        type=fraction,
        default=default,
        help=f"fail when more than this share of replies is refused or unusable ({key})",
    )


def fraction(text: str) -> float:
    """A share in [0, 1] (argparse names the type in its error: "invalid fraction value")."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(text)
    return value

"""Win-rate variants (spec §6.2): conversation x answerer x positions, read from evaluation.winrate.

Answers depend on (conversation, answerer) only and judge files too: positions are a choice among the orders
the judge saw, so m_t-always-A, -always-B and randomized share judge calls. `both_orders` judges both orders
of every comparison, which gives every position protocol and the order-flip tie rule from the same calls.
The positions are the judge protocols of stargate.evaluation.protocols.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..config import WINRATE_ANSWERERS, WINRATE_CONVERSATIONS
from ..errors import StargateError
from .protocols import POSITIONS, PROTOCOLS


@dataclass(frozen=True, order=True)
class Variant:
    conversation: str
    answerer: str
    positions: str

    @property
    def name(self) -> str:
        return f"{self.conversation}-{self.answerer}-{self.positions}"

    @property
    def answer_set(self) -> str:
        """What the answers and the judge file depend on: '{conversation}-{answerer}'."""
        return f"{self.conversation}-{self.answerer}"


def parse(name: str) -> Variant:
    parts = name.split("-")
    if (
        len(parts) != 3
        or parts[0] not in WINRATE_CONVERSATIONS
        or parts[1] not in WINRATE_ANSWERERS
        or parts[2] not in PROTOCOLS
    ):
        raise StargateError(
            f"win-rate variant '{name}' is not CONVERSATION-ANSWERER-POSITIONS with conversation in "
            f"{WINRATE_CONVERSATIONS}, answerer in {WINRATE_ANSWERERS}, positions in {POSITIONS}"
        )
    return Variant(*parts)


def configured(winrate: dict) -> list[Variant]:
    """evaluation.winrate.variants as Variants, in config order."""
    return [Variant(v["conversation"], v["answerer"], v["positions"]) for v in winrate["variants"]]


def answer_sets(variants: Iterable[Variant]) -> list[tuple[str, str]]:
    """The distinct (conversation, answerer) of the variants: one answer file per model and one judge file
    per comparison each."""
    return sorted({(v.conversation, v.answerer) for v in variants})


def positions_for(variants: Iterable[Variant], conversation: str, answerer: str) -> list[str]:
    """Position protocols the variants ask of one judge file."""
    return sorted({v.positions for v in variants if (v.conversation, v.answerer) == (conversation, answerer)})

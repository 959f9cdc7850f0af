"""The judge protocols (spec §6.2): one entry per protocol, which every other place asks.

A protocol says where m_t's answer is shown to the judge: the orders one comparison is judged in (m_t shown
as "A" or "B"; `randomized` reads the pair's seeded coin flip, stargate.stages.judge.randomized_position),
how m_t's outcome is read from the outcomes of those orders, and the verdict parser it reads replies with
(the prompt set's own, stargate.evaluation.verdicts). The configurable ones are the values of
`evaluation.winrate.variants[].positions` (config/schema.yaml's enum, checked equal by a test);
`both_orders` is judged when `evaluation.winrate.both_orders` is set and reads a verdict that flips with
the order as a tie (the rankings protocol of Sparse Feedback, Bansal et al. 2023).

Adding a protocol: an entry below, its name in the schema's `positions` enum, a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..errors import StargateError
from .verdicts import VerdictFormat, verdict_format

ORDERS = ("A", "B")  # m_t's position in the judge prompt: its answer shown first or second
INVALID = ("refused", "unparsable")


def _one(outcomes: Sequence[str]) -> str:
    return outcomes[0]


def _flip_is_a_tie(outcomes: Sequence[str]) -> str:
    a, b = outcomes
    for bad in INVALID:
        if bad in (a, b):
            return bad
    return a if a == b else "tie"


@dataclass(frozen=True)
class Protocol:
    name: str
    # m_t's positions one comparison is judged in, given the pair's coin flip ("A" or "B")
    orders: Callable[[str], tuple[str, ...]]
    # m_t's outcome from the outcomes of those orders (in that order)
    rule: Callable[[Sequence[str]], str] = _one
    # the verdict parser of the replies, from the prompt set
    verdicts: Callable[..., VerdictFormat] = verdict_format
    configurable: bool = True  # a value of evaluation.winrate.variants[].positions
    ties_by_design: bool = False  # its ties are part of the protocol: the headline leads with ties-as-half

    def judged_orders(self, record: dict) -> tuple[str, ...]:
        return self.orders(record.get("randomized_position"))

    def serves(self, record: dict) -> bool:
        """Whether a judge record holds every order this protocol reads."""
        return set(self.judged_orders(record)) <= set((record.get("judged") or {}).keys())

    def outcome(self, record: dict, path: str = "judge file") -> str:
        """m_t's outcome on one judged comparison."""
        judged = record.get("judged") or {}
        orders = self.judged_orders(record)
        missing = [o for o in orders if o not in judged]
        if missing:
            raise StargateError(
                f"{path}: pair {record['pair']} was not judged with m_t as {missing[0]}, which positions "
                f"'{self.name}' reads: the judge file was made for other variants; rerun the judge"
            )
        return self.rule([judged[o]["outcome"] for o in orders])


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("randomized", orders=lambda coin: (coin,)),  # the paper's: a seeded coin flip per pair
        Protocol("mt_a", orders=lambda coin: ("A",)),
        Protocol("mt_b", orders=lambda coin: ("B",)),
        Protocol(
            "both_orders", orders=lambda coin: ORDERS, rule=_flip_is_a_tie, configurable=False, ties_by_design=True
        ),
    )
}
POSITIONS = tuple(name for name, p in PROTOCOLS.items() if p.configurable)  # the schema's positions enum
BOTH_ORDERS = "both_orders"  # judged with evaluation.winrate.both_orders


def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise StargateError(f"unknown positions '{name}' (one of {POSITIONS})")
    return PROTOCOLS[name]


def orders_to_judge(positions: Iterable[str], both_orders: bool, randomized_order: str) -> list[str]:
    """m_t's positions ('A', 'B') one comparison is judged in: those the protocols read (randomized reads the
    pair's coin flip), both orders with `both_orders`."""
    wanted = [*positions, BOTH_ORDERS] if both_orders else list(positions)
    return sorted({o for name in wanted for o in get(name).orders(randomized_order)})


def expected_orders(positions: Iterable[str], both_orders: bool) -> float:
    """Judge calls per comparison, averaged over the coin flip (randomized beside one fixed order adds the
    other order half the time)."""
    positions = list(positions)
    return sum(len(orders_to_judge(positions, both_orders, coin)) for coin in ORDERS) / len(ORDERS)


def served_by(records: Sequence[dict]) -> list[str]:
    """The protocols a judge file can answer: those whose orders every record has."""
    if not records:
        return []
    return [name for name, p in PROTOCOLS.items() if all(p.serves(r) for r in records)]


def verdict_parser(positions: Iterable[str], prompt_set) -> VerdictFormat:
    """The one verdict parser of a judge file that serves `positions` (they share its judge calls)."""
    positions = list(positions)
    parsers = {get(name).verdicts(prompt_set) for name in positions}
    if len(parsers) != 1:
        raise StargateError(
            f"positions {sorted(positions)} read the judge's replies with {len(parsers)} verdict parsers; "
            "protocols that share a judge file must share one"
        )
    return parsers.pop()

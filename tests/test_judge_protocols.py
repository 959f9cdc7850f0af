"""The judge-protocol registry (stargate.evaluation.protocols), the verdict format read from the prompt set's
files, the randomized protocol's seeded coin flip, and the backends' own word on loading a local model."""

from __future__ import annotations

import dataclasses
import math

import pytest

from stargate.backends import BACKENDS, loads_local_model
from stargate.backends.options import OPTIONS
from stargate.config import schema
from stargate.errors import StargateError
from stargate.evaluation import outcomes, protocols, variants
from stargate.evaluation.verdicts import classify, verdict_format
from stargate.prompts import load_prompt_set
from stargate.stages import simulate
from stargate.stages.judge import randomized_position

PAIRS = [f"t{i}|p{i % 7}" for i in range(200)]


def schema_enum(*path: str) -> list:
    node = schema()
    for key in path:
        node = node["properties"][key] if key != "items" else node["items"]
    return node["enum"]


# ------------------------------------------------------------------ the registry
def test_schema_positions_enum_is_the_registry():
    enum = schema_enum("evaluation", "winrate", "variants", "items", "positions")
    assert tuple(enum) == protocols.POSITIONS
    assert set(protocols.POSITIONS) | {protocols.BOTH_ORDERS} == set(protocols.PROTOCOLS)


def test_every_protocol_reads_orders_a_judge_call_can_have():
    for name, p in protocols.PROTOCOLS.items():
        assert "-" not in name  # a variant's name joins conversation-answerer-positions with "-"
        for coin in protocols.ORDERS:
            assert p.orders(coin) and set(p.orders(coin)) <= set(protocols.ORDERS)
    # randomized reads the coin flip, the fixed ones their order, both_orders both
    assert protocols.orders_to_judge(["randomized"], False, "A") == ["A"]
    assert protocols.orders_to_judge(["mt_b"], False, "A") == ["B"]
    assert protocols.orders_to_judge(["randomized"], True, "B") == ["A", "B"]
    assert protocols.expected_orders(["randomized"], False) == 1.0
    assert protocols.expected_orders(["mt_a", "randomized"], False) == 1.5
    assert protocols.expected_orders(["mt_a"], True) == 2.0
    with pytest.raises(StargateError, match="unknown positions 'mt_c'"):
        protocols.orders_to_judge(["mt_c"], False, "A")


def test_a_new_protocol_is_one_entry(monkeypatch):
    """An entry in PROTOCOLS (and its schema enum value) is all the variants, the judge's orders, the outcomes
    and the judge file's served protocols need."""
    flip = protocols.Protocol("mt_flip", orders=lambda coin: ("B" if coin == "A" else "A",))
    monkeypatch.setitem(protocols.PROTOCOLS, "mt_flip", flip)
    assert variants.parse("random-mt-mt_flip").positions == "mt_flip"
    assert protocols.orders_to_judge(["mt_flip"], False, "A") == ["B"]
    rec = {"pair": "p", "group": 1, "randomized_position": "A", "judged": {"B": {"outcome": "win"}}}
    assert outcomes.outcome(rec, "mt_flip") == "win"
    assert "mt_flip" in outcomes.protocols_of([rec]) and "randomized" not in outcomes.protocols_of([rec])


# ------------------------------------------------------------------ the verdict format of the prompt set
@pytest.mark.parametrize("name", ["paper_v1", "fixed_v1"])
def test_verdict_format_comes_from_the_judge_template(name):
    ps = load_prompt_set(name)
    fmt = verdict_format(ps)
    assert fmt.anchor == "Final Response:" and fmt.letters == ("A", "B")
    assert f'{fmt.anchor} <"A" or "B">' in ps.texts["judge_user"]
    assert fmt.completions == ["Final Response: A", "Final Response: B"]
    assert fmt.rule == ps.manifest["verdict"]
    for text in ["Final Response: B", "Final Response: **A**", "final response: b.", "x", "Final Response: C"]:
        assert fmt.parse(text) == ps.parse_verdict(text)  # the same reading as the prompt set's own


def test_an_other_answer_line_is_an_other_verdict_format():
    ps = load_prompt_set("fixed_v1")
    user = ps.texts["judge_user"].replace('Final Response: <"A" or "B">', 'Verdict: <"A" or "B">')
    other = dataclasses.replace(ps, name="verdict_test", texts={**ps.texts, "judge_user": user})
    assert verdict_format(other).completions == ["Verdict: A", "Verdict: B"]
    assert classify("Verdict: **B**", other) == "b" and classify("Verdict: tie", other) == "tie"
    assert classify("Final Response: B", other) == "unparsable"
    none = dataclasses.replace(ps, name="no_answer_line", texts={**ps.texts, "judge_user": "Which is better?"})
    with pytest.raises(StargateError, match="no answer line"):
        verdict_format(none)
    # the protocols of one judge file share the prompt set's parser
    assert protocols.verdict_parser(["randomized", "mt_a", "both_orders"], other) == verdict_format(other)


# ------------------------------------------------------------------ the randomized protocol's coin flip
@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_randomized_position_is_a_fair_coin_per_pair(seed):
    """Over 200 pairs the share shown as A lies in a binomial band (p = 1/2, +-4 sd): a coin biased to A (28 of
    30) or one that ignores the pair fails."""
    n_a = sum(randomized_position(seed, pair) == "A" for pair in PAIRS)
    sd = math.sqrt(len(PAIRS) * 0.25)
    assert abs(n_a - len(PAIRS) / 2) <= 4 * sd, f"{n_a} of {len(PAIRS)} pairs shown as A"
    assert {randomized_position(seed, pair) for pair in PAIRS} == {"A", "B"}


def test_randomized_position_depends_on_the_seed_and_pair_only():
    first = [randomized_position(1, pair) for pair in PAIRS]
    assert first == [randomized_position(1, pair) for pair in PAIRS]  # same seed, same assignment
    assert first == [randomized_position(1, pair) for pair in reversed(PAIRS)][::-1]  # order of asking aside
    for seed in (2, 3, 99):
        other = [randomized_position(seed, pair) for pair in PAIRS]
        differ = sum(a != b for a, b in zip(first, other, strict=True))
        # independent coins differ on about half the pairs: a flip that ignores its seed differs on none
        assert abs(differ - len(PAIRS) / 2) <= 4 * math.sqrt(len(PAIRS) * 0.25), f"seed {seed}: {differ} differ"


# ------------------------------------------------------------------ backends
def test_every_backend_says_whether_it_loads_a_local_model():
    assert set(BACKENDS) == set(OPTIONS) == set(schema()["$defs"]["role"]["properties"]["backend"]["enum"])
    assert {k for k in BACKENDS if loads_local_model(k)} == {"hf", "vllm"}
    assert not loads_local_model(None) and not loads_local_model("unknown")
    # stargate.plan still keeps its own copy (not yet asking the registry): it must agree
    from stargate.plan.fit import LOCAL_BACKENDS

    assert set(LOCAL_BACKENDS) == {k for k in BACKENDS if loads_local_model(k)}
    assert simulate.loads_local_model('{"backend": "vllm"}')
    assert not simulate.loads_local_model('{"backend": "openai"}')

"""The scripted backend: deterministic replies from templates and rules, no model; options checked."""

import json

import pytest

from stargate.backends import Sampling, load_backend
from stargate.errors import InputError, StargateError


def scripted(**options):
    return load_backend({"backend": "scripted", "options": options}, "scripted")


CHAT = [{"role": "system", "content": "Judge fairly."}, {"role": "user", "content": "Which is better, A or B?"}]


def test_default_echoes_the_last_message():
    b = scripted()
    assert b.generate([CHAT, "raw text"], Sampling(n=2)) == [[CHAT[-1]["content"]] * 2, ["raw text"] * 2]
    assert b.stats.n_prompts == 2 and b.stats.n_outputs == 4


def test_rules_pick_the_first_match_and_fill_fields(tmp_path):
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps([{"match": "Judge", "reply": "from file"}]))
    b = scripted(
        reply="default {k}",
        rules=[{"match": r"A or B", "reply": "Final Response: A ({seed}, {k})"}],
        rules_file=str(rules_file),
    )
    out = b.generate([CHAT, [{"role": "user", "content": "Judge this"}], "nothing"], Sampling(n=2), [10, 20, 30])
    assert out == [
        ["Final Response: A (10, 0)", "Final Response: A (11, 1)"],
        ["from file"] * 2,
        ["default 0", "default 1"],
    ]


def test_empty_replies_are_counted():
    b = scripted(reply="")
    b.generate([CHAT] * 3, Sampling())
    assert b.stats.to_dict()["n_empty"] == 3


def test_score_is_deterministic():
    b = scripted(score_per_token=-0.5)
    s = b.score([CHAT, "ctx"], ["three word target", ""])
    assert [(x.logprob, x.n_tokens) for x in s] == [(-1.5, 3), (0.0, 0)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reply": "{answer}"}, "unknown field.*answer"),
        ({"reply": "{"}, "not a valid template"),
        ({"rules": [{"match": "(", "reply": "x"}]}, r"rules\[0\]\.match is not a regular expression"),
        ({"rules": [{"match": "x"}]}, r"rules\[0\] must be an object with exactly"),
        ({"temperature": 1}, "unknown option.*temperature.*scripted backend"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(StargateError, match=message):
        scripted(**options)


def test_missing_rules_file_names_the_file(tmp_path):
    with pytest.raises(InputError, match="nope.json"):
        scripted(rules_file=str(tmp_path / "nope.json"))


def test_refused_completions_are_counted_not_empty():
    """A backend returns None for a completion a content filter refused: counted as refused, not as empty."""
    b = scripted(reply="", rules=[{"match": "refuse", "reply": None}])
    out = b.generate(["please refuse", "fine"], Sampling(n=2))
    assert out == [[None, None], ["", ""]]
    stats = b.stats.to_dict()
    assert (stats["n_outputs"], stats["n_refused"], stats["n_empty"]) == (4, 2, 2)


def test_stats_to_dict_keeps_backend_counters_beside_standard_ones():
    b = scripted()
    b.generate(["x y"], Sampling())
    b.stats.extra.update(cache_hits=3, n_outputs=99)
    d = b.stats.to_dict()
    assert (d["n_outputs"], d["extra_n_outputs"], d["cache_hits"], d["n_tokens_out"]) == (1, 99, 3, 2)
    assert json.loads(json.dumps(d)) == d  # JSON-ready for the .meta.json

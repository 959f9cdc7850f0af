"""The summary stage on hand-made files: win rates with ties and invalid verdicts, SEM, top-1 rows."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from stargate.cli import main
from stargate.errors import StargateError
from stargate.stages.summarize import logprob_rows, stats, winrate_rows


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def test_stats_is_mean_and_standard_error():
    vals = [-10.0, -12.0, -15.0, -9.0]
    s = stats(vals)
    assert s["n"] == 4 and s["mean"] == pytest.approx(-11.5)
    assert s["sem"] == pytest.approx(statistics.stdev(vals) / math.sqrt(4))  # sample sd (n-1), as the paper
    assert stats([-3.0]) == {"mean": -3.0, "sem": 0.0, "n": 1}


def test_win_rates_drop_ties_and_invalid_verdicts_per_group(tmp_path):
    verdicts = [
        {"pair": "p1", "group": 1, "winner": "candidate"},
        {"pair": "p2", "group": 1, "winner": "baseline"},
        {"pair": "p3", "group": 1, "winner": "candidate"},
        {"pair": "p4", "group": 2, "winner": None},  # tie / unparsable
        {"pair": "p5", "group": 2, "winner": "invalid"},
        {"pair": "p6", "group": 3, "winner": "candidate"},
    ]
    rows = {(r["t"], r["group"]): r for r in winrate_rows({1: _write(tmp_path / "j.jsonl", verdicts)})}
    assert rows[(1, 1)] == {"t": 1, "group": 1, "wins": 2, "losses": 1, "invalid": 0, "win_rate": pytest.approx(2 / 3)}
    assert rows[(1, 2)]["win_rate"] is None and rows[(1, 2)]["invalid"] == 2  # nothing valid: no rate, not 0
    overall = rows[(1, "overall")]
    assert (overall["wins"], overall["losses"], overall["invalid"]) == (3, 1, 2)
    assert overall["win_rate"] == pytest.approx(3 / 4)


def test_top1_rows_follow_the_selection_condition(tmp_path):
    qa = [
        {"pair": "a", "conv": 0, "condition": "qa-experimental", "logprob": -5.0},
        {"pair": "a", "conv": 1, "condition": "qa-experimental", "logprob": -2.0},
        {"pair": "b", "conv": 0, "condition": "qa-experimental", "logprob": -4.0},
        {"pair": "b", "conv": 1, "condition": "qa-experimental", "logprob": -4.0},  # tie: lowest conv wins
    ]
    pc1 = [
        {"pair": "a", "conv": 0, "condition": "pos-control-1", "logprob": -1.0},
        {"pair": "a", "conv": 1, "condition": "pos-control-1", "logprob": -1.5},
        {"pair": "b", "conv": 0, "condition": "pos-control-1", "logprob": -0.5},
        {"pair": "b", "conv": 1, "condition": "pos-control-1", "logprob": -9.0},
    ]
    neg = [
        {"pair": "a", "condition": "neg-control", "logprob": -20.0},
        {"pair": "b", "condition": "neg-control", "logprob": -22.0},
    ]
    rows = logprob_rows(
        {
            0: {
                "qa-experimental": _write(tmp_path / "qa.jsonl", qa),
                "pos-control-1": _write(tmp_path / "pc1.jsonl", pc1),
            }
        },
        {"neg-control": _write(tmp_path / "neg.jsonl", neg)},
    )
    by = {r["condition"]: r for r in rows}
    assert by["qa-experimental"]["mean"] == pytest.approx(-3.75) and by["qa-experimental"]["n"] == 4
    assert by["qa-experimental-top1"]["mean"] == pytest.approx((-2.0 + -4.0) / 2)
    assert by["pos-control-1-at-top1"]["mean"] == pytest.approx((-1.5 + -0.5) / 2)  # a: conv 1, b: conv 0
    assert by["neg-control"]["mean"] == pytest.approx(-21.0) and by["neg-control"]["t"] == 0


def test_a_file_with_the_wrong_condition_is_refused(tmp_path):
    qa = [{"pair": "a", "conv": 0, "condition": "shuffled", "logprob": -5.0}]
    with pytest.raises(StargateError, match="manifest says qa-experimental"):
        logprob_rows({0: {"qa-experimental": _write(tmp_path / "qa.jsonl", qa)}}, {})


def test_cli_writes_tables_and_plots(tmp_path):
    qa = [{"pair": "a", "conv": 0, "condition": "qa-experimental", "logprob": -5.0}]
    judge = [{"pair": "a", "group": 1, "winner": "candidate"}]
    manifest = {
        "logprobs": {
            "0": {"qa-experimental": _write(tmp_path / "qa0.jsonl", qa)},
            "1": {"qa-experimental": _write(tmp_path / "qa1.jsonl", qa)},
        },
        "controls": {},
        "judge": {"1": _write(tmp_path / "j1.jsonl", judge)},
        "conversations": {},
    }
    out = tmp_path / "summary"
    assert main(["summarize", "--manifest", json.dumps(manifest), "--out-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [w["win_rate"] for w in summary["winrates"] if w["group"] == "overall"] == [1.0]
    assert (out / "logprobs.csv").read_text().splitlines()[0] == "condition,t,mean,sem,n"
    assert (out / "winrates.png").stat().st_size > 1000
    assert main(["summarize", "--manifest", "{not json", "--out-dir", str(out)]) == 2

"""The summary stage on hand-made files: win rates with ties and invalid verdicts, SEM, top-1 rows."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from stargate.cli import main
from stargate.errors import StargateError
from stargate.evaluation.logprobs import frames, rows, stats
from stargate.stages.summarize import winrate_rows


def logprob_rows(logprobs, controls):
    return rows(frames(logprobs, controls))


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)


def test_stats_is_mean_and_standard_error():
    vals = [-10.0, -12.0, -15.0, -9.0]
    s = stats(vals)
    assert s["n"] == 4 and s["mean"] == pytest.approx(-11.5)
    assert s["sem"] == pytest.approx(statistics.stdev(vals) / math.sqrt(4))  # sample sd (n-1), as the paper
    assert stats([-3.0]) == {"mean": -3.0, "sem": 0.0, "n": 1}


def _judged(pair, group, a=None, b=None, randomized="A"):
    judged = {k: {"outcome": v} for k, v in (("A", a), ("B", b)) if v}
    return {"pair": pair, "group": group, "randomized_position": randomized, "judged": judged}


def test_win_rates_drop_ties_and_invalid_verdicts_per_group(tmp_path):
    verdicts = [
        _judged("p1", 1, a="win"),
        _judged("p2", 1, a="loss"),
        _judged("p3", 1, b="win", randomized="B"),
        _judged("p4", 2, a="tie"),
        _judged("p5", 2, b="unparsable", randomized="B"),
        _judged("p6", 3, a="win"),
    ]
    path = _write(tmp_path / "j.jsonl", verdicts)
    rows = winrate_rows({"random-mt": {1: path}}, ["random-mt-randomized"], 200, 1)
    by = {(r["variant"], r["group"]): r for r in rows}
    assert {r["variant"] for r in rows} == {"random-mt-randomized"}  # one order per pair: no other protocol
    g1 = by[("random-mt-randomized", 1)]
    assert (g1["wins"], g1["losses"], g1["ties"], g1["win_rate"]) == (2, 1, 0, pytest.approx(2 / 3))
    g2 = by[("random-mt-randomized", 2)]
    assert g2["win_rate"] is None and (g2["ties"], g2["unparsable"]) == (1, 1)  # nothing valid: no rate, not 0
    overall = by[("random-mt-randomized", "overall")]
    assert (overall["wins"], overall["losses"], overall["ties"], overall["unparsable"]) == (3, 1, 1, 1)
    assert overall["win_rate"] == pytest.approx(3 / 4) and overall["configured"]
    with pytest.raises(StargateError, match="top1-mt-mt_a"):
        winrate_rows({"random-mt": {1: path}}, ["top1-mt-mt_a"], 200, 1)


def test_both_orders_give_every_protocol(tmp_path):
    path = _write(tmp_path / "j.jsonl", [_judged("p1", 1, a="win", b="loss"), _judged("p2", 1, a="win", b="win")])
    rows = winrate_rows({"top1-m0": {2: path}}, ["top1-m0-randomized"], 200, 1)
    overall = {r["variant"]: r for r in rows if r["group"] == "overall"}
    assert set(overall) == {"top1-m0-randomized", "top1-m0-mt_a", "top1-m0-mt_b", "top1-m0-both_orders"}
    assert overall["top1-m0-mt_a"]["win_rate"] == 1.0 and overall["top1-m0-mt_b"]["win_rate"] == 0.5
    assert overall["top1-m0-both_orders"]["ties"] == 1 and overall["top1-m0-both_orders"]["win_rate"] == 1.0
    assert [r["configured"] for r in overall.values()].count(True) == 1


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
    qa = [{"pair": "test-t0000|p", "conv": 0, "condition": "qa-experimental", "logprob": -5.0}]
    qa1 = [{"pair": "test-t0000|p", "conv": 0, "condition": "qa-experimental", "logprob": -4.0}]
    judge = [_judged("test-t0000|p", 1, a="win", b="win")]
    manifest = {
        "logprobs": {
            "0": {"qa-experimental": _write(tmp_path / "qa0.jsonl", qa)},
            "1": {"qa-experimental": _write(tmp_path / "qa1.jsonl", qa1)},
        },
        "controls": {},
        "judge": {"random-mt": {"1": _write(tmp_path / "j1.jsonl", judge)}},
        "conversations": {},
    }
    tasks = _write(tmp_path / "tasks.jsonl", [{"task_id": "test-t0000", "split": "test", "text": "x"}])
    out = tmp_path / "summary"
    args = ["summarize", "--manifest", json.dumps(manifest), "--variants", "random-mt-randomized", "--resamples",
            "100", "--task-labels", "paper_hand", "--tasks", tasks, "--run", '{"run_name": "t"}', "--out-dir", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {w["win_rate"] for w in summary["winrates"] if w["group"] == "overall"} == {1.0}
    assert summary["position_bias"][0]["first_minus_second"] == 0.0
    diff = summary["logprob_differences"]
    assert {(d["condition"], d["t"], d["vs"]): d["difference"] for d in diff}[("qa-experimental", 1, 0)] == 1.0
    by = {r["condition"]: r for r in summary["logprobs"] if r["t"] == 0}
    assert by["qa-experimental-general"]["n"] == 1 and by["qa-experimental-specific"]["n"] == 0  # task 0: general
    assert "50 test tasks" in summary["task_labels"]["note"]
    comp = {(r["name"], r["t"]): r for r in summary["paper_comparison"]}
    assert comp[("random-mt-randomized", 1)]["paper"] == pytest.approx(197 / 289)
    assert comp[("qa-experimental", 0)]["ours"] == -5.0 and comp[("qa-experimental", 0)]["config"] == "t"
    # every table names its run
    assert (out / "logprobs.csv").read_text().splitlines()[:2][0] == "run,condition,t,questioner,mean,sem,n"
    assert (out / "logprobs.csv").read_text().splitlines()[1].startswith("t,")
    assert (out / "paper_comparison.csv").read_text().startswith("run,metric,name,t,ours,paper,difference")
    for png in ("winrates.png", "logprobs.png", "position_bias.png"):
        assert (out / png).stat().st_size > 1000
    assert main(["summarize", "--manifest", "{not json", "--out-dir", str(out)]) == 2


def test_extra_questioners_are_named_and_kept_out_of_the_paper_table(tmp_path):
    def qa(t, value):
        rec = {"pair": "a", "conv": 0, "condition": "qa-experimental", "logprob": value}
        return _write(tmp_path / f"qa{t}.jsonl", [rec])

    manifest = {
        "logprobs": {"0": {"qa-experimental": qa(0, -5.0)}, "1000": {"qa-experimental": qa(1000, -3.0)}},
        "controls": {},
        "judge": {"random-mt": {"1000": _write(tmp_path / "j.jsonl", [_judged("a", 1, a="win", b="loss")])}},
        "conversations": {},
        "questioners": {"1000": "released-m1"},
    }
    out = tmp_path / "summary"
    args = [
        "summarize",
        "--manifest",
        json.dumps(manifest),
        "--variants",
        "random-mt-randomized",
        "--resamples",
        "100",
    ]
    assert main([*args, "--out-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {r["questioner"] for r in summary["logprobs"]} == {"m0", "released-m1"}
    (d,) = [d for d in summary["logprob_differences"] if d["condition"] == "qa-experimental"]
    assert (d["questioner"], d["vs"], d["difference"]) == ("released-m1", 0, 2.0)
    assert {w["questioner"] for w in summary["winrates"]} == {"released-m1"}
    assert all(r["t"] != 1000 for r in summary["paper_comparison"])


def test_a_win_rate_resting_on_few_decided_comparisons_leads_with_ties_as_half():
    """3 wins, 0 losses, 45 ties: the win rate is 1.0 with a zero-width interval; the headline is the ties-as-half
    rate with the decided count, and says that too few were decided."""
    from stargate.evaluation.outcomes import headline

    row = {"variant": "random-mt-randomized", "t": 2, "n": 48, "wins": 3, "losses": 0, "ties": 45,
           "unparsable": 0, "refused": 0, "win_rate": 1.0, "ci_low": 1.0, "ci_high": 1.0,
           "win_rate_ties_half": 51 / 96, "ties_half_ci_low": 0.5, "ties_half_ci_high": 0.57}  # fmt: skip
    h = headline(row)
    assert h["rate_kind"] == "ties_half" and h["rate"] == pytest.approx(51 / 96) and h["decided"] == 3
    assert "3 of 48 comparisons decided" in h["note"] and "too few decided" in h["note"]
    decided = {**row, "wins": 30, "losses": 10, "ties": 8}
    assert headline(decided)["rate_kind"] == "win_rate" and "too few" not in headline(decided)["note"]

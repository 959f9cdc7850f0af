"""Issue 24's config keys and their DAG: evaluation.trials (a split per trial, its own seeds, nothing changed at
k = 1), evaluation.judges (judge_* roles, every judge on every trial), the checks of the panel and the human
labels, and `stargate cost` pricing every judge, every trial and every variant."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO, job_counts, snakemake

from stargate.config import load_config
from stargate.errors import StargateError
from stargate.evaluation.checks import evaluation_problems
from stargate.stages import cost
from stargate.workflow import paths
from stargate.workflow.cli_args import trial_seed, with_trial_seed


def test_trial_splits_and_file_names():
    assert [paths.trial_split(j) for j in (1, 2, 3)] == ["test", "test_trial2", "test_trial3"]
    assert paths.base_split("test_trial2") == "test" and paths.base_split("A") == "A"
    assert paths.trial_of("test_trial12") == 12 and paths.trial_of("test") == 1 and paths.trial_of("B") == 1
    # trial 1's files and the `judge` role's keep their names; every other one names its split and judge
    assert paths.winrate_answers("random", 1, "mt") == "results/eval/winrate/random/m1.mt.answers.jsonl"
    assert paths.judge("random", "mt", 1) == "results/eval/winrate/random/m1.mt_vs_m0.judge.jsonl"
    assert paths.judge("top1", "m0", 2, "test_trial3", "judge_b") == (
        "results/eval/winrate/top1/m2.m0_vs_m0.test_trial3.judge_b.jsonl"
    )
    assert paths.winrate_answers("random", 1, "mt", "test_trial2").endswith("m1.mt.test_trial2.answers.jsonl")


def test_trial_seeds_leave_trial_one_alone_and_differ_per_trial():
    spec = {"backend": "hf", "sampling": {"temperature": 0.9, "seed": 1}}
    assert with_trial_seed(spec, 1) is spec
    seeds = [with_trial_seed(spec, j)["sampling"]["seed"] for j in (2, 3)]
    assert len({1, *seeds}) == 3 and seeds[0] == trial_seed(1, 2) and 0 <= seeds[1] < 2**30
    assert spec["sampling"]["seed"] == 1  # the config is not changed


def _tiny():
    cfg = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    cfg["models"]["tiny"]["source"]["path"] = "/nonexistent/tiny"
    return cfg


def test_schema_defaults_and_judge_roles():
    cfg = load_config(_tiny())
    ev = cfg["evaluation"]
    assert (ev["trials"], ev["judges"], ev["panel_verdict"], ev["human_labels"]) == (1, ["judge"], "majority", None)
    raw = _tiny()
    raw["roles"]["judge_b"] = {"backend": "hf", "model": "tiny"}
    raw["evaluation"]["judges"] = ["judge", "judge_b"]
    assert load_config(raw)["roles"]["judge_b"]["options"]["batch_size"] == 16  # a full role, defaults filled
    raw["roles"]["juror"] = {"backend": "hf", "model": "tiny"}
    with pytest.raises(StargateError, match="unknown key"):
        load_config(raw)
    raw = _tiny()
    raw["evaluation"]["trials"] = 0
    with pytest.raises(StargateError, match="trials"):
        load_config(raw)


def test_panel_and_human_label_checks(tmp_path):
    cfg = load_config(_tiny())
    assert evaluation_problems(cfg) == []
    bad = copy.deepcopy(cfg)
    bad["evaluation"]["judges"] = ["judge", "judge_x"]
    bad["roles"]["judge_y"] = bad["roles"]["judge"]
    bad["evaluation"]["human_labels"] = str(tmp_path / "missing.jsonl")
    problems = "\n".join(evaluation_problems(bad))
    assert "evaluation.judges[1]: 'judge_x' is not a role" in problems
    assert "judge_y is in no judge panel" in problems
    assert "missing.jsonl is not a file" in problems
    one = copy.deepcopy(cfg)
    one["evaluation"]["panel_verdict"] = "abstain_on_disagreement"
    assert "needs two or more" in "\n".join(evaluation_problems(one))


def _dry(tmp_path: Path, cfg: dict, name: str) -> str:
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "-p", "--forceall", "--configfile", f"{name}.yaml", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def _commands(out: str) -> dict[str, str]:
    """Shell command per output of a dry run (printed with -p)."""
    jobs = {}
    for block in out.split("\n\n"):
        o = re.search(r"^\s+output: (.*)$", block, re.M)
        c = re.search(r"^Shell command: (.*)$", block, re.M)  # (printed only with -p)
        if o and c:
            jobs[o.group(1)] = c.group(1)
    return jobs


def test_trials_and_a_panel_add_jobs_and_leave_trial_one_unchanged(tmp_path):
    """k = 3 and a second judge: every trial is simulated, scored, answered and judged by every judge with
    its own seeds; trial 1's jobs (and everything but the summary) are exactly those of k = 1."""
    one = _tiny()
    out1 = _dry(tmp_path, one, "one")
    three = _tiny()
    three["roles"]["judge_b"] = {"backend": "hf", "model": "tiny", "sampling": {"temperature": 0.0, "max_tokens": 6}}
    three["evaluation"].update(trials=3, judges=["judge", "judge_b"])
    out3 = _dry(tmp_path, three, "three")
    c1, c3 = job_counts(out1), job_counts(out3)
    assert "judge_panel" not in c1 and "winrate_answer_trial" not in c1
    # 2 iterations + m0 on the test split: 3 simulations per extra trial; 2 judges x 3 trials x 2 comparisons
    # x 3 answer sets = 36 judge jobs, 6 of them the `judge` role's trial-1 files
    assert c3["simulate"] - c1["simulate"] == 2 * 3
    assert c3["judge"] == c1["judge"] == 6 and c3["judge_panel"] == 36 - 6
    assert c3["winrate_answer_trial"] == 2 * c1["winrate_answer"]
    j1, j3 = _commands(out1), _commands(out3)
    same = {o for o in j1 if "summary" not in o}
    assert same <= set(j3) and all(j1[o] == j3[o] for o in same)
    sims = {o: c for o, c in j3.items() if "results/m1/sim/test" in o}
    seeds = {re.search(r'--questioner-role .*?"seed": (\d+)', c).group(1) for c in sims.values()}
    assert len(sims) == 3 and len(seeds) == 3  # the same questioner, three trials, three seeds
    (trial1,) = [c for o, c in sims.items() if "/test/" in o]
    assert re.search(r'--questioner-role .*?"seed": (\d+)', trial1).group(1) == str(
        one["roles"]["questioner"]["sampling"]["seed"]
    )


def test_cost_prices_every_judge_every_trial_and_every_variant():
    cfg = load_config(REPO / "config/paper-released.yaml")
    est = cost.estimate(cfg, base_dir=REPO)
    (judge,) = [r for r in est["rows"] if r["step"] == "judge"]
    assert judge["batch"] and est["total_usd"] <= 50  # the headline variant on the Batch API (issue 24)
    prices = {v["variant"]: v for v in est["variants"]}
    assert len(prices) == 6 and [v["configured"] for v in est["variants"]].count(True) == 1
    assert prices["random-mt-randomized"]["cost_usd"] == pytest.approx(judge["cost_usd"])
    panel = copy.deepcopy(cfg)
    panel["roles"]["judge_mini"] = {**copy.deepcopy(cfg["roles"]["judge"]), "model": "gpt-4"}
    panel["evaluation"].update(judges=["judge", "judge_mini"], trials=3)
    est3 = cost.estimate(panel, base_dir=REPO)
    rows = {r["role"]: r for r in est3["rows"] if r["step"] == "judge"}
    assert set(rows) == {"judge", "judge_mini"} and rows["judge_mini"]["calls"] == 3 * judge["calls"]
    assert "x 3 trials" in rows["judge"]["what"]
    assert est3["total_usd"] == pytest.approx(6 * est["total_usd"], rel=0.01)
    text = cost.format_table(est)
    assert "random-mt-randomized     configured" in text and "top1-m0-randomized       opt-in" in text


def test_the_roleplayer_audit_judge_pass_adds_one_job_per_questioner_and_is_priced(tmp_path):
    out = _dry(tmp_path, _tiny(), "plain")
    assert "audit_judge" not in job_counts(out)
    audited = _tiny()
    audited["evaluation"]["roleplayer_audit"] = {"judge": "judge", "max_turns": 7, "seed": 2}
    out = _dry(tmp_path, audited, "audited")
    assert job_counts(out)["audit_judge"] == 3  # m0, m1, m2 (trial 1)
    jobs = _commands(out)
    cmd = jobs["results/eval/audit/m2.roleplayer.jsonl"]
    assert "stargate audit-judge --conversations results/m2/conversations/test.jsonl" in cmd
    assert "--max-turns 7 --seed 2" in cmd
    summarize = next(c for o, c in jobs.items() if "logprobs.csv" in o)
    assert "results/eval/audit/m0.roleplayer.jsonl" in summarize  # the summary reads the verdicts
    # a role that does not exist is a config error naming the key
    bad = load_config(_tiny())
    bad["evaluation"]["roleplayer_audit"]["judge"] = "auditor"
    assert "evaluation.roleplayer_audit.judge: 'auditor' is not a role" in "\n".join(evaluation_problems(bad))
    # `stargate cost` prices the pass of an API judge: max_turns per questioner
    cfg = load_config(REPO / "config/paper.yaml")
    cfg["evaluation"]["roleplayer_audit"] = {"judge": "judge", "max_turns": 100, "seed": 1}
    (audit,) = [r for r in cost.estimate(cfg, base_dir=REPO)["rows"] if r["step"] == "audit"]
    assert audit["calls"] == 100 * 4 and audit["billed"] and audit["role"] == "judge"

"""Issue 24 end to end: the tiny config with three repeated trials, a panel of two judges (the tiny local
judge and an API judge on the fake OpenAI server, through the paid-call cache) and a human-label file; every
new figure in the summary and in the report (opened in headless chromium), and `stargate cost` counting the
extra judge calls. Trimmed to one iteration and one variant so the run stays within a few minutes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from servers.openai_server import OpenAITestServer, fake_completion
from test_workflow import REPO, checkout_copy, job_counts, report_seen, snakemake, table_under

KEY_ENV = "STARGATE_TEST_JUDGE_KEY"
TEST_PAIRS = [f"test-t000{i}|test-p0{j}" for j in range(2) for i in range(3)]


def verdict(body):
    """The fake API judge: a verdict line that depends on the prompt and the seed only (a cached call repeats
    it; a repeat, asked with its own seed, may differ)."""
    out = fake_completion(body)
    h = hashlib.sha256(json.dumps([body["messages"], body.get("seed")], sort_keys=True).encode()).digest()[0]
    out["choices"][0]["message"]["content"] = f"Comparison: fine.\n\nFinal Response: {'AB'[h % 2]}"
    if "User's Reply:" in body["messages"][-1]["content"]:  # the Roleplayer audit's judge pass
        out["choices"][0]["message"]["content"] = f"Explanation: -\nVerdict: {['CONSISTENT', 'CONTRADICTS'][h % 2]}"
    return out


def eval_config(model_dir: Path, base_url: str, cache: Path) -> dict:
    cfg = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    cfg["models"]["tiny"]["source"]["path"] = str(model_dir)
    cfg["iterations"] = 1
    cfg["simulation"].update(min_turns=1, max_turns=1)
    # the roles no figure here is about answer without a model (time): the Roleplayer echoes its prompt's
    # last message (the audit flags what it reveals), the Oracle writes a fixed gold response, the local judge always picks A (its
    # forced choice between two equally scored verdict lines: 100 % position bias, which the panel shows)
    cfg["roles"]["roleplayer"] = {
        "backend": "scripted",
        "model": "tiny",
        "options": {"reply": "I would rather you ask me: {last}"},
    }
    cfg["roles"]["oracle"] = {"backend": "scripted", "model": "tiny", "options": {"reply": "A gold answer: read."}}
    cfg["roles"]["judge"] = {"backend": "scripted", "model": "tiny", "options": {"reply": "Final Response: A"}}
    cfg["models"]["fake-judge"] = {"source": {"api": "fake-model"}}
    cfg["roles"]["judge_api"] = {
        "backend": "openai",
        "model": "fake-judge",
        "options": {
            "base_url": base_url,
            "api_key_env": KEY_ENV,
            "cache_dir": str(cache),
            "max_retries": 1,
            "prices": {"input_per_1k": 0.01, "output_per_1k": 0.03},
        },  # fmt: skip
        "sampling": {"temperature": 0.0, "max_tokens": 16},
    }
    cfg["evaluation"].update(
        conditions=["qa-experimental"],
        trials=3,
        judges=["judge", "judge_api"],
        panel_verdict="majority",
        human_labels="human.jsonl",
    )
    cfg["evaluation"]["winrate"]["judge_repeats"] = 1  # the API judge asked twice (the forced choice is not)
    # the Roleplayer audit's judge pass: 3 Roleplayer turns of m0's and of m1's test conversations
    cfg["evaluation"]["roleplayer_audit"] = {"judge": "judge_api", "max_turns": 3, "seed": 1}
    cfg["evaluation"]["winrate"]["variants"] = [
        {"conversation": "random", "answerer": "mt", "positions": "randomized"}
    ]
    return cfg


@pytest.mark.slow
def test_trials_judge_panel_and_human_labels_end_to_end(tmp_path, tiny_model_dir):
    work = checkout_copy(tmp_path / "work")
    (work / "human.jsonl").write_text(
        "".join(
            json.dumps({"pair": p, "order": o, "verdict": "A" if (i + (o == "B")) % 2 else "B"}) + "\n"
            for i, p in enumerate(TEST_PAIRS)
            for o in "AB"
        )
    )
    env = {KEY_ENV: "test-key"}
    with OpenAITestServer(complete=verdict) as server:
        cfg = eval_config(tiny_model_dir, server.base_url, tmp_path / "api-cache")
        (work / "eval.yaml").write_text(yaml.safe_dump(cfg))
        # one thread a job: the tiny models' jobs are mostly start-up, two at a time halve the wall time
        r = snakemake(
            "--cores", "2", "--max-threads", "1", "--configfile", "eval.yaml", cwd=work, timeout=600, env=env
        )
        if r.returncode != 0:
            logs = "\n".join(p.read_text()[-1500:] for p in (work / "logs").rglob("*.log"))
            pytest.fail(f"workflow failed:\n{r.stderr[-4000:]}\n{logs[-6000:]}")
        # every trial's m1 against m0 on 6 pairs, both orders, asked twice: 3 x 12 x 2 calls of the API judge,
        # each paid once; and the audit's 2 x 3
        assert server.stats.reached == 3 * 12 * 2 + 2 * 3
        res = work / "results"
        for j in (2, 3):
            assert (res / f"m1/conversations/test_trial{j}.jsonl").exists()
            assert (res / f"eval/winrate/random/m1.mt_vs_m0.test_trial{j}.judge_api.jsonl").exists()
        # trials differ in their sampling seeds only: the same pairs, other questions
        convs = [(res / f"m1/conversations/{s}.jsonl").read_text() for s in ("test", "test_trial2")]
        assert convs[0] != convs[1]
        assert [json.loads(x)["pair"] for x in convs[0].splitlines()] == [
            json.loads(x)["pair"] for x in convs[1].splitlines()
        ]

        s = json.loads((res / "summary/tiny/summary.json").read_text())
        tr = s["trials"]
        assert tr["k"] == 3 and tr["noise_floor"]["floor"] is not None and tr["noise_floor"]["t"] == 1
        figures = {(f["figure"], f["t"]) for f in tr["figures"]}
        assert ("logprob qa-experimental - m0", 1) in figures and ("win rate random-mt-randomized", 1) in figures
        assert all(len(f["per_trial_means"]) == 3 for f in tr["figures"])
        panel = s["judge_panel"]
        assert panel["judges"] == ["judge", "judge_api"] and panel["kappa"][0]["n"] == 3 * 12
        assert {h["judge"] for h in panel["human"]} == {"judge", "judge_api", "panel"}
        assert all(h["n"] == 12 for h in panel["human"])
        assert {c["judge"] for c in panel["position_consistency"]} == {"judge", "judge_api"}
        # repetition stability: the API judge against itself asked again (its repeats drew other seeds)
        (rep,) = panel["repetition"]
        assert rep["judge"] == "judge_api" and rep["n"] == 3 * 12 and rep["agreement"] < 1
        assert {(r["trial"], r["t"]) for r in s["length_control"]} == {(1, 1), (2, 1), (3, 1), ("all", 1)}
        assert ("lc win rate random-mt-randomized", 1) in figures  # pooled over the trials
        assert {(r["trial"], r["t"]) for r in s["efficiency"]} == {(j, t) for j in (1, 2, 3) for t in (0, 1)}
        assert all(r["questioner_tokens"] > 0 for r in s["efficiency"])
        assert all(r["gpu_seconds_per_conversation"] == 0 for r in s["efficiency"])  # CPU: no GPU
        assert {r["trial"] for r in s["roleplayer_audit"]} == {1, 2, 3}
        for row in s["roleplayer_audit"]:  # the judge pass: trial 1, 3 sampled turns per questioner
            c = row["checks"]["contradicts_persona"]
            assert (row["n_judged"], c["count"] is None) == ((3, False) if row["trial"] == 1 else (0, True)), row
        for name in ("length_control", "efficiency", "roleplayer_audit", "judges", "trials"):
            assert len((res / f"summary/tiny/{name}.csv").read_text().splitlines()) > 1, name

        # the report: every new section, in headless chromium
        seen = report_seen(work, "eval.yaml", tmp_path, env=env)
    (page,) = seen["pages"]
    for section in ("Length-controlled win rates", "Efficiency per conversation", "Roleplayer audit",
                    "Judge panel", "Repeated trials (k = 3)"):  # fmt: skip
        assert any(h.startswith(section) for h in page["headings"]), section
    assert "Noise floor of logprob qa-experimental - m0 (m1, k = 3)" in page["text"]
    assert "the judge pass's verdict on a seeded sample" in page["text"]
    kappa = table_under(page, "Judges:")
    assert kappa["headers"][:3] == ["kind", "judge", "other"] and any(r[0] == "human" for r in kappa["rows"])
    assert any(r[:2] == ["repetition", "judge_api"] for r in kappa["rows"])
    assert "(judge_api)" in page["text"]  # the API judge's counts are in the counts table
    # `stargate cost` prices the panel's API judge for every trial
    cost = subprocess.run(
        [sys.executable, "-m", "stargate", "cost", "--configfile", str(work / "eval.yaml"), "--json"],
        cwd=work, capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )  # fmt: skip
    assert cost.returncode == 0, cost.stderr
    rows = {(r["step"], r["role"]): r for r in json.loads(cost.stdout)["rows"]}
    assert rows[("judge", "judge_api")]["calls"] == 3 * 12 * 2 and rows[("judge", "judge_api")]["billed"]
    assert rows[("audit", "judge_api")]["calls"] == 2 * 3
    assert job_counts(r.stdout + r.stderr)["judge_panel"] == 3 + 2  # judge_api x 3 trials, judge x trials 2-3

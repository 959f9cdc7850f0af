"""Issue 24's statistics wired into the summary and the report, on a hand-made run with known answers: three
trials of m0 and m1 on six pairs, a panel of two judges, human labels; the summary's new tables
(length-controlled win rates, efficiency, the Roleplayer audit, the judge panel, the trials and their noise
floor), the report's sections, and `stargate compare` of two summaries."""

from __future__ import annotations

import json
import re

import pytest

from stargate.cli import main
from stargate.records import write_jsonl

PAIRS = [f"test-t000{i}|test-p0{j}" for j in range(2) for i in range(3)]
TASKS = ["Recommend a book for my trip.", "Plan a weekend in Rome.", "What should I cook tonight?"]
PERSONAS = [
    "I am Maya, a nurse who hikes every weekend and loves thrillers set in the mountains.",
    "I am Tomas, a retired carpenter who cooks vegetarian food and reads history books.",
]
B = 200


def _jsonl(path, recs, meta=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, recs, meta)
    return str(path)


def _judged(pair, a, b):
    return {"pair": pair, "group": 1, "randomized_position": "A", "judged": {"A": {"outcome": a}, "B": {"outcome": b}}}


def build_run(root, k=3, judges=("judge", "judge_b"), shift=0.0):
    """A manifest over hand-made files: trial j's log-probs of m1 are m0's + 0.5 + shift + j/10 (so m1 - m0 is
    0.5 + shift + the trial's own offset); judge `judge` prefers the longer answer, judge_b always says m1 wins;
    m1's answers are longer on pairs 0-3."""
    data = root / "data"
    tasks = _jsonl(
        data / "tasks.jsonl", [{"task_id": f"test-t000{i}", "split": "test", "text": t} for i, t in enumerate(TASKS)]
    )
    personas = _jsonl(
        data / "personas.jsonl",
        [
            {"persona_id": f"test-p0{j}", "split": "test", "name": n, "text": p, "name_source": "regex"}
            for j, (n, p) in enumerate(zip(["Maya", "Tomas"], PERSONAS, strict=True))
        ],
    )

    def trial(j):
        d = root / f"trial{j}"
        out = {"logprobs": {}, "judge": {"random-mt": {}}, "answers": {"random-mt": {}}, "conversations": {},
               "simulation": {}}  # fmt: skip
        panel = {name: {"random-mt": {}} for name in judges}
        for t in (0, 1):
            lp = [
                {"pair": p, "conv": c, "condition": "qa-experimental",
                 "logprob": -10.0 - i + c * 0.1 + t * (0.5 + shift + j / 10)}
                for i, p in enumerate(PAIRS) for c in range(2)
            ]  # fmt: skip
            out["logprobs"][str(t)] = {"qa-experimental": _jsonl(d / f"m{t}.qa.jsonl", lp)}
            convs = []
            for i, p in enumerate(PAIRS):
                reply = "I like thrillers." if i else f"{PERSONAS[0]} {PERSONAS[0]}"  # pair 0 reveals its persona
                if i == 1 and t == 1:
                    reply = "As an AI language model I cannot say."  # breaks character
                convs += [
                    {"pair": p, "task_id": p.split("|")[0], "persona_id": p.split("|")[1], "conv": c,
                     "target_turns": 1, "turns": [{"role": "questioner", "text": "What do you like to read?"},
                                                  {"role": "roleplayer", "text": reply}]}
                    for c in range(2)
                ]  # fmt: skip
            out["conversations"][str(t)] = _jsonl(d / f"m{t}.conversations.jsonl", convs)
            stats = {"n_tokens_out": 24 + t, "cost_usd": 0.06}
            out["simulation"][str(t)] = {
                "asked": [_jsonl(d / f"m{t}.turn1.asked.jsonl", [], {"backend_stats": stats})],
                "done": [_jsonl(d / f"m{t}.turn1.done.jsonl", [], {"backend_stats": {"n_tokens_out": 36}})],
                "benchmarks": [str(d / f"m{t}.bench.tsv")],
            }
            (d / f"m{t}.bench.tsv").write_text("s\th:m:s\n6.0\t0:00:06\n")
            answers = [
                {"pair": p, "group": 1, "conv": 0, "text": "word " * (30 if (t == 1 and i < 4) else 5)}
                for i, p in enumerate(PAIRS)
            ]
            out["answers"]["random-mt"][str(t)] = _jsonl(d / f"m{t}.answers.jsonl", answers)
        for name in judges:
            recs = [
                _judged(p, *(("win", "win") if name == "judge_b" or i < 4 else ("loss", "loss")))
                for i, p in enumerate(PAIRS)
            ]
            path = _jsonl(d / f"m1.{name}.judge.jsonl", recs, {"n_comparisons": 6, "n_calls": 12,
                          "outcomes": {"win": 8, "loss": 4, "tie": 0, "unparsable": 0, "refused": 1}})  # fmt: skip
            panel[name]["random-mt"]["1"] = path
        out["judge"]["random-mt"]["1"] = panel[judges[0]]["random-mt"]["1"]
        if len(judges) > 1:
            out["panel"] = panel
        return out

    manifest = {**trial(1), "controls": {}, "questioners": {}}
    if k > 1:
        manifest["trials"] = {str(j): trial(j) for j in range(2, k + 1)}
    human = root / "human.jsonl"
    human.write_text(
        "".join(
            json.dumps({"pair": p, "order": o, "verdict": "win" if i < 4 else "loss"}) + "\n"
            for i, p in enumerate(PAIRS)
            for o in "AB"
        )
    )
    return manifest, tasks, personas, str(human)


def summarize(root, manifest, tasks, personas, human=None, rule="majority", out="summary"):
    args = ["summarize", "--manifest", json.dumps(manifest), "--variants", "random-mt-both_orders,random-mt-randomized",
            "--resamples", str(B), "--tasks", tasks, "--personas", personas, "--panel-rule", rule,
            "--simulate-gpus", "2", "--run", json.dumps({"run_name": "hand"}), "--out-dir", str(root / out)]  # fmt: skip
    if human:
        args += ["--human-labels", human]
    assert main(args) == 0
    return json.loads((root / out / "summary.json").read_text())


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand")
    manifest, tasks, personas, human = build_run(root)
    return root, summarize(root, manifest, tasks, personas, human), (manifest, tasks, personas, human)


def test_length_control_is_in_the_summary_beside_the_raw_rate(hand_run):
    root, s, _ = hand_run
    rows = {(r["variant"], r["trial"]): r for r in s["length_control"]}
    lc = rows[("random-mt-both_orders", 1)]
    # the panel (majority of 2: a split vote is a tie) decides wins on the 4 pairs where m1 answers longer
    assert lc["raw_win_rate"] == pytest.approx((4 + 0.5 * 2) / 6)
    assert lc["slope"] > 1 and lc["lc_win_rate"] < lc["raw_win_rate"]  # the length explains the wins
    assert lc["questioner"] == "m1" and "lc_win_rate" in (root / "summary/length_control.csv").read_text()


def test_efficiency_per_conversation_from_turn_files_and_benchmarks(hand_run):
    root, s, _ = hand_run
    e = {(r["t"], r["trial"]): r for r in s["efficiency"]}[(1, 2)]
    assert e["n_conversations"] == 12 and e["questions"] == 1.0
    assert e["questioner_tokens"] == pytest.approx(25 / 12) and e["roleplayer_tokens"] == pytest.approx(36 / 12)
    assert e["dollars_per_conversation"] == pytest.approx(0.06 / 12)
    assert e["gpu_seconds_per_conversation"] == pytest.approx(6.0 * 2 / 12)  # 6 s x 2 GPUs
    assert e["questioner_words"] == 6.0  # whitespace tokens of "What do you like to read?"


def test_roleplayer_audit_counts_and_shows_examples(hand_run):
    root, s, _ = hand_run
    a = {(r["t"], r["trial"]): r for r in s["roleplayer_audit"]}
    m1 = a[(1, 1)]
    assert m1["n_turns"] == 12
    assert m1["checks"]["reveals_persona"]["count"] == 2 and m1["checks"]["breaks_character"]["count"] == 2
    assert a[(0, 1)]["checks"]["breaks_character"]["count"] == 0
    assert m1["checks"]["contradicts_persona"]["count"] is None  # no judge pass
    assert "As an AI" in m1["checks"]["breaks_character"]["examples"][0]["text"]
    csv = (root / "summary/roleplayer_audit.csv").read_text()
    assert "breaks_character" in csv and "m1" in csv


def test_the_audit_judge_pass_is_read_through_the_manifest(tmp_path, hand_run):
    """The judge pass's verdicts (rule audit_judge) named in the manifest by questioner, as the workflow names
    them: contradicts_persona is counted over the judged turns of trial 1."""
    _, _, (manifest, tasks, personas, human) = hand_run
    audited = dict(manifest)
    audited["audit_judge"] = {
        t: _jsonl(
            tmp_path / f"m{t}.audit.jsonl",
            [
                {
                    "pair": PAIRS[0],
                    "conv": 0,
                    "turn": 1,
                    "contradicts": True,
                    "reply": "-",
                    "raw": "Verdict: CONTRADICTS",
                },
                {
                    "pair": PAIRS[1],
                    "conv": 1,
                    "turn": 1,
                    "contradicts": False,
                    "reply": "-",
                    "raw": "Verdict: CONSISTENT",
                },
                {"pair": PAIRS[2], "conv": 0, "turn": 1, "contradicts": None, "reply": "-", "raw": "?"},
            ],
        )  # fmt: skip
        for t in ("0", "1")
    }
    s = summarize(tmp_path, audited, tasks, personas, human)
    a = {(r["t"], r["trial"]): r for r in s["roleplayer_audit"]}
    for t in (0, 1):
        c = a[(t, 1)]["checks"]["contradicts_persona"]
        assert a[(t, 1)]["n_judged"] == 2 and c["count"] == 1 and c["share"] == 0.5, a[(t, 1)]
        assert a[(t, 2)]["checks"]["contradicts_persona"]["count"] is None  # the pass judges trial 1 only


def test_judge_panel_kappa_consistency_and_human_labels(hand_run):
    _, s, _ = hand_run
    p = s["judge_panel"]
    assert p["judges"] == ["judge", "judge_b"] and p["rule"] == "majority"
    (allk,) = [r for r in p["kappa"] if r["scope"] == "all"]
    # 24 of 36 items agree; judge_b always says win: p_e = 2/3, so kappa is 0 (chance)
    assert allk["agreement"] == pytest.approx(24 / 36) and allk["kappa"] == pytest.approx(0.0)
    assert {c["judge"]: c["consistency"] for c in p["position_consistency"]} == {"judge": 1.0, "judge_b": 1.0}
    human = {h["judge"]: h for h in p["human"]}
    assert human["judge"]["kappa"] == pytest.approx(1.0) and human["judge_b"]["agreement"] == pytest.approx(8 / 12)
    assert "panel" in human
    # the summary's win rates are the panel's: split votes are ties
    (w,) = [w for w in s["winrates"] if w["variant"] == "random-mt-randomized" and w["group"] == "overall"]
    assert (w["wins"], w["ties"], w["losses"]) == (4, 2, 0)
    assert {r["judge"] for r in p["winrates"]} == {"judge", "judge_b"}


def test_abstain_on_disagreement_leaves_split_votes_undecided(tmp_path):
    manifest, tasks, personas, _ = build_run(tmp_path, k=1)
    s = summarize(tmp_path, manifest, tasks, personas, rule="abstain_on_disagreement")
    (w,) = [w for w in s["winrates"] if w["variant"] == "random-mt-randomized" and w["group"] == "overall"]
    assert (w["wins"], w["ties"], w["unparsable"]) == (4, 0, 2)
    assert s["judge_panel"]["n_abstained"] == 4  # 2 pairs x 2 orders


def test_trials_give_spread_hierarchical_intervals_and_pass_k(hand_run):
    root, s, _ = hand_run
    tr = s["trials"]
    assert tr["k"] == 3
    by = {(f["figure"], f["t"]): f for f in tr["figures"]}
    d = by[("logprob qa-experimental - m0", 1)]
    assert d["per_trial_means"] == pytest.approx([0.6, 0.7, 0.8]) and d["trial_sd"] == pytest.approx(0.1)
    assert d["ci_low"] < 0.7 < d["ci_high"] and d["ci_low"] >= 0.6 - 1e-9  # the trials' spread, no pair spread
    assert tr["noise_floor"]["floor"] == pytest.approx(d["floor"]) and tr["noise_floor"]["t"] == 1
    w = by[("win rate random-mt-randomized", 1)]
    assert w["pass_hat_k"] == pytest.approx(4 / 6) and w["pass_at_k"] == pytest.approx(4 / 6)
    assert "pass_hat_k" in (root / "summary/trials.csv").read_text().splitlines()[0]


def test_one_trial_and_one_judge_keep_the_summary_as_before(tmp_path):
    manifest, tasks, personas, _ = build_run(tmp_path, k=1, judges=("judge",))
    s = summarize(tmp_path, manifest, tasks, personas)
    assert s["trials"]["k"] == 1 and s["judge_panel"]["kappa"] == [] and s["judge_panel"]["winrates"] == []
    (w,) = [w for w in s["winrates"] if w["variant"] == "random-mt-randomized" and w["group"] == "overall"]
    assert (w["wins"], w["losses"]) == (4, 2)  # the one judge's own verdicts


def test_report_shows_every_new_section_and_reads_right(hand_run, tmp_path):
    root, _, (manifest, tasks, personas, _) = hand_run
    (root / "bench").mkdir(exist_ok=True)
    out = tmp_path / "tables.html"
    assert main(["report-tables", "--summary", str(root / "summary/summary.json"), "--tasks", tasks, "--personas",
                 personas, "--benchmarks", str(root / "bench"), "--config", "{}", "--output", str(out)]) == 0  # fmt: skip
    page = out.read_text()
    for heading in ("Length-controlled win rates", "Efficiency per conversation", "Roleplayer audit",
                    "Judge panel", "Repeated trials (k = 3)", "Noise floor of logprob qa-experimental - m0"):  # fmt: skip
        assert heading in page, heading
    # the counts: one table per kind of artifact, the judges' refusals in their own column (not '–')
    judges = page[page.index("Judges (verdicts)") :]
    header = re.search(r"<tr>(.*?)</tr>", judges).group(1)
    assert "n_refused" in header and "n_empty_generations" not in header
    assert "(judge_b)" in judges  # the panel's other judge is counted too
    columns = re.findall(r"<th>(.*?)</th>", header)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", re.search(r"</tr><tr>(.*?)</tr>", judges).group(1))
    assert cells[columns.index("n_refused")] == "1"


def test_samples_compare_m0_with_the_last_trained_questioner(hand_run, tmp_path):
    root, s, (manifest, tasks, personas, _) = hand_run
    s = json.loads((root / "summary/summary.json").read_text())
    extra = "1000"  # an extra questioner's answers must not be the one shown beside m0
    s["manifest"]["answers"]["random-mt"][extra] = s["manifest"]["answers"]["random-mt"]["1"]
    s["manifest"]["conversations"][extra] = s["manifest"]["conversations"]["1"]
    s["manifest"]["questioners"] = {extra: "released"}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(s))
    out = tmp_path / "tables.html"
    assert main(["report-tables", "--summary", str(path), "--tasks", tasks, "--personas", personas, "--benchmarks",
                 str(tmp_path), "--config", "{}", "--output", str(out)]) == 0  # fmt: skip
    page = out.read_text()
    assert "m0 vs m1 on the same pairs" in page and "m1000" not in page


def test_compare_says_which_differences_exceed_the_noise_floor(tmp_path, capsys):
    a_root, b_root, c_root = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, shift in ((a_root, 0.0), (b_root, 2.0), (c_root, 0.02)):
        manifest, tasks, personas, _ = build_run(root, shift=shift)
        summarize(root, manifest, tasks, personas)
    # m1 - m0 moved by 0.02: well inside the trials' spread (per-trial means 0.1 apart)
    assert main(["compare", str(a_root / "summary"), str(c_root / "summary")]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "logprob qa-experimental - m0" in ln and " m1 " in ln)
    assert "within" in line and "+0.02" in line
    assert main(["compare", str(a_root / "summary"), str(b_root / "summary")]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "logprob qa-experimental - m0" in ln and " m1 " in ln)
    assert "exceeds" in line and "+2" in line
    same = next(ln for ln in text.splitlines() if "win rate random-mt-randomized" in ln)
    assert "within" in same
    assert main(["compare", str(a_root / "summary"), str(b_root / "summary"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["figures"]
    assert any(r["exceeds"] for r in rows) and not all(r["exceeds"] for r in rows if r["exceeds"] is not None)

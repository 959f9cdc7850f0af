"""Statistics of issue 24 on hand-made data with known answers: repeated trials (spread, hierarchical
bootstrap, pass^k, noise floor), judge agreement (κ, consistency, human labels, panel verdict), the
length-controlled win rate, the Roleplayer audit and efficiency per conversation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stargate.errors import InputError, StargateError
from stargate.evaluation import agreement, efficiency, length_control, roleplayer_audit, trials

B = 400  # bootstrap resamples: enough for the bounds below, fast


# ------------------------------------------------------------------------------------ repeated trials
def test_trial_summary_gives_per_trial_means_and_spread():
    x = np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [0.0, 1.0, np.nan]])
    s = trials.summarize(x, B, 1)
    assert s["per_trial_means"] == pytest.approx([2.0, 3.0, 0.5])
    assert s["mean"] == pytest.approx(16 / 8)  # every valid cell weighs the same
    assert s["trial_sd"] == pytest.approx(np.std([2.0, 3.0, 0.5], ddof=1))
    assert (s["trial_min"], s["trial_max"], s["k"], s["n_pairs"], s["n_cells"]) == (0.5, 3.0, 3, 3, 8)
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]


def test_matrix_aligns_pairs_and_wants_the_same_pairs_in_every_trial():
    pairs, x = trials.matrix([{"p2": 1.0, "p1": None}, {"p1": 0.5, "p2": 0.0}])
    assert pairs == ["p1", "p2"] and np.isnan(x[0, 0]) and x[1].tolist() == [0.5, 0.0]
    with pytest.raises(StargateError, match="trial 1 holds other pairs"):
        trials.matrix([{"p1": 1.0}, {"p2": 1.0}])
    assert trials.win_values(["win", "tie", "loss"]) == [1.0, 0.5, 0.0]
    assert np.isnan(trials.win_values(["refused"])[0])


def test_hierarchical_interval_widens_when_trials_disagree():
    rng = np.random.default_rng(0)
    per_pair = rng.normal(0.0, 1.0, 60)
    agree = np.tile(per_pair, (3, 1))  # every trial gives each pair the same value
    noise = rng.normal(0.0, 3.0, (3, 60))
    disagree = per_pair + noise - noise.mean(0)  # same per-pair means, trials scatter around them
    lo_a, hi_a = trials.hierarchical_interval(agree, B, 1)
    lo_d, hi_d = trials.hierarchical_interval(disagree, B, 1)
    assert hi_d - lo_d > 1.5 * (hi_a - lo_a)
    assert trials.hierarchical_interval(agree, B, 1) == (lo_a, hi_a)  # seeded
    # a judge that says win in one trial and loss in the other on every pair: the pair means are all 0.5
    # (a pairs-only bootstrap of them has width 0), the trial draws alone give an interval around 0.5
    lo, hi = trials.hierarchical_interval(np.array([[1.0] * 50, [0.0] * 50]), B, 1)
    assert lo < 0.45 and hi > 0.55
    assert hi - lo < 0.4  # trials drawn per pair, independently (one draw for all pairs would give [0, 1])


def test_paired_difference_of_two_questioners():
    rng = np.random.default_rng(1)
    m0 = rng.normal(-2.0, 1.0, (3, 40))
    d = trials.difference(m0 + 0.3, m0, B, 1)
    assert d["mean"] == pytest.approx(0.3) and d["ci_low"] == pytest.approx(0.3) and d["ci_high"] == pytest.approx(0.3)
    with pytest.raises(StargateError, match="same pairs and trials"):
        trials.difference(m0, m0[:, :10], B, 1)


def test_pass_hat_k_and_pass_at_k_on_a_constructed_case():
    # 3 trials x 4 pairs: pair 0 won in all, pair 1 in 2, pair 2 never (ties), pair 3 once (else unparsable)
    x = np.array([[1, 1, 0.5, 1], [1, 1, 0.5, np.nan], [1, 0, 0.5, 0]], dtype=float)
    c = trials.consistency(x, resamples=B)
    assert c["pass_hat_k"] == pytest.approx(1 / 4) and c["pass_at_k"] == pytest.approx(3 / 4)
    assert c["pass_hat_k_ci_low"] <= 0.25 <= c["pass_hat_k_ci_high"]
    assert trials.consistency(x, k=1, resamples=B)["pass_hat_k"] == pytest.approx(6 / 12)  # mean win share
    assert trials.consistency(x, k=2, resamples=B)["pass_hat_k"] == pytest.approx((1 + 1 / 3) / 4)
    with pytest.raises(StargateError, match="k = 4"):
        trials.consistency(x, k=4)


def test_noise_floor_tells_a_real_difference_from_run_to_run_noise():
    rng = np.random.default_rng(2)
    pair_mean = rng.normal(0, 1, 80)
    run = lambda shift: pair_mean + shift + rng.normal(0, 0.5, (3, 80))  # noqa: E731
    a, b = {"logprob m1": run(0.0), "winrate": run(0.0)}, {"logprob m1": run(0.0), "winrate": run(1.0)}
    res = trials.noise_floor(a, b, B, 1)
    by = {r["figure"]: r for r in res["figures"]}
    assert by["logprob m1"]["exceeds"] is False and by["winrate"]["exceeds"] is True
    assert by["winrate"]["ci_low"] < by["winrate"]["difference"] < by["winrate"]["ci_high"]
    rows = trials.noise_floor(
        {"x": {"mean": 0.50, "ci_low": 0.45, "ci_high": 0.55}, "only_a": {}},
        {"x": {"mean": 0.60, "ci_low": 0.55, "ci_high": 0.65}},
    )
    assert rows["figures"][0]["floor"] == pytest.approx(np.hypot(0.05, 0.05))
    assert rows["figures"][0]["exceeds"] is True and rows["only_in"] == {"a": ["only_a"], "b": []}


# ------------------------------------------------------------------------------------ judge agreement
def judge_file(outcomes_a, outcomes_b=None):
    recs = []
    for i, a in enumerate(outcomes_a):
        judged = {"A": {"outcome": a}}
        if outcomes_b is not None:
            judged["B"] = {"outcome": outcomes_b[i]}
        recs.append({"pair": f"p{i}", "group": 1, "randomized_position": "A", "judged": judged})
    return recs


def test_kappa_on_a_hand_computed_table():
    # win/win 45, win/loss 15, loss/win 25, loss/loss 15: p_o = 0.6, p_e = 0.6 x 0.7 + 0.4 x 0.3 = 0.54,
    # κ = 0.06 / 0.46 = 0.1304
    a = ["win"] * 60 + ["loss"] * 40
    b = ["win"] * 45 + ["loss"] * 15 + ["win"] * 25 + ["loss"] * 15
    k = agreement.cohen_kappa(a, b, resamples=B)
    assert (k["agreement"], k["expected"]) == (pytest.approx(0.6), pytest.approx(0.54))
    assert k["kappa"] == pytest.approx(0.06 / 0.46) and k["n"] == 100
    assert k["kappa_ci_low"] < k["kappa"] < k["kappa_ci_high"]
    # unusable labels are left out and counted
    k2 = agreement.cohen_kappa([*a, None], [*b, "tie"])
    assert k2["kappa"] == pytest.approx(0.06 / 0.46) and k2["n_dropped"] == 1


def test_kappa_is_one_for_perfect_and_near_zero_for_independent_judges():
    rng = np.random.default_rng(3)
    labels = list(rng.choice(["win", "loss", "tie"], 3000))
    assert agreement.cohen_kappa(labels, labels)["kappa"] == pytest.approx(1.0)
    other = list(rng.choice(["win", "loss", "tie"], 3000))
    assert abs(agreement.cohen_kappa(labels, other)["kappa"]) < 0.05
    # exact agreement overstates: two independent judges that both say "win" 95 % of the time
    a, b = (list(rng.choice(["win", "loss"], 3000, p=[0.95, 0.05])) for _ in range(2))
    k = agreement.cohen_kappa(a, b)
    assert k["agreement"] > 0.85 and abs(k["kappa"]) < 0.07
    assert agreement.cohen_kappa(["win"] * 5, ["win"] * 5)["kappa"] is None  # p_e = 1: undefined


def test_judge_agreement_position_consistency_and_repetition():
    j1 = judge_file(["win", "loss", "tie", "win"], ["win", "win", "tie", "unparsable"])
    j2 = judge_file(["win", "loss", "win", "loss"], ["win", "win", "tie", "loss"])
    ag = agreement.judge_agreement(j1, j2)
    assert ag["n"] == 7 and ag["n_dropped"] == 1 and ag["agreement"] == pytest.approx(5 / 7)
    pc = agreement.position_consistency(j1)
    assert (pc["n_both_orders"], pc["n"], pc["n_consistent"]) == (4, 3, 2)
    assert pc["consistency"] == pytest.approx(2 / 3)
    assert agreement.repetition_stability(j1) is None  # no repeated calls
    assert agreement.repetition_stability(j1, j1)["kappa"] == pytest.approx(1.0)
    rep = judge_file(["win", "loss"])
    rep[0]["judged"]["A"]["repeats"] = [{"outcome": "win"}]
    rep[1]["judged"]["A"]["repeats"] = ["win"]
    stab = agreement.repetition_stability(rep)
    assert stab["n"] == 2 and stab["agreement"] == pytest.approx(0.5)


def test_human_labels_read_from_jsonl_and_csv_and_compared(tmp_path):
    jl = tmp_path / "human.jsonl"
    jl.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"pair": "p0", "order": "A", "verdict": "A"},  # preferred the answer shown A = m_t: win
                {"pair": "p1", "order": "a", "verdict": "B"},  # m_t shown A, human preferred B: loss
                {"pair": "p2", "order": "B", "verdict": "tie"},
                {"pair": "p9", "order": "B", "verdict": "win"},  # a pair the judge did not see
            ]
        )
        + "\n"
    )
    labels = agreement.read_human_labels(jl)
    assert labels == {("p0", "A"): "win", ("p1", "A"): "loss", ("p2", "B"): "tie", ("p9", "B"): "win"}
    cs = tmp_path / "human.csv"
    cs.write_text("pair,order,verdict\np0,A,win\np1,A,loss\n")
    assert agreement.read_human_labels(cs) == {("p0", "A"): "win", ("p1", "A"): "loss"}
    judge = judge_file(["win", "loss", "win"], ["loss", "win", "tie"])
    h = agreement.human_agreement(judge, labels)
    assert h["n"] == 3 and h["agreement"] == pytest.approx(1.0) and h["n_human_unmatched"] == 1


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("h.jsonl", '{"pair": "p0", "order": "A"}\n', r"h.jsonl:1: field 'verdict' is missing"),
        ("h.jsonl", '{"pair": "p0", "order": "C", "verdict": "A"}\n', r"h.jsonl:1: field 'order' is 'C'"),
        ("h.jsonl", '{"pair": "p0", "order": "A", "verdict": "A"}\nnot json\n', r"h.jsonl:2: not valid JSON"),
        ("h.csv", "pair,order,verdict\np0,A,maybe\n", r"h.csv:2: field 'verdict' is 'maybe'"),
        ("h.csv", "pair,verdict\np0,A\n", r"h.csv:1: header lacks column\(s\) order"),
        ("h.csv", "pair,order,verdict\np0,A,A\np0,A,B\n", r"h.csv:3: pair p0 order A is labelled twice"),
        ("h.txt", "x", r"unknown human label format"),
    ],
)
def test_human_label_errors_name_file_line_and_field(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message):
        agreement.read_human_labels(tmp_path / name)


def test_panel_verdict_majority_and_abstain():
    assert agreement.panel_verdict(["win", "win", "loss"], "majority") == "win"
    assert agreement.panel_verdict(["win", "loss"], "majority") == "tie"  # split panel
    assert agreement.panel_verdict(["win", "loss", "tie"], "majority") == "tie"
    assert agreement.panel_verdict(["win", None, "win"], "majority") == "win"  # an unusable vote is no vote
    assert agreement.panel_verdict(["win", "win", "loss"], "abstain_on_disagreement") == "abstain"
    assert agreement.panel_verdict(["loss", "loss"], "abstain_on_disagreement") == "loss"
    assert agreement.panel_verdict([None, None], "majority") == "unparsable"
    with pytest.raises(StargateError, match="panel rule"):
        agreement.panel_verdict(["win"], "mean")
    files = [judge_file(["win", "loss"]), judge_file(["win", "win"]), judge_file(["win", "loss"])]
    panel = agreement.panel_records(files, "majority")
    assert [r["judged"]["A"]["outcome"] for r in panel] == ["win", "loss"]
    assert panel[1]["judged"]["A"]["votes"] == ["loss", "win", "loss"]


# ------------------------------------------------------------------------------------ length control
def biased(n, rng, by_length: bool):
    """m_t's answers are longer on average; the judge picks by length only, or by quality only (m_t better
    75 % of the time whatever the lengths)."""
    len0 = rng.integers(200, 600, n).astype(float)
    len_t = len0 + rng.normal(150, 150, n)
    z = np.tanh((len_t - len0) / (len_t - len0).std(ddof=1))
    p = 1 / (1 + np.exp(-4 * z)) if by_length else np.full(n, 0.75)
    outs = np.where(rng.random(n) < p, "win", "loss").tolist()
    return outs, len_t, len0


def test_lc_win_rate_removes_a_pure_length_preference():
    outs, lt, l0 = biased(600, np.random.default_rng(4), by_length=True)
    r = length_control.lc_win_rate(outs, lt, l0, resamples=200, seed=1)
    assert r["raw_win_rate"] > 0.75  # looks like a big win
    assert abs(r["lc_win_rate"] - 0.5) < 0.08 and r["ci_low"] < 0.5 < r["ci_high"]
    assert r["slope"] > 2


def test_lc_win_rate_keeps_a_quality_preference():
    outs, lt, l0 = biased(600, np.random.default_rng(5), by_length=False)
    r = length_control.lc_win_rate(outs, lt, l0, resamples=200, seed=1)
    assert abs(r["lc_win_rate"] - r["raw_win_rate"]) < 0.06 and r["lc_win_rate"] > 0.65
    assert r["ci_low"] <= r["lc_win_rate"] <= r["ci_high"]


def test_lc_across_trials_pools_the_cells_and_widens_with_trial_noise():
    rng = np.random.default_rng(6)
    trials = [biased(300, rng, by_length=True) for _ in range(3)]
    outs = np.array([t[0] for t in trials], dtype=object)
    lt, l0 = np.array([t[1] for t in trials]), np.array([t[2] for t in trials])
    pooled = length_control.across_trials(outs, lt, l0, resamples=300, seed=1)
    flat = length_control.lc_win_rate(outs.ravel().tolist(), lt.ravel(), l0.ravel(), resamples=10)
    # the point estimate is the model fit on every cell, as one long list would give
    assert pooled["lc_win_rate"] == pytest.approx(flat["lc_win_rate"], abs=1e-6) and pooled["n_used"] == 900
    assert abs(pooled["lc_win_rate"] - 0.5) < 0.08 and pooled["ci_low"] < pooled["lc_win_rate"] < pooled["ci_high"]
    # one trial: the same figure as lc_win_rate, and an unparsable cell weighs nothing
    one = length_control.across_trials(outs[:1], lt[:1], l0[:1], resamples=100)
    alone = length_control.lc_win_rate(outs[0].tolist(), lt[0], l0[0], resamples=10)
    assert one["lc_win_rate"] == pytest.approx(alone["lc_win_rate"], abs=1e-6)
    dropped = outs.copy()
    dropped[1, :150] = "unparsable"
    assert length_control.across_trials(dropped, lt, l0, resamples=0)["n_used"] == 750
    with pytest.raises(StargateError, match="one shape"):
        length_control.across_trials(outs, lt[:2], l0)


def test_lc_ties_separable_data_and_records():
    # the judge always picks the longer answer: separable, still finite and near 0.5 when lengths balance
    lt, l0 = [100, 300, 120, 310, 500], [300, 100, 310, 120, 200]
    outs = ["loss", "win", "loss", "win", "win"]
    r = length_control.lc_win_rate(outs, lt, l0, resamples=50)
    assert r["raw_win_rate"] == pytest.approx(0.6) and 0.2 < r["lc_win_rate"] < 0.8
    half = length_control.lc_win_rate(["win", "tie", "unparsable"], [1, 1, 1], [1, 1, 1], resamples=50)
    drop = length_control.lc_win_rate(["win", "tie", "unparsable"], [1, 1, 1], [1, 1, 1], ties="drop", resamples=50)
    assert (half["n_used"], half["raw_win_rate"]) == (2, 0.75) and half["lc_win_rate"] == pytest.approx(0.75, abs=1e-3)
    assert (drop["n_used"], drop["raw_win_rate"]) == (1, 1.0)
    recs = [{"pair": f"p{i}", "randomized_position": "A", "judged": {"A": {"outcome": o}}} for i, o in enumerate(outs)]
    cand = [{"pair": f"p{i}", "text": "x" * n} for i, n in enumerate(lt)]
    base = [{"pair": f"p{i}", "text": "x" * n} for i, n in enumerate(l0)]
    fr = length_control.from_records(recs, cand, base, "mt_a", resamples=50)
    assert fr["lc_win_rate"] == pytest.approx(r["lc_win_rate"]) and fr["positions"] == "mt_a"
    with pytest.raises(StargateError, match="no answer text"):
        length_control.from_records(recs, cand[:2], base, "mt_a")


# ------------------------------------------------------------------------------------ roleplayer audit
PERSONA = (
    "Maria is a 42-year-old nurse from Lisbon who works night shifts, keeps a vegetarian diet, trains for "
    "half marathons on weekends and is saving money to buy a small apartment near the sea."
)
TASK = "Suggest a weekly meal plan for dinners."


def test_audit_catches_planted_turns_and_passes_clean_ones():
    clean = [
        "I work nights at the hospital, so dinner is often at 3am. I don't eat meat.",
        "Mostly quick things. I run a lot on weekends, so I need energy.",
        "My budget is tight, I'm saving for a flat.",
    ]
    planted = {
        # a 15-token quote of the persona (11 of its 19 content words: below the share rule)
        "reveals_persona": "Honestly I work night shifts, keeps a vegetarian diet, trains for half marathons on "
        "weekends and is saving up.",
        "answers_task": "Here is a weekly meal plan for dinners:\n1. Monday: lentil curry\n2. Tuesday: pasta\n"
        "3. Wednesday: tofu stir fry",
        "breaks_character": "As an AI language model, I don't have dinners.",
    }
    turns = []
    for text in [*clean, *planted.values()]:
        turns += [{"role": "questioner", "text": "What do you like to eat?"}, {"role": "roleplayer", "text": text}]
    convs = [{"pair": "t|p", "conv": 0, "turns": turns}]
    res = roleplayer_audit.audit(convs, {"t|p": PERSONA}, {"t|p": TASK}, examples=2)
    assert res["n_turns"] == 6
    for check, text in planted.items():
        c = res["checks"][check]
        assert c["count"] == 1 and c["share"] == pytest.approx(1 / 6), check
        assert c["examples"][0]["text"] == text and c["examples"][0]["turn"] in (7, 9, 11)
    assert res["checks"]["contradicts_persona"] == {"count": None, "share": None, "examples": []}
    # the persona's words wholesale, paraphrased (no 12-token run in common): the share rule
    told = "Lisbon nurse here, 42 years old: vegetarian, night shifts, half marathons on weekends, saving money."
    assert roleplayer_audit.reveals_persona(told + " For a small apartment near the sea.", PERSONA)
    assert not roleplayer_audit.reveals_persona(told, PERSONA, persona_share=0.9)
    # the hook: a judge callable decides contradictions
    hook = roleplayer_audit.audit(convs, {"t|p": PERSONA}, {"t|p": TASK}, judge=lambda p, t, turn: "meat" in turn)
    assert hook["checks"]["contradicts_persona"]["count"] == 1
    # the judge pass's verdicts by (pair, conv, turn): a sample of the turns; the share is over the judged ones
    judged = roleplayer_audit.audit(
        convs,
        {"t|p": PERSONA},
        {"t|p": TASK},
        verdicts={("t|p", 0, 1): True, ("t|p", 0, 3): False, ("t|p", 0, 5): None},
    )
    c = judged["checks"]["contradicts_persona"]
    assert judged["n_judged"] == 2 and c["count"] == 1 and c["share"] == 0.5 and c["examples"][0]["turn"] == 1
    # the user restating the task is no answer; a clean run flags nothing
    assert not roleplayer_audit.answers_task("I need a weekly meal plan for dinners, please.", TASK)
    only_clean = [{"pair": "t|p", "conv": 1, "turns": turns[:6]}]
    quiet = roleplayer_audit.audit(only_clean, {"t|p": PERSONA}, {"t|p": TASK})
    assert all(quiet["checks"][c]["count"] == 0 for c in ("reveals_persona", "answers_task", "breaks_character"))
    with pytest.raises(StargateError, match="no persona or task"):
        roleplayer_audit.audit(convs, {}, {})


# ------------------------------------------------------------------------------------ efficiency
def test_efficiency_per_conversation():
    conv = {
        "pair": "t|p",
        "turns": [
            {"role": "questioner", "text": "What do you eat?"},
            {"role": "roleplayer", "text": "Mostly vegetables and rice."},
            {"role": "questioner", "text": "Any allergies?"},
            {"role": "roleplayer", "text": "None."},
        ],
    }
    assert efficiency.conversation(conv) == {"questions": 2, "questioner_tokens": 6, "roleplayer_tokens": 5}
    assert efficiency.conversation(conv, len)["questioner_tokens"] == len("What do you eat?") + len("Any allergies?")
    s = efficiency.summarize([conv, {"pair": "x", "turns": conv["turns"][:2]}])
    assert s["tokenizer"] == "whitespace" and s["mean_questions"] == 1.5 and s["median_roleplayer_tokens"] == 4.5
    ledger = {"questioner_turn": {"cost_usd": 1.5}, "roleplayer_turn": {"cost_usd": 2.5}, "judge": {"cost_usd": 9.0}}
    tsv = "s\th:m:s\tmax_rss\n10.0\t0:00:10\t1\n12.5\t0:00:12\t1\n"
    secs = efficiency.benchmark_seconds(tsv)
    gpu = efficiency.gpu_seconds([(secs, 2), (100.0, 1)])
    c = efficiency.costs(efficiency.ledger_dollars(ledger), gpu, 8)
    assert secs == 12.5 and gpu == 125.0
    assert c["dollars_per_conversation"] == pytest.approx(0.5) and c["gpu_seconds_per_conversation"] == 125 / 8
    assert efficiency.costs(None, 10.0, 0)["gpu_seconds_per_conversation"] is None
    with pytest.raises(StargateError, match="no column 's'"):
        efficiency.benchmark_seconds("x\ty\n1\t2\n")

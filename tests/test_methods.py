"""Training methods beside SFT (issue 13): DPO pairs and RWR weights from hand-made scored files, the
training examples per method and regularizer, the weighted loss, and one tiny CPU training run per method."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from test_train import clean_env, run_args, spec_for_test, state  # noqa: F401  (fixtures and helpers)

from stargate.errors import InputError, StargateError
from stargate.records import read_jsonl, read_meta, write_jsonl
from stargate.stages import select as selection
from stargate.stages import sft_data
from stargate.training.masking import IGNORE_INDEX
from stargate.training.methods.rwr import rwr_weights

PAIRS = ["A-t0000|A-p00", "A-t0001|A-p00", "A-t0002|A-p00", "A-t0000|A-p01"]


def conversation(pair: str, conv: int) -> dict:
    return {
        "pair": pair,
        "conv": conv,
        "target_turns": 1,
        "turns": [
            {"role": "questioner", "text": f"Question {conv} about {pair}?"},
            {"role": "roleplayer", "text": f"Answer {conv}."},
        ],
    }


def scored_files(tmp_path: Path, scores: dict[str, list[float]]) -> tuple[Path, Path]:
    """Conversations and their qa-experimental scores: scores[pair][conv]."""
    convs = [conversation(p, c) for p, vals in scores.items() for c in range(len(vals))]
    lps = [{"pair": p, "conv": c, "logprob": v} for p, vals in scores.items() for c, v in enumerate(vals)]
    write_jsonl(tmp_path / "conversations.jsonl", convs, {"stage": "pool"})
    write_jsonl(tmp_path / "logprobs.jsonl", lps, {"stage": "score", "no_gold": []})
    return tmp_path / "conversations.jsonl", tmp_path / "logprobs.jsonl"


def select(tmp_path, method, scores, **knobs) -> list[dict]:
    c, lp = scored_files(tmp_path, scores)
    out = tmp_path / f"selected.{method}.jsonl"
    selection.run(
        argparse.Namespace(
            method=method,
            conversations=str(c),
            logprobs=str(lp),
            knobs=json.dumps(knobs),
            output=str(out),
        )
    )
    return read_jsonl(out)


# ----------------------------------------------------------------------------- selection
SCORES = {
    PAIRS[0]: [-10.0, -4.0, -7.0],  # clear best (1) and worst (0), gap 6
    PAIRS[1]: [-5.0, -5.0, -5.0],  # a full tie: no preference
    PAIRS[2]: [-3.0],  # one conversation: no contrast
    PAIRS[3]: [-2.0, -2.5, -2.0],  # tie for best goes to the lower index; gap 0.5
}


def test_dpo_pairs_best_vs_worst_ties_margins_and_single_conversations(tmp_path):
    recs = select(tmp_path, "dpo", SCORES, min_gap=0.0)
    by_pair = {(r["pair"], r["side"]): r for r in recs}
    assert len(recs) == 4 and {p for p, _ in by_pair} == {PAIRS[0], PAIRS[3]}
    assert by_pair[(PAIRS[0], "chosen")]["conv"] == 1 and by_pair[(PAIRS[0], "rejected")]["conv"] == 0
    assert by_pair[(PAIRS[0], "chosen")]["gap"] == pytest.approx(6.0)
    assert by_pair[(PAIRS[3], "chosen")]["conv"] == 0 and by_pair[(PAIRS[3], "rejected")]["conv"] == 1
    assert by_pair[(PAIRS[0], "chosen")]["turns"] == conversation(PAIRS[0], 1)["turns"]  # the whole record
    meta = read_meta(tmp_path / "selected.dpo.jsonl")
    assert meta["skipped"] == {"one_conversation": 1, "tie": 1, "below_min_gap": 0} and meta["n_pairs"] == 2

    # a margin of 1 nat leaves out the 0.5-gap pair
    recs = select(tmp_path, "dpo", SCORES, min_gap=1.0)
    assert {r["pair"] for r in recs} == {PAIRS[0]}
    assert read_meta(tmp_path / "selected.dpo.jsonl")["skipped"]["below_min_gap"] == 1
    # nothing left to contrast: a clear error, not an empty file
    with pytest.raises(StargateError, match="min_gap"):
        select(tmp_path, "dpo", SCORES, min_gap=100.0)


def test_rwr_weights_are_per_pair_softmax_with_mean_one(tmp_path):
    recs = select(tmp_path, "rwr", SCORES, temperature=2.0)
    w = {(r["pair"], r["conv"]): r["weight"] for r in recs}
    assert len(recs) == 10  # every conversation
    z = [math.exp(v / 2.0) for v in SCORES[PAIRS[0]]]
    for conv in range(3):
        assert w[(PAIRS[0], conv)] == pytest.approx(3 * z[conv] / sum(z))
    assert w[(PAIRS[0], 1)] > w[(PAIRS[0], 2)] > w[(PAIRS[0], 0)]
    assert [w[(PAIRS[1], c)] for c in range(3)] == pytest.approx([1.0, 1.0, 1.0])  # tie: uniform
    assert w[(PAIRS[2], 0)] == pytest.approx(1.0)  # a single conversation keeps weight 1
    for pair, vals in SCORES.items():
        assert sum(w[(pair, c)] for c in range(len(vals))) == pytest.approx(len(vals))
    # temperature: low -> top-1, high -> uniform
    cold = {r["conv"]: r["weight"] for r in select(tmp_path, "rwr", SCORES, temperature=0.01) if r["pair"] == PAIRS[0]}
    hot = {r["conv"]: r["weight"] for r in select(tmp_path, "rwr", SCORES, temperature=1e6) if r["pair"] == PAIRS[0]}
    assert cold[1] == pytest.approx(3.0) and cold[0] == pytest.approx(0.0)
    assert list(hot.values()) == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    # extreme log-probs do not overflow
    assert rwr_weights([-1e4, -2e4], 1.0) == pytest.approx([2.0, 0.0])


def test_scores_of_unknown_conversations_are_refused(tmp_path):
    c, lp = scored_files(tmp_path, {PAIRS[0]: [-1.0, -2.0]})
    write_jsonl(lp, [{"pair": PAIRS[0], "conv": 7, "logprob": -1.0}], {"stage": "score"})
    args = argparse.Namespace(
        method="rwr", conversations=str(c), logprobs=str(lp), knobs='{"temperature": 1.0}', output=str(tmp_path / "o")
    )
    with pytest.raises(InputError, match="unknown conversation"):
        selection.run(args)


# ----------------------------------------------------------------------------- training examples
@pytest.fixture
def pair_data(tmp_path, data_files):
    """Two pairs of the conftest split with 2 conversations each, regularizer answers and gold responses."""
    pairs = ["A-t0000|A-p00", "A-t0001|A-p01"]
    scores = {pairs[0]: [-3.0, -1.0], pairs[1]: [-2.0, -5.0]}
    answers = [{"pair": p, "conv": c, "text": f"m_t answer {p} {c}"} for p in pairs for c in range(2)]
    write_jsonl(tmp_path / "answers.jsonl", answers, {"stage": "regularize"})
    return pairs, scores


def build_examples(tmp_path, data_files, method, regularizer, scores) -> list[dict]:
    if method == "sft":
        used = tmp_path / "topk.jsonl"
        write_jsonl(used, [conversation(p, max(range(2), key=lambda c: v[c])) for p, v in scores.items()])
    else:
        select(tmp_path, method, scores, min_gap=0.0, temperature=1.0)
        used = tmp_path / f"selected.{method}.jsonl"
    responses = {"self": str(tmp_path / "answers.jsonl"), "gold": str(data_files["gold"]), "none": None}[regularizer]
    out = tmp_path / f"{method}.{regularizer}.jsonl"
    sft_data.run(
        argparse.Namespace(
            topk=str(used),
            method=method,
            regularizer=regularizer,
            responses=responses,
            tasks=str(data_files["tasks"]),
            personas=str(data_files["personas"]),
            prompts="fixed_v1",
            output=str(out),
        )
    )
    assert read_meta(out)["method"] == method and read_meta(out)["regularizer"] == regularizer
    return read_jsonl(out)


def test_dpo_examples_end_in_the_final_answer_of_each_side(tmp_path, data_files, pair_data):
    pairs, scores = pair_data
    recs = build_examples(tmp_path, data_files, "dpo", "self", scores)
    assert len(recs) == 2
    first = next(r for r in recs if r["pair"] == pairs[0])
    assert (first["chosen_conv"], first["rejected_conv"]) == (1, 0)
    assert first["chosen"][-1] == {"role": "assistant", "content": f"m_t answer {pairs[0]} 1"}
    assert first["rejected"][-1] == {"role": "assistant", "content": f"m_t answer {pairs[0]} 0"}
    assert first["chosen"][1]["content"] == f"Question 1 about {pairs[0]}?"
    gold = build_examples(tmp_path, data_files, "dpo", "gold", scores)
    assert (
        next(r for r in gold if r["pair"] == pairs[0])["chosen"][-1]["content"]
        == "Gold answer for Maya: Recommend a book."
    )


def test_rwr_and_regularizer_variants(tmp_path, data_files, pair_data):
    pairs, scores = pair_data
    recs = build_examples(tmp_path, data_files, "rwr", "self", scores)
    assert len(recs) == 4
    w = {(r["pair"], r["conv"]): r["weight"] for r in recs}
    assert w[(pairs[0], 1)] == pytest.approx(2 * math.exp(-1) / (math.exp(-1) + math.exp(-3)))
    # questions only: the example ends with the last question, the answer turn and the repeated task are gone
    none = build_examples(tmp_path, data_files, "sft", "none", scores)
    assert [m["role"] for m in none[0]["messages"]] == ["user", "assistant"]
    assert none[0]["messages"][-1]["content"].startswith("Question")
    # a missing m_t answer is an error naming the fix
    write_jsonl(tmp_path / "answers.jsonl", [{"pair": pairs[0], "conv": 1, "text": "x"}])
    with pytest.raises(InputError, match="regularize"):
        build_examples(tmp_path, data_files, "rwr", "self", scores)


# ----------------------------------------------------------------------------- losses
def test_weighted_loss_is_sft_loss_with_unit_weights_and_ignores_zero_weight_rows():
    from stargate.training.methods.rwr import weighted_nll_sum

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, IGNORE_INDEX, 5, 6], [IGNORE_INDEX, IGNORE_INDEX, 1, 2, 3, 4]])
    total, n = weighted_nll_sum(logits, labels, torch.ones(2))
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    assert n == 8 and (total / n).item() == pytest.approx(ref.item(), rel=1e-6)
    only_first, _ = weighted_nll_sum(logits, labels, torch.tensor([1.0, 0.0]))
    first, _ = weighted_nll_sum(logits[:1], labels[:1], torch.ones(1))
    assert only_first.item() == pytest.approx(first.item())
    doubled, _ = weighted_nll_sum(logits, labels, torch.full((2,), 2.0))
    assert doubled.item() == pytest.approx(2 * total.item())


def test_dpo_completion_mask_is_the_sft_label_mask(tiny_model_dir):
    from transformers import AutoTokenizer

    from stargate.training.methods.dpo import PreferenceCollator, encode_pair

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rec = {
        "pair": "p",
        "chosen": [
            {"role": "user", "content": "My name is A.\n\nPlan a trip."},
            {"role": "assistant", "content": "Where to?"},
            {"role": "user", "content": "The sea.\n\nPlan a trip."},
            {"role": "assistant", "content": "Go to Nice."},
        ],
        "rejected": [
            {"role": "user", "content": "My name is A.\n\nPlan a trip."},
            {"role": "assistant", "content": "Budget?"},
            {"role": "user", "content": "Low, and I dislike long sentences.\n\nPlan a trip."},
            {"role": "assistant", "content": "Camp."},
        ],
    }
    enc = encode_pair(tok, rec, 256)
    batch = PreferenceCollator(tok.pad_token_id)(
        [
            {
                "chosen_input_ids": enc.chosen.input_ids,
                "chosen_labels": enc.chosen.labels,
                "rejected_input_ids": enc.rejected.input_ids,
                "rejected_labels": enc.rejected.labels,
            }
        ]
    )
    assert batch["input_ids"].shape[0] == 2
    rejected_mask = batch["completion_mask"][1][: len(enc.rejected.input_ids)]
    trained = tok.decode([i for i, m in zip(enc.rejected.input_ids, rejected_mask.tolist(), strict=True) if m])
    assert "Budget?" in trained and "Camp." in trained
    assert "dislike" not in trained and "My name" not in trained  # user turns are not in the log-ratio
    assert batch["attention_mask"][1].sum() == len(enc.rejected.input_ids)


# ----------------------------------------------------------------------------- tiny training runs
def write_method_data(path: Path, method: str, n: int = 6) -> Path:
    def chat(i, q, final):
        return [
            {"role": "user", "content": f"My name is P{i}.\n\nPlan a weekend trip."},
            {"role": "assistant", "content": q},
            {"role": "user", "content": "Somewhere by the sea.\n\nPlan a weekend trip."},
            {"role": "assistant", "content": final},
        ]

    recs = []
    for i in range(n):
        pair = f"A-t{i:04d}|A-p01"
        if method == "dpo":
            recs.append(
                {
                    "pair": pair,
                    "chosen": chat(i, "Where would you like to go?", "Try the coast."),
                    "rejected": chat(i, "Hello?", "No."),
                }
            )
        else:
            recs.append({"pair": pair, "conv": 0, "messages": chat(i, "Where to?", "The coast."), "weight": 1.5})
            recs.append({"pair": pair, "conv": 1, "messages": chat(i, "Hm?", "No."), "weight": 0.5})
    write_jsonl(path, recs, {"stage": "sft_data", "method": method})
    return path


@pytest.mark.parametrize("method", ["rwr", "dpo"])
def test_tiny_training_run_per_method(method, tiny_model_dir, tmp_path, clean_env):  # noqa: F811
    from stargate.stages import train

    data = write_method_data(tmp_path / "A.jsonl", method)
    out = tmp_path / "m1"
    spec = spec_for_test(method=method, wandb_project=None, validation_fraction=0.2)
    train.run(run_args(tiny_model_dir, data, out, spec))
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["spec"]["method"] == method and metrics["runtime"]["method"] == method
    assert metrics["results"]["global_step"] == 2 and math.isfinite(metrics["results"]["train_loss"])
    before, after = state(tiny_model_dir), state(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    card = (out / "README.md").read_text()
    assert {"rwr": "reward-weighted", "dpo": "DPO (m0 the reference)"}[method] in card
    if method == "dpo":  # TRL's own metrics are logged: its loss ran
        assert any("rewards/chosen" in h for h in metrics["log_history"])
        first = next(h for h in metrics["log_history"] if "loss" in h)
        assert first["loss"] == pytest.approx(math.log(2), abs=1e-3)  # the policy starts as the reference, m0
        assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-4)


def test_data_built_for_another_method_is_refused(tiny_model_dir, tmp_path, clean_env):  # noqa: F811
    from stargate.stages import train

    data = write_method_data(tmp_path / "A.jsonl", "rwr")
    spec = spec_for_test(method="dpo", wandb_project=None)
    with pytest.raises(InputError, match="built for training.method 'rwr'"):
        train.run(run_args(tiny_model_dir, data, tmp_path / "m1", spec))

"""Issue 21's protocol fixes, each against the original code written out from the spec and the upstream
scripts: the shuffled control's rotation, the GPT-4 specificity rating of the test tasks and its breakdown,
and which configs run what (paper_v1's token-level checks are in test_paper_tokens.py, the blank gold
response in test_released_data.py)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import yaml

from stargate.cli import main
from stargate.config import load_config
from stargate.prompts import load_prompt_set
from stargate.records import read_jsonl, read_meta

REPO = Path(__file__).resolve().parents[1]
SHARED_PROMPTS = REPO.parent / "shared" / "docs" / "stargate-prompts.md"


def run(*argv) -> int:
    return main([str(a) for a in argv])


def write(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


# ------------------------------------------------------------------ the shuffled control (spec §6.1)
def split_files(tmp_path: Path, n_tasks: int = 6, n_personas: int = 5) -> tuple[Path, Path, Path]:
    tasks = [{"task_id": f"test-t{i:04d}", "split": "test", "text": f"Task {i}."} for i in range(n_tasks)]
    personas = [
        {"persona_id": f"test-p{j:02d}", "split": "test", "name": f"N{j}", "text": f"Persona {j}."}
        for j in range(n_personas)
    ]
    convs = [
        {"pair": f"{t['task_id']}|{p['persona_id']}", "conv": c, "target_turns": 1, "turns": []}
        for p in personas
        for t in tasks
        for c in range(2)
    ]
    return (
        write(tmp_path / "t.jsonl", tasks),
        write(tmp_path / "p.jsonl", personas),
        write(tmp_path / "c.jsonl", convs),
    )


def original_shuffle(n_tasks: int, n_personas: int, seed: int) -> dict[str, str]:
    """shuffled-log-probs/shuffle.py + utils.shuffle_dict_values, literally: random.seed(1) once, then per
    task a dict of the personas' conversation lists with its values rotated by randint(1, P - 1) "to the
    right" (`values[-rotation:] + values[:-rotation]`). Returns scored key -> key whose conversations it got."""
    rng = random.Random(seed)  # the module-level stream after random.seed(seed)
    out = {}
    for i in range(n_tasks):
        keys = [f"prompt-{i} persona-{j}" for j in range(n_personas)]
        values = list(keys)  # each value names where it came from
        rotation = rng.randint(1, len(keys) - 1)
        new_values = values[-rotation:] + values[:-rotation]
        out |= dict(zip(keys, new_values, strict=True))
    return out


def as_key(pair: str) -> str:
    t, p = pair.split("|")
    return f"prompt-{int(t.rsplit('-t', 1)[1])} persona-{int(p.rsplit('-p', 1)[1])}"


def test_shuffle_under_paper_v1_rotates_as_the_original(tmp_path):
    """Issue 21 item 4: persona j gets the conversations of persona j - r, with the same Random(1) draws."""
    tasks, personas, convs = split_files(tmp_path)
    out = tmp_path / "shuffled.jsonl"
    argv = ["shuffle", "--conversations", convs, "--tasks", tasks, "--personas", personas, "--seed", 1]
    assert run(*argv, "--prompts", "paper_v1", "--output", out) == 0
    got = {as_key(r["pair"]): as_key(r["source_pair"]) for r in read_jsonl(out)}
    assert got == original_shuffle(6, 5, 1)
    assert read_meta(out)["rotation"] == "original"
    assert len(read_jsonl(out)) == 60 and all(r["pair"] != r["source_pair"] for r in read_jsonl(out))


@pytest.mark.parametrize("prompts", [None, "fixed_v1"])
def test_shuffle_without_paper_v1_keeps_its_rotation(tmp_path, prompts):
    """fixed_v1 (and a call without a set, as the workflow's rule makes it) keep j + r: their artifacts do not
    change. Only the direction differs from the original: the pairs of sources are the same draws."""
    tasks, personas, convs = split_files(tmp_path)
    out = tmp_path / "shuffled.jsonl"
    argv = ["shuffle", "--conversations", convs, "--tasks", tasks, "--personas", personas, "--seed", 1]
    assert run(*argv, *(["--prompts", prompts] if prompts else []), "--output", out) == 0
    got = {as_key(r["pair"]): as_key(r["source_pair"]) for r in read_jsonl(out)}
    rng = random.Random(1)
    expected = {}
    for i in range(6):
        r = rng.randint(1, 4)
        expected |= {f"prompt-{i} persona-{j}": f"prompt-{i} persona-{(j + r) % 5}" for j in range(5)}
    assert got == expected != original_shuffle(6, 5, 1)
    assert "rotation" not in read_meta(out)


# ------------------------------------------------------------------ the specificity rating (spec §6.1)
def original_rating(message: str) -> int:
    """rate-specificity.py: int(text after 'Final Response:'), 0 on any failure."""
    try:
        return int(message[message.find("Final Response:") + len("Final Response:") :].strip())
    except ValueError:
        return 0


def test_specificity_prompt_is_the_originals():
    """RATING_SYS_PROMPTS[0] and RATING_PROMPTS[0].format(task.strip()), [system, user] (prompts file §11)."""
    ps = load_prompt_set("paper_v1")
    system, user = ps.specificity("  What is the capital of Mongolia.\n")
    assert system["role"] == "system" and user["role"] == "user"
    assert system["content"].startswith("You are an expert in evaluating user queries, particularly skilled")
    lines = user["content"].split("\n")
    assert lines[1] == "    " and lines[2] == "User Query: What is the capital of Mongolia."  # four spaces
    assert user["content"].endswith('Final Response: <integer between 1 and 6, inclusive">')  # the stray quote
    assert load_prompt_set("fixed_v1").specificity("x") == ps.specificity("x")  # fixed_v1 reads paper_v1's texts
    if SHARED_PROMPTS.is_file():  # a developer checkout: the texts are the prompts file's, byte for byte
        doc = SHARED_PROMPTS.read_text(encoding="utf-8")
        section = doc[doc.index("## 11. Query-specificity") :]
        blocks = re.findall(r"````text\n(.*?)\n````", section, re.S)
        assert blocks[0] == system["content"]
        assert blocks[1] == ps.analysis_text("specificity_user")


@pytest.mark.parametrize(
    "reply, paper, fixed",
    [
        ("Comparison: a fact.\n\nFinal Response: 6", 6, 6),
        ("Comparison: depends.\n\nFinal Response: 2", 2, 2),
        ("Comparison: x.\n\nFinal Response: 5.", 0, 5),  # int("5.") fails upstream: 0, "specific"
        ("no anchor at all", 0, None),
        (None, 0, None),  # refused
    ],
)
def test_specificity_parse_is_the_originals_under_paper_v1(reply, paper, fixed):
    assert load_prompt_set("paper_v1").parse_specificity(reply) == paper == original_rating(reply or "")
    assert load_prompt_set("fixed_v1").parse_specificity(reply) == fixed


def test_specificity_stage_labels_tasks(tmp_path):
    tasks = write(
        tmp_path / "tasks.jsonl",
        [
            {"task_id": f"test-t{i:04d}", "split": "test", "text": t}
            for i, t in enumerate(["General?", "Mine?", "Odd?"])
        ],
    )
    rules = [
        {"match": "General\\?", "reply": "Comparison: a fact.\n\nFinal Response: 5"},
        {"match": "Mine\\?", "reply": "Comparison: personal.\n\nFinal Response: 4"},
        {"match": "Odd\\?", "reply": "Comparison: hm.\n\nFinal Response: **6**"},
    ]
    role = json.dumps(
        {"backend": "scripted", "options": {"reply": "x", "rules": rules}, "sampling": {"max_tokens": 8}}
    )
    labels = {}
    for prompts in ("paper_v1", "fixed_v1"):
        out = tmp_path / f"{prompts}.jsonl"
        argv = ["specificity", "--tasks", tasks, "--prompts", prompts, "--role", role, "--model", "gpt-4"]
        assert run(*argv, "--output", out) == 0
        labels[prompts] = [(r["rating"], r["label"]) for r in read_jsonl(out)]
        meta = read_meta(out)
        assert meta["prompt_set"] == prompts and meta["n_generated"] == 3 and len(meta["templates_sha256"]) == 64
    assert labels["paper_v1"] == [(5, "general"), (4, "specific"), (0, "specific")]
    assert labels["fixed_v1"] == [(5, "general"), (4, "specific"), (6, "general")]


def test_summary_breaks_down_by_the_ratings_beside_the_hand_labels(tmp_path):
    """Rows qa-experimental[-top1]-rated-{general,specific}, the paper's GPT-4-rated values beside them; the
    hand-label rows unchanged; without --specificity the summary has neither (default configs)."""
    qa = [
        {"pair": f"test-t000{i}|p", "conv": c, "condition": "qa-experimental", "logprob": -10.0 * (i + 1) - c}
        for i in range(4)
        for c in range(2)
    ]
    manifest = {
        "logprobs": {"0": {"qa-experimental": str(write(tmp_path / "qa0.jsonl", qa))}},
        "controls": {},
        "judge": {},
        "conversations": {},
    }
    tasks = write(
        tmp_path / "tasks.jsonl", [{"task_id": f"test-t000{i}", "split": "test", "text": "x"} for i in range(4)]
    )
    ratings = write(
        tmp_path / "rated.jsonl",
        [
            {"task_id": "test-t0000", "rating": 6, "label": "general"},
            {"task_id": "test-t0001", "rating": 1, "label": "specific"},
            {"task_id": "test-t0002", "rating": 5, "label": "general"},
            {"task_id": "test-t0003", "rating": None, "label": None},
        ],
    )
    base = ["summarize", "--manifest", json.dumps(manifest), "--resamples", "100", "--task-labels", "paper_hand"]
    base += ["--tasks", tasks, "--run", '{"run_name": "t"}']
    assert run(*base, "--specificity", ratings, "--out-dir", tmp_path / "with") == 0
    summary = json.loads((tmp_path / "with" / "summary.json").read_text())
    by = {r["condition"]: r for r in summary["logprobs"]}
    assert by["qa-experimental-rated-general"]["mean"] == pytest.approx((-10.5 - 30.5) / 2)  # tasks 0 and 2
    assert by["qa-experimental-rated-specific"]["mean"] == pytest.approx(-20.5)  # task 1; task 3 unrated
    assert by["qa-experimental-top1-rated-general"]["n"] == 2 and by["qa-experimental-top1-rated-specific"]["n"] == 1
    assert by["qa-experimental-general"]["n"] == 4  # hand labels: tasks 0 and 3 are among the paper's 16 general
    spec = summary["specificity"]
    assert (spec["n_general"], spec["n_specific"], spec["n_unrated"]) == (2, 1, 1)
    assert spec["agreement_with_hand_labels"] == pytest.approx(2 / 3)  # tasks 0, 1 agree; 2 does not
    comp = {(r["name"], r["t"]): r for r in summary["paper_comparison"]}
    assert comp[("qa-experimental-rated-general", 0)]["paper"] == pytest.approx(-356.230722500345)
    assert comp[("qa-experimental-top1-rated-specific", 0)]["paper_source"].endswith(
        "gpt-4-general-vs-specific/star-2-bsft-qa-experimental-GPT4-RATED-specific_topk_means.json"
    )
    assert run(*base, "--out-dir", tmp_path / "without") == 0
    plain = json.loads((tmp_path / "without" / "summary.json").read_text())
    assert "specificity" not in plain and not any("rated" in r["condition"] for r in plain["logprobs"])


# ------------------------------------------------------------------ which configs run what
@pytest.mark.parametrize(
    "name, on", [("config.yaml", False), ("world.yaml", False), ("paper.yaml", True), ("paper-released.yaml", True)]
)
def test_specificity_rating_is_on_in_the_paper_configs_only(name, on):
    cfg = yaml.safe_load((REPO / "config" / name).read_text())
    if name == "paper-released.yaml":
        cfg["data"]["released_dir"] = str(REPO)  # any folder: only the schema is checked here
    assert load_config(cfg)["evaluation"]["specificity_rating"] is on


def test_the_gemma_roleplayer_tokenizes_with_its_own_tokenizer():
    """paper_v1 pins the Mistral tokenizer; the ablation's Gemma roleplayer opts out (a vocabulary mismatch is
    an error otherwise), every other local role of the paper's configs keeps the pin."""
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    gemma = yaml.safe_load((REPO / "config" / "ablations" / "gemma-roleplayer.yaml").read_text())
    assert gemma["roles"]["roleplayer"]["options"] == {"tokenizer": "model"}
    assert all("tokenizer" not in (r.get("options") or {}) for r in paper["roles"].values())

"""The authors' released data as inputs (tasks, personas, names, gold responses in their native formats),
config/paper-released.yaml, and the paper's protocol for refused or unusable oracle/judge replies.

Fixtures: tests/fixtures/released/ (a miniature of the authors' data folder; README.md there names the
source of every file)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from stargate.cli import main
from stargate.config import check_config
from stargate.errors import StargateError
from stargate.prompts import load_prompt_set
from stargate.records import read_jsonl, read_meta

REPO = Path(__file__).resolve().parents[1]
RELEASED = REPO / "tests/fixtures/released"
PAPER_ROWS = {"A": [0, 250], "B": [250, 500], "test": [500, 550]}
ROLE = json.dumps({"backend": "hf", "sampling": {"temperature": 0.0, "max_tokens": 8}})


def run(*argv) -> int:
    return main([str(a) for a in argv])


def released(kind: str, split: str) -> Path:
    folder, name = {
        "tasks": ("prompts", split),
        "personas": ("personas", split),
        "names": ("personas", f"{split}_NAMES"),
        "gold": ("gold-responses", split),
    }[kind]
    return RELEASED / folder / "star-2-bsft" / f"{name}.json"


def file_spec(path, **extra) -> str:
    return json.dumps({"source": "file", "path": str(path), **extra})


def data_stages(out: Path, split: str, gold: Path | None = None, names: Path | None = None) -> dict[str, Path]:
    """tasks -> personas -> names (file) -> oracle (file) of one split of the fixture folder."""
    p = {k: out / f"{split}.{k}.jsonl" for k in ("tasks", "texts", "personas", "gold")}
    assert (
        run(
            "tasks",
            "--split",
            split,
            "--spec",
            file_spec(released("tasks", split), per_split=True),
            "--output",
            p["tasks"],
        )
        == 0
    )
    assert (
        run(
            "personas",
            "--split",
            split,
            "--spec",
            file_spec(released("personas", split), per_split=True),
            "--prompts",
            "paper_v1",
            "--output",
            p["texts"],
        )
        == 0
    )
    assert (
        run(
            "names",
            "--personas",
            p["texts"],
            "--method",
            "file",
            "--names-file",
            names or released("names", split),
            "--prompts",
            "paper_v1",
            "--output",
            p["personas"],
        )
        == 0
    )
    p["rc"] = run(
        "oracle",
        "--tasks",
        p["tasks"],
        "--personas",
        p["personas"],
        "--prompts",
        "paper_v1",
        "--gold-file",
        gold or released("gold", split),
        "--role",
        ROLE,
        "--model",
        "none",
        "--output",
        p["gold"],
    )
    return p


# ----------------------------------------------------------------------------- tasks: rows of one list
def test_rows_of_the_pilot_task_list_give_the_paper_splits(tmp_path):
    source = RELEASED / "instruct-questions/A.json"
    texts = {}
    for split in PAPER_ROWS:
        out = tmp_path / f"{split}.jsonl"
        assert run("tasks", "--split", split, "--spec", file_spec(source, rows=PAPER_ROWS), "--output", out) == 0
        recs = read_jsonl(out)
        assert [r["task_id"] for r in recs[:2]] == [f"{split}-t0000", f"{split}-t0001"]
        texts[split] = [r["text"] for r in recs]
        assert read_meta(out)["source"] == f"{source}[{PAPER_ROWS[split][0]}:{PAPER_ROWS[split][1]}]"
    assert {s: len(t) for s, t in texts.items()} == {"A": 250, "B": 250, "test": 50}
    # spec §2.1: the example record A[0], and the hand-labelled "general" test indices 26, 41, 49
    assert texts["A"][0] == (
        "I was wondering if you could walk me through the process of setting up a hydroponic garden for herbs."
    )
    assert texts["test"][26] == "What is the capital of Mongolia."
    assert texts["test"][41] == "What are the differences between a butterfly and a moth."
    assert texts["test"][49] == "What are the differences between the Democratic and Republican parties."
    every = json.loads(source.read_text())
    assert texts["B"] == [t.strip() for t in every[250:500]]
    # the dataset repeats some prompts: the test split shares none with A or B, but A and B share 3
    # and A holds 4 repeats (kept: the original used the rows as they are)
    assert not (set(texts["A"]) | set(texts["B"])) & set(texts["test"])
    assert set(texts["A"]) & set(texts["B"]) == {
        "How can I improve my public speaking skills.",
        "What should I look for when buying a used car.",
        "What is the best way to learn Spanish.",
    }
    assert (len(set(texts["A"])), len(set(texts["B"])), len(set(texts["test"]))) == (246, 249, 50)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"rows": {**PAPER_ROWS, "test": [500, 1001]}},
            "rows [500, 1001] of split test run past the list's 1000 items",
        ),
        ({}, "is one JSON list of tasks, but the config says neither which rows"),
    ],
)
def test_bad_task_rows_name_the_file(tmp_path, capsys, spec, message):
    source = RELEASED / "instruct-questions/A.json"
    assert run("tasks", "--split", "test", "--spec", file_spec(source, **spec), "--output", tmp_path / "t.jsonl") == 2
    err = capsys.readouterr().err
    assert str(source) in err and message in err and "fix:" in err


# ----------------------------------------------------------------------------- the fixture folder, end to end
def test_released_folder_through_the_data_stages(tmp_path):
    for split, (n_tasks, n_personas) in {"A": (4, 7), "B": (4, 3), "test": (4, 3)}.items():
        p = data_stages(tmp_path, split)
        assert p["rc"] == 0
        personas = read_jsonl(p["personas"])
        assert [r["name"] for r in personas] == json.loads(released("names", split).read_text())
        assert {r["name_source"] for r in personas} == {"file"}
        gold = read_jsonl(p["gold"])
        assert len(gold) == n_tasks * n_personas
        source = json.loads(released("gold", split).read_text())
        tasks = [t["task_id"] for t in read_jsonl(p["tasks"])]
        ids = [q["persona_id"] for q in personas]
        for r in gold:
            i, j = tasks.index(r["task_id"]), ids.index(r["persona_id"])
            assert r["released_key"] == f"prompt-{i} persona-{j}"
            assert r["text"] == source[r["released_key"]][0]  # verbatim, leading space included
        meta = read_meta(p["gold"])
        assert meta["source"] == "file" and meta["n_dropped"] == 0
    # the pilot test gold answers the pilot test tasks: task 0 is about cleaning a kitchen, persona 0 is Theo
    first = next(r for r in read_jsonl(tmp_path / "test.gold.jsonl") if r["released_key"] == "prompt-0 persona-0")
    assert first["text"].startswith(" Hello Theo") and "kitchen" in first["text"]
    # the hand-made A_NAMES.json spells persona 6 "Roza" where the text says "Rosa": kept, and reported
    assert read_meta(tmp_path / "A.personas.jsonl")["names_not_in_text"] == ["A-p06"]
    assert read_jsonl(tmp_path / "A.personas.jsonl")[6]["name"] == "Roza Alvarez"


def _edited_gold(tmp_path, edit) -> Path:
    gold = json.loads(released("gold", "B").read_text())
    edit(gold)
    path = tmp_path / "gold-B.json"
    path.write_text(json.dumps(gold))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda g: g.pop("prompt-3 persona-2"),
            "1 of the split's 12 pairs have no gold response, e.g. 'prompt-3 persona-2'",
        ),
        (lambda g: g.update({"prompt-4 persona-0": ["x"]}), "e.g. 'prompt-4 persona-0'"),
        (lambda g: g.update({"prompt-0 persona-3": ["x"]}), "e.g. 'prompt-0 persona-3'"),
        (lambda g: g.update({"prompt-0  persona-1": ["x"]}), "key 'prompt-0  persona-1' is not of the form"),
        (lambda g: g.update({"prompt-1 persona-1": ["a", "b"]}), "key 'prompt-1 persona-1': the value must be a list"),
    ],
)
def test_misaligned_gold_names_file_and_key(tmp_path, capsys, edit, message):
    gold = _edited_gold(tmp_path, edit)
    p = data_stages(tmp_path, "B", gold=gold)
    assert p["rc"] == 2 and not p["gold"].exists()
    err = capsys.readouterr().err
    assert str(gold) in err and message in err and "fix:" in err


def test_gold_of_another_split_is_rejected(tmp_path, capsys):
    # the A gold file (4 tasks x 7 personas) against split B (4 x 3): persona-3.. are extra
    p = data_stages(tmp_path, "B", gold=released("gold", "A"))
    assert p["rc"] == 2
    assert "16 key(s) name a task or persona the split does not have (4 tasks x 3 personas)" in capsys.readouterr().err


def test_names_must_be_parallel_to_personas(tmp_path, capsys):
    names = tmp_path / "B_NAMES.json"
    names.write_text(json.dumps(json.loads(released("names", "B").read_text())[:2]))
    texts = tmp_path / "B.texts.jsonl"
    assert (
        run(
            "personas",
            "--split",
            "B",
            "--spec",
            file_spec(released("personas", "B"), per_split=True),
            "--prompts",
            "paper_v1",
            "--output",
            texts,
        )
        == 0
    )
    assert (
        run(
            "names",
            "--personas",
            texts,
            "--method",
            "file",
            "--names-file",
            names,
            "--prompts",
            "paper_v1",
            "--output",
            tmp_path / "n.jsonl",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{names}: has 2 names but {texts} has 3 personas" in err and "parallel" in err


def test_personas_and_names_are_kept_verbatim(tmp_path):
    # paper_v1 strips names only where the original did (not in the win-rate answers): no stripping on read
    (tmp_path / "B.json").write_text(json.dumps(["Ada Lovelace, 36, a mathematician.\n"]))
    (tmp_path / "B_NAMES.json").write_text(json.dumps(["Ada Lovelace "]))
    texts, named = tmp_path / "t.jsonl", tmp_path / "n.jsonl"
    assert (
        run(
            "personas",
            "--split",
            "B",
            "--spec",
            file_spec(tmp_path / "B.json", per_split=True),
            "--prompts",
            "paper_v1",
            "--output",
            texts,
        )
        == 0
    )
    assert (
        run(
            "names",
            "--personas",
            texts,
            "--method",
            "file",
            "--names-file",
            tmp_path / "B_NAMES.json",
            "--prompts",
            "paper_v1",
            "--output",
            named,
        )
        == 0
    )
    rec = read_jsonl(named)[0]
    assert (rec["text"], rec["name"]) == ("Ada Lovelace, 36, a mathematician.\n", "Ada Lovelace ")
    assert read_meta(named)["names_not_in_text"] == []


def test_a_persona_list_needs_a_split_in_its_path(tmp_path, capsys):
    path = released("personas", "A")
    assert (
        run(
            "personas",
            "--split",
            "B",
            "--spec",
            file_spec(path),
            "--prompts",
            "paper_v1",
            "--output",
            tmp_path / "p.jsonl",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert str(path) in err and "put {split} in data.personas.path" in err


# ----------------------------------------------------------------------------- config
def _config(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def test_paper_released_config_is_the_paper_run_but_its_data():
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())
    cfg = _config("config/paper-released.yaml")
    jsonschema.validate(cfg, schema)
    check_config(cfg, "paper-released")
    assert all(cfg["data"][k]["source"] == "file" for k in ("tasks", "personas", "names", "oracle"))
    judge = cfg["roles"]["judge"]["options"]
    assert judge["send_seed"] is False and judge["refusals"] == "count"  # the original sent no seed
    paper = _config("config/paper.yaml")
    # the spend differs (issue 24): the headline variant, one order per comparison, through the Batch API
    headline = {"conversation": "random", "answerer": "mt", "positions": "randomized"}
    assert (
        cfg["evaluation"]["winrate"]["variants"] == [headline]
        and headline in paper["evaluation"]["winrate"]["variants"]
    )
    assert cfg["api"]["batch"] is True and cfg["evaluation"]["winrate"]["both_orders"] is False
    for c in (cfg, paper):
        c["evaluation"]["winrate"].pop("variants"), c["evaluation"]["winrate"].pop("both_orders")
        c["api"].pop("batch", None), c["api"].pop("budget_usd")
    # everything else must stay the paper's: if config/paper.yaml changes, change this file with it
    for c in (cfg, paper):
        c.pop("data"), c.pop("run_name")
    assert cfg == paper


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["tasks"].update(rows={"A": [0, 250], "B": [200, 500], "test": [500, 550]}),
            r"A \[0, 250\] and B \[200, 500\] overlap",
        ),
        (lambda d: d["tasks"].update(rows=PAPER_ROWS), "rows cut one task list into splits, but the path names"),
        (lambda d: d["oracle"].update(path="gold.json"), "put {split} in the path"),
        (
            lambda d: d.update(
                personas={"source": "generate", "seeds": "s.json", "count": {"A": 1, "B": 1, "test": 1}}
            ),
            "so data.personas must be source: file too",
        ),
    ],
)
def test_data_config_errors_name_the_key(change, message):
    cfg = _config("config/paper-released.yaml")
    change(cfg["data"])
    with pytest.raises(StargateError, match=message):
        check_config(cfg)


def snakemake(*args, cwd, dry=True):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *["-n"] * dry, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_paper_released_dry_runs_on_a_folder_of_the_authors_format(tmp_path):
    folder = tmp_path / "released"
    shutil.copytree(RELEASED, folder)
    cfg = ["--configfile", str(REPO / "config/paper-released.yaml")]
    r = snakemake(*cfg, "--config", f"data={{released_dir: {folder}}}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = [j for j in r.stdout.split("\n\n") if j.strip().startswith("rule ") or "\nrule " in j]
    data_jobs = [j for j in jobs if any(f"rule {k}:" in j for k in ("tasks", "personas", "names", "oracle"))]
    assert len(data_jobs) == 12
    for job in data_jobs:  # no data job needs a model, local or API: every one reads the authors' files
        assert "resources/models/" not in job and "gpt-4" not in job
    judge_jobs = [j for j in jobs if "rule judge:" in j]
    # the judge stays paid: 3 iterations x the headline variant's answer set (the other variants are opt-in)
    assert len(judge_jobs) == 3 * 1 and all("--model gpt-4" in j for j in judge_jobs)
    assert f"--gold-file {folder}/gold-responses/star-2-bsft/test.json" in r.stdout
    assert f"--names-file {folder}/personas/star-2-bsft/B_NAMES.json" in r.stdout
    # a data file named in the config is a rule input: a missing one stops the dry run
    (folder / "gold-responses/star-2-bsft/B.json").unlink()
    r = snakemake(*cfg, "--config", f"data={{released_dir: {folder}}}", cwd=tmp_path)
    assert r.returncode != 0 and "gold-responses/star-2-bsft/B.json" in r.stdout + r.stderr
    # without the folder the workflow asks for it
    r = snakemake(*cfg, cwd=tmp_path)
    assert r.returncode != 0 and "data.released_dir" in r.stdout + r.stderr


# ----------------------------------------------------------------------------- the scripted backend: names, refusals
def scripted(reply: str, rules: list[tuple[str, str | None]] = ()) -> str:
    """A role on the scripted backend: the first rule whose regular expression matches the prompt gives the
    reply (None: a content-filter refusal), else `reply`."""
    return json.dumps(
        {
            "backend": "scripted",
            "sampling": {"temperature": 0.0, "max_tokens": 8},
            "options": {"reply": reply, "rules": [{"match": m, "reply": r} for m, r in rules]},
        }
    )


# the llm names step asks for the paper's form
def test_llm_names_ask_for_the_full_name(tmp_path):
    text = load_prompt_set("paper_v1").name_extraction("1. Leo Sato, 36, a critic.")[0]["content"]
    assert "full name" in text and "first name?" not in text
    texts = tmp_path / "t.jsonl"
    texts.write_text(json.dumps({"persona_id": "A-p00", "split": "A", "text": "1. Leo Sato, 36, a critic."}) + "\n")
    assert (
        run(
            "names",
            "--personas",
            texts,
            "--method",
            "llm",
            "--prompts",
            "paper_v1",
            "--role",
            scripted("Leo Sato"),
            "--model",
            "fake",
            "--output",
            tmp_path / "n.jsonl",
        )
        == 0
    )
    assert [(r["name"], r["name_source"]) for r in read_jsonl(tmp_path / "n.jsonl")] == [("Leo Sato", "llm")]


@pytest.fixture
def split_b(tmp_path):
    p = data_stages(tmp_path, "B")
    assert p["rc"] == 0
    return p


def test_oracle_drops_and_counts_refused_and_blank_replies(tmp_path, split_b, capsys):
    """fixed_v1 (and any set without `blank_gold: keep`): a blank gold response is dropped, like a refused one."""
    tasks = [t["text"] for t in read_jsonl(split_b["tasks"])]

    # task 0: refused by the content filter, task 1: blank, else an answer
    role = scripted("Gold.", [(re.escape(tasks[0]), None), (re.escape(tasks[1]), "  ")])
    out = tmp_path / "gold.jsonl"
    argv = [
        "oracle",
        "--tasks",
        split_b["tasks"],
        "--personas",
        split_b["personas"],
        "--prompts",
        "fixed_v1",
        "--role",
        role,
        "--model",
        "fake",
        "--output",
        out,
    ]
    assert run(*argv) == 2 and not out.exists()  # default cap 0: any drop fails, as before
    err = capsys.readouterr().err
    assert "6 of 12 gold responses dropped (3 refused by a content filter, 3 unusable" in err
    assert "data.oracle.max_dropped_fraction = 0.0" in err
    assert run(*argv, "--max-dropped-fraction", "0.5") == 0
    recs, meta = read_jsonl(out), read_meta(out)
    assert len(recs) == 6 and {r["task_id"] for r in recs} == {"B-t0002", "B-t0003"}
    assert (meta["n_refused"], meta["n_unusable"], meta["n_dropped"]) == (3, 3, 6)
    assert sorted(meta["refused"]) == [f"B-t0000|B-p0{j}" for j in range(3)]

    # downstream, the dropped pairs are not scored and keep no conversation; the others go on
    convs = tmp_path / "convs.jsonl"
    keys = [f"B-t000{i}|B-p0{j}" for j in range(3) for i in range(4)]
    turns = [{"role": "questioner", "text": "Q?"}, {"role": "roleplayer", "text": "A."}]
    convs.write_text(
        "".join(
            json.dumps({"pair": k, "conv": c, "target_turns": 1, "turns": turns}) + "\n"
            for k in keys
            for c in range(2)
        )
    )
    lp, top = tmp_path / "lp.jsonl", tmp_path / "top.jsonl"
    assert (
        run(
            "score",
            "--condition",
            "qa-experimental",
            "--conversations",
            convs,
            "--gold",
            out,
            "--tasks",
            split_b["tasks"],
            "--personas",
            split_b["personas"],
            "--prompts",
            "fixed_v1",
            "--role",
            role,
            "--model",
            "fake",
            "--output",
            lp,
        )
        == 0
    )
    scored = read_jsonl(lp)
    assert len(scored) == 12 and {r["pair"] for r in scored} == {r["pair"] for r in recs}
    assert sorted(read_meta(lp)["no_gold"]) == sorted(set(keys) - {r["pair"] for r in recs})
    assert run("topk", "--conversations", convs, "--logprobs", lp, "--k", 1, "--output", top) == 0
    assert {r["pair"] for r in read_jsonl(top)} == {r["pair"] for r in recs}


def test_paper_v1_keeps_a_blank_gold_response_and_scores_it_as_the_original(tmp_path, split_b):
    """Issue 21 item 5: the original kept a blank gold response, scored `gold.strip()` = "" (no token past the
    context: log p 0 for every conversation of the pair) and took the pair on to top-1 and training. Under
    paper_v1 only refusals are dropped; the blank pairs are listed in the sidecar (`blank`)."""
    tasks = [t["text"] for t in read_jsonl(split_b["tasks"])]
    role = scripted("Gold.", [(re.escape(tasks[0]), None), (re.escape(tasks[1]), "  ")])
    out = tmp_path / "gold.jsonl"
    common = ["--tasks", split_b["tasks"], "--personas", split_b["personas"], "--prompts", "paper_v1"]
    argv = ["oracle", *common, "--role", role, "--model", "fake", "--output", out]
    assert run(*argv, "--max-dropped-fraction", "0.25") == 0  # 3 refused of 12; the 3 blank are kept
    recs, meta = read_jsonl(out), read_meta(out)
    blank = sorted(f"B-t0001|B-p0{j}" for j in range(3))
    assert (meta["n_refused"], meta["n_unusable"], meta["n_dropped"]) == (3, 0, 3)
    assert sorted(meta["blank"]) == blank and len(recs) == 9
    assert {r["pair"]: r["text"] for r in recs if r["pair"] in blank} == dict.fromkeys(blank, "  ")

    convs = tmp_path / "convs.jsonl"
    keys = [f"B-t000{i}|B-p0{j}" for j in range(3) for i in range(4)]
    turns = [{"role": "questioner", "text": "Q?"}, {"role": "roleplayer", "text": "A."}]
    convs.write_text(
        "".join(
            json.dumps({"pair": k, "conv": c, "target_turns": 1, "turns": turns}) + "\n"
            for k in keys
            for c in range(2)
        )
    )
    lp, top = tmp_path / "lp.jsonl", tmp_path / "top.jsonl"
    scorer = scripted("unused")
    score = ["score", "--condition", "qa-experimental", "--conversations", convs, "--gold", out, *common]
    assert run(*score, "--role", scorer, "--model", "fake", "--output", lp) == 0
    scored = {(r["pair"], r["conv"]): r for r in read_jsonl(lp)}
    assert len(scored) == 18
    assert all((scored[(k, c)]["logprob"], scored[(k, c)]["n_tokens"]) == (0.0, 0) for k in blank for c in (0, 1))
    assert all(r["n_tokens"] > 0 for (k, _), r in scored.items() if k not in blank)
    assert run("topk", "--conversations", convs, "--logprobs", lp, "--k", 1, "--output", top) == 0
    assert {(r["pair"], r["conv"]) for r in read_jsonl(top) if r["pair"] in blank} == {(k, 0) for k in blank}

    # a blank text the oracle did not keep (a hand-edited file) is still an error
    meta_file = Path(str(out) + ".meta.json")
    edited = json.loads(meta_file.read_text())
    edited["blank"] = blank[:1]
    meta_file.write_text(json.dumps(edited))
    assert run(*score, "--role", scorer, "--model", "fake", "--output", tmp_path / "lp2.jsonl") == 2


def test_judge_drops_and_counts_refused_and_unparsable_verdicts(tmp_path, split_b, capsys):
    personas = read_jsonl(split_b["personas"])
    pairs = [f"B-t000{i}|{p['persona_id']}" for p in personas for i in range(4)]
    for who in ("cand", "base"):
        (tmp_path / f"{who}.jsonl").write_text(
            "".join(
                json.dumps({"pair": k, "conv": 0, "group": 1 + n % 3, "text": f"{who} answer {n}"}) + "\n"
                for n, k in enumerate(pairs)
            )
        )

    # persona 0: refused; persona 1: a tie on task 0, then m_t wins; persona 2: m0 wins
    p0, p1 = (re.escape(p["text"]) for p in personas[:2])
    verdict = "Comparison: x.\n\nFinal Response: {}"
    role = scripted(
        verdict.format("A"),
        [  # default: persona 2 with m0 in position A
            (p0, None),
            (f"(?s)(?=.*{p1}).*answer 4\\b", "Comparison: equal.\n\nFinal Response: C"),
            (f"(?s)(?=.*{p1}).*cand answer.*base answer", verdict.format("A")),
            (p1, verdict.format("B")),
            ("(?s)cand answer.*base answer", verdict.format("B")),
        ],
    )
    out = tmp_path / "judge.jsonl"
    argv = [
        "judge",
        "--candidate",
        tmp_path / "cand.jsonl",
        "--baseline",
        tmp_path / "base.jsonl",
        "--tasks",
        split_b["tasks"],
        "--personas",
        split_b["personas"],
        "--prompts",
        "paper_v1",
        "--role",
        role,
        "--model",
        "fake",
        "--seed",
        "1",
        "--mode",
        "generate",
        "--positions",  # the paper's protocol: one order per comparison, by a seeded coin flip
        "randomized",
        "--no-both-orders",
        "--output",
        out,
    ]
    assert run(*argv, "--max-dropped-fraction", "0.4") == 2 and not out.exists()
    assert "5 of 12 judge verdicts dropped (4 refused" in capsys.readouterr().err
    assert run(*argv, "--max-dropped-fraction", "0.5") == 0
    recs, meta = read_jsonl(out), read_meta(out)
    assert (meta["n_refused"], meta["n_unusable"], meta["n_dropped"]) == (4, 1, 5)
    assert meta["outcomes"] == {"win": 3, "loss": 4, "tie": 0, "unparsable": 1, "refused": 4}
    judged = [j for r in recs for j in r["judged"].values()]
    assert len(judged) == 12 and sum(j["outcome"] == "refused" for j in judged) == 4
    assert all(j["verdict"] == "refused" and j["raw"] is None for j in judged if j["outcome"] == "refused")
    # the summary's win rate counts valid verdicts only: 3 of 7, with 5 invalid
    for t, cond in ((0, "qa-experimental"), (1, "qa-experimental")):
        (tmp_path / f"lp{t}.jsonl").write_text(
            json.dumps({"pair": pairs[0], "conv": 0, "condition": cond, "logprob": -1.0}) + "\n"
        )
    (tmp_path / "neg.jsonl").write_text(
        json.dumps({"pair": pairs[0], "condition": "neg-control", "logprob": -2.0}) + "\n"
    )
    manifest = {
        "logprobs": {t: {"qa-experimental": str(tmp_path / f"lp{t}.jsonl")} for t in (0, 1)},
        "controls": {"neg-control": str(tmp_path / "neg.jsonl")},
        "judge": {"random-mt": {1: str(out)}},
        "conversations": {},
    }
    argv = ["summarize", "--manifest", json.dumps(manifest), "--variants", "random-mt-randomized", "--resamples", 100]
    assert run(*argv, "--out-dir", tmp_path / "summary") == 0
    summary = json.loads((tmp_path / "summary/summary.json").read_text())
    counted = summary["counts"]["judge"]["random-mt/m1"]
    assert (counted["n_refused"], counted["n_unparsable"], counted["n_dropped"]) == (4, 1, 5)
    (overall,) = [w for w in summary["winrates"] if w["group"] == "overall"]
    assert (overall["variant"], overall["wins"], overall["losses"]) == ("random-mt-randomized", 3, 4)
    assert (overall["unparsable"], overall["refused"], overall["win_rate"]) == (1, 4, 3 / 7)


def test_paper_released_judge_protocol_through_the_openai_backend(tmp_path, split_b, monkeypatch):
    """The judge role of paper-released.yaml as configured (Azure from the environment, no seed, refusals
    counted) against a fake Azure endpoint whose content filter refuses the first persona's prompts."""
    from servers.openai_server import OpenAITestServer, fake_completion

    personas = read_jsonl(split_b["personas"])
    pairs = [f"B-t000{i}|{p['persona_id']}" for p in personas for i in range(4)]
    for who in ("cand", "base"):
        (tmp_path / f"{who}.jsonl").write_text(
            "".join(json.dumps({"pair": k, "conv": 0, "group": 1, "text": f"{who} answer"}) + "\n" for k in pairs)
        )
    bodies = []

    def azure_gpt4(body):
        bodies.append(body)
        if personas[0]["text"] in body["messages"][-1]["content"]:
            return 400, {
                "error": {
                    "message": "The response was filtered",
                    "type": None,
                    "param": "prompt",
                    "code": "content_filter",
                }
            }
        out = fake_completion(body)
        out["choices"][0]["message"]["content"] = "Comparison: x.\n\nFinal Response: A"
        return out

    role = _config("config/paper-released.yaml")["roles"]["judge"]
    role.pop("model")
    role["options"].update(cache_dir=str(tmp_path / "cache"), backoff_base_s=0.01, backoff_max_s=0.05)
    out = tmp_path / "judge.jsonl"
    with OpenAITestServer(complete=azure_gpt4) as server:
        for name, value in (
            ("AZURE_OPENAI_ENDPOINT", server.root_url),
            ("AZURE_OPENAI_DEPLOYMENT", "gpt-4"),
            ("AZURE_OPENAI_API_KEY", "test-key"),
        ):
            monkeypatch.setenv(name, value)
        assert (
            run(
                "judge",
                "--candidate",
                tmp_path / "cand.jsonl",
                "--baseline",
                tmp_path / "base.jsonl",
                "--tasks",
                split_b["tasks"],
                "--personas",
                split_b["personas"],
                "--prompts",
                "paper_v1",
                "--role",
                json.dumps(role),
                "--model",
                "gpt-4",
                "--max-dropped-fraction",
                "0.4",
                "--seed",
                "1",
                "--mode",
                "generate",
                "--positions",
                "randomized",
                "--no-both-orders",
                "--output",
                out,
            )
            == 0
        )
        assert server.stats.paths[0].startswith("/openai/deployments/gpt-4/chat/completions")
    assert len(bodies) == 12 and not any("seed" in b for b in bodies)  # the original sent no seed
    meta, recs = read_meta(out), read_jsonl(out)
    assert (meta["n_refused"], meta["n_unusable"], meta["n_dropped"]) == (4, 0, 4)
    refused = [r["pair"] for r in recs if any(j["outcome"] == "refused" for j in r["judged"].values())]
    assert sorted(refused) == sorted(pairs[:4])
    assert meta["outcomes"]["win"] + meta["outcomes"]["loss"] == 8 and meta["outcomes"]["refused"] == 4


def test_paper_released_data_jobs_run_and_rerun_on_a_changed_file(tmp_path):
    folder = tmp_path / "released"
    shutil.copytree(RELEASED, folder)
    args = [
        "--configfile",
        str(REPO / "config/paper-released.yaml"),
        "--config",
        f"data={{released_dir: {folder}}}",
        "--cores",
        "1",
        *(f"results/data/oracle/{s}.jsonl" for s in ("A", "B", "test")),
    ]
    r = snakemake(*args, cwd=tmp_path, dry=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(read_jsonl(tmp_path / "results/data/oracle/A.jsonl")) == 4 * 7
    assert not (tmp_path / "resources").exists()  # no model was prepared
    assert "Nothing to be done" in snakemake(*args, cwd=tmp_path).stdout
    names = folder / "personas/star-2-bsft/B_NAMES.json"
    names.write_text(json.dumps(["Henry O.", "Ahmad Nasser", "Fatima Ahmed"]))
    r = snakemake(*args, cwd=tmp_path)
    assert "rule names:" in r.stdout and "wildcards: split=B" in r.stdout and "split=A" not in r.stdout

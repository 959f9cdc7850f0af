"""Bad inputs whose message was a library's (json's "Expecting value", a FileNotFoundError traceback) or
none at all: each now gets a short error naming the file, the key and the fix."""

from __future__ import annotations

import json
import shutil

import pytest

from stargate.cli import main

from .workflow import REPO, copy_data, snakemake, tiny_config, write_config


def short_and_clean(text: str) -> bool:
    return "Traceback" not in text and len(text.strip().splitlines()) <= 12


def run_data_stage(kind: str, path, tmp_path, capsys) -> tuple[int, str]:
    """`stargate tasks|personas --split A` on a data file, as the workflow calls it."""
    spec = json.dumps({"source": "file", "path": str(path)})
    argv = [kind, "--split", "A", "--spec", spec, "--output", str(tmp_path / "out.jsonl")]
    if kind == "personas":
        argv += ["--prompts", "fixed_v1"]
    rc = main(argv)
    return rc, capsys.readouterr().err


# ------------------------------------------------------------------------------------ data files
@pytest.mark.parametrize("kind", ["tasks", "personas"])
@pytest.mark.parametrize("content", ["", "  \n\t\n"], ids=["0-bytes", "whitespace"])
def test_an_empty_data_file_says_file_is_empty(tmp_path, capsys, kind, content):
    path = tmp_path / f"{kind}.json"
    path.write_text(content)
    rc, err = run_data_stage(kind, path, tmp_path, capsys)
    assert rc == 2 and f"{path}: file is empty" in err and f"data.{kind}.path" in err, err
    assert "Expecting value" not in err and short_and_clean(err), err


@pytest.mark.parametrize("kind", ["tasks", "personas"])
def test_a_jsonl_data_file_says_it_looks_like_jsonl(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.jsonl"
    items = json.loads((REPO / f"data/default/{kind}.json").read_text())["A"]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in items))
    rc, err = run_data_stage(kind, path, tmp_path, capsys)
    assert rc == 2 and str(path) in err, err
    assert "this looks like JSONL (one JSON value per line); this key" in err and "one JSON document" in err, err
    assert "Extra data" not in err and short_and_clean(err), err


@pytest.mark.parametrize("kind", ["tasks", "personas"])
@pytest.mark.parametrize(
    "rename,needle",
    [("test", "unknown split key(s) 'tset' (did you mean 'test'?)"), (None, "unknown split key(s) 'C'")],
    ids=["tset", "C"],
)
def test_unknown_split_keys_are_an_error_with_a_did_you_mean(tmp_path, capsys, kind, rename, needle):
    """`tset` for `test`, or a split `C`: their items were silently ignored (split A read fine)."""
    data = json.loads((REPO / f"data/default/{kind}.json").read_text())
    if rename:
        data["tset"] = data.pop(rename)
    else:
        data["C"] = list(data["A"])
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(data))
    rc, err = run_data_stage(kind, path, tmp_path, capsys)
    assert rc == 2 and f"{path}: {needle}" in err and "A, B, test" in err and short_and_clean(err), err
    # the shipped file (with its "_about" comment key) is still fine
    rc, err = run_data_stage(kind, REPO / f"data/default/{kind}.json", tmp_path, capsys)
    assert rc == 0, err


# ------------------------------------------------------------------------------- prompt templates
def test_a_deleted_prompt_template_is_a_short_error_naming_set_file_and_fix(tmp_path):
    """A template missing from a copy of the checkout: the dry-run stops with the prompt set, the file and
    `git checkout ...`, not a FileNotFoundError traceback from rules/common.smk."""
    work = tmp_path / "checkout"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("stargate", "rules", "config", "profiles", "envs"):
        shutil.copytree(REPO / name, work / name, symlinks=True, ignore=skip)
    shutil.copy2(REPO / "Snakefile", work / "Snakefile")
    copy_data(work)
    (work / "model").mkdir()
    (work / "stargate/prompts/paper_v1/judge_user.txt").unlink()  # fixed_v1 takes its texts from paper_v1
    write_config(work / "cfg.yaml", tiny_config(work / "model"))
    r = snakemake(
        "-n", "--configfile", "cfg.yaml", cwd=work, timeout=300, snakefile=work / "Snakefile",
        extra_env={"PYTHONPATH": str(work)},
    )  # fmt: skip
    out = r.stdout + r.stderr
    err = "\n".join(line for line in out.splitlines() if not line.startswith("Using workflow specific profile"))
    assert r.returncode != 0, err
    assert "prompt set 'fixed_v1'" in err and "paper_v1/judge_user.txt" in err, err
    assert "git checkout stargate/prompts/paper_v1/judge_user.txt" in err, err
    # no Python traceback, nor Snakemake's rendering of one (File "...", line N frames)
    assert "FileNotFoundError" not in err and 'File "' not in err and short_and_clean(err), err


# ------------------------------------------------------------------------- persona vs. model context
LONG_PERSONA = "Maya is a nurse who hikes. " + "She likes long walks in the mountains near her home. " * 60


@pytest.fixture
def short_model(tmp_path, tiny_model_dir):
    """The tiny model with a context of 256 tokens (max_position_embeddings), so a test stays cheap even
    where the check is missing (a transformers model runs past its positions without complaint)."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 256}))
    return model


def test_a_persona_longer_than_the_model_context_names_the_pair_and_the_limit(tmp_path, short_model, capsys):
    """A persona that does not fit the local model's context was rendered and generated after, silently.
    Now the stage stops naming the pair, the token count, the limit and the fix."""
    from conftest import role_json

    model = short_model
    tasks = [{"task_id": "A-t0000", "split": "A", "text": "Recommend a book."}]
    personas = [
        {"persona_id": f"A-p0{i}", "split": "A", "name": "Maya", "text": text, "name_source": "regex"}
        for i, text in enumerate(["Maya is a nurse who hikes.", LONG_PERSONA])
    ]
    for name, recs in (("tasks", tasks), ("personas", personas)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    argv = ["oracle", "--output", str(tmp_path / "gold.jsonl"), "--role", role_json(max_tokens=2)]
    argv += ["--tasks", str(tmp_path / "tasks.jsonl"), "--personas", str(tmp_path / "personas.jsonl")]
    rc = main([*argv, "--prompts", "fixed_v1", "--model", str(model)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "oracle: pair A-t0000|A-p01: the prompt has " in err and "the model's context holds 256" in err, err
    assert "max_position_embeddings" in err and "shorten the persona" in err and "longer context" in err, err
    assert short_and_clean(err) and not (tmp_path / "gold.jsonl").exists(), err


def test_a_prompt_too_long_in_a_role_worker_process_is_raised_as_in_process(short_model):
    """The simulate stage's GPU split runs a role in a worker process: the same error crosses the pipe (not
    "the role's worker process failed" and a traceback), so the stage can name its pair."""
    from conftest import role_json

    from stargate.backends import Sampling
    from stargate.backends.base import PromptTooLong
    from stargate.stages.role_process import RoleProcess

    worker = RoleProcess(json.loads(role_json()), str(short_model), 0, "roleplayer_turn", "")
    try:
        prompts = [[{"role": "user", "content": "Hi."}], [{"role": "user", "content": LONG_PERSONA}]]
        with pytest.raises(PromptTooLong) as err:
            worker.generate(prompts, Sampling(max_tokens=2), [1, 2])
        assert err.value.index == 1 and err.value.limit == 256 and err.value.n_tokens > 256
        assert worker.generate(prompts[:1], Sampling(max_tokens=2), [1]) != []  # the worker lives on
    finally:
        worker.close()

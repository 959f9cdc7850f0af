"""Bad inputs get a clear error: exit != 0, the file/key/line and the fix, a few lines, no traceback."""

from __future__ import annotations

import json

import pytest

from stargate.cli import main
from stargate.records import write_jsonl

from .workflow import REPO, copy_data, snakemake, tiny_config, write_config


def short_and_clean(text: str) -> bool:
    return "Traceback" not in text and len(text.strip().splitlines()) <= 12


@pytest.fixture
def work(tmp_path):
    copy_data(tmp_path)
    (tmp_path / "model").mkdir()
    return tmp_path


def dry_run(work, cfg: dict):
    write_config(work / "cfg.yaml", cfg)
    r = snakemake("-n", "--configfile", "cfg.yaml", cwd=work, timeout=300)
    err = "\n".join(line for line in r.stderr.splitlines() if not line.startswith("Using workflow specific profile"))
    return r.returncode, err


def test_config_errors_are_short_and_name_the_key(work):
    cfg = tiny_config(work / "model")
    cases = {
        "data.personas.path": {**cfg, "data": {**cfg["data"], "personas": {"source": "file", "path": "data/default/personas.jsn"}}},
        "data.personas: count is not read when source is file": {
            **cfg, "data": {**cfg["data"], "personas": {"source": "file", "path": "data/default/personas.json",
                                                       "count": {"A": 1, "B": 1, "test": 1}}}},
        "top_k": {**cfg, "top_k": 9},
    }  # fmt: skip
    for needle, bad in cases.items():
        rc, err = dry_run(work, bad)
        assert rc != 0 and needle in err and short_and_clean(err), (needle, err)


def test_a_bad_value_given_with_config_names_the_override(work):
    write_config(work / "cfg.yaml", tiny_config(work / "model"))
    r = snakemake("-n", "--configfile", "cfg.yaml", "--config", "top_k=abc", cwd=work, timeout=300)
    err = r.stdout + r.stderr
    assert r.returncode != 0 and "cfg.yaml with --config top_k):" in err, err
    assert "top_k: 'abc' is not of type 'integer'" in err and short_and_clean(err), err


def test_a_jsonl_field_of_the_wrong_type_names_file_line_and_field(tmp_path, capsys):
    """A hand-made file (no sidecar, so no sha256 to check) with a wrong JSON type: file, line, field."""
    convs = tmp_path / "c.jsonl"
    good = {"pair": "t|p", "task_id": "t", "persona_id": "p", "conv": 0, "target_turns": 1, "turns": []}
    convs.write_text(json.dumps(good) + "\n" + json.dumps({**good, "conv": 1, "turns": "abc"}) + "\n")
    lps = tmp_path / "l.jsonl"
    lps.write_text(json.dumps({"pair": "t|p", "conv": 0, "logprob": "high"}) + "\n")
    assert main(["topk", "--conversations", str(convs), "--logprobs", str(lps), "--k", "1", "--output", "o"]) == 2
    err = capsys.readouterr().err
    assert f"{convs}:2: field 'turns' should be a list of turns, got \"abc\"" in err and short_and_clean(err), err
    convs.write_text(json.dumps(good) + "\n")
    assert main(["topk", "--conversations", str(convs), "--logprobs", str(lps), "--k", "1", "--output", "o"]) == 2
    assert f"{lps}:1: field 'logprob' should be a number, got \"high\"" in capsys.readouterr().err


def test_a_partial_configfile_is_explained(work):
    rc, err = dry_run(work, {"run_name": "mine", "top_k": 2})
    assert rc != 0 and "REPLACES config/config.yaml" in err and "--config key=value" in err
    assert short_and_clean(err), err


def test_a_typo_in_a_data_path_fails_even_with_results(work):
    """personas.jsn with the results of personas.json present: an error, not 'Nothing to be done'."""
    cfg = tiny_config(work / "model")
    out = work / "results/data/personas/A.texts.jsonl"
    out.parent.mkdir(parents=True)
    out.write_text("{}\n")
    cfg["data"]["personas"]["path"] = "data/default/personas.jsn"
    rc, err = dry_run(work, cfg)
    assert rc != 0 and "data.personas.path" in err and "personas.jsn" in err


def test_a_changed_artifact_names_the_stage_to_rerun(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["stargate", "topk"])  # as written by `stargate topk`
    art = tmp_path / "topk.jsonl"
    write_jsonl(art, [{"pair": "a", "text": "x"}])
    art.write_text(art.read_text().replace("x", "y"))
    meta = json.loads((tmp_path / "topk.jsonl.meta.json").read_text())
    assert meta["stage"] == "topk" and len(meta["sha256"]) == 64
    from stargate.records import read_jsonl

    with pytest.raises(Exception, match=r"sha256 recorded when `stargate topk` wrote it.*reruns topk"):
        read_jsonl(art)


def test_non_utf8_inputs_name_file_and_line(tmp_path, capsys):
    tasks = tmp_path / "tasks.json"
    tasks.write_bytes(b'{"A": ["caf\xe9"], "B": ["b"], "test": ["t"]}')
    spec = json.dumps({"source": "file", "path": str(tasks), "per_split": False})
    rc = main(["tasks", "--split", "A", "--spec", spec, "--output", str(tmp_path / "out.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and str(tasks) in err and "UTF-8" in err and short_and_clean(err), err
    conv = tmp_path / "conv.jsonl"
    conv.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    from stargate.records import read_jsonl

    with pytest.raises(Exception, match=r"conv.jsonl:2: not UTF-8"):
        read_jsonl(conv)


def test_yaml_errors_of_stargate_commands_name_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_name: x\n  iterations: [\n")
    rc = main(["cost", "--configfile", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad}, line 2, column 13: not valid YAML" in err and short_and_clean(err), err


SNAKEMAKE_YAML_TEXT = "Config file is not valid JSON or YAML"


def test_a_yaml_error_in_the_embedded_config_names_file_and_line(tmp_path):
    """config/config.yaml (the `configfile:` of the Snakefile) is read by our loader first; a --configfile
    is parsed by Snakemake before the Snakefile: its text, quoted in docs/reliability.md with the way to
    get the line (`stargate cost --configfile FILE`)."""
    checkout = tmp_path / "checkout"
    (checkout / "config").mkdir(parents=True)
    (checkout / "Snakefile").write_text((REPO / "Snakefile").read_text())
    broken = checkout / "config" / "config.yaml"
    broken.write_text((REPO / "config" / "config.yaml").read_text() + "oops: [1, 2\n")
    r = snakemake("-n", cwd=checkout, snakefile=checkout / "Snakefile", timeout=300)
    lines = len(broken.read_text().splitlines())
    out = r.stdout + r.stderr
    assert r.returncode != 0 and f"{broken}, line {lines + 1}, column 1: not valid YAML" in out, out
    assert short_and_clean(out)

    (tmp_path / "bad.yaml").write_text("run_name: x\n  iterations: [\n")
    r = snakemake("-n", "--configfile", "bad.yaml", cwd=tmp_path, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and SNAKEMAKE_YAML_TEXT in out, out  # if this changes, so must the docs
    assert f"{SNAKEMAKE_YAML_TEXT}" in (REPO / "docs" / "reliability.md").read_text()


def test_duplicated_tasks_or_personas_are_refused(tmp_path, capsys, caplog):
    """In the project's {split: [...]} files a repeated task or persona is a mistake: refused with both
    indices. The original's list formats keep theirs (the authors' task lists repeat a few), with a warning."""
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps({"A": ["Plan a trip.", "Cook rice.", " Plan a trip. "], "B": ["x"], "test": ["y"]}))
    personas = tmp_path / "personas.json"
    personas.write_text(json.dumps({"A": ["I am Ann.", "I am Bob.", "I am Ann."], "B": ["b"], "test": ["t"]}))
    for stage, path in (("tasks", tasks), ("personas", personas)):
        spec = json.dumps({"source": "file", "path": str(path)})
        extra = ["--prompts", "fixed_v1"] if stage == "personas" else []
        assert main([stage, "--split", "A", "--spec", spec, *extra, "--output", str(tmp_path / f"{stage}.jsonl")]) == 2
        err = capsys.readouterr().err
        assert f"{path}: A has 1 duplicated {stage[:-1]}(s): [0] = [2]" in err and "fix:" in err, err
        assert short_and_clean(err) and not (tmp_path / f"{stage}.jsonl").exists()

    listed = tmp_path / "A.json"  # the original's one-list-per-split format
    listed.write_text(json.dumps(["Plan a trip.", "Plan a trip.", "Cook rice."]))
    spec = json.dumps({"source": "file", "path": str(listed), "per_split": True})
    assert main(["tasks", "--split", "A", "--spec", spec, "--output", str(tmp_path / "t.jsonl")]) == 0
    # a log record (the stderr handler is bound at the first stage call, so capsys may not see it)
    assert "repeats 1 task(s) (kept, as in the original)" in caplog.text


def test_a_model_folder_missing_a_file_names_folder_and_file(tmp_path, tiny_model_dir, capsys):
    from stargate.backends import load_backend
    from stargate.errors import InputError

    for gone, needle in (("config.json", "config.json"), ("tokenizer.json", "a tokenizer"), ("model.safetensors", "weights")):  # fmt: skip
        folder = tmp_path / gone
        folder.mkdir()
        for f in tiny_model_dir.iterdir():
            if f.name != gone:
                (folder / f.name).symlink_to(f)
        with pytest.raises(InputError) as err:
            load_backend({"backend": "hf"}, str(folder))
        assert str(err.value).startswith(f"{folder}: model folder lacks {needle}"), err.value
    # a folder that is not there (absolute or relative path) is named as such, not sent to the Hub as a repo id
    for gone in (str(tmp_path / "nope"), "resources/models/nope"):
        with pytest.raises(InputError, match=f"^{gone}: model folder does not exist"):
            load_backend({"backend": "hf"}, gone)
        # a path source with the same hole is refused by prepare-model, naming the folder
        out = tmp_path / "models" / gone
        assert main(["prepare-model", "--source", json.dumps({"path": str(folder)}), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert str(folder) in err and short_and_clean(err), err

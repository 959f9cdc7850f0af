"""Nothing a killed job left is kept: the next build of the same output removes it at its start."""

from __future__ import annotations

import json

from stargate.cli import main
from stargate.records import write_jsonl
from stargate.training import tracking
from stargate.training.spec import TrainingSpec


def test_prepare_model_removes_a_killed_builds_temp_folder(tmp_path, tiny_model_dir):
    models = tmp_path / "models"
    killed = models / ".tiny.k1ll3d_0.partial"  # what mkdtemp made for the killed job
    killed.mkdir(parents=True)
    (killed / "config.json").write_text("{")
    other = models / ".tiny2.abcdefgh.partial"  # another model's build: not ours to remove
    other.mkdir()
    out = models / "tiny"
    assert main(["prepare-model", "--source", json.dumps({"path": str(tiny_model_dir)}), "--output", str(out)]) == 0
    assert not killed.exists()
    assert other.exists()
    assert sorted(p.name for p in models.iterdir()) == [".tiny2.abcdefgh.partial", "tiny"]


def test_train_clears_a_killed_trainings_build_folders_and_wandb_run(tmp_path):
    models, wb = tmp_path / "models", tmp_path / "logs" / "wandb" / "m1"
    runs = wb / "wandb"
    killed, finished = runs / "offline-run-20240101_000000-aaaa", runs / "offline-run-20240101_000100-bbbb"
    for run in (killed, finished):
        (run / "files").mkdir(parents=True)
    (finished / tracking.FINISHED).write_text("")
    (runs / "latest-run").symlink_to(killed.name)
    for name in (".m1.partial", ".m1.work"):
        (models / name).mkdir(parents=True)
    spec = TrainingSpec.from_dict({"max_steps": 1}).to_dict()
    # the training itself then fails (no data): the cleanup came first, as in a real rerun
    argv = ["train", "--base-model", str(tmp_path / "base"), "--data", str(tmp_path / "none.jsonl"),
            "--output", str(models / "m1"), "--spec", json.dumps(spec), "--iteration", "1",
            "--wandb-dir", str(wb)]  # fmt: skip
    assert main(argv) != 0
    assert not killed.exists() and not (runs / "latest-run").is_symlink()
    assert finished.exists()
    assert list(models.iterdir()) == []


def test_the_atomic_writer_removes_the_temporaries_a_killed_writer_of_the_same_file_left(tmp_path):
    out = tmp_path / "topk" / "A.jsonl"
    out.parent.mkdir()
    killed = [out.parent / ".A.jsonl.k1ll3d_0.tmp", out.parent / ".A.jsonl.meta.json.x9y8z7w6.tmp"]
    kept = [out.parent / ".B.jsonl.k1ll3d_0.tmp", out.parent / ".A.jsonl.notes.tmp", out.parent / ".A.jsonl.x"]
    for p in killed + kept:
        p.write_text("{")
    write_jsonl(out, [{"a": 1}], meta={"stage": "topk"})
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        ["A.jsonl", "A.jsonl.meta.json"] + [p.name for p in kept]
    )

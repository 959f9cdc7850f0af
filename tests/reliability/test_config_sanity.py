"""Every numeric value of a config that can only fail when a job runs is refused when the workflow loads:
NaN and infinities anywhere, and negatives wherever a negative has no meaning. A job that fails late costs its
previous good outputs (Snakemake deletes a job's outputs before rerunning it), so the check is at load."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest

from stargate.config import load_config, read_yaml
from stargate.errors import StargateError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["config/config.yaml", "config/world.yaml", "config/paper.yaml", "tests/config/tiny.yaml"]
# Leaves where a negative number means something (none are refused by a run): listed, so a new key must
# either get a schema `minimum` or a reason here.
NEGATIVE_OK = {"score_per_token": "the scripted backend's log-probability per word: at most 0 by the schema"}


def numeric_leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from numeric_leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from numeric_leaves(v, (*path, i))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def with_value(cfg: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(cfg)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


def all_leaves() -> dict[str, tuple[dict, tuple, object]]:
    """Every numeric leaf of the shipped configs with their defaults filled, once per dotted key."""
    seen = {}
    for name in CONFIGS:
        cfg = load_config(REPO / name)
        for path, value in numeric_leaves(cfg):
            seen.setdefault(".".join(map(str, path)), (cfg, path, value))
    return seen


LEAVES = all_leaves()


def test_the_sweep_covers_the_keys_that_failed_late():
    assert {"training.learning_rate", "evaluation.winrate.bootstrap_seed", "roles.judge.sampling.temperature"} <= set(
        LEAVES
    )
    assert len(LEAVES) > 100


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "negative"])
def test_every_numeric_key_refuses_nan_inf_and_meaningless_negatives(bad):
    accepted = []
    for key, (cfg, path, value) in LEAVES.items():
        if bad == "negative":
            if key.rsplit(".", 1)[-1] in NEGATIVE_OK:
                continue
            bad_value = -1 if isinstance(value, int) else -0.5
        else:
            bad_value = bad
        try:
            load_config(with_value(cfg, path, bad_value), "cfg.yaml")
        except StargateError as exc:
            assert key in str(exc) or key.rsplit(".", 1)[0] in str(exc), (key, str(exc))
            continue
        accepted.append(key)
    assert accepted == [], f"accepted {bad}: {accepted}"


def test_a_config_file_with_nan_names_file_and_key(tmp_path):
    text = (REPO / "config" / "config.yaml").read_text().replace("learning_rate:", "learning_rate: .nan #", 1)
    (tmp_path / "cfg.yaml").write_text(text)
    assert math.isnan(read_yaml(tmp_path / "cfg.yaml")["training"]["learning_rate"])
    with pytest.raises(StargateError, match=r"training\.learning_rate: nan is not a finite number"):
        load_config(tmp_path / "cfg.yaml")


# ----------------------------------------------------------------- the workflow refuses them before any job
from .workflow import copy_data, snakemake, tiny_config, write_config  # noqa: E402


def short_and_clean(text: str) -> bool:
    return "Traceback" not in text and len(text.strip().splitlines()) <= 14


@pytest.fixture
def work(tmp_path):
    copy_data(tmp_path)
    (tmp_path / "model").mkdir()
    return tmp_path


def test_nan_and_a_negative_seed_stop_the_workflow_at_load(work):
    write_config(work / "cfg.yaml", tiny_config(work / "model"))
    r = snakemake("-n", "--configfile", "cfg.yaml", "--config", "evaluation={'winrate': {'bootstrap_seed': -1}}",
                  cwd=work, timeout=300)  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "bootstrap_seed" in out and short_and_clean(out), out
    cfg = tiny_config(work / "model")
    cfg["training"]["learning_rate"] = math.nan
    write_config(work / "cfg.yaml", cfg)
    r = snakemake("-n", "--configfile", "cfg.yaml", cwd=work, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "training.learning_rate: nan is not a finite number" in out, out


def test_a_key_given_twice_names_both_lines(work):
    write_config(work / "cfg.yaml", tiny_config(work / "model"))
    text = (work / "cfg.yaml").read_text()
    (work / "cfg.yaml").write_text(text + "top_k: 1\n")
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("top_k:"))
    r = snakemake("-n", "--configfile", "cfg.yaml", cwd=work, timeout=300)
    out = r.stdout + r.stderr
    want = f"lines {first} and {len(text.splitlines()) + 1}: the key 'top_k' is given twice"
    assert r.returncode != 0 and want in out and short_and_clean(out), out


def test_cores_0_is_refused_not_a_hang(work):
    write_config(work / "cfg.yaml", tiny_config(work / "model"))
    r = snakemake("results/data/tasks/A.jsonl", "--cores", "0", "--configfile", "cfg.yaml", cwd=work, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "--cores 0 gives the jobs no core" in out and short_and_clean(out), out


def test_a_model_path_typo_keeps_the_prepared_model(work, tiny_model_dir):
    """Pointing models.X.source.path at a file (the model's config.json) stops the workflow at load: the
    recipe is not rewritten and the prepared folder is not deleted."""
    cfg = tiny_config(tiny_model_dir)
    write_config(work / "cfg.yaml", cfg)
    r = snakemake("resources/models/tiny", "--cores", "1", "--configfile", "cfg.yaml", cwd=work, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    recipe = (work / "resources" / "model_recipes" / "tiny.json").read_bytes()
    cfg["models"]["tiny"]["source"]["path"] = str(tiny_model_dir / "config.json")
    write_config(work / "cfg.yaml", cfg)
    r = snakemake("resources/models/tiny", "--cores", "1", "--configfile", "cfg.yaml", cwd=work, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "models.tiny.source.path" in out and "is a file, not a model folder" in out, out
    assert short_and_clean(out), out
    assert (work / "resources" / "models" / "tiny" / "config.json").exists()
    assert (work / "resources" / "model_recipes" / "tiny.json").read_bytes() == recipe

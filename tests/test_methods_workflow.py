"""Every training method and every ablation of config/ablations/ run end to end: the real Snakefile through
`snakemake`, the real stages, on the tiny config (tests/config/tiny.yaml, the 3M-parameter random Llama of
tests/conftest.py in every role), each to the default targets (the trained models, results/summary/<run_name>/).

sft with the self regularizer is tests/test_workflow.py's tiny run; here: training.method dpo and rwr, and
the five overlays of config/ablations/. The regularizer variants (none, gold) are the no-regularizer and
gold-regularizer overlays themselves.

An overlay is written against config/paper.yaml, whose 7B-56B models cannot be had here; it is applied onto
the tiny config key by key (as Snakemake merges --configfile files) with these replacements only:

* every model an overlay names (`models`, `base_model`, `roles.*.model`) keeps its NAME, so it is prepared
  as its own folder (resources/models/NAME) and the stages see a model other than the tiny config's; its
  SOURCE becomes a local tiny model: the roleplayer ablations bind their roleplayer (mistral-7b-instruct-v0.2,
  gemma-7b-it) to the tiny model; llama3-base binds m0 (llama-3-8b-instruct) to a tiny model with Llama 3's
  tokenizer specials and chat template (<|start_header_id|>...<|eot_id|>), so its chat-format switch
  (prompts: fixed_v1, the model's own template for every chat and the SFT mask) meets the template it is
  there for;
* a role's `backend: vllm` becomes `hf` (vLLM needs a GPU);
* every other key is kept as written: the regularizers, llama3-base's `iterations: 1`, `prompts: fixed_v1`,
  learning rate, 3 epochs, max_length 1152 and `deepspeed: zero3` (ZeRO-3 runs in one CPU process; the
  first DeepSpeed run on a machine JIT-builds its comm op), and each overlay's run_name.

To keep the module short every run has one iteration, the qa-experimental condition and one win-rate
variant; the dpo run goes first and every other run starts from a copy of its finished directory (prepared
model, data, oracle, m0's simulation and scores, Snakemake's records), so Snakemake redoes only what its
config changes; those six runs go two at a time with one core each.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import build_tiny_model
from reliability.workflow import REPO, copy_data, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow

ABLATIONS = REPO / "config" / "ablations"
SEED = "dpo"  # run first; the others start from a copy of its directory
VARIANTS = [
    "llama3-base",
    "mistral-roleplayer",
    "gemma-roleplayer",
    "rwr",
    "no-regularizer",
    "gold-regularizer",
]  # longest first

# Meta-Llama-3-8B-Instruct's chat template (tokenizer_config.json of the Hub repository)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def merge(base: dict, new: dict) -> dict:
    for k, v in new.items():
        base[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else copy.deepcopy(v)
    return base


def small(cfg: dict) -> dict:
    cfg["iterations"] = 1
    cfg["evaluation"]["conditions"] = ["qa-experimental"]
    cfg["evaluation"]["winrate"]["variants"] = cfg["evaluation"]["winrate"]["variants"][:1]
    return cfg


def with_overlay(cfg: dict, overlay: dict, models: dict[str, Path]) -> dict:
    """`overlay` onto the tiny `cfg`, its models bound to local tiny ones (`models`: name -> folder)."""
    overlay = copy.deepcopy(overlay)
    overlay.pop("models", None)
    named = [overlay.get("base_model")] + [r.get("model") for r in overlay.get("roles", {}).values()]
    for name in filter(None, named):
        cfg["models"][name] = {"source": {"path": str(models.get(name, models["tiny"]))}}
    for role in overlay.get("roles", {}).values():
        if role.get("backend") == "vllm":
            role["backend"] = "hf"
    return merge(cfg, overlay)


def variant_config(name: str, models: dict[str, Path]) -> dict:
    cfg = small(tiny_config(models["tiny"]))
    if name in ("dpo", "rwr"):
        cfg["run_name"] = f"tiny-{name}"
        cfg["training"]["method"] = name
        return cfg
    overlay = yaml.safe_load((ABLATIONS / f"{name}.yaml").read_text())
    return with_overlay(cfg, overlay, models)


def build_llama3_format_model(folder: Path, tokenizer) -> Path:
    """The tiny random Llama with Llama 3's special tokens and chat template added to SmolLM2's tokenizer."""
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens(
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"],
        }
    )
    tok.chat_template = LLAMA3_TEMPLATE
    return build_tiny_model(folder, tok)


def run_variant(work: Path, name: str, models: dict[str, Path], cores: int) -> dict:
    write_config(work / f"{name}.yaml", variant_config(name, models))
    r = snakemake("--cores", str(cores), "--configfile", f"{name}.yaml", cwd=work, timeout=1500)
    logs = "" if r.returncode == 0 else "\n".join(p.read_text()[-1500:] for p in (work / "logs").rglob("*.log"))
    return {"work": work, "rc": r.returncode, "why": f"{r.stderr[-4000:]}\n{logs[-6000:]}"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, smollm2_tokenizer) -> dict[str, dict]:
    models = {
        "tiny": tiny_model_dir,
        "llama-3-8b-instruct": build_llama3_format_model(tmp_path_factory.mktemp("tiny-llama3"), smollm2_tokenizer),
    }
    root = tmp_path_factory.mktemp("methods")
    seed = root / SEED
    seed.mkdir()
    copy_data(seed)
    out = {SEED: run_variant(seed, SEED, models, cores=2)}
    if out[SEED]["rc"] != 0:
        return out

    def start(name: str) -> dict:
        work = root / name
        shutil.copytree(seed, work, symlinks=True)  # mtimes kept: nothing upstream looks changed
        return run_variant(work, name, models, cores=1)

    with ThreadPoolExecutor(max_workers=2) as pool:
        out.update(zip(VARIANTS, pool.map(start, VARIANTS), strict=True))
    return out


def finished(runs: dict, name: str) -> Path:
    """The variant's directory once its run reached the default targets; the summary names its training."""
    r = runs.get(name) or runs[SEED]
    if r["rc"] != 0:
        pytest.fail(f"{name} failed end to end:\n{r['why']}")
    work = r["work"]
    cfg = yaml.safe_load((work / f"{name}.yaml").read_text())
    res = work / "results"
    assert (res / "models/m1/config.json").exists() and not (res / "models/m2").exists()
    summary = json.loads((res / "summary" / cfg["run_name"] / "summary.json").read_text())
    training = {k: cfg["training"].get(k, d) for k, d in (("method", "sft"), ("regularizer", "self"))}
    assert summary["run"]["run_name"] == cfg["run_name"]
    assert summary["run"]["training"] == training
    tables = (res / "summary" / cfg["run_name"] / "tables.html").read_text()
    assert f"Training: method {training['method']}, regularizer {training['regularizer']}." in tables
    assert {r["t"] for r in summary["logprobs"] if r["condition"] == "qa-experimental"} == {0, 1}
    assert all(r["condition"].startswith("qa-experimental") for r in summary["logprobs"])  # and its breakdowns
    assert {(w["t"], w["variant"]) for w in summary["winrates"] if w["configured"]} == {(1, "random-mt-randomized")}
    return work


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def meta(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".meta.json").read_text())


def questions(conv: dict) -> list[str]:
    return [t["text"].strip() for t in conv["turns"] if t["role"] == "questioner"]


def assistant(messages: list[dict]) -> list[str]:
    return [m["content"].strip() for m in messages if m["role"] == "assistant"]


def own_answers(work: Path) -> dict[tuple[str, int], str]:
    """m0's own final answer after each of its conversations (the self regularizer)."""
    return {(r["pair"], r["conv"]): r["text"].strip() for r in jsonl(work / "results/m0/regularizer/A.jsonl")}


def test_dpo(runs):
    work = finished(runs, "dpo")
    res = work / "results"
    selected = {(c["pair"], c["conv"]): c for c in jsonl(res / "m0/selected/A.dpo.jsonl")}
    pairs = jsonl(res / "m0/dpo/A.jsonl")
    answers = own_answers(work)
    assert pairs and len(pairs) == len({c["pair"] for c in selected.values()})
    for p in pairs:
        assert p["chosen_conv"] != p["rejected_conv"] and p["gap"] > 0
        good, bad = selected[p["pair"], p["chosen_conv"]], selected[p["pair"], p["rejected_conv"]]
        assert good["logprob"] - bad["logprob"] == pytest.approx(p["gap"])
        # each side: m0's questions of that conversation, then m0's own final answer after it
        assert assistant(p["chosen"]) == questions(good) + [answers[p["pair"], good["conv"]]]
        assert assistant(p["rejected"]) == questions(bad) + [answers[p["pair"], bad["conv"]]]
    card = (res / "models/m1/README.md").read_text()
    assert "tags: [stargate, star-gate, clarifying-questions, dpo]" in card and "with DPO (m0 the reference)" in card


def test_rwr(runs):
    work = finished(runs, "rwr")
    res = work / "results"
    examples = jsonl(res / "m0/rwr/A.jsonl")
    conversations = {(c["pair"], c["conv"]): c for c in jsonl(res / "m0/conversations/A.jsonl")}
    answers = own_answers(work)
    assert {(e["pair"], e["conv"]) for e in examples} == set(conversations)  # every conversation, not top-k
    by_pair: dict[str, list[float]] = {}
    for e in examples:
        by_pair.setdefault(e["pair"], []).append(e["weight"])
        assert assistant(e["messages"]) == questions(conversations[e["pair"], e["conv"]]) + [
            answers[e["pair"], e["conv"]]
        ]
    # n * softmax(log p / temperature) per pair: the weights of a pair sum to its number of conversations
    for weights in by_pair.values():
        assert sum(weights) == pytest.approx(len(weights)) and len(set(weights)) > 1
    assert json.loads((res / "models/m1/train_metrics.json").read_text())["spec"]["method"] == "rwr"


def sft_examples(work: Path) -> list[tuple[dict, list[str]]]:
    """(top-k conversation, assistant turns of its SFT example) for split A."""
    res = work / "results"
    used = {(c["pair"], c["conv"]): c for c in jsonl(res / "m0/topk/A.jsonl")}
    examples = jsonl(res / "m0/sft/A.jsonl")
    assert examples and {(e["pair"], e["conv"]) for e in examples} == set(used)
    return [(used[e["pair"], e["conv"]], assistant(e["messages"])) for e in examples]


def test_no_regularizer(runs):
    work = finished(runs, "no-regularizer")
    for conv, turns in sft_examples(work):
        assert turns == questions(conv)  # ends with the last question: no final answer
    assert meta(work / "results/m0/sft/A.jsonl")["regularizer"] == "none"
    assert "regularize" not in _jobs_of_last_run(work)  # m0 is not asked for final answers


def test_gold_regularizer(runs):
    work = finished(runs, "gold-regularizer")
    gold = {r["pair"]: r["text"].strip() for r in jsonl(work / "results/data/oracle/A.jsonl")}
    for conv, turns in sft_examples(work):
        assert turns == questions(conv) + [gold[conv["pair"]]]  # the oracle's gold response is the final turn
    assert meta(work / "results/m0/sft/A.jsonl")["regularizer"] == "gold"
    assert "regularize" not in _jobs_of_last_run(work)


def _jobs_of_last_run(work: Path) -> set[str]:
    """The rules Snakemake ran in a directory's latest run (its log under .snakemake/log/)."""
    log = max((work / ".snakemake" / "log").glob("*.snakemake.log"))
    return {
        line.split()[-1].rstrip(":")
        for line in log.read_text().splitlines()
        if line.startswith(("rule ", "localrule "))
    }


@pytest.mark.parametrize(
    "name, model", [("mistral-roleplayer", "mistral-7b-instruct-v0.2"), ("gemma-roleplayer", "gemma-7b-it")]
)
def test_roleplayer_ablation(runs, name, model):
    work = finished(runs, name)
    for t, split in ((0, "A"), (0, "test"), (1, "test")):
        replied = meta(work / f"results/m{t}/sim/{split}/shard0/turn1.done.jsonl")
        asked = meta(work / f"results/m{t}/sim/{split}/shard0/turn1.asked.jsonl")
        assert replied["model"] == f"resources/models/{model}", replied  # the ablation's roleplayer answered
        assert asked["model"] == ("resources/models/tiny" if t == 0 else "results/models/m1")
    assert (work / f"resources/models/{model}/config.json").exists()


def test_llama3_base(runs):
    work = finished(runs, "llama3-base")
    res = work / "results"
    template_sha = hashlib.sha256(LLAMA3_TEMPLATE.encode()).hexdigest()
    for path in ("m0/sim/A/shard0/turn1.asked.jsonl", "m0/logprobs/A.qa-experimental.jsonl"):
        m = meta(res / path)
        assert m["model"] == "resources/models/llama-3-8b-instruct" and m["prompt_set"] == "fixed_v1"
        assert m["chat_template_sha256"] == template_sha  # every chat in Llama 3's format
    metrics = json.loads((res / "models/m1/train_metrics.json").read_text())
    assert metrics["spec"]["epochs"] == 3 and metrics["spec"]["learning_rate"] == 2.0e-4
    assert metrics["runtime"]["deepspeed_config"].endswith("config/deepspeed/zero3.json")
    assert (res / "models/m1/chat_template.jinja").read_text() == LLAMA3_TEMPLATE
    card = (res / "models/m1/README.md").read_text()
    assert "Fine-tuned **from m0** (`resources/models/llama-3-8b-instruct`)" in card

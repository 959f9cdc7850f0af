"""The model card (README.md) of a trained checkpoint: provenance, hyperparameters, results, citation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import __version__
from .methods.registry import get_method, training_for_method

CITATION = """@inproceedings{andukuri2024stargate,
  title     = {{STaR-GATE}: Teaching Language Models to Ask Clarifying Questions},
  author    = {Andukuri, Chinmaya and Fr{\\"a}nken, Jan-Philipp and Gerstenberg, Tobias and Goodman, Noah D.},
  booktitle = {First Conference on Language Modeling (COLM)},
  year      = {2024},
  eprint    = {2403.19154},
  archivePrefix = {arXiv},
  url       = {https://arxiv.org/abs/2403.19154}
}"""


REGULARIZERS = {
    "self": "m{p}'s own final answer (response regularization)",
    "gold": "the oracle's gold response (the paper's gold-regularizer ablation)",
    "none": "nothing: the example ends with the last question (the paper's no-regularizer ablation)",
}


def _yaml_str(s: Any) -> str:
    return json.dumps(str(s))  # a JSON string is a valid YAML scalar


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "—" if v is None else str(v)


def render_card(info: dict[str, Any]) -> str:
    """`info` is the dict written to train_metrics.json (see sft.py)."""
    t = info["iteration"]
    prov, res, spec, run = info["provenance"], info["results"], info["spec"], info["runtime"]
    data = prov["data"]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        f"base_model: {_yaml_str(prov['base_model']['path'])}",
        f"tags: [stargate, star-gate, clarifying-questions, {spec['method']}]",
        "---",
        "",
        f"# stargate m{t}: STaR-GATE Questioner, iteration {t}",
        "",
        f"Fine-tuned **from m0** (`{prov['base_model']['path']}`) with {get_method(spec['method']).card.format(p=t - 1)}, "
        f"each followed by {REGULARIZERS[spec.get('regularizer', 'self')].format(p=t - 1)}. "
        "Method of Andukuri et al., *STaR-GATE: "
        "Teaching Language Models to Ask Clarifying Questions* (COLM 2024, arXiv 2403.19154); produced by the "
        f"`stargate` pipeline {__version__}, run `{info['run_name']}`.",
        "",
        "## Provenance",
        "",
        "| | |",
        "|---|---|",
        f"| iteration | m{t} (trained on data of m{t - 1}) |",
        f"| base model (m0) | `{prov['base_model']['path']}` |",
        f"| base model weights sha256 | `{prov['base_model']['weights_sha256']}` |",
        f"| training data | `{data['path']}` |",
        f"| training data sha256 | `{data['sha256']}` |",
        f"| records / pairs | {data['n_records']} / {data['n_pairs']} |",
        f"| validation split | {res['eval']['n_records']} records, {len(info['eval_pairs'])} pairs "
        f"(fraction {spec['validation_fraction']}, split_seed {spec['split_seed']}) |",
        f"| method | {spec['method']} |",
        f"| W&B run | `{info['wandb']['run_name']}` ({info['wandb']['mode']}, project `{spec['wandb_project']}`) |",
        "",
        "## Training",
        "",
        "Full fine-tuning, AdamW (torch), loss on every assistant turn (each clarifying question and the final "
        "answer, each with its end-of-turn token); user turns, the system prompt and the template's turn headers "
        "are masked. Right truncation at `max_length` tokens. Attention masks come from sequence lengths, not "
        "from `input_ids != pad` (the original's pad = EOS collator hid every in-sequence EOS; fixed here).",
        "",
        "| hyperparameter | value |",
        "|---|---|",
    ]
    for k, v in training_for_method(spec).items():  # the method's own block only
        lines.append(f"| {k} | {_fmt(v)} |")
    lines += [
        f"| processes (world size) | {run['world_size']} |",
        f"| gradient accumulation per process | {run['gradient_accumulation_per_process']} |",
        f"| effective batch | {run['effective_batch']} |",
        f"| device | {run['device']} |",
        f"| weights dtype | {run['dtype']} |",
        f"| attention | {run['attn_implementation']} ({run['attn_reason']}) |",
        f"| DeepSpeed config | {_fmt(run['deepspeed_config'])} |",
        "",
        "## Results",
        "",
        "| | train | validation |",
        "|---|---|---|",
        f"| examples | {res['train']['n_examples']} | {res['eval']['n_examples']} |",
        f"| truncated at max_length ({spec['max_length']}) | {res['train']['n_truncated']} | "
        f"{res['eval']['n_truncated']} |",
        f"| dropped (no assistant token left after truncation) | {res['train']['n_dropped_no_labels']} | "
        f"{res['eval']['n_dropped_no_labels']} |",
        f"| loss | {_fmt(res['train_loss'])} | {_fmt(res['eval_loss'])} |",
        "",
        f"Optimizer steps: {res['global_step']}; train runtime {_fmt(res['train_runtime_s'])} s; "
        f"{_fmt(res['train_tokens_per_s'])} tokens/s (non-padding input tokens). Full figures and the loss "
        "history are in `train_metrics.json` beside this card.",
        "",
        "## Use",
        "",
        "A standard Hugging Face folder (safetensors weights, tokenizer, `chat_template.jinja`): load it with "
        "`AutoModelForCausalLM.from_pretrained(<this folder>)` or serve it with vLLM (`LLM(model=<this folder>)`). "
        "Prompt it with the chat template, as in training.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(folder: Path, info: dict[str, Any]) -> Path:
    path = folder / "README.md"
    path.write_text(render_card(info), encoding="utf-8")
    return path

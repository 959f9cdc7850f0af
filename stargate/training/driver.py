"""Fine-tuning of m_{t+1} from m0, as the paper did it (spec §5), on CPU, one GPU or N GPUs.

One driver for every `training.method` (methods/: `sft` the paper's, `rwr` reward-weighted SFT, `dpo` TRL's
DPOTrainer with SFT's mask). They share the data split, arguments, numerics (trainer_base.py), DeepSpeed, W&B,
model card and the atomic checkpoint write below; a method gives its records, encoding, arguments and trainer.

transformers' `Trainer` with our own tokenization (masking.py) and collator (collator.py): the paper
used the plain HF Trainer the same way, and TRL's assistant-only loss would need `{% generation %}`
markers that the SmolLM2 and Mistral templates lack. AdamW (torch), cosine schedule with warmup,
`epochs` epochs, effective batch kept across process counts, bf16 as configured.

Numerics are explicit (docs/training.md): `master_weights` bf16 is the paper's pure bf16 (weights, gradients
and AdamW states in bf16), fp32 is mixed precision (fp32 master weights, as ZeRO always keeps);
`loss_weighting` micro_batch is transformers 4.39's mean of per-micro-batch means, tokens is the token-weighted
loss of transformers >= 4.46. Warmup steps are computed here from the Trainer's own step count,
ceil(warmup_ratio x steps) as transformers 4.39 did, so no transformers version can read the ratio as 0 steps.
When the SFT data was written under a prompt set that ships its chat template (paper_v1), examples are
rendered with that template, not with the base model's current Hub template.

The checkpoint is written to a hidden sibling folder and renamed into place at the very end, so a
killed job never leaves a folder that looks finished.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError, StargateError
from ..log import get_logger
from ..modelfolder import check_model_folder
from ..records import read_meta, replace_dir, write_json
from . import launch, tracking
from .attention import choose_attn_implementation
from .card import write_card
from .data import sha256_file, split_by_pair, warn_if_no_end_of_turn
from .methods.base import TrainerContext, TrainingMethod
from .provenance import training_tokenizer, weights_sha256
from .spec import TrainingSpec, load_deepspeed_config, resolve_deepspeed_config
from .trainer_base import checkpointing_args, log_callback, numerics, trainer_class

log = get_logger(__name__)


def check_paths(base_model: Path, data: Path, output: Path) -> None:
    if not (base_model / "config.json").is_file():
        raise InputError(
            base_model, "not a Hugging Face model folder (no config.json)", fix="pass m0's prepared folder"
        )
    check_model_folder(base_model, "rebuild m0: delete the folder and rerun prepare_model")
    if not data.is_file():
        raise InputError(data, "file does not exist")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise StargateError(f"{output}: output already exists; remove it first (checkpoints are never overwritten)")


def last_checkpoint(work_dir: Path) -> Path | None:
    """The newest complete `checkpoint-N` folder a killed run left (a folder the kill cut short has no
    trainer_state.json, the Trainer's last write)."""
    done = [p for p in work_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file() and p.name[11:].isdigit()]
    return max(done, key=lambda p: int(p.name[11:]), default=None)


def load_records(method: TrainingMethod, data: Path) -> list[dict]:
    """The training records, checked for the method (the file's meta names the method that built it)."""
    built_for = read_meta(data).get("method", "sft")
    if built_for != method.name:
        raise InputError(
            data,
            f"was built for training.method {built_for!r}, not {method.name!r}",
            fix="rebuild the training data under this config (stage sft_data)",
        )
    return method.load_records(data)


def train(
    *,
    base_model: str | Path,
    data: str | Path,
    output: str | Path,
    spec: TrainingSpec,
    iteration: int,
    run_name: str,
    gpus: int = 0,
    wandb_dir: str | Path | None = None,
    callbacks: list | None = None,
    init_model: str | Path | None = None,
    roles: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and write the checkpoint folder. Returns the dict also written to train_metrics.json.
    `init_model`: the model the policy starts from (a continuing method's m_{t-1}; default m0);
    `roles`: the role specs an online method plays its rollouts with."""
    t_start = time.perf_counter()
    base_model, data, output = Path(base_model), Path(data), Path(output)
    wandb_dir = Path(wandb_dir) if wandb_dir else tracking.default_dir(output)
    check_paths(base_model, data, output)
    launch.check_gpus(gpus)
    ds_path = resolve_deepspeed_config(spec.deepspeed)
    if ds_path and not launch.is_launched():
        launch.single_process_dist_env()
    world = launch.world_size()
    is_main = launch.rank() == 0
    on_gpu = gpus >= 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    from transformers.trainer_callback import PrinterCallback

    transformers.utils.logging.disable_progress_bar()  # logs go to a file: no progress bars
    # torch 2.13 deprecates two collectives DeepSpeed calls every step; one line per call floods the log
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.\w+` is deprecated", category=FutureWarning)

    # ---------------------------------------------------------------- data
    tokenizer, prompt_provenance, label_rule = training_tokenizer(base_model, data)
    method = spec.training_method
    records = load_records(method, data)
    train_idx, eval_idx = split_by_pair(records, spec.validation_fraction, spec.split_seed)
    eval_pairs = sorted({records[i]["pair"] for i in eval_idx})
    train_split = method.encode(tokenizer, [records[i] for i in train_idx], spec.max_length, label_rule)
    eval_split = method.encode(tokenizer, [records[i] for i in eval_idx], spec.max_length, label_rule)
    if not train_split.examples:
        raise InputError(
            data,
            f"no training example has an assistant token within max_length={spec.max_length}",
            fix="raise training.max_length or check the SFT data",
        )
    if not method.online:
        warn_if_no_end_of_turn(tokenizer, train_split.examples[0])
    n_truncated = train_split.n_truncated + eval_split.n_truncated
    log.info(
        "data %s: %d records (%d pairs) -> train %d, validation %d (split_seed %d); %d truncated at max_length %d "
        "(%.1f%%), %d dropped with no assistant token left",
        data,
        len(records),
        len({r["pair"] for r in records}),
        len(train_split.examples),
        len(eval_split.examples),
        spec.split_seed,
        n_truncated,
        spec.max_length,
        100.0 * n_truncated / len(records),
        train_split.n_dropped_no_labels + eval_split.n_dropped_no_labels,
    )

    # ---------------------------------------------------------------- arguments (before the model: ZeRO-3 init)
    grad_acc = spec.accumulation_for(world)
    if spec.gradient_accumulation_steps % world:
        log.warning(
            "gradient_accumulation_steps %d is not divisible by %d processes: effective batch %d instead of %d",
            spec.gradient_accumulation_steps,
            world,
            spec.effective_batch(world),
            spec.per_device_batch_size * spec.gradient_accumulation_steps,
        )
    # a resumable method's checkpoints survive a killed job (the rerun resumes from them), so they are kept
    # beside the output, not in the work folder a rerun clears
    keep_checkpoints = spec.save_checkpoints or method.resumable()
    work_dir = (
        output.with_name(output.name + ".checkpoints")
        if keep_checkpoints
        else output.with_name(f".{output.name}.work")
    )
    partial = output.with_name(f".{output.name}.partial")
    wb_name = tracking.run_name(run_name, iteration, spec.method)
    wb_mode = tracking.setup_wandb(spec.wandb_project, wandb_dir, wb_name, is_main)
    ds_config = load_deepspeed_config(ds_path) if ds_path else None
    multi_epoch_eval = bool(eval_split.examples) and spec.epochs > 1 and spec.max_steps is None
    args_class, method_args = method.arguments(spec.knobs)
    shared = dict(
        output_dir=str(work_dir),
        per_device_train_batch_size=spec.per_device_batch_size,
        per_device_eval_batch_size=spec.per_device_batch_size,
        gradient_accumulation_steps=grad_acc,
        learning_rate=spec.learning_rate,
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps or -1,
        lr_scheduler_type=spec.lr_scheduler,
        warmup_steps=0,  # computed from the ratio in StargateTrainer.create_scheduler (version-proof)
        weight_decay=spec.weight_decay,
        max_grad_norm=spec.max_grad_norm,
        optim="adamw_torch",
        bf16=spec.bf16,
        seed=spec.seed,
        data_seed=spec.seed,
        **checkpointing_args(args_class, spec.gradient_checkpointing),
        logging_strategy="steps",
        logging_steps=spec.logging_steps,
        logging_first_step=True,
        eval_strategy="epoch" if multi_epoch_eval else "no",
        save_strategy="epoch" if spec.save_checkpoints else "no",
        save_total_limit=4,
        report_to=["wandb"] if wb_mode != "disabled" else "none",
        run_name=wb_name,
        use_cpu=not on_gpu,
        deepspeed=ds_config,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
    )
    args = args_class(**{**shared, **method_args})  # a method's own values win (GRPO's batch of rollouts)

    # ---------------------------------------------------------------- model
    attn, attn_why = choose_attn_implementation(spec.attn_implementation, on_gpu, spec.bf16)
    dtype, numerics_note = numerics(spec, deepspeed=ds_config is not None)
    t0 = time.perf_counter()
    start = Path(init_model) if init_model else base_model
    if init_model:
        check_model_folder(start, "rebuild it: delete the folder and rerun the train rule that makes it")
    model = AutoModelForCausalLM.from_pretrained(start, dtype=dtype, attn_implementation=attn)
    if spec.gradient_checkpointing:
        model.config.use_cache = False
    log.info(
        "loaded %s from %s (%s, %.1fM params) in %.1fs",
        "the policy" if init_model else "m0",
        start,
        dtype,
        model.num_parameters() / 1e6,
        time.perf_counter() - t0,
    )
    base_sha = weights_sha256(base_model) if is_main else None
    data_sha = sha256_file(data)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = method.build_trainer(
        TrainerContext(
            spec=spec,
            args=args,
            model=model,
            load_model=lambda: AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype, attn_implementation=attn),
            trainer_class=lambda base: trainer_class(spec.warmup_ratio, spec.loss_weighting, base),
            train_split=train_split,
            eval_split=eval_split,
            tokenizer=tokenizer,
            pad_id=pad_id,
            callbacks=[log_callback(), *(callbacks or [])],
            base_model=base_model,
            prompt_set=prompt_provenance.get("prompt_set"),
            label_rule=label_rule,
            roles=roles,
            work_dir=work_dir,
        )
    )
    trainer.remove_callback(PrinterCallback)  # prints raw dicts to stdout; _log_callback logs them instead
    device = "cpu" if not on_gpu else f"{world} x {torch.cuda.get_device_name(0)}"
    runtime = {
        "method": spec.method,
        "world_size": world,
        "gradient_accumulation_per_process": grad_acc,
        "effective_batch": spec.effective_batch(world),
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "numerics": numerics_note,
        "loss_weighting": spec.loss_weighting,
        "attn_implementation": attn,
        "attn_reason": attn_why,
        "deepspeed_config": str(ds_path) if ds_path else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "stargate": __version__,
    }
    if is_main and wb_mode != "disabled":
        tracking.init_run(
            wb_name,
            config={
                "training": spec.to_dict(),
                "iteration": iteration,
                "run_name": run_name,
                "data": str(data),
                "data_sha256": data_sha,
                "base_model": str(base_model),
                "runtime": runtime,
            },
            tags=[f"m{iteration}", spec.method, run_name],
        )

    # ---------------------------------------------------------------- train, evaluate, save
    work_dir.mkdir(parents=True, exist_ok=True)
    resume = last_checkpoint(work_dir) if method.resumable() else None
    if resume:
        log.info("resuming from %s (weights, optimizer, scheduler and RNG of the killed run)", resume)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime["warmup_steps"] = trainer.warmup_steps
    eval_loss = None
    if eval_split.examples:
        last_eval = [
            h for h in trainer.state.log_history if "eval_loss" in h and h.get("step") == trainer.state.global_step
        ]
        eval_loss = last_eval[-1]["eval_loss"] if last_eval else trainer.evaluate()["eval_loss"]
    if is_main and partial.exists():
        shutil.rmtree(partial)
    if ds_config and ds_config["zero_optimization"].get("stage") == 3:
        trainer.save_model(str(partial))  # every rank: gathers the partitioned weights, rank 0 writes
    elif is_main:
        # the plain module (not DeepSpeed's state-dict copy, which would store a tied lm_head twice)
        trainer.model.save_pretrained(str(partial))
    if not is_main:
        return {}
    tokenizer.save_pretrained(str(partial))
    (partial / "training_args.bin").unlink(missing_ok=True)  # a pickle; train_metrics.json has the same facts

    train_runtime = float(result.metrics.get("train_runtime", 0.0))
    tokens_seen = int(trainer.state.num_input_tokens_seen or 0)
    info: dict[str, Any] = {
        "stage": "train",
        "iteration": iteration,
        "run_name": run_name,
        "spec": spec.to_dict(),
        "provenance": {
            "base_model": {"path": str(base_model), "weights_sha256": base_sha},
            "data": {
                "path": str(data),
                "sha256": data_sha,
                "n_records": len(records),
                "n_pairs": len({r["pair"] for r in records}),
            },
            "prompts": prompt_provenance,
        },
        "runtime": runtime,
        "results": {
            "train": train_split.stats(),
            "eval": eval_split.stats(),
            "n_examples": len(train_split.examples) + len(eval_split.examples),
            "n_truncated": n_truncated,
            "train_loss": float(result.training_loss),
            "eval_loss": None if eval_loss is None else float(eval_loss),
            "global_step": int(trainer.state.global_step),
            "train_runtime_s": train_runtime,
            "train_tokens_seen": tokens_seen,
            "train_tokens_per_s": tokens_seen / train_runtime if train_runtime > 0 else None,
            "peak_gpu_memory_gib": (torch.cuda.max_memory_allocated() / 2**30) if on_gpu else None,
        },
        "eval_pairs": eval_pairs,
        "wandb": {"mode": wb_mode, "run_name": wb_name, "dir": str(wandb_dir) if wb_mode != "disabled" else None},
        "log_history": trainer.state.log_history,
    }
    info["results"]["total_runtime_s"] = time.perf_counter() - t_start
    info["results"].update(method.after_train(trainer, partial, work_dir))
    if init_model:
        info["provenance"]["init_model"] = {"path": str(init_model), "resumed_from": str(resume) if resume else None}
    write_card(partial, info)
    write_json(partial / "train_metrics.json", info)
    if wb_mode != "disabled":
        folder = tracking.finish_run({f"final/{k}": v for k, v in info["results"].items() if not isinstance(v, dict)})
        info["wandb"]["run_dir"] = str(folder) if folder else None
        write_json(partial / "train_metrics.json", info)
    replace_dir(partial, output)
    if not spec.save_checkpoints and work_dir.exists():  # a finished resumable run needs its checkpoints no more
        shutil.rmtree(work_dir, ignore_errors=True)
    log.info(
        "wrote %s: train loss %.4f, eval loss %s, %d steps, %.1fs, %.0f tokens/s, %d truncated",
        output,
        info["results"]["train_loss"],
        _fmt_opt(eval_loss),
        info["results"]["global_step"],
        train_runtime,
        info["results"]["train_tokens_per_s"] or 0.0,
        n_truncated,
    )
    return info


def _fmt_opt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"

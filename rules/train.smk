# Fine-tuning (spec §3.7, §5) by training.method (stargate/training/methods/; docs/training.md): m_t for t >= 1
# is trained FROM m0 (never from m_{t-1}) on the SFT data of iteration t-1, which simulated split A when t-1 is
# even and B when odd. An online method (grpo) plays rollouts on that split's pairs instead (rules/online.smk)
# and continues from m_{t-1}, m0 staying its reference.
# CPU by default; a profile that sets `gpu` for this rule gives it GPUs: with gpu > 1 `stargate train`
# re-executes itself under `accelerate launch --num_processes {gpu}` (DeepSpeed from training.deepspeed).
# See docs/training.md.

TRAINING = config["training"]


rule train:
    input:
        # the prepared m0 as its consumers take it (rules/common.smk, model_input)
        base=ancient(base_model_dir()),
        base_recipe=model_recipe_file(config["base_model"]),
        data=lambda wc: paths.training_data(
            int(wc.t) - 1, train_split(int(wc.t) - 1), METHOD
        ),
        # a continuing method's start (m_{t-1}) and the Roleplayer it plays against; nothing for the others
        init=lambda wc: continued_model_input(int(wc.t)),
        roleplayer=online_role_inputs(),
        deepspeed=(
            [repo_path(f"config/deepspeed/{TRAINING['deepspeed']}.json")]
            if TRAINING["deepspeed"]
            else []
        ),
    output:
        model=directory(paths.model()),
    log:
        "logs/train/m{t}.log",
    benchmark:
        "benchmarks/train/m{t}.tsv"
    wildcard_constraints:
        t=r"[1-9]\d*",
    conda:
        conda_env("train")
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=16000, runtime=600, roleplayer_gpu=0),
    params:
        # the method's own knobs only: another method's (e.g. rwr.temperature under dpo) retrain nothing
        spec=json.dumps(training_for_method(TRAINING), sort_keys=True),
        code=code("train"),
        # names only (W&B run, model card): not recorded, so renaming the run retrains nothing
        run_name=lambda wc, input: config["run_name"],
        wandb_dir=lambda wc: f"logs/train/wandb/m{wc.t}",
        online=lambda wc, resources: online_train_args(
            int(wc.t), resources.roleplayer_gpu
        ),
    shell:
        "stargate train --base-model {input.base} --data {input.data} --output {output.model}"
        " --spec {params.spec:q} --iteration {wildcards.t} --run-name {params.run_name:q}"
        " --gpus {resources.gpu} --wandb-dir {params.wandb_dir:q}{params.online} > {log} 2>&1"

# Online training (training.method grpo; stargate/training/methods/grpo.py, docs/training.md "Online training"):
# the pairs of iteration t's split that m_{t+1}'s train job plays its rollouts on, written where an offline
# method's training data goes (results/m{t}/{method}/{split}.jsonl), so the train rule reads either the same way.


rule rollout_prompts:
    input:
        unpack(split_data),
        gold=lambda wc: (
            [paths.gold(wc.split)]
            if get_method(wc.method).needs_gold(config["training"])
            else []
        ),
    output:
        paths.training_data(),
    log:
        "logs/rollout_prompts/m{t}_{split}_{method}.log",
    wildcard_constraints:
        method="|".join(online_methods()) or "no-online-method",
    conda:
        ENV
    resources:
        **res(),
    params:
        prompts=PROMPTS,
        gold=lambda wc, input: f"--gold {input.gold}" if input.gold else "",
        distractors=config_provider("training", "grpo", "distractors"),
        distractor_seed=config_provider("training", "grpo", "distractor_seed"),
        code=code("rollout_prompts"),
    shell:
        "stargate rollout-prompts --method {wildcards.method} --tasks {input.tasks} --personas {input.personas}"
        " {params.gold} --distractors {params.distractors} --distractor-seed {params.distractor_seed}"
        " --prompts {params.prompts} --output {output} > {log} 2>&1"


# Which question helped (evaluation.turn_credit): m0's log p(gold) after each exchange of every test
# conversation, and the mean gain per question in the summary folder.
rule turn_credit:
    input:
        **data_inputs("test"),
        conversations=paths.conversations(split="test"),
        gold=paths.gold("test"),
        model=base_model_input(),
    output:
        paths.turn_credit(),
    log:
        "logs/turn_credit/m{t}.log",
    benchmark:
        "benchmarks/turn_credit/m{t}.tsv"
    conda:
        conda_env(roles=["scorer"])
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=8000, runtime=240),
    params:
        role=lambda wc, input: role_cli("scorer", model=base_model_dir()),
        scorer=role_cli("scorer", model=base_model_dir(), recorded=True),
        info_gain=lambda wc: (
            " --info-gain" if EVAL["turn_credit"] == "info_gain" else ""
        ),
        templates=prompt_digest("score"),
        code=code("turn_credit"),
    shell:
        "stargate turn-credit --conversations {input.conversations} --gold {input.gold} --tasks {input.tasks}"
        " --personas {input.personas} {params.role}{params.info_gain} --gpus {resources.gpu}"
        " --output {output} > {log} 2>&1"


rule turn_credit_table:
    input:
        [paths.turn_credit(t) for t in EVAL_T],
    output:
        f"{SUMMARY}/turn_credit.csv",
    log:
        f"logs/turn_credit_table/{config['run_name']}.log",
    conda:
        ENV
    resources:
        **res(),
    params:
        code=code("turn_credit_table"),
    shell:
        "stargate turn-credit-table --credit {input} --output {output} > {log} 2>&1"


TURN_CREDIT_TARGETS = (
    [f"{SUMMARY}/turn_credit.csv"] if EVAL["turn_credit"] != "off" else []
)

# Log p(gold) under the fixed scorer m0 (spec §4), the shuffled control, and top-k selection (§3.4).


rule score:
    input:
        unpack(split_data),
        conversations=lambda wc: (
            paths.shuffled_conversations(wc.t, wc.split)
            if wc.condition == "shuffled"
            else conversations(wc.t, wc.split)
        ),
        gold=lambda wc: paths.gold(paths.base_split(wc.split)),
        model=base_model_input(),
    output:
        paths.logprobs(),
    log:
        "logs/score/m{t}_{split}_{condition}.log",
    benchmark:
        "benchmarks/score/m{t}_{split}_{condition}.tsv"
    wildcard_constraints:
        condition="|".join(CONDITIONS_PER_ITERATION),
    conda:
        conda_env(roles=["scorer"])
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=8000, runtime=240),
    params:
        # the whole role, not recorded (a `wildcards, input` function); `scorer` records it without its
        # speed-only options (the batch size: rules/common.smk, SPEED_ONLY_OPTIONS), so they rescore nothing
        role=lambda wc, input: role_cli("scorer", model=base_model_dir()),
        scorer=role_cli("scorer", model=base_model_dir(), recorded=True),
        templates=prompt_digest("score"),
        code=code("score"),
        # an input (tracked as such), so this param need not be recorded
        conversations=lambda wc, input: f"--conversations {input.conversations}",
    shell:
        "stargate score --condition {wildcards.condition} {params.conversations} --gold {input.gold}"
        " --tasks {input.tasks} --personas {input.personas} {params.role} --gpus {resources.gpu}"
        " --output {output} > {log} 2>&1"


# The controls involve no conversation: scored once per pair, constant over t. Same stage as `score`.
use rule score as score_control with:
    input:
        unpack(split_data),
        gold=paths.gold(),
        model=base_model_input(),
    output:
        paths.controls(),
    log:
        "logs/score_control/{split}_{condition}.log",
    benchmark:
        "benchmarks/score_control/{split}_{condition}.tsv"
    wildcard_constraints:
        condition="|".join(CONDITIONS_CONTROL),
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=8000, runtime=120),
    params:
        role=lambda wc, input: role_cli("scorer", model=base_model_dir()),
        scorer=role_cli("scorer", model=base_model_dir(), recorded=True),
        templates=prompt_digest("score"),
        code=code("score"),
        conversations="",


rule shuffle:
    input:
        unpack(split_data),
        conversations=paths.conversations(),
    output:
        paths.shuffled_conversations(),
    log:
        "logs/shuffle/m{t}_{split}.log",
    conda:
        ENV
    resources:
        **res(),
    params:
        seed=config_provider("evaluation", "shuffle_seed"),
        prompts=PROMPTS,  # the prompt set's shuffle_rotation: paper_v1 rotates as the original did
        code=code("shuffle"),
    shell:
        "stargate shuffle --conversations {input.conversations} --tasks {input.tasks} --personas {input.personas}"
        " --seed {params.seed} --prompts {params.prompts} --output {output} > {log} 2>&1"


rule topk:
    input:
        conversations=paths.conversations(),
        logprobs=paths.logprobs(condition=SELECTION_CONDITION),
    output:
        paths.topk(),
    log:
        "logs/topk/m{t}_{split}.log",
    conda:
        ENV
    resources:
        **res(),
    params:
        k=config_provider("top_k"),
        code=code("topk"),
    shell:
        "stargate topk --conversations {input.conversations} --logprobs {input.logprobs} --k {params.k}"
        " --output {output} > {log} 2>&1"

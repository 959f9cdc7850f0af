# Log p(gold) under the fixed scorer m0 (spec §4), the shuffled control, and top-k selection (§3.4).


rule score:
    input:
        unpack(lambda wc: data_inputs(wc.split)),
        conversations=lambda wc: (
            f"results/m{wc.t}/conversations/{wc.split}.shuffled.jsonl"
            if wc.condition == "shuffled"
            else conversations(wc.t, wc.split)
        ),
        gold="results/data/oracle/{split}.jsonl",
        model=base_model_dir(),
        prompts=PROMPT_FILES,
    output:
        "results/m{t}/logprobs/{split}.{condition}.jsonl",
    wildcard_constraints:
        condition="qa-experimental|pos-control-1|shuffled",
    params:
        role=role_spec("scorer"),
        prompts=PROMPTS,
    log:
        "logs/score/m{t}_{split}_{condition}.log",
    benchmark:
        "benchmarks/score/m{t}_{split}_{condition}.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=240,
    conda:
        ENV
    shell:
        "stargate score --condition {wildcards.condition} --conversations {input.conversations} --gold {input.gold}"
        " --tasks {input.tasks} --personas {input.personas} --prompts {params.prompts} --role {params.role:q}"
        " --model {input.model} --gpus {resources.gpu} --output {output} > {log} 2>&1"


# neg-control and pos-control-2 involve no conversation: scored once per pair, constant over t.
rule score_control:
    input:
        unpack(lambda wc: data_inputs(wc.split)),
        gold="results/data/oracle/{split}.jsonl",
        model=base_model_dir(),
        prompts=PROMPT_FILES,
    output:
        "results/controls/{split}.{condition}.jsonl",
    wildcard_constraints:
        condition="neg-control|pos-control-2",
    params:
        role=role_spec("scorer"),
        prompts=PROMPTS,
    log:
        "logs/score_control/{split}_{condition}.log",
    benchmark:
        "benchmarks/score_control/{split}_{condition}.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=120,
    conda:
        ENV
    shell:
        "stargate score --condition {wildcards.condition} --gold {input.gold} --tasks {input.tasks}"
        " --personas {input.personas} --prompts {params.prompts} --role {params.role:q} --model {input.model}"
        " --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule shuffle:
    input:
        unpack(lambda wc: data_inputs(wc.split)),
        conversations="results/m{t}/conversations/{split}.jsonl",
    output:
        "results/m{t}/conversations/{split}.shuffled.jsonl",
    params:
        seed=config["evaluation"].get("shuffle_seed", 1),
    log:
        "logs/shuffle/m{t}_{split}.log",
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    shell:
        "stargate shuffle --conversations {input.conversations} --tasks {input.tasks} --personas {input.personas}"
        " --seed {params.seed} --output {output} > {log} 2>&1"


rule topk:
    input:
        conversations="results/m{t}/conversations/{split}.jsonl",
        logprobs="results/m{t}/logprobs/{split}.qa-experimental.jsonl",
    output:
        "results/m{t}/topk/{split}.jsonl",
    params:
        k=config["top_k"],
    log:
        "logs/topk/m{t}_{split}.log",
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    shell:
        "stargate topk --conversations {input.conversations} --logprobs {input.logprobs} --k {params.k}"
        " --output {output} > {log} 2>&1"

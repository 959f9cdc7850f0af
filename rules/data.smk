# One-time data: tasks, personas, their names, and the Oracle's gold responses (spec §2).


rule tasks:
    input:
        source=lambda wc: (
            [repo_path(config["data"]["tasks"]["path"])] if config["data"]["tasks"]["source"] == "file" else []
        ),
    output:
        "results/data/tasks/{split}.jsonl",
    params:
        spec=lambda wc, input: json.dumps({**config["data"]["tasks"], **({"path": input.source[0]} if input.source else {})}),
    log:
        "logs/tasks/{split}.log",
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    shell:
        "stargate tasks --split {wildcards.split} --spec {params.spec:q} --output {output} > {log} 2>&1"


rule personas:
    input:
        source=lambda wc: (
            [repo_path(config["data"]["personas"]["path"])]
            if config["data"]["personas"]["source"] == "file"
            else [repo_path(config["data"]["personas"]["seeds"])]
        ),
        model=lambda wc: role_model_input("persona_generator") if config["data"]["personas"]["source"] == "generate" else [],
        prompts=PROMPT_FILES,
    output:
        "results/data/personas/{split}.texts.jsonl",
    params:
        spec=lambda wc, input: json.dumps(
            {
                **config["data"]["personas"],
                **({"path": input.source[0]} if config["data"]["personas"]["source"] == "file" else {"seeds": input.source[0]}),
            }
        ),
        role=role_spec("persona_generator"),
        model=role_model_arg("persona_generator"),
        prompts=PROMPTS,
    log:
        "logs/personas/{split}.log",
    benchmark:
        "benchmarks/personas/{split}.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=120,
    conda:
        ENV
    shell:
        "stargate personas --split {wildcards.split} --spec {params.spec:q} --prompts {params.prompts}"
        " --role {params.role:q} --model {params.model} --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule names:
    input:
        personas="results/data/personas/{split}.texts.jsonl",
        model=lambda wc: role_model_input("persona_generator") if config["data"]["names"] == "llm" else [],
        prompts=PROMPT_FILES,
    output:
        "results/data/personas/{split}.jsonl",
    params:
        method=config["data"]["names"],
        role=role_spec("persona_generator"),
        model=role_model_arg("persona_generator"),
        prompts=PROMPTS,
    log:
        "logs/names/{split}.log",
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    shell:
        "stargate names --personas {input.personas} --method {params.method} --prompts {params.prompts}"
        " --role {params.role:q} --model {params.model} --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule oracle:
    input:
        unpack(lambda wc: data_inputs(wc.split)),
        model=role_model_input("oracle"),
        prompts=PROMPT_FILES,
    output:
        "results/data/oracle/{split}.jsonl",
    params:
        role=role_spec("oracle"),
        model=role_model_arg("oracle"),
        prompts=PROMPTS,
    log:
        "logs/oracle/{split}.log",
    benchmark:
        "benchmarks/oracle/{split}.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=240,
    conda:
        ENV
    shell:
        "stargate oracle --tasks {input.tasks} --personas {input.personas} --prompts {params.prompts}"
        " --role {params.role:q} --model {params.model} --gpus {resources.gpu} --output {output} > {log} 2>&1"

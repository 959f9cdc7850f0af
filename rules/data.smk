# One-time data: tasks, personas, their names, and the Oracle's gold responses (spec §2).
# Each can come from a file (the authors' released formats: stargate/released.py); a file named in the
# config is a rule input, so a missing file fails and a changed one reruns what follows.


rule tasks:
    input:
        source=lambda wc: [data_file("tasks", wc.split)] if data_from_file("tasks") else [],
    output:
        "results/data/tasks/{split}.jsonl",
    params:
        spec=lambda wc, input: file_spec("tasks", input),
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
            [data_file("personas", wc.split)]
            if data_from_file("personas")
            else [repo_path(config["data"]["personas"]["seeds"])]
        ),
        model=lambda wc: role_model_input("persona_generator") if config["data"]["personas"]["source"] == "generate" else [],
        prompts=PROMPT_FILES,
    output:
        "results/data/personas/{split}.texts.jsonl",
    params:
        spec=lambda wc, input: (
            file_spec("personas", input)
            if data_from_file("personas")
            else json.dumps({**config["data"]["personas"], "seeds": input.source[0]})
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
        source=lambda wc: [data_file("names", wc.split)] if data_from_file("names") else [],
        model=lambda wc: role_model_input("persona_generator") if config["data"]["names"] == "llm" else [],
        prompts=PROMPT_FILES,
    output:
        "results/data/personas/{split}.jsonl",
    params:
        method="file" if data_from_file("names") else config["data"]["names"],
        names_file=lambda wc, input: source_arg("--names-file", input),
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
        "stargate names --personas {input.personas} --method {params.method} {params.names_file} --prompts {params.prompts}"
        " --role {params.role:q} --model {params.model} --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule oracle:
    input:
        unpack(lambda wc: data_inputs(wc.split)),
        source=lambda wc: [data_file("oracle", wc.split)] if data_from_file("oracle") else [],
        model=role_model_input("oracle") if not data_from_file("oracle") else [],
        prompts=PROMPT_FILES,
    output:
        "results/data/oracle/{split}.jsonl",
    params:
        gold_file=lambda wc, input: source_arg("--gold-file", input),
        max_dropped=config["data"].get("oracle", {}).get("max_dropped_fraction", 0.0),
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
        " {params.gold_file} --max-dropped-fraction {params.max_dropped}"
        " --role {params.role:q} --model {params.model} --gpus {resources.gpu} --output {output} > {log} 2>&1"

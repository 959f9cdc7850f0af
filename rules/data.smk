# One-time data: tasks, personas, their names, and the Oracle's gold responses (spec §2).

# Each can come from a file, in this project's format or the authors' released ones (stargate/released.py).
# Data paths are resolved here (a {split} in a path filled in; relative to data.released_dir when the
# config has it, else to the working directory, else the repository) and recorded in the params; the
# files themselves are inputs, so a changed file reruns and a missing one fails.
TASKS = config["data"]["tasks"]
PERSONAS = config["data"]["personas"]
GENERATED_PERSONAS = PERSONAS["source"] == "generate"
LLM_NAMES = config["data"]["names"] == "llm"
FILE_NAMES = data_from_file("names")
FILE_GOLD = data_from_file("oracle")
# The values given per split (data.tasks.rows, data.personas.count) reach a split's job cut to its own
# split, {split: value} (the stages read spec[key][split]): recorded so, changing split A's rows or count
# reruns split A's data and what follows it, not the test split's.


rule tasks:
    input:
        source=lambda wc: data_files("tasks", wc.split),
    output:
        paths.tasks(),
    log:
        "logs/tasks/{split}.log",
    conda:
        ENV
    resources:
        **res(),
    params:
        spec=lambda wc: json.dumps(
            {
                **json.loads(file_spec("tasks", wc.split)),
                **(
                    {"rows": {wc.split: TASKS["rows"][wc.split]}}
                    if "rows" in TASKS
                    else {}
                ),
            },
            sort_keys=True,
        ),
        code=code("tasks"),
    shell:
        "stargate tasks --split {wildcards.split} --spec {params.spec:q} --output {output} > {log} 2>&1"


rule personas:
    input:
        source=lambda wc: (
            repo_path(PERSONAS["seeds"])
            if GENERATED_PERSONAS
            else data_files("personas", wc.split)
        ),
        model=role_model_input("persona_generator") if GENERATED_PERSONAS else [],
    output:
        paths.persona_texts(),
    log:
        "logs/personas/{split}.log",
    benchmark:
        "benchmarks/personas/{split}.tsv"
    conda:
        conda_env(roles=["persona_generator"])
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=4000, runtime=120),
    params:
        spec=lambda wc: (
            json.dumps(
                {
                    **PERSONAS,
                    "seeds": repo_path(PERSONAS["seeds"]),
                    "count": {wc.split: PERSONAS["count"][wc.split]},
                },
                sort_keys=True,
            )
            if GENERATED_PERSONAS
            else file_spec("personas", wc.split)
        ),
        role=(
            role_cli("persona_generator")
            if GENERATED_PERSONAS
            else f"--prompts {PROMPTS}"
        ),
        templates=prompt_digest("personas"),
        code=code("personas"),
    shell:
        "stargate personas --split {wildcards.split} --spec {params.spec:q} {params.role}"
        " --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule names:
    input:
        personas=paths.persona_texts(),
        source=lambda wc: data_files("names", wc.split) if FILE_NAMES else [],
        model=role_model_input("persona_generator") if LLM_NAMES else [],
    output:
        paths.personas(),
    log:
        "logs/names/{split}.log",
    conda:
        conda_env(roles=["persona_generator"])
    resources:
        **res(mem_mb=4000, runtime=60),
    params:
        method="file" if FILE_NAMES else config["data"]["names"],
        names_file=lambda wc: (
            file_arg("--names-file", "names", wc.split) if FILE_NAMES else ""
        ),
        role=role_cli("persona_generator") if LLM_NAMES else f"--prompts {PROMPTS}",
        templates=prompt_digest("names"),
        code=code("names"),
    shell:
        "stargate names --personas {input.personas} --method {params.method} {params.names_file} {params.role}"
        " --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule oracle:
    input:
        unpack(split_data),
        source=lambda wc: data_files("oracle", wc.split) if FILE_GOLD else [],
        model=role_model_input("oracle") if not FILE_GOLD else [],
    output:
        paths.gold(),
    log:
        "logs/oracle/{split}.log",
    benchmark:
        "benchmarks/oracle/{split}.tsv"
    conda:
        conda_env(roles=["oracle"])
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=8000, runtime=240),
    params:
        gold_file=lambda wc: (
            file_arg("--gold-file", "oracle", wc.split) if FILE_GOLD else ""
        ),
        max_dropped=config_provider("data", "oracle", "max_dropped_fraction"),
        # the authors' gold responses need no oracle: its role and model are not used then
        role=f"--prompts {PROMPTS}" if FILE_GOLD else role_cli("oracle"),
        templates=prompt_digest("oracle") if not FILE_GOLD else "",
        code=code("oracle"),
    shell:
        "stargate oracle --tasks {input.tasks} --personas {input.personas} {params.gold_file}"
        " --max-dropped-fraction {params.max_dropped} {params.role} --gpus {resources.gpu} --output {output} > {log} 2>&1"

# One-time data: tasks, personas, their names, and the Oracle's gold responses (spec §2).

# Data paths are resolved here (relative to the working directory, else the repository) and recorded
# in the spec param; the files themselves are inputs, so a changed file reruns and a missing one fails.
TASKS = config["data"]["tasks"]
PERSONAS = config["data"]["personas"]
TASKS_FILE = [repo_path(TASKS["path"])] if TASKS["source"] == "file" else []
PERSONAS_FILE = repo_path(PERSONAS["path"] if PERSONAS["source"] == "file" else PERSONAS["seeds"])
GENERATED_PERSONAS = PERSONAS["source"] == "generate"
LLM_NAMES = config["data"]["names"] == "llm"


rule tasks:
    input:
        source=TASKS_FILE,
    output:
        "results/data/tasks/{split}.jsonl",
    params:
        spec=json.dumps({**TASKS, **({"path": TASKS_FILE[0]} if TASKS_FILE else {})}, sort_keys=True),
        code=code("tasks"),
    log:
        "logs/tasks/{split}.log",
    resources:
        **res(),
    conda:
        ENV
    shell:
        "stargate tasks --split {wildcards.split} --spec {params.spec:q} --output {output} > {log} 2>&1"


rule personas:
    input:
        source=PERSONAS_FILE,
        model=role_model_input("persona_generator") if GENERATED_PERSONAS else [],
        prompts=prompt_files("personas"),
    output:
        "results/data/personas/{split}.texts.jsonl",
    params:
        spec=json.dumps({**PERSONAS, ("seeds" if GENERATED_PERSONAS else "path"): PERSONAS_FILE}, sort_keys=True),
        role=role_cli("persona_generator") if GENERATED_PERSONAS else f"--prompts {PROMPTS}",
        code=code("personas"),
    log:
        "logs/personas/{split}.log",
    benchmark:
        "benchmarks/personas/{split}.tsv"
    resources:
        **res(mem_mb=4000, runtime=120),
    conda:
        ENV
    shell:
        "stargate personas --split {wildcards.split} --spec {params.spec:q} {params.role}"
        " --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule names:
    input:
        personas="results/data/personas/{split}.texts.jsonl",
        model=role_model_input("persona_generator") if LLM_NAMES else [],
        prompts=prompt_files("names"),
    output:
        "results/data/personas/{split}.jsonl",
    params:
        method=config["data"]["names"],
        role=role_cli("persona_generator") if LLM_NAMES else f"--prompts {PROMPTS}",
        code=code("names"),
    log:
        "logs/names/{split}.log",
    resources:
        **res(mem_mb=4000, runtime=60),
    conda:
        ENV
    shell:
        "stargate names --personas {input.personas} --method {params.method} {params.role} --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule oracle:
    input:
        unpack(split_data),
        model=role_model_input("oracle"),
        prompts=prompt_files("oracle"),
    output:
        "results/data/oracle/{split}.jsonl",
    params:
        role=role_cli("oracle"),
        code=code("oracle"),
    log:
        "logs/oracle/{split}.log",
    benchmark:
        "benchmarks/oracle/{split}.tsv"
    resources:
        **res(mem_mb=8000, runtime=240),
    conda:
        ENV
    shell:
        "stargate oracle --tasks {input.tasks} --personas {input.personas} {params.role}"
        " --gpus {resources.gpu} --output {output} > {log} 2>&1"

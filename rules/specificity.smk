# The judge's rating of how user-specific each test task is (the paper's GPT-4 rating, spec §6.1,
# prompts file §11): a second general/specific breakdown of qa-experimental beside the hand labels.
# Requested only when evaluation.specificity_rating is on (config/paper.yaml); off by default.

SPECIFICITY_RATING = EVAL["specificity_rating"]
SPECIFICITY_FILE = paths.specificity()


rule specificity:
    input:
        tasks=data_inputs("test")["tasks"],
        model=role_model_input("judge"),
    output:
        SPECIFICITY_FILE,
    log:
        "logs/specificity/test.log",
    benchmark:
        "benchmarks/specificity/test.tsv"
    conda:
        conda_env(roles=["judge"])
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=4000, runtime=60),
    params:
        role=role_cli("judge"),
        templates=prompt_digest("specificity"),
        code=code("specificity"),
    shell:
        "stargate specificity --tasks {input.tasks} {params.role} --gpus {resources.gpu}"
        " --output {output} > {log} 2>&1"

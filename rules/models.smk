# Base models as plain Hugging Face folders (the embedded default converts SmolLM2 from its GGUF).


rule prepare_model:
    input:
        recipe=model_recipe_file("{name}"),
    output:
        directory("resources/models/{name}"),
    log:
        "logs/prepare_model/{name}.log",
    benchmark:
        "benchmarks/prepare_model/{name}.tsv"
    conda:
        ENV
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=4000, runtime=60),
    params:
        source=lambda wc: json.dumps(
            config["models"][wc.name]["source"], sort_keys=True
        ),
        code=code("prepare_model"),
    shell:
        "stargate prepare-model --source {params.source:q} --output {output} > {log} 2>&1"


# What determines resources/models/NAME's content; rewritten only when that changes, so an identical
# rebuild of the folder reruns nothing downstream (rules/common.smk, model_input).
rule model_recipe:
    output:
        model_recipe_file("{name}"),
    log:
        "logs/model_recipe/{name}.log",
    localrule: True
    conda:
        ENV
    resources:
        **res(mem_mb=500, runtime=5),
    params:
        source=lambda wc: json.dumps(
            config["models"][wc.name]["source"], sort_keys=True
        ),
        prepare_code=code("prepare_model"),
        code=code("model_recipe"),
    shell:
        "stargate model-recipe --source {params.source:q} --prepare-code {params.prepare_code}"
        " --output {output} > {log} 2>&1"

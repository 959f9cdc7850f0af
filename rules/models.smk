# Base models as plain Hugging Face folders (the embedded default converts SmolLM2 from its GGUF).


rule prepare_model:
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

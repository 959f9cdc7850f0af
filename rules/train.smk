# placeholder until the training helper lands its rule


rule train:
    input:
        base=base_model_dir(),
        data=lambda wc: f"results/m{int(wc.t) - 1}/sft/{train_split(int(wc.t) - 1)}.jsonl",
    output:
        directory("results/models/m{t}"),
    params:
        spec=json.dumps(config["training"]),
        run_name=config["run_name"],
    log:
        "logs/train/m{t}.log",
    benchmark:
        "benchmarks/train/m{t}.tsv"
    threads: 2
    resources:
        gpu=0,
        mem_mb=16000,
        runtime=600,
    conda:
        ENV
    shell:
        "stargate train --base-model {input.base} --data {input.data} --output {output} --spec {params.spec:q}"
        " --iteration {wildcards.t} --run-name {params.run_name} --gpus {resources.gpu} > {log} 2>&1"

# Training data of m_{t+1}: m_t's own final answers after its kept conversations (the regularizer,
# spec §3.5) and the chat-format SFT examples (§3.6). Training itself is rules/train.smk.


rule regularize:
    input:
        unpack(lambda wc: data_inputs(wc.split)),
        topk="results/m{t}/topk/{split}.jsonl",
        model=lambda wc: questioner_model(wc.t),
        prompts=PROMPT_FILES,
    output:
        "results/m{t}/regularizer/{split}.jsonl",
    params:
        role=role_spec("answerer"),
        prompts=PROMPTS,
    log:
        "logs/regularize/m{t}_{split}.log",
    benchmark:
        "benchmarks/regularize/m{t}_{split}.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=240,
    conda:
        ENV
    shell:
        "stargate regularize --topk {input.topk} --tasks {input.tasks} --personas {input.personas}"
        " --prompts {params.prompts} --role {params.role:q} --model {input.model} --gpus {resources.gpu}"
        " --output {output} > {log} 2>&1"


rule sft_data:
    input:
        unpack(lambda wc: data_inputs(wc.split)),
        topk="results/m{t}/topk/{split}.jsonl",
        responses="results/m{t}/regularizer/{split}.jsonl",
        prompts=PROMPT_FILES,
    output:
        "results/m{t}/sft/{split}.jsonl",
    params:
        prompts=PROMPTS,
    log:
        "logs/sft_data/m{t}_{split}.log",
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    shell:
        "stargate sft-data --topk {input.topk} --responses {input.responses} --tasks {input.tasks}"
        " --personas {input.personas} --prompts {params.prompts} --output {output} > {log} 2>&1"

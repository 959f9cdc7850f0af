# Training data of m_{t+1}: m_t's own final answers after its kept conversations (the regularizer,
# spec §3.5) and the chat-format SFT examples (§3.6). Training itself is rules/train.smk.


rule regularize:
    input:
        unpack(split_data),
        topk="results/m{t}/topk/{split}.jsonl",
        model=lambda wc: questioner_model(wc.t),
    output:
        "results/m{t}/regularizer/{split}.jsonl",
    log:
        "logs/regularize/m{t}_{split}.log",
    benchmark:
        "benchmarks/regularize/m{t}_{split}.tsv"
    conda:
        ENV
    resources:
        **res(mem_mb=8000, runtime=240),
    params:
        role=lambda wc: role_cli("answerer", model=questioner_model(wc.t)),
        templates=prompt_digest("regularize"),
        code=code("regularize"),
    shell:
        "stargate regularize --topk {input.topk} --tasks {input.tasks} --personas {input.personas}"
        " {params.role} --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule sft_data:
    input:
        unpack(split_data),
        topk="results/m{t}/topk/{split}.jsonl",
        responses="results/m{t}/regularizer/{split}.jsonl",
    output:
        "results/m{t}/sft/{split}.jsonl",
    log:
        "logs/sft_data/m{t}_{split}.log",
    conda:
        ENV
    resources:
        **res(),
    params:
        prompts=PROMPTS,
        templates=prompt_digest("sft_data"),
        code=code("sft_data"),
    shell:
        "stargate sft-data --topk {input.topk} --responses {input.responses} --tasks {input.tasks}"
        " --personas {input.personas} --prompts {params.prompts} --output {output} > {log} 2>&1"

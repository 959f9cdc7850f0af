# Training data of m_{t+1} (spec §3.5-§3.6), by training.method: the conversations used (top-k for sft,
# rules/score.smk; best/worst for dpo and all with weights for rwr, rule `select`), the final answer after
# each (training.regularizer: m_t's own, rule `regularize`; the oracle's gold; or none) and the examples
# (rule `sft_data`, written to results/m{t}/{method}/{split}.jsonl). Training itself is rules/train.smk.

if METHOD == "dpo" and SIM["conversations_per_pair"] < 2:
    raise ValueError(
        "training.method dpo contrasts two conversations of a pair: set simulation.conversations_per_pair >= 2"
    )


rule select:
    input:
        conversations="results/m{t}/conversations/{split}.jsonl",
        logprobs=f"results/m{{t}}/logprobs/{{split}}.{SELECTION_CONDITION}.jsonl",
    output:
        "results/m{t}/selected/{split}.{method}.jsonl",
    log:
        "logs/select/m{t}_{split}_{method}.log",
    wildcard_constraints:
        method="dpo|rwr",
    conda:
        ENV
    resources:
        **res(),
    params:
        knob=lambda wc: (
            f"--min-gap {config['training']['dpo']['min_gap']}"
            if wc.method == "dpo"
            else f"--temperature {config['training']['rwr']['temperature']}"
        ),
        code=code("select"),
    shell:
        "stargate select --method {wildcards.method} --conversations {input.conversations}"
        " --logprobs {input.logprobs} {params.knob} --output {output} > {log} 2>&1"


rule regularize:
    input:
        unpack(split_data),
        topk=used_conversations,
        model=lambda wc: model_input(questioner_model(wc.t)),
    output:
        "results/m{t}/regularizer/{split}.jsonl",
    log:
        "logs/regularize/m{t}_{split}.log",
    benchmark:
        "benchmarks/regularize/m{t}_{split}.tsv"
    conda:
        conda_env(roles=["answerer"])
    threads: MODEL_THREADS
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
        topk=used_conversations,
        responses=final_answers,
    output:
        "results/m{t}/{method}/{split}.jsonl",
    log:
        "logs/sft_data/m{t}_{split}_{method}.log",
    wildcard_constraints:
        method="sft|dpo|rwr",
    conda:
        ENV
    resources:
        **res(),
    params:
        prompts=PROMPTS,
        regularizer=REGULARIZER,
        # an input (tracked as such), so this param need not be recorded
        responses=lambda wc, input: (
            f"--responses {input.responses}" if input.responses else ""
        ),
        templates=prompt_digest("sft_data"),
        code=code("sft_data"),
    shell:
        "stargate sft-data --method {wildcards.method} --regularizer {params.regularizer}"
        " --topk {input.topk} {params.responses} --tasks {input.tasks}"
        " --personas {input.personas} --prompts {params.prompts} --output {output} > {log} 2>&1"

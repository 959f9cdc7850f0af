# Training data of m_{t+1} (spec §3.5-§3.6), by training.method: the conversations used (top-k for sft,
# rules/score.smk; best/worst for dpo and all with weights for rwr, rule `select`), the final answer after
# each (training.regularizer: m_t's own, rule `regularize`; the oracle's gold; or none) and the examples
# (rule `sft_data`, written to results/m{t}/{method}/{split}.jsonl). Training itself is rules/train.smk.


rule select:
    input:
        conversations=paths.conversations(),
        logprobs=paths.logprobs(condition=SELECTION_CONDITION),
    output:
        paths.selected(),
    log:
        "logs/select/m{t}_{split}_{method}.log",
    wildcard_constraints:
        method="|".join(selecting_methods()),
    conda:
        ENV
    resources:
        **res(),
    params:
        # the keys of the method's block its selection reads: a trainer knob (dpo.beta) reruns training only
        knobs=lambda wc: json.dumps(select_knobs(wc.method), sort_keys=True),
        code=code("select"),
    shell:
        "stargate select --method {wildcards.method} --conversations {input.conversations}"
        " --logprobs {input.logprobs} --knobs {params.knobs:q} --output {output} > {log} 2>&1"


rule regularize:
    input:
        unpack(split_data),
        topk=used_conversations,
        model=lambda wc: model_input(questioner_model(wc.t)),
    output:
        paths.regularizer(),
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
        paths.training_data(),
    log:
        "logs/sft_data/m{t}_{split}_{method}.log",
    wildcard_constraints:
        method="|".join(offline_methods()),
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

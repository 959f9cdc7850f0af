# Evaluation on the test split (spec §6): win-rate answers of m0..mT, judge verdicts of m_t vs m0 with
# position randomisation, and the summary tables and plots. Test conversations and log-probs come
# from the same simulate/score rules as training, with split=test.

WINRATE = config["evaluation"]["winrate"]


rule winrate_answer:
    input:
        unpack(lambda wc: data_inputs("test")),
        conversations=lambda wc: conversations(wc.t, "test"),
        model=lambda wc: questioner_model(wc.t),
        prompts=PROMPT_FILES,
    output:
        "results/eval/winrate/m{t}.answers.jsonl",
    params:
        role=role_spec("answerer"),
        per_group=WINRATE["pairs_per_group"] or 0,
        seed=WINRATE["seed"],
        prompts=PROMPTS,
    log:
        "logs/winrate_answer/m{t}.log",
    benchmark:
        "benchmarks/winrate_answer/m{t}.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=8000,
        runtime=120,
    conda:
        ENV
    shell:
        "stargate winrate-answer --conversations {input.conversations} --tasks {input.tasks}"
        " --personas {input.personas} --pairs-per-group {params.per_group} --seed {params.seed}"
        " --prompts {params.prompts} --role {params.role:q} --model {input.model} --gpus {resources.gpu}"
        " --output {output} > {log} 2>&1"


rule judge:
    input:
        unpack(lambda wc: data_inputs("test")),
        candidate="results/eval/winrate/m{t}.answers.jsonl",
        baseline="results/eval/winrate/m0.answers.jsonl",
        model=role_model_input("judge"),
        prompts=PROMPT_FILES,
    output:
        "results/eval/winrate/m{t}_vs_m0.judge.jsonl",
    params:
        role=role_spec("judge"),
        model=role_model_arg("judge"),
        seed=WINRATE["seed"],
        mode=WINRATE.get("verdict", "generate"),
        max_dropped=WINRATE.get("max_dropped_fraction", 1.0),
        prompts=PROMPTS,
    log:
        "logs/judge/m{t}.log",
    benchmark:
        "benchmarks/judge/m{t}.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=120,
    conda:
        ENV
    shell:
        "stargate judge --candidate {input.candidate} --baseline {input.baseline} --tasks {input.tasks}"
        " --personas {input.personas} --seed {params.seed} --mode {params.mode} --prompts {params.prompts}"
        " --max-dropped-fraction {params.max_dropped}"
        " --role {params.role:q}"
        " --model {params.model} --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule summarize:
    input:
        **summary_inputs(),
    output:
        logprobs="results/summary/logprobs.csv",
        winrates="results/summary/winrates.csv",
        json="results/summary/summary.json",
        logprobs_png=report("results/summary/logprobs.png", category="Evaluation", caption="../report/logprobs.rst"),
        winrates_png=report("results/summary/winrates.png", category="Evaluation", caption="../report/winrates.rst"),
    params:
        logprobs=lambda wc, input: tagged(input.logprobs),
        judge=lambda wc, input: tagged(input.judge),
        conversations=lambda wc, input: tagged(input.conversations),
    log:
        "logs/summarize/summary.log",
    localrule: True
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    shell:
        "stargate summarize --logprobs {params.logprobs} --controls {input.controls} --judge {params.judge}"
        " --conversations {params.conversations} --out-dir results/summary > {log} 2>&1"

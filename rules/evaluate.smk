# Evaluation on the test split (spec §6): win-rate answers of m0..mT, judge verdicts of m_t vs m0 with
# position randomisation, and the summary tables and plots. Test conversations and log-probs come
# from the same simulate/score rules as training, with split=test.

WINRATE = EVAL["winrate"]
TEST_DATA = data_inputs("test")


rule winrate_answer:
    input:
        **TEST_DATA,
        conversations=lambda wc: conversations(wc.t, "test"),
        model=lambda wc: questioner_model(wc.t),
    output:
        "results/eval/winrate/m{t}.answers.jsonl",
    log:
        "logs/winrate_answer/m{t}.log",
    benchmark:
        "benchmarks/winrate_answer/m{t}.tsv"
    conda:
        ENV
    resources:
        **res(mem_mb=8000, runtime=120),
    params:
        role=lambda wc: role_cli("answerer", model=questioner_model(wc.t)),
        per_group=WINRATE["pairs_per_group"] or 0,
        seed=WINRATE["seed"],
        templates=prompt_digest("winrate_answer"),
        code=code("winrate_answer"),
    shell:
        "stargate winrate-answer --conversations {input.conversations} --tasks {input.tasks}"
        " --personas {input.personas} --pairs-per-group {params.per_group} --seed {params.seed}"
        " {params.role} --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule judge:
    input:
        **TEST_DATA,
        candidate="results/eval/winrate/m{t}.answers.jsonl",
        baseline="results/eval/winrate/m0.answers.jsonl",
        model=role_model_input("judge"),
    output:
        "results/eval/winrate/m{t}_vs_m0.judge.jsonl",
    log:
        "logs/judge/m{t}.log",
    benchmark:
        "benchmarks/judge/m{t}.tsv"
    conda:
        ENV
    resources:
        **res(mem_mb=4000, runtime=120),
    params:
        role=role_cli("judge"),
        seed=WINRATE["seed"],
        mode=WINRATE["verdict"],
        max_dropped=WINRATE["max_dropped_fraction"],
        templates=prompt_digest("judge"),
        code=code("judge"),
    shell:
        "stargate judge --candidate {input.candidate} --baseline {input.baseline} --tasks {input.tasks}"
        " --personas {input.personas} --seed {params.seed} --mode {params.mode} {params.role}"
        " --max-dropped-fraction {params.max_dropped} --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule summarize:
    input:
        **summary_inputs(),
    output:
        logprobs="results/summary/logprobs.csv",
        winrates="results/summary/winrates.csv",
        json="results/summary/summary.json",
        logprobs_png=report(
            "results/summary/logprobs.png",
            category="Evaluation",
            caption="../report/logprobs.rst",
        ),
        winrates_png=report(
            "results/summary/winrates.png",
            category="Evaluation",
            caption="../report/winrates.rst",
        ),
    log:
        "logs/summarize/summary.log",
    localrule: True
    conda:
        ENV
    resources:
        **res(runtime=10),
    params:
        manifest=json.dumps(summary_manifest(), sort_keys=True),
        code=code("summarize"),
    shell:
        "stargate summarize --manifest {params.manifest:q} --out-dir results/summary > {log} 2>&1"

# Evaluation on the test split (spec §6): win-rate answers and judge verdicts for every configured variant
# (evaluation.winrate.variants: conversation random|top1, answerer mt|m0, positions a judge protocol of
# stargate.evaluation.protocols, whose orders the judge file serves),
# the summary tables and plots beside the paper's values, and the report's extra tables. Test
# conversations and log-probs come from the same simulate/score rules as training, with split=test.

WINRATE = EVAL["winrate"]
TEST_DATA = data_inputs("test")


rule winrate_answer:
    input:
        **TEST_DATA,
        conversations=lambda wc: conversations(wc.t, wc_split(wc)),
        top1=lambda wc: (
            paths.topk(wc.t, wc_split(wc)) if wc.selection == "top1" else []
        ),
        model=lambda wc: model_input(answering_model(wc)),
    output:
        paths.winrate_answers(),
    log:
        "logs/winrate_answer/{selection}_m{t}_{answerer}.log",
    benchmark:
        "benchmarks/winrate_answer/{selection}_m{t}_{answerer}.tsv"
    wildcard_constraints:
        selection="random|top1",
        answerer="mt|m0",
    conda:
        conda_env(roles=["answerer"])
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=8000, runtime=120),
    params:
        role=lambda wc: role_cli(
            "answerer", model=answering_model(wc), trial=wc_trial(wc)
        ),
        per_group=WINRATE["pairs_per_group"] or 0,
        seed=WINRATE["seed"],
        # an input (tracked as such), so this param need not be recorded
        top1=lambda wc, input: f"--top1 {input.top1}" if input.top1 else "",
        templates=prompt_digest("winrate_answer"),
        code=code("winrate_answer"),
    shell:
        "stargate winrate-answer --conversation {wildcards.selection} --conversations {input.conversations}"
        " {params.top1} --tasks {input.tasks} --personas {input.personas} --pairs-per-group {params.per_group}"
        " --seed {params.seed} {params.role} --gpus {resources.gpu} --output {output} > {log} 2>&1"


# Repeated trials (evaluation.trials): trial j's answers on trial j's conversations (split test_trial{j},
# simulated and scored by the same rules as trial 1's), in files that name the split.
use rule winrate_answer as winrate_answer_trial with:
    output:
        paths.winrate_answers(split="{split}"),
    log:
        "logs/winrate_answer/{selection}_m{t}_{answerer}_{split}.log",
    benchmark:
        "benchmarks/winrate_answer/{selection}_m{t}_{answerer}_{split}.tsv"
    wildcard_constraints:
        selection="random|top1",
        answerer="mt|m0",
        split=r"test_trial\d+",


rule judge:
    input:
        **TEST_DATA,
        candidate=lambda wc: winrate_answers(
            wc.selection, wc.t, wc.answerer, wc_split(wc)
        ),
        baseline=lambda wc: winrate_answers(wc.selection, 0, "mt", wc_split(wc)),
        model=lambda wc: role_model_input(wc_judge(wc)),
    output:
        paths.judge(),
    log:
        "logs/judge/{selection}_m{t}_{answerer}.log",
    benchmark:
        "benchmarks/judge/{selection}_m{t}_{answerer}.tsv"
    wildcard_constraints:
        selection="random|top1",
        answerer="mt|m0",
    conda:
        conda_env(roles=["judge"])
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=4000, runtime=120),
    params:
        role=lambda wc: role_cli(wc_judge(wc), trial=wc_trial(wc)),
        seed=WINRATE["seed"],
        mode=lambda wc: judge_mode(wc_judge(wc)),
        positions=lambda wc: ",".join(
            winrate_variants.positions_for(WINRATE_VARIANTS, wc.selection, wc.answerer)
        ),
        orders="--both-orders" if WINRATE["both_orders"] else "--no-both-orders",
        ratings="--ratings" if WINRATE["ratings"] else "--no-ratings",
        repeats=lambda wc: judge_repeats(wc_judge(wc)),
        max_dropped=WINRATE["max_dropped_fraction"],
        templates=prompt_digest("judge"),
        code=code("judge"),
    shell:
        "stargate judge --candidate {input.candidate} --baseline {input.baseline} --tasks {input.tasks}"
        " --personas {input.personas} --seed {params.seed} --mode {params.mode} --positions {params.positions}"
        " {params.orders} {params.ratings} --repeats {params.repeats} {params.role} --max-dropped-fraction {params.max_dropped} --gpus {resources.gpu}"
        " --output {output} > {log} 2>&1"


# The judge panel (evaluation.judges) and repeated trials: every other (trial, judge) pair judges the same
# answers through the same stage (an API judge through the paid-call cache), in files that name both.
use rule judge as judge_panel with:
    output:
        paths.judge(split="{split}", judge="{judge}"),
    log:
        "logs/judge/{selection}_m{t}_{answerer}_{split}_{judge}.log",
    benchmark:
        "benchmarks/judge/{selection}_m{t}_{answerer}_{split}_{judge}.tsv"
    wildcard_constraints:
        selection="random|top1",
        answerer="mt|m0",
        split=r"test(_trial\d+)?",
        judge=r"judge(_[A-Za-z0-9_]+)?",
    conda:
        conda_env(roles=JUDGES)


# The Roleplayer audit's judge pass (evaluation.roleplayer_audit.judge): does a Roleplayer reply contradict
# its persona? A seeded sample of at most max_turns turns of each questioner's test conversations (trial 1).
rule audit_judge:
    input:
        **TEST_DATA,
        conversations=lambda wc: conversations(wc.t, "test"),
        model=lambda wc: role_model_input(AUDIT["judge"]),
    output:
        paths.audit_judge(),
    log:
        "logs/audit_judge/m{t}.log",
    benchmark:
        "benchmarks/audit_judge/m{t}.tsv"
    conda:
        conda_env(roles=[AUDIT["judge"] or "judge"])
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=4000, runtime=60),
    params:
        role=lambda wc: role_cli(AUDIT["judge"]),
        max_turns=config_provider("evaluation", "roleplayer_audit", "max_turns"),
        seed=config_provider("evaluation", "roleplayer_audit", "seed"),
        code=code("audit_judge"),
    shell:
        "stargate audit-judge --conversations {input.conversations} --tasks {input.tasks}"
        " --personas {input.personas} --max-turns {params.max_turns} --seed {params.seed} {params.role}"
        " --gpus {resources.gpu} --output {output} > {log} 2>&1"


HUMAN_LABELS = EVAL["human_labels"]


rule summarize:
    input:
        **summary_inputs(),
        tasks=TEST_DATA["tasks"],
        personas=TEST_DATA["personas"],
        specificity=SPECIFICITY_FILE if SPECIFICITY_RATING else [],
        human_labels=repo_path(HUMAN_LABELS) if HUMAN_LABELS else [],
    output:
        logprobs=f"{SUMMARY}/logprobs.csv",
        differences=f"{SUMMARY}/logprob_differences.csv",
        winrates=f"{SUMMARY}/winrates.csv",
        paper=f"{SUMMARY}/paper_comparison.csv",
        # length-controlled win rates, efficiency per conversation, the Roleplayer audit, the judge panel's
        # agreement, and the across-trial figures (docs/evaluation.md)
        length=f"{SUMMARY}/length_control.csv",
        efficiency=f"{SUMMARY}/efficiency.csv",
        audit=f"{SUMMARY}/roleplayer_audit.csv",
        judges=f"{SUMMARY}/judges.csv",
        trials=f"{SUMMARY}/trials.csv",
        json=f"{SUMMARY}/summary.json",
        logprobs_png=report(
            f"{SUMMARY}/logprobs.png",
            category="Evaluation",
            caption="../report/logprobs.rst",
        ),
        winrates_png=report(
            f"{SUMMARY}/winrates.png",
            category="Evaluation",
            caption="../report/winrates.rst",
        ),
        bias_png=report(
            f"{SUMMARY}/position_bias.png",
            category="Evaluation",
            caption="../report/position_bias.rst",
        ),
    log:
        f"logs/summarize/{config['run_name']}.log",
    localrule: True
    conda:
        ENV
    resources:
        **res(runtime=10),
    params:
        manifest=json.dumps(summary_manifest(), sort_keys=True),
        variants=",".join(v.name for v in WINRATE_VARIANTS),
        bootstrap=f"--resamples {WINRATE['bootstrap_resamples']} --bootstrap-seed {WINRATE['bootstrap_seed']}",
        labels=config_provider("evaluation", "task_labels"),
        config_sha256=config_digest(),
        specificity=lambda wc, input: (
            f"--specificity {input.specificity}" if SPECIFICITY_RATING else ""
        ),
        panel=f"--panel-rule {EVAL['panel_verdict']}",
        human=lambda wc, input: (
            f"--human-labels {input.human_labels}" if HUMAN_LABELS else ""
        ),
        gpus=f"--simulate-gpus {rule_gpus('simulate')}",
        run=config_identity,
        out_dir=lambda wc, output: os.path.dirname(output.json),
        code=code("summarize"),
    shell:
        "stargate summarize --manifest {params.manifest:q} --variants {params.variants} {params.bootstrap}"
        " --task-labels {params.labels} --tasks {input.tasks} --personas {input.personas} {params.specificity}"
        " {params.panel} {params.human} {params.gpus} --run {params.run:q}"
        " --out-dir {params.out_dir} > {log} 2>&1"


# The report's tables (paper comparison, variants, sample conversations, counts, per-stage wall time from
# benchmarks/, the config) as one HTML page; `snakemake --report` embeds it beside the plots. Every
# benchmarked job is upstream of the summary, so benchmarks/ is complete when this runs.
rule report_tables:
    input:
        **TEST_DATA,
        summary=f"{SUMMARY}/summary.json",
    output:
        report(
            f"{SUMMARY}/tables.html",
            category="Evaluation",
            caption="../report/tables.rst",
        ),
    log:
        f"logs/report_tables/{config['run_name']}.log",
    localrule: True
    conda:
        ENV
    resources:
        **res(runtime=10),
    params:
        config=json_param(config_without_run_name()),
        code=code("report_tables"),
    shell:
        "stargate report-tables --summary {input.summary} --tasks {input.tasks} --personas {input.personas}"
        " --benchmarks benchmarks --config {params.config:q} --output {output} > {log} 2>&1"

# The learning world (stargate/world, config/world.yaml): when its programs play the simulated user, the
# run also reports what the loop learned there (curve with paired bootstrap intervals, what it asks).

IN_WORLD = any(
    str((role.get("options") or {}).get("program") or "").startswith("stargate.world")
    for role in config["roles"].values()
)
WORLD_TARGETS = [f"{SUMMARY}/world.json"] if IN_WORLD else []


rule world_report:
    input:
        **data_inputs("test"),
        logprobs=[paths.logprobs(t, "test", SELECTION_CONDITION) for t in range(T + 1)],
        conversations=[conversations(t, "test") for t in range(T + 1)],
    output:
        f"{SUMMARY}/world.json",
    log:
        f"logs/world_report/{config['run_name']}.log",
    conda:
        ENV
    resources:
        **res(),
    params:
        # the summary's bootstrap (one computation per interval: world.json's m_t - m0 is the summary's)
        bootstrap=f"--resamples {EVAL['winrate']['bootstrap_resamples']} --seed {EVAL['winrate']['bootstrap_seed']}",
        run=config_identity,
        code=code("world_report"),
    shell:
        "stargate world-report --logprobs {input.logprobs} --conversations {input.conversations}"
        " --tasks {input.tasks} --personas {input.personas} {params.bootstrap} --run {params.run:q}"
        " --output {output} > {log} 2>&1"

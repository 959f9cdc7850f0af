# Conversations between m_t (Questioner) and the Roleplayer, turn by turn and shard by shard (spec §3.1).
# Every turn writes new files; nothing is rewritten. Pooling checks the counts (§3.2).


# One job per shard runs every turn: the Questioner m_t and the Roleplayer are loaded once each for all
# turns (per-turn jobs loaded each model max_turns times: 168 loads in the paper DAG; now 32, the test split
# in one shard). Each turn's conversations are still separate, immutable outputs of the job, and pooling
# checks them.
#
# Resources: when both roles load a local model the job needs the GPUs of both, held for the whole job:
# `gpu` is their sum and `questioner_gpu` the Questioner's share (it runs in its own worker process on the
# first ones, the Roleplayer on the rest; see stargate/stages/simulate.py). profiles/slurm gives the paper
# 1 (Mistral-7B) + 2 (Mixtral-8x7B) = 3 GPUs. The alternative, a job per turn and role, frees GPUs while the
# other role works but reloads each model every turn (Mixtral: minutes per load on 2 GPUs). At paper scale
# the Questioner's GPU idles during the Roleplayer's (hours-long) turns: docs/performance.md weighs both.
# simulation.gpu_sharing shared_memory / sleep runs both vLLM engines on all the job's GPUs instead (then
# questioner_gpu is unused; docs/vllm.md); only a mode other than the default `separate` is passed.


rule simulate:
    input:
        unpack(split_data),
        questioner=lambda wc: model_input(questioner_model(wc.t)),
        roleplayer=role_model_input("roleplayer"),
    output:
        asked=[paths.sim_turn("asked", k) for k in TURNS],
        done=[paths.sim_turn("done", k) for k in TURNS],
        open=[paths.sim_turn("open", k) for k in TURNS],
    log:
        "logs/simulate/m{t}_{split}_shard{shard}.log",
    benchmark:
        paths.sim_benchmark()
    conda:
        conda_env(roles=["questioner", "roleplayer"])
    threads: MODEL_THREADS
    resources:
        **res(mem_mb=8000, runtime=480, questioner_gpu=0),
    params:
        # a repeated trial's split (test_trial{j}: evaluation.trials) samples with its own seeds
        questioner=lambda wc: role_cli(
            "questioner",
            model=questioner_model(wc.t),
            prefix="questioner-",
            trial=paths.trial_of(wc.split),
        ),
        roleplayer=lambda wc: role_cli(
            "roleplayer", prefix="roleplayer-", trial=paths.trial_of(wc.split)
        ),
        prompts=f"--prompts {PROMPTS}",
        sim=lambda wc: f"--shards {len(split_shards(wc.split))} --conversations {SIM['conversations_per_pair']}"
        f" --min-turns {SIM['min_turns']} --max-turns {SIM['max_turns']} --seed {SIM['seed']}"
        + gpu_sharing_cli()
        + instructed_cli(wc.t),
        templates=prompt_digest("questioner_turn") + prompt_digest("roleplayer_turn"),
        code=code("simulate"),
    shell:
        "stargate simulate --iteration {wildcards.t} --shard {wildcards.shard} {params.sim}"
        " --tasks {input.tasks} --personas {input.personas} {params.prompts} {params.questioner} {params.roleplayer}"
        " --gpus {resources.gpu} --questioner-gpus {resources.questioner_gpu}"
        " --asked {output.asked} --done {output.done} --open {output.open} > {log} 2>&1"


rule pool:
    input:
        unpack(split_data),
        done=lambda wc: [
            paths.sim_turn("done", k, wc.t, wc.split, shard)
            for shard in split_shards(wc.split)
            for k in TURNS
        ],
        asked=lambda wc: [
            paths.sim_turn("asked", k, wc.t, wc.split, shard)
            for shard in split_shards(wc.split)
            for k in TURNS
        ],
    output:
        paths.conversations(),
    log:
        "logs/pool/m{t}_{split}.log",
    conda:
        ENV
    resources:
        **res(),
    params:
        n=config_provider("simulation", "conversations_per_pair"),
        code=code("pool"),
    shell:
        "stargate pool --finished {input.done} --asked {input.asked} --tasks {input.tasks} --personas {input.personas}"
        " --conversations {params.n} --output {output} > {log} 2>&1"

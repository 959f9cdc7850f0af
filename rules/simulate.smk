# Conversations between m_t (Questioner) and the Roleplayer, turn by turn and shard by shard (spec §3.1).
# Each turn is two jobs writing new files; nothing is rewritten. Pooling checks the counts (§3.2).


rule questioner_turn:
    input:
        unpack(questioner_turn_inputs),
    output:
        "results/m{t}/sim/{split}/shard{shard}/turn{k}.asked.jsonl",
    log:
        "logs/questioner_turn/m{t}_{split}_shard{shard}_turn{k}.log",
    benchmark:
        "benchmarks/questioner_turn/m{t}_{split}_shard{shard}_turn{k}.tsv"
    conda:
        ENV
    resources:
        **res(mem_mb=8000, runtime=240),
    params:
        role=lambda wc: role_cli("questioner", model=questioner_model(wc.t)),
        # an input (tracked as such), so this param need not be recorded
        open=lambda wc, input: f"--open {input.open}" if int(wc.k) > 1 else "",
        sim=f"--shards {len(SHARDS)} --conversations {SIM['conversations_per_pair']} --min-turns {SIM['min_turns']}"
        f" --max-turns {SIM['max_turns']} --seed {SIM['seed']}",
        templates=prompt_digest("questioner_turn"),
        code=code("questioner_turn"),
    shell:
        "stargate questioner-turn --turn {wildcards.k} --iteration {wildcards.t} --shard {wildcards.shard}"
        " {params.sim} --tasks {input.tasks} --personas {input.personas} {params.open} {params.role}"
        " --gpus {resources.gpu} --output {output} > {log} 2>&1"


rule roleplayer_turn:
    input:
        unpack(split_data),
        asked="results/m{t}/sim/{split}/shard{shard}/turn{k}.asked.jsonl",
        model=role_model_input("roleplayer"),
    output:
        done="results/m{t}/sim/{split}/shard{shard}/turn{k}.done.jsonl",
        open="results/m{t}/sim/{split}/shard{shard}/turn{k}.open.jsonl",
    log:
        "logs/roleplayer_turn/m{t}_{split}_shard{shard}_turn{k}.log",
    benchmark:
        "benchmarks/roleplayer_turn/m{t}_{split}_shard{shard}_turn{k}.tsv"
    conda:
        ENV
    resources:
        **res(mem_mb=8000, runtime=240),
    params:
        role=role_cli("roleplayer"),
        templates=prompt_digest("roleplayer_turn"),
        code=code("roleplayer_turn"),
    shell:
        "stargate roleplayer-turn --turn {wildcards.k} --asked {input.asked} --tasks {input.tasks}"
        " --personas {input.personas} {params.role} --gpus {resources.gpu}"
        " --done {output.done} --open {output.open} > {log} 2>&1"


rule pool:
    input:
        unpack(split_data),
        done=lambda wc: expand(
            "results/m{t}/sim/{split}/shard{shard}/turn{k}.done.jsonl",
            t=wc.t,
            split=wc.split,
            shard=SHARDS,
            k=TURNS,
        ),
        asked=lambda wc: expand(
            "results/m{t}/sim/{split}/shard{shard}/turn{k}.asked.jsonl",
            t=wc.t,
            split=wc.split,
            shard=SHARDS,
            k=TURNS,
        ),
    output:
        "results/m{t}/conversations/{split}.jsonl",
    log:
        "logs/pool/m{t}_{split}.log",
    conda:
        ENV
    resources:
        **res(),
    params:
        n=SIM["conversations_per_pair"],
        code=code("pool"),
    shell:
        "stargate pool --finished {input.done} --asked {input.asked} --tasks {input.tasks} --personas {input.personas}"
        " --conversations {params.n} --output {output} > {log} 2>&1"

"""Each stage through its CLI, on a tiny random Llama or the scripted backend: outputs, counts, seeds, alignment
checks, bad input."""

from __future__ import annotations

import json

import pytest
from conftest import role_json, scripted_role_json

from stargate.cli import main
from stargate.evaluation import outcomes
from stargate.records import read_jsonl, read_meta
from stargate.stages.names import regex_name
from stargate.stages.winrate_answer import select


def run(*argv) -> int:
    return main([str(a) for a in argv])


def sim_args(conversations=3, max_turns=2):
    """The questioner-turn flags the workflow takes from `simulation` in the config."""
    return ["--conversations", conversations, "--min-turns", 1, "--max-turns", max_turns, "--seed", 1]


def common(d, model):
    return ["--tasks", d["tasks"], "--personas", d["personas"], "--prompts", "fixed_v1", "--model", model]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, tiny_model_dir, data_files):
    """Two turns of simulation, 3 conversations per pair, turn counts 1-2, 2 shards, pooled."""
    out = tmp_path_factory.mktemp("sim")
    d, m = data_files, tiny_model_dir
    done, asked = [], []
    for shard in (0, 1):
        for k in (1, 2):
            a = out / f"s{shard}t{k}.asked.jsonl"
            extra = ["--open", out / f"s{shard}t{k - 1}.open.jsonl"] if k > 1 else []
            assert (
                run(
                    "questioner-turn",
                    "--turn",
                    k,
                    "--iteration",
                    0,
                    "--shard",
                    shard,
                    "--shards",
                    2,
                    *sim_args(),
                    *extra,
                    "--output",
                    a,
                    "--role",
                    role_json(),
                    *common(d, m),
                )
                == 0
            )
            assert (
                run(
                    "roleplayer-turn",
                    "--turn",
                    k,
                    "--asked",
                    a,
                    "--done",
                    out / f"s{shard}t{k}.done.jsonl",
                    "--open",
                    out / f"s{shard}t{k}.open.jsonl",
                    "--role",
                    role_json(temperature=0.0),
                    *common(d, m),
                )
                == 0
            )
            done.append(out / f"s{shard}t{k}.done.jsonl")
            asked.append(a)
    pooled = out / "pooled.jsonl"
    assert (
        run(
            "pool",
            "--finished",
            *done,
            "--asked",
            *asked,
            "--tasks",
            d["tasks"],
            "--personas",
            d["personas"],
            "--conversations",
            3,
            "--output",
            pooled,
        )
        == 0
    )
    return pooled


def simulate_argv(out, shard, d, m, max_turns=2, **extra_flags):
    files = {
        kind: [out / f"s{shard}t{k}.{kind}.jsonl" for k in range(1, max_turns + 1)]
        for kind in ("asked", "done", "open")
    }
    argv = [
        "simulate",
        "--iteration",
        0,
        "--shard",
        shard,
        "--shards",
        2,
        *sim_args(max_turns=max_turns),
        "--tasks",
        d["tasks"],
        "--personas",
        d["personas"],
        "--prompts",
        "fixed_v1",
        "--questioner-role",
        role_json(),
        "--questioner-model",
        m,
        "--roleplayer-role",
        role_json(temperature=0.0),
        "--roleplayer-model",
        m,
        *[x for k, v in extra_flags.items() for x in (f"--{k.replace('_', '-')}", v)],
    ]
    for kind, paths in files.items():
        argv += [f"--{kind}", *paths]
    return argv, files


def test_simulate_equals_turn_by_turn_and_loads_each_model_once(
    simulated, tmp_path, tiny_model_dir, data_files, monkeypatch
):
    """One job per shard writes the same turn files as the per-turn stages (same prompts, same seed keys),
    loading the Questioner and the Roleplayer once each for all turns."""
    from stargate.backends import hf

    loads = []
    original = hf.HFBackend.__init__

    def counting_init(self, *a, **k):
        loads.append(a[0])
        original(self, *a, **k)

    monkeypatch.setattr(hf.HFBackend, "__init__", counting_init)
    turnwise = simulated.parent
    for shard in (0, 1):
        loads.clear()
        argv, files = simulate_argv(tmp_path, shard, data_files, tiny_model_dir)
        assert run(*argv) == 0
        assert len(loads) == 2  # the Questioner and the Roleplayer, once each for both turns
        for kind, paths in files.items():
            for k, path in enumerate(paths, start=1):
                mine, theirs = path, turnwise / f"s{shard}t{k}.{kind}.jsonl"
                assert mine.read_text() == theirs.read_text(), (shard, kind, k)
        assert read_meta(files["done"][0])["n_generated"] == len(read_jsonl(files["asked"][0]))


def test_simulate_checks_its_outputs_and_gpu_split(tmp_path, tiny_model_dir, data_files):
    argv, _ = simulate_argv(tmp_path, 0, data_files, tiny_model_dir, max_turns=3)
    argv = argv[: argv.index("--done")] + ["--done", tmp_path / "d1", "--open", tmp_path / "o1"]
    assert run(*argv) == 2  # one file per turn for each of --asked, --done, --open

    from argparse import Namespace

    from stargate.errors import StargateError
    from stargate.stages.simulate import gpu_split

    both = Namespace(questioner_role=role_json(), roleplayer_role=role_json(), gpus=3, questioner_gpus=1)
    assert gpu_split(both) == (1, 2, True)
    assert gpu_split(Namespace(**{**vars(both), "questioner_gpus": 0})) == (3, 3, False)  # shared
    assert gpu_split(Namespace(**{**vars(both), "gpus": 0})) == (0, 0, False)
    api = scripted_role_json()
    assert gpu_split(Namespace(**{**vars(both), "roleplayer_role": api})) == (3, 0, False)
    with pytest.raises(StargateError, match="questioner-gpus 3"):
        gpu_split(Namespace(**{**vars(both), "questioner_gpus": 3}))


def test_role_process_generates_what_the_backend_does(tiny_model_dir):
    """A role in its own worker process (the simulate stage's GPU split) returns the in-process outputs."""
    from stargate.backends import Sampling, load_backend
    from stargate.stages.role_process import RoleProcess

    role = json.loads(role_json())
    prompts = [[{"role": "user", "content": "Plan a trip."}], [{"role": "user", "content": "Cook what?"}]]
    sampling = Sampling(n=2, temperature=0.9, top_p=0.9, max_tokens=6, seed=1)
    with load_backend(role, str(tiny_model_dir)) as local:
        expected = local.generate(prompts, sampling, [3, 4])
    worker = RoleProcess(role, str(tiny_model_dir), 0, "questioner_turn", "")
    try:
        assert worker.generate(prompts, sampling, [3, 4]) == expected
        assert worker.generate(prompts[:1], sampling, [3]) == expected[:1]  # the model stays loaded
        assert worker.stats.n_outputs == 6 and worker.tokenizer is not None
    finally:
        worker.close()
    assert not worker._proc.is_alive()


def test_simulation_pools_every_pair(simulated):
    convs = read_jsonl(simulated)
    assert len(convs) == 6 * 3
    for c in convs:
        assert len(c["turns"]) == 2 * c["target_turns"]
        assert [t["role"] for t in c["turns"]] == ["questioner", "roleplayer"] * c["target_turns"]
    by_pair = {}
    for c in convs:
        by_pair.setdefault(c["pair"], set()).add(c["target_turns"])
    assert all(len(v) == 1 for v in by_pair.values())  # turn count drawn per pair, not per conversation
    meta = read_meta(simulated)
    empty = sum(1 for c in convs for t in c["turns"] if not t["text"].strip())
    assert meta["n_empty"] == meta["n_empty_turns"] == empty


def _scripted_simulation(out, d, questioner: str, roleplayer: str, shards: int = 1):
    """Two turns of simulation with scripted roles (no model), 3 conversations per pair, pooled."""
    done, asked = [], []
    for shard in range(shards):
        for k in (1, 2):
            a = out / f"s{shard}t{k}.asked.jsonl"
            extra = ["--open", out / f"s{shard}t{k - 1}.open.jsonl"] if k > 1 else []
            assert (
                run(
                    "questioner-turn",
                    "--turn",
                    k,
                    "--iteration",
                    0,
                    "--shard",
                    shard,
                    "--shards",
                    shards,
                    *sim_args(),
                    *extra,
                    "--output",
                    a,
                    "--role",
                    questioner,
                    *common(d, "scripted"),
                )
                == 0
            )
            assert (
                run(
                    "roleplayer-turn",
                    "--turn",
                    k,
                    "--asked",
                    a,
                    "--done",
                    out / f"s{shard}t{k}.done.jsonl",
                    "--open",
                    out / f"s{shard}t{k}.open.jsonl",
                    "--role",
                    roleplayer,
                    *common(d, "scripted"),
                )
                == 0
            )
            done.append(out / f"s{shard}t{k}.done.jsonl")
            asked.append(a)
    pooled = out / "pooled.jsonl"
    assert (
        run(
            "pool",
            "--finished",
            *done,
            "--asked",
            *asked,
            "--tasks",
            d["tasks"],
            "--personas",
            d["personas"],
            "--conversations",
            3,
            "--output",
            pooled,
        )
        == 0
    )
    return pooled


def test_empty_generations_are_counted(tmp_path, data_files):
    """Every Roleplayer reply empty: the pooled sidecar counts exactly one empty turn per exchange."""
    pooled = _scripted_simulation(tmp_path, data_files, scripted_role_json("Why {seed}?"), scripted_role_json(""))
    convs = read_jsonl(pooled)
    meta = read_meta(pooled)
    assert meta["n_empty"] == meta["n_empty_turns"] == sum(c["target_turns"] for c in convs) > len(convs)
    done = read_meta(tmp_path / "s0t1.done.jsonl")
    assert done["backend"] == "scripted" and done["n_empty"] == done["backend_stats"]["n_empty"] == 18


def test_seeds_follow_pair_conversation_and_turn(tmp_path, data_files):
    """The seeding contract through the stages: sharding does not change any (pair, conv, turn)'s seed."""
    q, r = scripted_role_json("seed {seed}"), scripted_role_json("answer {seed}")
    one = read_jsonl(_scripted_simulation(tmp_path / "one", data_files, q, r, shards=1))
    two = read_jsonl(_scripted_simulation(tmp_path / "two", data_files, q, r, shards=2))
    assert one == two
    texts = [t["text"] for c in one for t in c["turns"]]
    assert len(set(texts)) == len(texts)  # every turn of every conversation has its own seed
    first = {(c["pair"], c["conv"]): int(c["turns"][0]["text"].split()[1]) for c in one}
    for (pair, conv), seed in first.items():  # turn 1: the pair's n samples take seed, seed + 1, ...
        assert seed == first[(pair, 0)] + conv


def test_questioner_samples_do_not_depend_on_sharding(tmp_path, tiny_model_dir, data_files):
    """A real sampler (hf, temperature 0.9): the same pair gets the same opening questions in 1 or 2 shards."""

    def questions(shards):
        got = {}
        for shard in range(shards):
            p = tmp_path / f"q{shards}-{shard}.jsonl"
            assert (
                run(
                    "questioner-turn",
                    "--turn",
                    1,
                    "--iteration",
                    0,
                    "--shard",
                    shard,
                    "--shards",
                    shards,
                    *sim_args(),
                    "--output",
                    p,
                    "--role",
                    role_json(),
                    *common(data_files, tiny_model_dir),
                )
                == 0
            )
            got.update({(c["pair"], c["conv"]): c["turns"][0]["text"] for c in read_jsonl(p)})
        return got

    alone = questions(1)
    assert questions(2) == alone and len(alone) == 18
    meta = read_meta(tmp_path / "q1-0.jsonl")
    assert meta["backend_stats"]["n_prompts"] == 6 and meta["backend_stats"]["n_outputs"] == 18
    assert 0 < meta["backend_stats"]["n_tokens_out"] <= 18 * 8


def test_backend_stats_are_written_and_logged(tmp_path, data_files, caplog):
    out = tmp_path / "gold.jsonl"
    with caplog.at_level("INFO"):
        assert (
            run(
                "oracle",
                "--output",
                out,
                "--role",
                scripted_role_json("Gold: {last}"),
                *common(data_files, "scripted"),
            )
            == 0
        )
    stats = read_meta(out)["backend_stats"]
    assert stats["n_prompts"] == stats["n_outputs"] == 6 and stats["n_empty"] == 0
    assert all(r["text"].startswith("Gold: ") for r in read_jsonl(out))
    assert any("oracle: backend stats" in m and '"n_prompts": 6' in m for m in caplog.messages)


def test_unknown_backend_option_fails_the_stage(tmp_path, data_files, capsys):
    role = json.dumps({"backend": "scripted", "options": {"reply": "x", "batch_size": 4}})
    rc = run("oracle", "--output", tmp_path / "o.jsonl", "--role", role, *common(data_files, "scripted"))
    assert rc == 2 and "unknown option(s) batch_size for the scripted backend" in capsys.readouterr().err


def test_turn_partition_is_the_same_for_every_model(tmp_path, tiny_model_dir, data_files):
    outs = []
    for it in (0, 1):
        p = tmp_path / f"m{it}.jsonl"
        run(
            "questioner-turn",
            "--turn",
            1,
            "--iteration",
            it,
            "--shard",
            0,
            "--shards",
            1,
            *sim_args(conversations=1, max_turns=3),
            "--output",
            p,
            "--role",
            role_json(),
            *common(data_files, tiny_model_dir),
        )
        outs.append({c["pair"]: c["target_turns"] for c in read_jsonl(p)})
    assert outs[0] == outs[1]


def test_score_topk_regularize_sft(simulated, tmp_path, tiny_model_dir, data_files):
    d, m = data_files, tiny_model_dir
    lp = tmp_path / "lp.jsonl"
    scorer = json.dumps({"backend": "hf", "options": {"batch_size": 4}})
    base = [
        "--gold",
        d["gold"],
        "--tasks",
        d["tasks"],
        "--personas",
        d["personas"],
        "--prompts",
        "fixed_v1",
        "--model",
        m,
        "--role",
        scorer,
    ]
    assert run("score", "--condition", "qa-experimental", "--conversations", simulated, "--output", lp, *base) == 0
    scores = read_jsonl(lp)
    assert len(scores) == 18 and all(s["logprob"] < 0 and s["n_tokens"] > 0 for s in scores)
    neg = tmp_path / "neg.jsonl"
    assert run("score", "--condition", "neg-control", "--output", neg, *base) == 0
    assert len(read_jsonl(neg)) == 6  # once per pair
    shuffled = tmp_path / "shuffled.jsonl"
    assert (
        run(
            "shuffle",
            "--conversations",
            simulated,
            "--tasks",
            d["tasks"],
            "--personas",
            d["personas"],
            "--seed",
            1,
            "--output",
            shuffled,
        )
        == 0
    )
    assert all(
        c["source_pair"] != c["pair"] and c["source_pair"].split("|")[0] == c["pair"].split("|")[0]
        for c in read_jsonl(shuffled)
    )
    top = tmp_path / "top.jsonl"
    assert run("topk", "--conversations", simulated, "--logprobs", lp, "--k", 1, "--output", top) == 0
    kept = read_jsonl(top)
    assert len(kept) == 6
    best = {}
    for s in scores:
        best[s["pair"]] = max(best.get(s["pair"], -1e9), s["logprob"])
    assert all(k["logprob"] == best[k["pair"]] for k in kept)
    reg = tmp_path / "reg.jsonl"
    assert run("regularize", "--topk", top, "--output", reg, "--role", role_json(temperature=0.0), *common(d, m)) == 0
    sft = tmp_path / "sft.jsonl"
    assert (
        run(
            "sft-data",
            "--topk",
            top,
            "--responses",
            reg,
            "--tasks",
            d["tasks"],
            "--personas",
            d["personas"],
            "--prompts",
            "fixed_v1",
            "--output",
            sft,
        )
        == 0
    )
    for ex in read_jsonl(sft):
        roles = [msg["role"] for msg in ex["messages"]]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert ex["messages"][0]["content"].startswith("My name is ")


def test_topk_ties_go_to_lower_index(tmp_path):
    convs = [{"pair": "p", "conv": i, "target_turns": 1, "turns": []} for i in range(3)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    scores = [{"pair": "p", "conv": i, "logprob": v} for i, v in enumerate([-2.0, -1.0, -1.0])]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scores))
    assert (
        run(
            "topk",
            "--conversations",
            tmp_path / "c.jsonl",
            "--logprobs",
            tmp_path / "s.jsonl",
            "--k",
            2,
            "--output",
            tmp_path / "o.jsonl",
        )
        == 0
    )
    assert [c["conv"] for c in read_jsonl(tmp_path / "o.jsonl")] == [1, 2]


def test_winrate_selection_is_model_independent():
    order = {f"t{i}|p0": i for i in range(9)}
    convs = [{"pair": k, "conv": c, "target_turns": 1 + i % 3} for k, i in order.items() for c in range(4)]
    a, _ = select(convs, order, 2, seed=1)
    b, _ = select(list(reversed(convs)), order, 2, seed=1)
    assert [(c["pair"], c["conv"]) for c in a] == [(c["pair"], c["conv"]) for c in b]
    assert len(a) == 6 and len(select(convs, order, 0, seed=1)[0]) == 9


def _judge(tmp_path, data_files, role, model, *flags, mode="generate"):
    pairs = [f"A-t000{i}|A-p0{j}" for i in range(3) for j in range(2)]
    for name in ("cand", "base"):
        recs = [{"pair": p, "conv": 0, "group": 1 + i % 2, "text": f"{name} answer {p}"} for i, p in enumerate(pairs)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "judge.jsonl"
    rc = run(
        "judge", "--candidate", tmp_path / "cand.jsonl", "--baseline", tmp_path / "base.jsonl", "--seed", 1,
        "--mode", mode, "--output", out, "--role", role, *flags, *common(data_files, model),
    )  # fmt: skip
    return rc, out


def test_judge_maps_positions_back(tmp_path, data_files, scripted_role):
    judge = scripted_role("Comparison: fine.\n\nFinal Response: A")  # a judge that always picks A
    rc, out = _judge(tmp_path, data_files, judge, "scripted", "--positions", "randomized", "--no-both-orders")
    assert rc == 0
    recs = read_jsonl(out)
    assert {r["randomized_position"] for r in recs} == {"A", "B"}  # both mappings are exercised
    for r in recs:
        assert list(r["judged"]) == [r["randomized_position"]]  # one call per comparison
        j = r["judged"][r["randomized_position"]]
        assert j["verdict"] == "a" and j["outcome"] == ("win" if r["randomized_position"] == "A" else "loss")
    meta = read_meta(out)
    assert meta["n_calls"] == 6 and meta["outcomes"]["win"] == sum(r["randomized_position"] == "A" for r in recs)


def test_judge_both_orders_ties_flips_and_counts_drops(tmp_path, data_files, scripted_role):
    rules = [
        {"match": "Response A: cand answer A-t0000", "reply": "Final Response: A"},  # prefers m_t both ways
        {"match": "Response B: cand answer A-t0000", "reply": "Final Response: B"},
        {"match": "A-t0001\\|A-p00", "reply": "no verdict here"},  # unparsable in both orders
        {"match": "Response A: cand answer A-t0001\\|A-p01", "reply": None},  # refused with m_t as A
    ]
    judge = scripted_role("Final Response: A", rules=rules)
    rc, out = _judge(tmp_path, data_files, judge, "scripted", "--positions", "randomized", "--both-orders")
    assert rc == 0
    recs = {r["pair"]: r for r in read_jsonl(out)}
    assert all(set(r["judged"]) == {"A", "B"} for r in recs.values())
    both = {k: outcomes.outcome(r, "both_orders") for k, r in recs.items()}
    assert both["A-t0000|A-p00"] == both["A-t0000|A-p01"] == "win"
    assert both["A-t0001|A-p00"] == "unparsable" and both["A-t0001|A-p01"] == "refused"
    assert both["A-t0002|A-p00"] == both["A-t0002|A-p01"] == "tie"  # always-A: flips with the order
    meta = read_meta(out)
    assert meta["n_calls"] == 12 and meta["n_unusable"] == 2 and meta["n_refused"] == 1
    assert meta["outcomes"] == {"win": 6, "loss": 3, "tie": 0, "unparsable": 2, "refused": 1}
    # beyond the cap the stage fails rather than passing a broken judge off as a result
    rc, _ = _judge(tmp_path, data_files, judge, "scripted", "--positions", "mt_a", "--both-orders",
                   "--max-dropped-fraction", "0.2")  # fmt: skip
    assert rc == 2


def seed_verdict(prompt, k, seed):
    """A scripted judge (program) whose verdict follows the request's seed: A for an even one, B for an odd."""
    return f"Final Response: {'AB'[seed % 2]}"


def test_judge_repeats_ask_again_with_other_seeds(tmp_path, data_files):
    judge = json.dumps({"backend": "scripted", "options": {"program": "test_stages:seed_verdict"},
                        "sampling": {"temperature": 0.9, "max_tokens": 8, "seed": 1}})  # fmt: skip
    rc, out = _judge(tmp_path, data_files, judge, "scripted", "--positions", "randomized", "--both-orders",
                     "--repeats", 2)  # fmt: skip
    assert rc == 0
    recs = read_jsonl(out)
    assert all(len(j["repeats"]) == 2 for r in recs for j in r["judged"].values())
    meta = read_meta(out)
    assert meta["n_calls"] == 12 and meta["n_repeat_calls"] == 24
    from stargate.evaluation.agreement import repetition_stability

    stab = repetition_stability(recs)
    assert stab["n"] == 12 and stab["agreement"] < 1  # other seeds, other verdicts: the repeats are real calls
    # a forced choice is deterministic: repeats are refused rather than reported as perfect stability
    rc, _ = _judge(tmp_path, data_files, scripted_role_json("Final Response: A"), "scripted", "--positions",
                   "randomized", "--both-orders", "--repeats", 1, mode="logprob")  # fmt: skip
    assert rc == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"task_id": "A-t0", "split": "A", "text": "x"}\n{not json\n', ":2: not valid JSON"),
        ("", "file is empty"),
        ('{"task_id": "A-t0", "split": "A"}\n', ":1: missing field(s) text"),
        ('{"task_id": "A-t0", "split": "A", "text": "  "}\n', ":1: field 'text' is empty"),
    ],
)
def test_bad_task_file_names_file_and_line(tmp_path, data_files, tiny_model_dir, capsys, content, message):
    bad = tmp_path / "tasks.jsonl"
    bad.write_text(content)
    out = tmp_path / "gold.jsonl"
    rc = run(
        "oracle",
        "--tasks",
        bad,
        "--personas",
        data_files["personas"],
        "--prompts",
        "fixed_v1",
        "--model",
        tiny_model_dir,
        "--role",
        role_json(),
        "--output",
        out,
    )
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert str(bad) in err and message in err


def test_misaligned_split_files_are_rejected(tmp_path, data_files, tiny_model_dir, capsys):
    personas = tmp_path / "p.jsonl"
    personas.write_text(json.dumps({"persona_id": "B-p00", "split": "B", "name": "X", "text": "X is."}) + "\n")
    rc = run(
        "oracle",
        "--tasks",
        data_files["tasks"],
        "--personas",
        personas,
        "--prompts",
        "fixed_v1",
        "--model",
        tiny_model_dir,
        "--role",
        role_json(),
        "--output",
        tmp_path / "o.jsonl",
    )
    assert rc == 2 and "different splits" in capsys.readouterr().err


def test_tasks_and_names_stages(tmp_path, capsys):
    src = tmp_path / "tasks.json"
    src.write_text(json.dumps({"A": ["  Do x. ", "Do y."], "B": ["z"], "test": ["w"]}))
    assert (
        run(
            "tasks",
            "--split",
            "A",
            "--spec",
            json.dumps({"source": "file", "path": str(src)}),
            "--output",
            tmp_path / "A.jsonl",
        )
        == 0
    )
    assert [t["text"] for t in read_jsonl(tmp_path / "A.jsonl")] == ["Do x.", "Do y."]
    src.write_text(json.dumps({"A": ["ok", ""], "B": [], "test": ["w"]}))
    assert (
        run(
            "tasks",
            "--split",
            "A",
            "--spec",
            json.dumps({"source": "file", "path": str(src)}),
            "--output",
            tmp_path / "A2.jsonl",
        )
        == 2
    )
    assert "A[1] is empty" in capsys.readouterr().err
    texts = tmp_path / "p.jsonl"
    texts.write_text(json.dumps({"persona_id": "A-p00", "split": "A", "text": "the person likes tea"}) + "\n")
    assert (
        run(
            "names",
            "--personas",
            texts,
            "--method",
            "regex",
            "--prompts",
            "fixed_v1",
            "--output",
            tmp_path / "n.jsonl",
        )
        == 2
    )
    assert f"{texts}:1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Maya Patel is a 34-year-old nurse.", "Maya Patel"),
        ("I'm BIANCA. Even if I am popular...", "Bianca"),
        ("1. Leo Sato, 36, a professional culinary critic", "Leo Sato"),
        ("Meet Zara, an astrophysics researcher who sails.", "Zara"),
        ("My name is June and I garden.", "June"),
    ],
)
def test_regex_names(text, name):
    assert regex_name(text) == name


def test_judge_forced_choice_always_gives_a_verdict(tmp_path, data_files, tiny_model_dir):
    rc, out = _judge(tmp_path, data_files, role_json(), tiny_model_dir, "--positions", "mt_b", "--no-both-orders",
                     "--ratings", mode="logprob")  # fmt: skip
    assert rc == 0
    recs = read_jsonl(out)
    assert len(recs) == 6 and all(list(r["judged"]) == ["B"] for r in recs)  # m_t always shown as B
    assert all(r["judged"]["B"]["verdict"] in ("a", "b") for r in recs)
    for r in recs:
        assert r["judged"]["B"]["outcome"] == ("win" if r["judged"]["B"]["verdict"] == "b" else "loss")
        # forced-choice ratings: the likeliest of "Rating: 1".."Rating: 7", for both answers
        assert {r["ratings"]["candidate"]["rating"], r["ratings"]["baseline"]["rating"]} <= set(range(1, 8))
    assert read_meta(out)["n_rating_calls"] == 12 and read_meta(out)["n_ratings_unparsable"] == 0


def test_judge_ratings_through_generation(tmp_path, data_files, scripted_role):
    rules = [
        {"match": "Assistant Response: cand", "reply": "Explanation: fits.\n\nRating: 6"},
        {"match": "Assistant Response: base answer A-t0000", "reply": "no rating"},
        {"match": "Assistant Response: base", "reply": "Rating: 3"},
    ]
    judge = scripted_role("Final Response: A", rules=rules)
    rc, out = _judge(tmp_path, data_files, judge, "scripted", "--positions", "randomized", "--no-both-orders",
                     "--ratings")  # fmt: skip
    assert rc == 0
    recs = {r["pair"]: r for r in read_jsonl(out)}
    assert recs["A-t0001|A-p00"]["ratings"]["candidate"]["rating"] == 6
    assert recs["A-t0001|A-p00"]["ratings"]["baseline"]["rating"] == 3
    assert recs["A-t0000|A-p00"]["ratings"]["baseline"]["rating"] is None  # unparsable: kept, counted
    meta = read_meta(out)
    assert meta["n_calls"] == 6 and meta["n_rating_calls"] == 12 and meta["n_ratings_unparsable"] == 2


def test_duplicate_input_records_are_refused(tmp_path, data_files, capsys):
    rec = {
        "pair": "A-t0000|A-p00",
        "conv": 0,
        "target_turns": 1,
        "turns": [{"role": "questioner", "text": "q"}, {"role": "roleplayer", "text": "a"}],
    }
    top = tmp_path / "top.jsonl"
    top.write_text((json.dumps(rec) + "\n") * 2)
    rc = run(
        "regularize",
        "--topk",
        top,
        "--output",
        tmp_path / "reg.jsonl",
        "--role",
        scripted_role_json(),
        *common(data_files, "scripted"),
    )
    assert rc == 2 and "('A-t0000|A-p00', 0)" in capsys.readouterr().err


def test_personas_and_llm_names_through_a_scripted_generator(tmp_path, scripted_role):
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps({"train": ["I'm ANNA. I bake.", "I'm BORIS. I fix radios.", "I'm CLARA. I teach."]}))
    spec = json.dumps({"source": "generate", "seeds": str(seeds), "count": {"A": 3, "B": 2, "test": 2}, "seed": 1})
    texts = tmp_path / "texts.jsonl"
    assert (
        run(
            "personas",
            "--split",
            "A",
            "--spec",
            spec,
            "--prompts",
            "fixed_v1",
            "--output",
            texts,
            "--role",
            scripted_role("Nora Quinn is a pilot (seed {seed})."),
            "--model",
            "scripted",
        )
        == 0
    )
    recs = read_jsonl(texts)
    assert [r["persona_id"] for r in recs] == ["A-p00", "A-p01", "A-p02"]
    assert len({r["text"] for r in recs}) == 3  # one seed per persona index
    named = tmp_path / "named.jsonl"
    assert (
        run(
            "names",
            "--personas",
            texts,
            "--method",
            "llm",
            "--prompts",
            "fixed_v1",
            "--output",
            named,
            "--role",
            scripted_role("Nora Quinn"),
            "--model",
            "scripted",
        )
        == 0
    )
    out = read_jsonl(named)
    assert all(r["name"] == "Nora Quinn" and r["name_source"] == "llm" for r in out)
    meta = read_meta(named)
    assert meta["name_sources"] == {"llm": 3, "regex": 0} and meta["backend_stats"]["n_prompts"] == 3


def test_audit_judge_asks_about_a_seeded_sample_of_roleplayer_turns(tmp_path, data_files):
    from stargate.evaluation import audit_judge

    assert audit_judge.parse("The reply says she eats meat.\nVerdict: **CONTRADICTS**") is True
    assert audit_judge.parse("Verdict: consistent") is False and audit_judge.parse("no idea") is None
    assert audit_judge.parse(None) is None
    pairs = [f"A-t000{i}|A-p0{j}" for i in range(3) for j in range(2)]
    convs = [
        {
            "pair": p,
            "conv": c,
            "target_turns": 1,
            "turns": [
                {"role": "questioner", "text": f"Q{c}?"},
                {"role": "roleplayer", "text": "I eat meat every day." if c == 0 else "I like quiet places."},
            ],
        }  # fmt: skip
        for p in pairs
        for c in range(2)
    ]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    judge = scripted_role_json("Verdict: CONSISTENT", rules=[{"match": "User's Reply: I eat meat", "reply":
                               "Explanation: Maya is vegetarian.\nVerdict: CONTRADICTS"}])  # fmt: skip
    out = tmp_path / "audit.jsonl"
    argv = ["audit-judge", "--conversations", tmp_path / "c.jsonl", "--max-turns", 5, "--seed", 3, "--output", out,
            "--role", judge, *common(data_files, "scripted")]  # fmt: skip
    assert run(*argv) == 0
    recs, meta = read_jsonl(out), read_meta(out)
    assert len(recs) == 5 and meta["n_roleplayer_turns"] == 12 and meta["n_judged"] == 5
    assert all(r["contradicts"] == (r["conv"] == 0) for r in recs) and all(r["turn"] == 1 for r in recs)
    assert meta["n_contradicts"] + meta["n_consistent"] == 5
    # the sample is seeded: the same seed, the same turns; another seed, others
    again = tmp_path / "again.jsonl"
    argv[argv.index(out)] = again
    assert run(*argv) == 0 and read_jsonl(again) == recs
    assert audit_judge.sample(list(range(12)), 5, 3) != audit_judge.sample(list(range(12)), 5, 4)
    assert audit_judge.sample(list(range(4)), 5, 3) == [0, 1, 2, 3]

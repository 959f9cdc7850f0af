"""The path scheme of every artifact: one function per kind of file, used by every rule and helper.

Each argument defaults to its wildcard, so `conversations()` is the rule's pattern
`results/m{t}/conversations/{split}.jsonl` and `conversations(2, "test")` a concrete file. Artifacts are
immutable and named by iteration `t` and split; nothing outside this module spells a results path.
"""

from __future__ import annotations

# ---------------------------------------------------------------- data (rules/data.smk)


def tasks(split="{split}") -> str:
    return f"results/data/tasks/{split}.jsonl"


def persona_texts(split="{split}") -> str:
    return f"results/data/personas/{split}.texts.jsonl"


def personas(split="{split}") -> str:
    return f"results/data/personas/{split}.jsonl"


def gold(split="{split}") -> str:
    """The Oracle's gold responses."""
    return f"results/data/oracle/{split}.jsonl"


# ---------------------------------------------------------------- simulation, scoring, selection


def sim_turn(kind, k="{k}", t="{t}", split="{split}", shard="{shard}") -> str:
    """A simulation shard's turn file: `asked` (questions), `done` (finished conversations), `open` (awaiting
    the Roleplayer)."""
    return f"results/m{t}/sim/{split}/shard{shard}/turn{k}.{kind}.jsonl"


def sim_benchmark(t="{t}", split="{split}", shard="{shard}") -> str:
    """The simulate job's Snakemake benchmark (wall seconds: the summary's GPU-seconds per conversation)."""
    return f"benchmarks/simulate/m{t}_{split}_shard{shard}.tsv"


def sim_dir(t="{t}", split="{split}", shard="{shard}") -> str:
    return f"results/m{t}/sim/{split}/shard{shard}"


def conversations(t="{t}", split="{split}") -> str:
    return f"results/m{t}/conversations/{split}.jsonl"


def shuffled_conversations(t="{t}", split="{split}") -> str:
    return f"results/m{t}/conversations/{split}.shuffled.jsonl"


def logprobs(t="{t}", split="{split}", condition="{condition}") -> str:
    return f"results/m{t}/logprobs/{split}.{condition}.jsonl"


def controls(split="{split}", condition="{condition}") -> str:
    return f"results/controls/{split}.{condition}.jsonl"


def topk(t="{t}", split="{split}") -> str:
    return f"results/m{t}/topk/{split}.jsonl"


def selected(t="{t}", split="{split}", method="{method}") -> str:
    return f"results/m{t}/selected/{split}.{method}.jsonl"


def regularizer(t="{t}", split="{split}") -> str:
    """m_t's own final answers after the used conversations."""
    return f"results/m{t}/regularizer/{split}.jsonl"


def training_data(t="{t}", split="{split}", method="{method}") -> str:
    return f"results/m{t}/{method}/{split}.jsonl"


def turn_credit(t="{t}") -> str:
    """m0's log p(gold) after each question of m_t's test conversations (rule turn_credit)."""
    return f"results/m{t}/credit/test.jsonl"


def model(t="{t}") -> str:
    return f"results/models/m{t}"


# ---------------------------------------------------------------- evaluation


def winrate_answers(selection="{selection}", t="{t}", answerer="{answerer}", split="test") -> str:
    """Trial 1's answers (split `test`) keep their name; trial j's (split `test_trial{j}`) name the split."""
    if split == "test":
        return f"results/eval/winrate/{selection}/m{t}.{answerer}.answers.jsonl"
    return f"results/eval/winrate/{selection}/m{t}.{answerer}.{split}.answers.jsonl"


def judge(selection="{selection}", answerer="{answerer}", t="{t}", split="test", judge="judge") -> str:
    """The verdicts of the judge role `judge` (evaluation.judges) on trial `split`'s answers; the `judge`
    role's on trial 1 keep their name, every other (trial, judge) names both."""
    if split == "test" and judge == "judge":
        return f"results/eval/winrate/{selection}/m{t}.{answerer}_vs_m0.judge.jsonl"
    return f"results/eval/winrate/{selection}/m{t}.{answerer}_vs_m0.{split}.{judge}.jsonl"


# ---------------------------------------------------------------- repeated trials (evaluation.trials)
# Trial 1 of the test simulation is the split `test`; trial j >= 2 is the split `test_trial{j}`: the same
# pairs and turn counts (the test data), other sampling seeds, files of its own beside trial 1's.
TRIAL_SPLIT = "test_trial"


def trial_split(trial: int) -> str:
    return "test" if int(trial) == 1 else f"{TRIAL_SPLIT}{int(trial)}"


def base_split(split: str) -> str:
    """The data split a (trial) split reads its tasks, personas and gold responses from."""
    return "test" if str(split).startswith(TRIAL_SPLIT) else str(split)


def trial_of(split: str) -> int:
    """1 for every split but `test_trial{j}`, whose trial is j."""
    split = str(split)
    return int(split[len(TRIAL_SPLIT) :]) if split.startswith(TRIAL_SPLIT) else 1


def audit_judge(t: int | str = "{t}") -> str:
    """The Roleplayer audit's judge pass over m_t's test conversations (trial 1)."""
    return f"results/eval/audit/m{t}.roleplayer.jsonl"


def specificity() -> str:
    return "results/eval/specificity/test.jsonl"


def summary(run_name: str) -> str:
    """Each run keeps its own summary folder (the world's and the default's never overwrite each other)."""
    return f"results/summary/{run_name}"

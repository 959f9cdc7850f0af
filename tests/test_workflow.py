"""The Snakemake workflow itself: lint, the paper's DAG, an end-to-end run, idempotence, rerun scope."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stargate.config import check_config, defaults_of, load_config
from stargate.errors import StargateError

REPO = Path(__file__).resolve().parents[1]


def snakemake(*args, cwd, timeout=900, env=None, snakefile=REPO / "Snakefile"):
    # rules call `stargate` from PATH, as in an activated environment
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def checkout_copy(dest: Path) -> Path:
    """The project's files (tracked, and new ones not ignored; tests and docs aside) copied to `dest`: a
    checkout of its own, as the working tree has it."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for name in files.splitlines():
        if name.split("/")[0] in {"tests", "docs", ".ci"} or not (REPO / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return dest


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m:
                counts[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


@pytest.mark.parametrize("name", ["config/config.yaml", "config/paper.yaml", "tests/config/tiny.yaml"])
def test_configs_validate(name):
    config = load_config(REPO / name)
    # every backend option of every role is filled in from the schema
    for role in config["roles"].values():
        assert set(role["options"]) == set(defaults_of_options(role["backend"])), role


def test_defaults_come_from_the_schema():
    raw = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    assert "shuffle_seed" not in raw["evaluation"] and "max_grad_norm" not in raw["training"]
    cfg = load_config(raw)
    assert cfg["evaluation"]["shuffle_seed"] == defaults_of("evaluation")["shuffle_seed"]
    assert cfg["training"]["max_grad_norm"] == defaults_of("training")["max_grad_norm"] == 1.0
    assert cfg["roles"]["roleplayer"]["options"] == {
        "dtype": "auto",
        "device": "auto",
        "batch_size": 16,
        "attn_implementation": None,
        "tokenizer": "prompt_set",
    }
    assert cfg["roles"]["roleplayer"]["sampling"]["top_p"] == 1.0


def test_api_defaults_sit_between_role_options_and_schema_defaults():
    raw = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    raw["api"]["max_concurrency"] = 77
    raw["roles"]["judge"]["options"]["max_concurrency"] = 5
    raw["roles"]["oracle"]["options"].pop("max_concurrency", None)
    cfg = load_config(raw)
    assert cfg["roles"]["judge"]["options"]["max_concurrency"] == 5  # the role's own value wins
    assert cfg["roles"]["oracle"]["options"]["max_concurrency"] == 77  # then api
    raw["api"].pop("max_concurrency")
    raw["roles"]["oracle"]["options"].pop("max_concurrency", None)
    cfg = load_config(raw)
    assert cfg["roles"]["oracle"]["options"]["max_concurrency"] == 8  # then the schema default


def defaults_of_options(backend):
    return yaml.safe_load((REPO / "config/schema.yaml").read_text())["$defs"][f"{backend}_options"]["properties"]


def test_config_errors_name_the_key(tmp_path):
    bad = yaml.safe_load((REPO / "config/config.yaml").read_text())
    bad["simulation"]["conversatons_per_pair"] = 3  # typo: unknown key
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    r = snakemake("-n", "--configfile", str(cfg), cwd=tmp_path)
    assert r.returncode != 0 and "conversatons_per_pair" in r.stdout + r.stderr
    bad = yaml.safe_load((REPO / "config/config.yaml").read_text())
    bad["simulation"]["min_turns"] = 3  # > max_turns
    with pytest.raises(StargateError, match=r"simulation.min_turns \(3\) is larger"):
        check_config(bad)
    bad["simulation"]["min_turns"] = "one"
    cfg.write_text(yaml.safe_dump(bad))
    r = snakemake("-n", "--configfile", str(cfg), cwd=tmp_path)
    assert r.returncode != 0 and "min_turns" in r.stdout + r.stderr


def test_lint_is_clean():
    r = snakemake("--lint", cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def paper_with_every_variant(tmp_path: Path) -> Path:
    """config/paper.yaml with its five opt-in win-rate variants uncommented and both orders judged, as a
    user opts in to the paper's whole evaluation."""
    text = (REPO / "config/paper.yaml").read_text()
    opted = re.sub(r"^      # (- \{conversation: .*\})$", r"      \1", text, flags=re.M)
    opted = opted.replace("    both_orders: false", "    both_orders: true")
    assert opted.count("- {conversation:") == 6 and "both_orders: true" in opted
    path = tmp_path / "paper-every-variant.yaml"
    path.write_text(opted)
    return path


def test_paper_dry_run_has_the_whole_dag(tmp_path):
    # the default: the headline variant (random-mt-randomized), one order, through the Batch API (issue 24)
    r = snakemake("-n", "--configfile", str(REPO / "config/paper.yaml"), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = job_counts(r.stdout)
    assert counts["judge"] == 3 and counts["winrate_answer"] == 3 + 1 and counts["train"] == 3
    assert "results/eval/winrate/random/m1.mt_vs_m0.judge.jsonl" in r.stdout and "--both-orders" not in r.stdout
    # every variant opted in
    r = snakemake("-n", "--configfile", str(paper_with_every_variant(tmp_path)), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    for t in (1, 2, 3):
        assert f"results/models/m{t}" in out
    for t in (0, 1, 2, 3):
        assert f"results/m{t}/logprobs/test.qa-experimental.jsonl" in out
        assert f"results/m{t}/conversations/test.jsonl" in out
    # every win-rate variant of the paper (spec §6.2): 4 answer sets (conversation x answerer) are judged;
    # the position protocols share their judge files (both orders judged)
    for selection in ("random", "top1"):
        for t in (1, 2, 3):
            for answerer in ("mt", "m0"):
                assert f"results/eval/winrate/{selection}/m{t}.{answerer}_vs_m0.judge.jsonl" in out
                assert f"results/eval/winrate/{selection}/m{t}.{answerer}.answers.jsonl" in out
        assert f"results/eval/winrate/{selection}/m0.mt.answers.jsonl" in out
    assert "--positions mt_a,mt_b,randomized --both-orders" in out  # top1-mt serves three protocols
    # alternating splits: m0 and m2 simulate A, m1 simulates B; m{t+1} trains on m_t's data
    assert "results/m0/sft/A.jsonl" in out and "results/m1/sft/B.jsonl" in out and "results/m2/sft/A.jsonl" in out
    counts = job_counts(out)
    assert counts["train"] == 3 and counts["judge"] == 4 * 3 and counts["winrate_answer"] == 2 * (4 + 3)
    assert counts["topk"] == 3 + 4  # training splits, and the test split for the top-1 variants
    # one job per shard holds both models for every turn: train iterations x 4 shards + evals x 1 (the test split's
    # 500 pairs in one job: simulation.shards {A: 4, B: 4, test: 1})
    assert counts["simulate"] == 3 * 4 + 4 and "questioner_turn" not in counts and "roleplayer_turn" not in counts


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    """The whole DAG on the tiny config, run once in a fresh checkout of the project (its working directory)."""
    work = checkout_copy(tmp_path_factory.mktemp("workflow"))
    cfg = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    cfg["models"]["tiny"]["source"]["path"] = str(tiny_model_dir)
    (work / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("--cores", "2", "--configfile", "tiny.yaml", cwd=work, timeout=1500)
    if r.returncode != 0:
        logs = "\n".join(p.read_text()[-1500:] for p in (work / "logs").rglob("*.log"))
        pytest.fail(f"workflow failed:\n{r.stderr[-4000:]}\n{logs[-6000:]}")
    return work


@pytest.mark.slow
def test_end_to_end_artifacts(tiny_run):
    res = tiny_run / "results"
    for split in ("A", "B", "test"):
        assert (res / f"data/personas/{split}.jsonl").exists() and (res / f"data/oracle/{split}.jsonl").exists()
    assert (res / "m0/sft/A.jsonl").exists() and (res / "m1/sft/B.jsonl").exists()
    for t in (1, 2):
        card = (res / f"models/m{t}/README.md").read_text()
        assert "Fine-tuned **from m0** (`resources/models/tiny`)" in card
        assert (res / f"models/m{t}/config.json").exists()
    summary = json.loads((res / "summary/tiny/summary.json").read_text())
    conds = {r["condition"] for r in summary["logprobs"]}
    assert {"qa-experimental", "pos-control-1", "pos-control-2", "neg-control", "shuffled"} <= conds
    assert {r["t"] for r in summary["logprobs"]} == {0, 1, 2}
    assert {w["t"] for w in summary["winrates"]} == {1, 2}
    configured = {"random-mt-randomized", "top1-mt-mt_b", "random-m0-randomized"}
    assert {w["variant"] for w in summary["winrates"] if w["configured"]} == configured
    judged = [
        json.loads(line) for line in (res / "eval/winrate/random/m1.mt_vs_m0.judge.jsonl").read_text().splitlines()
    ]
    assert len(judged) == 3 * 2  # every test pair: 3 tasks x 2 personas
    assert all(set(r["judged"]) == {"A", "B"} for r in judged)  # both orders
    # the same pairs for every model and variant
    answers = sorted((res / "eval/winrate").glob("*/m*.answers.jsonl"))
    assert len(answers) == 3 + 3 + 2  # random-mt, top1-mt: m0..m2; random-m0: m1, m2 (m0 shares m0.mt)
    pairs = {tuple(sorted(json.loads(line)["pair"] for line in p.read_text().splitlines())) for p in answers}
    assert len(pairs) == 1
    assert summary["position_bias"] and summary["paper_comparison"]
    assert (res / "summary/tiny/logprobs.png").stat().st_size > 1000


@pytest.mark.slow
def test_second_dry_run_has_nothing_to_do(tiny_run):
    r = snakemake("-n", "--configfile", "tiny.yaml", cwd=tiny_run)
    assert r.returncode == 0
    assert "Nothing to be done" in r.stdout + r.stderr


@pytest.mark.slow
def test_param_change_reruns_only_downstream(tiny_run):
    cfg = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    cfg["roles"]["answerer"]["sampling"]["max_tokens"] = 7  # regularizer + win-rate answers
    (tiny_run / "changed.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", "changed.yaml", cwd=tiny_run)
    assert r.returncode == 0, r.stderr
    counts = job_counts(r.stdout)
    assert counts.get("regularize", 0) >= 1 and counts.get("winrate_answer", 0) >= 1
    # everything upstream of the answerer is untouched
    for rule in ("prepare_model", "tasks", "personas", "names", "oracle", "score_control"):
        assert rule not in counts, (rule, counts)
    # m0's conversations and scores come before the answerer: none of them is rebuilt
    outputs = [line.split("output:", 1)[1] for line in r.stdout.splitlines() if line.strip().startswith("output:")]
    for path in ("results/m0/sim/", "results/m0/conversations/", "results/m0/logprobs/", "results/m0/topk/"):
        assert not any(path in o for o in outputs), path
    assert any("results/m0/regularizer/A.jsonl" in o for o in outputs)
    assert any("results/m1/sim/B" in o for o in outputs)  # m1 is retrained, so its conversations are redone


def _planned(r) -> set[str]:
    assert r.returncode == 0, r.stderr[-3000:]
    return set(job_counts(r.stdout)) - {"all", "total"}


def _moved(tiny_run, dest: Path) -> Path:
    """The finished checkout, results and Snakemake's records included, moved elsewhere (mtimes kept)."""
    shutil.copytree(tiny_run, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _dry_run(where: Path) -> set[str]:
    # the moved checkout's own Snakefile: Snakemake puts its folder first on sys.path, so its package is used
    return _planned(snakemake("-n", "--configfile", "tiny.yaml", cwd=where, snakefile=where / "Snakefile"))


@pytest.mark.slow
def test_moved_checkout_is_up_to_date_and_code_edit_reruns_its_stage(tiny_run, tmp_path):
    """A moved checkout with its results has nothing to do; editing a stage's module then reruns that stage
    and its downstream, nothing else (code fingerprints)."""
    moved = _moved(tiny_run, tmp_path / "moved")
    assert _dry_run(moved) == set()
    judge = moved / "stargate" / "stages" / "judge.py"
    judge.write_text(judge.read_text() + "\n# a comment changes no code: nothing reruns\n")
    assert _dry_run(moved) == set()
    judge.write_text(judge.read_text() + "\n_EDITED = 1\n")
    assert _dry_run(moved) == {"judge", "summarize", "report_tables"}
    topk = moved / "stargate" / "stages" / "topk.py"
    topk.write_text(topk.read_text() + "\n_EDITED = 1\n")
    planned = _dry_run(moved)
    assert "topk" in planned and "train" in planned and "regularize" in planned
    assert not planned & {"tasks", "personas", "names", "oracle", "prepare_model", "score_control"}, planned


@pytest.mark.slow
def test_template_edit_reruns_only_its_users(tiny_run, tmp_path):
    """A rule depends on the templates it renders only: a changed judge prompt reruns the judge."""
    moved = _moved(tiny_run, tmp_path / "moved")
    judge = moved / "stargate" / "prompts" / "paper_v1" / "judge_user.txt"  # fixed_v1 takes its texts from here
    judge.write_text(judge.read_text() + "\nAn edited judge prompt.\n")
    assert _dry_run(moved) == {"judge", "summarize", "report_tables"}


@pytest.mark.slow
def test_run_name_retrains_nothing(tiny_run):
    cfg = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    cfg["run_name"] = "renamed"
    (tiny_run / "renamed.yaml").write_text(yaml.safe_dump(cfg))
    # a run keeps its own summary (results/summary/<run_name>/): a new name makes that summary, retrains and
    # rescores nothing
    assert _planned(snakemake("-n", "--configfile", "renamed.yaml", cwd=tiny_run)) == {"summarize", "report_tables"}


def test_default_config_shape():
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    tasks = json.loads((REPO / cfg["data"]["tasks"]["path"]).read_text())
    personas = json.loads((REPO / cfg["data"]["personas"]["path"]).read_text())
    assert cfg["iterations"] >= 2 and cfg["simulation"]["conversations_per_pair"] >= 3
    assert (cfg["simulation"]["min_turns"], cfg["simulation"]["max_turns"]) == (1, 2)
    for split in ("A", "B"):
        assert len(tasks[split]) >= 4 and len(personas[split]) >= 3
    assert cfg["evaluation"]["winrate"]["pairs_per_group"] is None  # every test pair judged


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def report_seen(cwd: Path, configfile: str, tmp_path: Path, env: dict | None = None) -> dict:
    """`snakemake --report` of a finished run, opened in headless chromium: what the page showed
    (tests/fixtures/report_probe.html is put before the report's own scripts and writes what it saw into the
    page: errors, every figure's decoded size, every HTML page's headings, tables and text)."""
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "no chromium on PATH: install Debian's `chromium` (STARGATE_INSTALL_CHROMIUM=1 make setup does, as root)"
        )
    report = tmp_path / "report.html"
    # the run's own Snakefile: its rules and its package are the checkout's, whatever the repository has now
    r = snakemake(
        "--configfile", configfile, "--report", str(report), cwd=cwd, timeout=300, env=env, snakefile=cwd / "Snakefile"
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    page = report.read_text(encoding="utf-8")
    head = page.index("<head>") + len("<head>")
    probe = (REPO / "tests/fixtures/report_probe.html").read_text(encoding="utf-8")
    (tmp_path / "check.html").write_text(page[:head] + probe + page[head:], encoding="utf-8")
    run = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=20000", "--dump-dom", (tmp_path / "check.html").as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    found = re.search(r'<pre id="stargate-check">(.*?)</pre>', run.stdout, re.S)
    assert found, f"the probe did not report (chromium rc {run.returncode}): {run.stderr[-2000:]}"
    import html

    seen = json.loads(html.unescape(found.group(1)))
    assert seen["errors"] == []
    return seen


def table_under(page: dict, heading: str) -> dict:
    """The table right after the heading (h3 or text) that starts with `heading`."""
    return next(t for t in page["detail"] if t["heading"].startswith(heading))


@pytest.mark.slow
def test_report_opens_in_a_headless_browser(tiny_run, tmp_path):
    """The report of the tiny run in headless chromium: no console or page errors, every figure decodes to an
    image, the tables page has its sections, and it reads right: the judges' and answerers' counts in their
    own columns, the samples of m0 beside the last trained m_T, the log-prob figure in panels."""
    seen = report_seen(tiny_run, "tiny.yaml", tmp_path)
    figures = {Path(f["path"]).name: f for f in seen["figures"]}
    assert set(figures) == {"logprobs.png", "winrates.png", "position_bias.png"}
    assert all(f["width"] > 100 for f in figures.values()), figures
    # a panel per condition, the differences to m0 and the paper's own panel: three rows of panels
    assert figures["logprobs.png"]["height"] > 900 and figures["logprobs.png"]["width"] > 1200, figures
    assert "STaR-GATE" in seen["text"]  # the report app rendered its page
    (tables,) = seen["pages"]
    assert tables["tables"] >= 7
    for section in ("This run beside the paper", "Judge position bias", "Sample conversations", "Wall time", "Config",
                    "Length-controlled win rates", "Efficiency per conversation", "Roleplayer audit", "Judge panel",
                    "Repeated trials"):  # fmt: skip
        assert any(h.startswith(section) for h in tables["headings"]), section
    judges = table_under(tables, "Judges (verdicts)")
    answers = table_under(tables, "Answerers (win-rate answers)")
    for counted, columns in (
        (judges, ("n_refused", "n_unparsable", "n_empty_replies")),
        (answers, ("n_refused", "n_empty")),
    ):
        for column in columns:
            i = counted["headers"].index(column)
            assert all(row[i] != "–" for row in counted["rows"]), (column, counted)
    assert "m0 vs m2 on the same pairs" in tables["text"]  # m_T = m2, the last trained
    # the PNGs are also plain files of the summary
    for name in figures:
        assert (tiny_run / "results/summary/tiny" / name).stat().st_size > 1000


def test_extra_questioners_go_through_the_same_evaluation(tmp_path):
    """evaluation.questioners: a released checkpoint or local folder is simulated, scored and judged on the
    test split beside m0..mT, as iteration 1000 + i, and named in the summary's manifest."""
    cfg = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    cfg["models"]["tiny"]["source"]["path"] = str(tmp_path / "tiny")
    cfg["models"]["released"] = {"source": {"path": str(tmp_path / "released")}}
    cfg["evaluation"]["questioners"] = [{"name": "released-m1", "model": "released"}]
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", "extra.yaml", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "resources/models/released" in out
    assert (
        "results/m1000/conversations/test.jsonl" in out and "results/m1000/logprobs/test.qa-experimental.jsonl" in out
    )
    for selection in ("random", "top1"):
        assert f"results/eval/winrate/{selection}/m1000.mt_vs_m0.judge.jsonl" in out
    assert "--model resources/models/released" in out  # the checkpoint asks the questions
    assert '"questioners": {"1000": "released-m1"}' in out  # named in the summary's manifest
    assert "results/models/m1000" not in out and "results/m1000/sft" not in out  # evaluated, never trained
    cfg["evaluation"]["questioners"] = [{"name": "x", "model": "nope"}]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake("-n", "--configfile", "bad.yaml", cwd=tmp_path, timeout=300)
    assert r.returncode != 0 and "evaluation.questioners[0].model: 'nope'" in r.stdout + r.stderr

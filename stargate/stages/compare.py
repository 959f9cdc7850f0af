"""`stargate compare RUN_A RUN_B`: two summaries of the same config side by side, and which differences exceed
the noise floor.

Run by hand on two summary folders (results/summary/<run_name>/, each with its summary.json) of runs that
differ in nothing but chance (or in one change you want to judge). Every figure of the summaries' `trials`
section (log-probs, m_t - m0, win rates; k repeated trials each) is set side by side: difference = B - A and
its 95 % interval from the two runs' hierarchical intervals, B - A ± √(h_A² + h_B²)
(stargate.evaluation.trials.noise_floor); `exceeds` when that interval leaves out 0, i.e. the runs differ by
more than the pairs' and trials' noise explains."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import StargateError
from ..evaluation.trials import noise_floor


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", help="summary folder (or summary.json) of run A")
    p.add_argument("run_b", help="summary folder (or summary.json) of run B")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")


def _figures(where: str) -> tuple[dict, dict]:
    path = Path(where)
    path = path / "summary.json" if path.is_dir() else path
    if not path.is_file():
        raise StargateError(f"{where}: no summary.json (give a results/summary/<run_name> folder)")
    summary = json.loads(path.read_text(encoding="utf-8"))
    rows = (summary.get("trials") or {}).get("figures")
    if rows is None:
        raise StargateError(f"{path}: no `trials` section (a summary made before repeated trials); rerun summarize")
    figures = {f"{r['figure']} | {r.get('questioner') or 'm' + str(r['t'])}": r for r in rows}
    return summary, figures


def run(args: argparse.Namespace) -> None:
    sa, fa = _figures(args.run_a)
    sb, fb = _figures(args.run_b)
    da, db = ((s.get("run") or {}).get("config_sha256") for s in (sa, sb))
    out = noise_floor(fa, fb)
    out["runs"] = {"a": str(args.run_a), "b": str(args.run_b)}
    out["same_config"] = bool(da and db and da == db) if (da or db) else None
    out["trials"] = {"a": (sa.get("trials") or {}).get("k"), "b": (sb.get("trials") or {}).get("k")}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"A: {args.run_a} ({out['trials']['a']} trials)\nB: {args.run_b} ({out['trials']['b']} trials)")
    print(f"{'figure':<52} {'A':>10} {'B':>10} {'B - A':>10} {'± floor':>9}  verdict")
    for row in out["figures"]:
        a, b = fa[row["figure"]]["mean"], fb[row["figure"]]["mean"]
        if row["difference"] is None:
            print(f"{row['figure']:<52} {_num(a)} {_num(b)} {'–':>10} {'–':>9}  no interval")
            continue
        verdict = "exceeds the noise floor" if row["exceeds"] else "within the noise floor"
        print(f"{row['figure']:<52} {_num(a)} {_num(b)} {row['difference']:>+10.4g} {row['floor']:>9.4g}  {verdict}")
    for side in ("a", "b"):
        if out["only_in"][side]:
            print(f"only in {side.upper()}: {', '.join(out['only_in'][side])}")


def _num(v) -> str:
    return f"{v:>10.4g}" if isinstance(v, int | float) else f"{'–':>10}"

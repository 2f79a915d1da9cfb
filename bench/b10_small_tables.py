"""B10, small tables: a zero-config `rayfit run --data train.csv --test test.csv` on each development
table (../shared/data/tables/) beside AutoGluon 1.6.3 `medium_quality` on the same files, both timed
as whole processes (start, fit, score the test file, exit), alternated table by table, alone on the
machine. AutoGluon runs in a virtual environment of its own (build/autogluon-venv), installed on
first use with the CPU PyTorch of constraints/cpu.txt, never into rayfit's.

The headline: the median over tables of rayfit's wall / AutoGluon's. Both sides' test scores are
recorded beside (the accuracy issue's B12 reads them). RAYFIT_BENCH_TABLES=oj,college runs some.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from bench.harness import check, finding, median, ratio, say, skipped
from bench.paths import BENCH, REPO
from bench.ray_session import scratch
from bench.tables import DevTable, dev_tables, rayfit_run

TARGET = 1.5
VENV = REPO / "build" / "autogluon-venv"
REQUIREMENT = "autogluon.tabular[lightgbm,xgboost,catboost]==1.6.3"
TORCH = "torch"  # the version constraints/cpu.txt pins: its CPU build, as rayfit has


def autogluon_python() -> Path:
    """AutoGluon's interpreter, its environment made first where it is missing."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import autogluon.tabular, torch"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    say(f"B10: installing {REQUIREMENT} into {VENV} (first use; minutes)")
    subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints" / "cpu.txt"),
                    REQUIREMENT, TORCH], check=True)
    subprocess.run(probe, check=True)
    return python


def autogluon_run(python: Path, table: DevTable, out: Path) -> dict:
    command = [str(python), str(BENCH / "autogluon_fit.py"), str(table.train), str(table.test), table.target,
               table.metric, str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"AutoGluon on {table.name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "score": answer["score"], "best_model": answer["best_model"]}


def selected(quick: bool) -> list[DevTable]:
    tables = dev_tables()
    wanted = os.environ.get("RAYFIT_BENCH_TABLES")
    if wanted:
        names = {n.strip() for n in wanted.split(",")}
        tables = [t for t in tables if t.name in names]
    elif quick:
        tables = sorted(tables, key=lambda t: t.rows)[:1]
    return tables


# The last measurement in this process, {per_table, failed}: B12 reads the scores of the same runs.
LAST: dict = {}


def run(quick: bool) -> dict:
    tables = selected(quick)
    if not tables:
        return skipped("no development tables (../shared/data/tables/)", f"<= {TARGET}")
    try:
        python = autogluon_python()
    except (subprocess.CalledProcessError, OSError) as exc:
        return skipped(f"AutoGluon did not install here: {exc}", f"<= {TARGET}")
    per_table, failed = measure(python, tables)
    ratios = [e["wall_ratio"] for e in per_table.values()]
    small = [e["rayfit"]["wall_s"] for e in per_table.values() if 300 <= e["rows"] <= 1500]
    figures = {
        "median_wall_ratio": median(ratios), "tables": len(per_table),
        "rayfit_median_wall_s": median([e["rayfit"]["wall_s"] for e in per_table.values()]),
        "autogluon_median_wall_s": median([e["autogluon"]["wall_s"] for e in per_table.values()]),
        "rayfit_median_wall_s_300_1500_rows": median(small),
        "at_or_above_autogluon": sum(e["score_gap"] >= 0 for e in per_table.values()),
        "mean_score_gap": sum(e["score_gap"] for e in per_table.values()) / len(per_table),
        "per_table": per_table, "failed": failed,
    }
    return finding(figures, [check("median over tables of rayfit wall / AutoGluon wall", figures["median_wall_ratio"],
                                   "<=", TARGET)])


def measure(python: Path, tables: list[DevTable]) -> tuple[dict, dict]:
    """Each table's two runs, alternated: ({table: entry}, {table: why it failed})."""
    per_table, failed = {}, {}
    with scratch("b10") as work:
        for i, table in enumerate(tables):
            sides = [("autogluon", lambda: autogluon_run(python, table, work / f"ag-{table.name}")),
                     ("rayfit", lambda: rayfit_run(table, work / f"rayfit-{table.name}"))]
            entry = {"rows": table.rows, "metric": table.metric}
            try:
                for side, go in (sides if i % 2 == 0 else sides[::-1]):  # alternated, table by table
                    say(f"B10 {table.name}: {side}")
                    entry[side] = go()
                    say(f"B10 {table.name}: {side} {entry[side]['wall_s']:.1f}s, "
                        f"{table.metric} {entry[side]['score']:.4f}")
            except RuntimeError as exc:  # recorded with the table; the others are still measured
                say(f"B10 {table.name}: failed: {str(exc).splitlines()[0]}")
                failed[table.name] = str(exc)[-2000:]
                continue
            entry["wall_ratio"] = ratio(entry["rayfit"]["wall_s"], entry["autogluon"]["wall_s"])
            entry["score_gap"] = entry["rayfit"]["score"] - entry["autogluon"]["score"]
            per_table[table.name] = entry
    if not per_table:
        raise RuntimeError(f"every table failed: {failed}")
    LAST.update(per_table=per_table, failed=failed)
    return per_table, failed

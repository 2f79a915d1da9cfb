"""The development tables (../shared/data/tables/): each one's training and test files, target and
metric, and a zero-config `rayfit run` on them timed as a whole process (B10, B11)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.paths import REPO

TABLES_DIR = REPO.parent / "shared" / "data" / "tables"


@dataclass(frozen=True)
class DevTable:
    name: str
    target: str
    metric: str  # roc_auc (binary), accuracy (multi-class) or r2
    rows: int

    @property
    def train(self) -> Path:
        return TABLES_DIR / self.name / "train.csv"

    @property
    def test(self) -> Path:
        return TABLES_DIR / self.name / "test.csv"


def dev_tables() -> list[DevTable]:
    """Every table of tables.tsv, in its order; none where the folder is absent."""
    index = TABLES_DIR / "tables.tsv"
    if not index.exists():
        return []
    with index.open() as handle:
        return [DevTable(row["name"], row["target"], row["metric"], int(row["rows"]))
                for row in csv.DictReader(handle, delimiter="\t")]


def rayfit_command() -> list[str]:
    script = Path(sys.executable).parent / "rayfit"  # the console script of this environment
    return [str(script)] if script.exists() else [sys.executable, "-m", "rayfit.cli"]


def rayfit_run(table: DevTable, out: Path, *extra: str) -> dict:
    """`rayfit run --data train.csv --test test.csv --target T [extra]`, timed from process start to
    exit: its wall, the chosen model's score on the test file, and the run's own timings."""
    command = [*rayfit_command(), "run", "--data", str(table.train), "--test", str(table.test),
               "--target", table.target, "--out", str(out), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"rayfit on {table.name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    best = metrics["best_model"]
    return {"wall_s": wall, "score": metrics["models"][best]["test"][table.metric], "best_model": best,
            "timings_s": metrics.get("timings_s", {}), "time_limit": metrics.get("time_limit")}

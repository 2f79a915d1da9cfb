"""B12, accuracy at the top: on each development table (../shared/data/tables/), the test score of
zero-config rayfit's chosen model (`rayfit run --data train.csv --test test.csv`) beside AutoGluon
1.6.3 `medium_quality`'s on the same files, each judged by the table's metric (ROC AUC, accuracy
or R2: higher is better for all three). The runs are B10's: where B10 ran in the same `make bench`,
its scores are read; otherwise B10's runs are made here.

Per table the two scores and their difference; a table counts as at or above AutoGluon within
TIE (0.002); the mean difference over tables with a bootstrap 95% interval over tables. Targets:
at or above on at least 14 of the 17 tables, and a mean difference of at least 0.
"""
from __future__ import annotations

import subprocess

import numpy as np

from bench import b10_small_tables
from bench.harness import check, finding, say, skipped

TIE = 0.002  # a difference this small either way is a tie
AT_OR_ABOVE = 14  # of the 17 development tables
RESAMPLES = 4000


def run(quick: bool) -> dict:
    per_table = b10_small_tables.LAST.get("per_table")
    if per_table is None:
        tables = b10_small_tables.selected(quick)
        if not tables:
            return skipped("no development tables (../shared/data/tables/)", f">= {AT_OR_ABOVE}")
        try:
            python = b10_small_tables.autogluon_python()
        except (subprocess.CalledProcessError, OSError) as exc:
            return skipped(f"AutoGluon did not install here: {exc}", f">= {AT_OR_ABOVE}")
        say("B12: B10 did not run in this process; running its tables")
        per_table, _ = b10_small_tables.measure(python, tables)
    return finding(*judge(per_table))


def judge(per_table: dict) -> tuple[dict, list]:
    """(figures, checks) from B10's entries."""
    rows = {name: {"metric": e["metric"], "rayfit": e["rayfit"]["score"], "autogluon": e["autogluon"]["score"],
                   "difference": e["rayfit"]["score"] - e["autogluon"]["score"],
                   "rayfit_model": e["rayfit"]["best_model"]} for name, e in per_table.items()}
    differences = np.array([r["difference"] for r in rows.values()])
    wins = int((differences > TIE).sum())
    losses = int((differences < -TIE).sum())
    ties = len(differences) - wins - losses
    low, high = bootstrap_mean(differences)
    figures = {"tables": len(rows), "wins": wins, "ties": ties, "losses": losses,
               "at_or_above_autogluon": wins + ties, "mean_difference": float(differences.mean()),
               "mean_difference_interval": [low, high], "per_table": rows}
    checks = [check(f"tables at or above AutoGluon (within {TIE}), of {len(rows)}", figures["at_or_above_autogluon"],
                    ">=", AT_OR_ABOVE),
              # the target is on the mean itself; its interval is a figure beside it
              check("mean test-score difference, rayfit - AutoGluon", figures["mean_difference"], ">=", 0.0)]
    return figures, checks


def bootstrap_mean(values: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The percentile interval of the mean over tables resampled with replacement."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(RESAMPLES, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))

"""B12's verdict from B10's entries (bench/b12_accuracy.py): wins, ties within 0.002 and losses,
the mean difference and its bootstrap interval. No runs: the entries are made up here."""
from __future__ import annotations

import pytest

from bench.b12_accuracy import judge


def _entry(ours: float, theirs: float) -> dict:
    return {"metric": "roc_auc", "rayfit": {"score": ours, "best_model": "ensemble"}, "autogluon": {"score": theirs}}


def test_b12_counts_a_difference_within_the_tie_as_at_or_above():
    per_table = {"a": _entry(0.90, 0.88), "b": _entry(0.8785, 0.88), "c": _entry(0.85, 0.88), "d": _entry(0.881, 0.88)}
    figures, checks = judge(per_table)
    assert (figures["wins"], figures["ties"], figures["losses"]) == (1, 2, 1)
    assert figures["at_or_above_autogluon"] == 3
    assert figures["mean_difference"] == pytest.approx((0.02 - 0.0015 - 0.03 + 0.001) / 4)
    low, high = figures["mean_difference_interval"]
    assert low <= figures["mean_difference"] <= high and low >= -0.03 and high <= 0.02
    assert [c["met"] for c in checks] == [False, False]  # 3 of 4 is under 14, and the mean is below 0
    figures, checks = judge({f"t{i}": _entry(0.9, 0.89) for i in range(14)})
    assert [c["met"] for c in checks] == [True, True]

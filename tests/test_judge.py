"""`rayfit evaluate`'s pieces without a run: the training profile and the population stability
index (rayfit/data/profile.py), and what it refuses. The end-to-end check on a real run is in the
fast tier's run (tests/test_smoke.py)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rayfit.data.profile import SHIFTED, profile_columns, psi, shift
from rayfit.errors import UserError
from rayfit.judge import evaluate_rows


def _frame(rows: int, seed: int, offset: float = 0.0, cities=("paris", "lyon", "nice")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=rows) + offset, "city": rng.choice(list(cities), rows)})
    frame.loc[rng.choice(rows, rows // 10, replace=False), "x"] = np.nan
    return frame


def test_psi_is_the_textbook_sum():
    expected, actual = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert psi(expected, actual) == pytest.approx(-0.25 * math.log(0.5) + 0.25 * math.log(1.5))
    assert psi(expected, expected) == 0.0


def test_rows_like_the_training_ones_are_stable_and_a_moved_column_is_flagged():
    profiles = profile_columns(_frame(2000, 0))
    assert profiles["x"]["kind"] == "numeric" and len(profiles["x"]["edges"]) == 9
    assert profiles["x"]["shares"][-1] == pytest.approx(0.1)  # the missing values' own bin
    assert profiles["city"]["kind"] == "category" and set(profiles["city"]["shares"]) == {"paris", "lyon", "nice"}
    same = shift(profiles, _frame(2000, 1))
    assert all(entry["psi"] < 0.05 and not entry["shifted"] for entry in same.values()), same
    moved = shift(profiles, _frame(2000, 1, offset=1.5, cities=("paris", "rome")))
    assert list(moved) == ["x", "city"] or list(moved) == ["city", "x"]
    assert moved["x"]["shifted"] and moved["x"]["psi"] > SHIFTED
    assert moved["city"]["shifted"]  # a category the training rows never had, and two gone
    everything_missing = shift(profiles, pd.DataFrame({"x": [np.nan] * 50, "city": ["paris"] * 50}))
    assert everything_missing["x"]["shifted"]


def test_a_clustering_run_and_rows_that_are_not_a_table_are_refused():
    clustering = SimpleNamespace(task="clustering", path="runs/groups")
    with pytest.raises(UserError, match="runs/groups: a clustering run has no target to score against"):
        evaluate_rows(clustering, pd.DataFrame({"a": [1]}))
    with pytest.raises(UserError, match="evaluate takes a table of labelled rows"):
        evaluate_rows(SimpleNamespace(task="classification", path="r"), np.zeros((3, 2)))


def test_an_undefined_score_is_written_as_null_and_the_directory_appears_whole(tmp_path):
    """R2 on one row is NaN: metrics.json has no NaN, so it is written as null (and shown as –)."""
    import json

    from rayfit.judge import _write

    document = {"run": "runs/prices", "data": "one.csv", "rows": 1, "task": "regression", "primary_metric": "rmse",
                "best_model": "linear", "drift": None, "drift_note": "not measured",
                "models": {"linear": {"scores": {"rmse": np.float64(1.5), "mae": 1.5, "r2": float("nan")},
                                      "run_test": {"rmse": 1.2}}}}
    _write(document, tmp_path / "judged")
    written = json.loads((tmp_path / "judged" / "metrics.json").read_text())
    assert written["models"]["linear"]["scores"] == {"rmse": 1.5, "mae": 1.5, "r2": None}
    assert "| linear | 1.5 | 1.5 | – | 1.2 |" in (tmp_path / "judged" / "report.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["judged"]  # nothing partial left beside it

"""The metric registry (rayfit/metrics.py): every metric scored is registered, its direction
is the one every reader uses, and config validation and Tune's mode read it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rayfit.config import validate
from rayfit.errors import UserError
from rayfit import metrics
from rayfit.evaluation.clustering import cluster_scores
from rayfit.evaluation.report import _leaderboard
from rayfit.evaluation.context import ReportContext


def test_every_metric_a_model_is_scored_on_is_registered_for_its_task():
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2, 1, 0, 2, 1, 0])
    proba = rng.dirichlet(np.ones(3), size=len(y))
    assert tuple(metrics.classification_scores(y, proba, 3)) == metrics.names("classification")
    assert tuple(metrics.regression_scores(rng.normal(size=8), rng.normal(size=8))) == metrics.names("regression")
    X = np.vstack([rng.normal(0, 0.1, (10, 2)), rng.normal(5, 0.1, (10, 2))])
    assigned = np.repeat([0, 1], 10)
    scored = cluster_scores(X, assigned, assigned, np.arange(20))
    assert set(metrics.names("clustering")) <= set(scored)
    assert scored["adjusted_rand"] == 1.0 and scored["silhouette"] > 0.9


def test_rank_follows_each_metrics_direction_with_missing_scores_last_and_ties_in_order():
    scores = {"a": 0.5, "b": None, "c": 0.9, "d": float("nan"), "e": 0.9}
    assert metrics.rank(scores, "accuracy") == ["c", "e", "a", "b", "d"]
    assert metrics.rank(scores, "rmse") == ["a", "c", "e", "b", "d"]
    assert metrics.rank(scores, "davies_bouldin")[0] == "a" and metrics.rank(scores, "silhouette")[0] == "c"
    assert metrics.is_better("log_loss", 0.2, 0.3) and not metrics.is_better("r2", 0.2, 0.3)
    assert metrics.is_better("rmse", 5.0, None) and not metrics.is_better("rmse", math.nan, 5.0)
    assert metrics.oriented("mae", 2.0) == -2.0 and metrics.oriented("f1", 0.5) == 0.5


def test_the_report_and_the_leaderboard_rank_as_selection_chose(tmp_path):
    """One ranking: by the score each model was chosen on (cv mean, else validation), lower first
    for rmse. The report's leaderboard and rayfit.load's agree with it."""
    from rayfit.run_view import Run

    models = {"cv_good": {"framework": "sklearn", "selected_on": "cv", "cv": {"rmse": {"mean": 1.0, "std": 0.1}},
                          "val": {"rmse": 9.0}, "test": {"rmse": 1.1}},
              "val_better": {"framework": "torch", "selected_on": "val", "val": {"rmse": 0.5}, "test": {"rmse": 2.0}},
              "unscored": {"framework": "sklearn", "selected_on": "val", "val": {"rmse": None}, "test": {"rmse": 3.0}}}
    expected = ["val_better", "cv_good", "unscored"]
    assert metrics.rank_models(models, "rmse") == expected
    ctx = ReportContext(name="r", task="regression", primary_metric="rmse", best_model="val_better",
                        dataset={}, models=models)
    assert [row[0] for row in _leaderboard(ctx).rows] == expected
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "regression", "primary_metric": "rmse",
                                                       "best_model": "val_better", "models": models}))
    assert list(Run(tmp_path).leaderboard().index) == expected


def test_config_validation_and_tunes_mode_read_the_registry():
    assert validate({"tune": {"metric": "val_accuracy", "mode": "max"}}).tune.mode == "max"
    with pytest.raises(UserError, match="mode for val_accuracy is max"):
        validate({"tune": {"metric": "val_accuracy", "mode": "min"}})
    with pytest.raises(UserError, match="not reported by trials; choose from val_loss, val_accuracy"):
        validate({"tune": {"metric": "accuracy"}})
    assert validate({"clustering": {"metric": "davies_bouldin"}}).clustering.metric == "davies_bouldin"
    with pytest.raises(UserError, match="'adjusted_rand' is not a clustering metric; choose from silhouette"):
        validate({"clustering": {"metric": "adjusted_rand"}})  # needs a label column: never chooses
    assert {metrics.get(name).mode for name in ("val_loss", "rmse", "davies_bouldin")} == {"min"}


def test_a_network_out_of_reach_on_validation_leaves_the_folds_and_is_never_chosen():
    from types import SimpleNamespace

    from rayfit.stages.network_folds import out_of_reach

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)

    class Fixed:  # class probabilities right on a share of the rows
        task = "classification"

        def __init__(self, right: float):
            hit = rng.permutation(300) < round(right * 300)  # exactly this share right
            self.proba = np.where(hit, y, 1 - y).astype(float)

        def outputs(self, X):
            return np.stack([1 - self.proba, self.proba], axis=1)

    trained = {name: SimpleNamespace(model=Fixed(right)) for name, right in
               [("random_forest", 0.95), ("torch_mlp", 0.6), ("keras_mlp", 0.94)]}
    state = SimpleNamespace(prepared=SimpleNamespace(X_val=np.zeros((300, 1)), y_val=y, task="classification",
                                                     n_classes=2),
                            metric="accuracy", trained=trained,
                            exp=SimpleNamespace(seed=0, evaluation=SimpleNamespace(cv_reach=0.1)))
    behind = out_of_reach(state, ["torch_mlp", "keras_mlp"])
    assert list(behind) == ["torch_mlp"] and "out of reach of random_forest" in behind["torch_mlp"]
    models = {"random_forest": {"val": {"accuracy": 0.85}, "cv": {"accuracy": {"mean": 0.8}}, "selected_on": "cv"},
              "torch_mlp": {"val": {"accuracy": 0.84}, "selected_on": "val", "out_of_reach": True}}
    assert metrics.rank_models(models, "accuracy") == ["random_forest", "torch_mlp"]  # its 0.84 beats no 0.8
    assert metrics.selection_score(models["torch_mlp"], "accuracy") == ("val", None, None)


def _entry(val: dict, cv: dict | None = None) -> dict:
    entry = {"test": val, "val": val, "selected_on": "cv" if cv else "val"}
    if cv:
        entry["cv"] = {m: {"mean": v, "std": 0.01, "folds": 5} for m, v in cv.items()}
    return entry


def test_the_dummy_is_a_yardstick_never_the_exported_model():
    """A rare class no model predicts often enough to beat always answering the majority on
    accuracy: the best other model is exported, and the note names a metric it beat the dummy on."""
    models = {
        "dummy": _entry({}, cv={"accuracy": 0.967, "roc_auc": 0.5, "balanced_accuracy": 0.5, "log_loss": 0.14}),
        "linear": _entry({}, cv={"accuracy": 0.961, "roc_auc": 0.95, "balanced_accuracy": 0.6, "log_loss": 0.09}),
        "random_forest": _entry({}, cv={"accuracy": 0.963, "roc_auc": 0.90, "balanced_accuracy": 0.62}),
    }
    best, led = metrics.choose_model(models, "accuracy", "classification")
    assert best == "random_forest"  # the best of the others on the choosing metric
    assert led == {"metric": "accuracy", "yardstick": 0.967, "exported": 0.963,
                   "beaten_on": {"metric": "roc_auc", "yardstick": 0.5, "exported": 0.90}}
    note = metrics.yardstick_note(led, best, "classification")
    assert note.startswith("No model beat always answering the majority class (dummy) on accuracy (0.9630 against "
                           "the dummy's 0.9670); random_forest, the best of the others, is exported instead")
    assert note.endswith("it does beat the dummy on roc_auc: 0.9000 against 0.5000.")
    # where a model beats the dummy it is chosen as ever, and nothing is noted
    models["linear"]["cv"]["accuracy"]["mean"] = 0.97
    assert metrics.choose_model(models, "accuracy", "classification") == ("linear", None)
    # a run of the dummy alone exports it (there is nothing else)
    assert metrics.choose_model({"dummy": models["dummy"]}, "accuracy", "classification") == ("dummy", None)
    # regression: the mean's yardstick, beaten on r2
    led = metrics.choose_model({"dummy": _entry({"rmse": 1.0, "r2": -0.01}), "lasso": _entry({"rmse": 1.2, "r2": 0.0})},
                               "rmse", "regression")[1]
    assert "always answering the training mean" in metrics.yardstick_note(led, "lasso", "regression")
    assert led["beaten_on"]["metric"] == "r2"

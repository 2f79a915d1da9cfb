"""Model selection (evaluation/selection.py, stages/cross_validate.py): K-fold cross-validation on
small tables, the refit on train + validation that the test split scores, networks compared on
validation, and the test split used for no choice."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rayfit.cli import main
from rayfit.errors import UserError
from rayfit.evaluation.selection import AUTO_MAX_ROWS, folds_for, split_folds, summarize
from rayfit.metrics import rank_models


def test_auto_cross_validates_small_tables_only():
    y = np.arange(200) % 2
    assert folds_for("auto", 200, "classification", y) == 5
    assert folds_for("auto", AUTO_MAX_ROWS + 1, "classification", np.arange(AUTO_MAX_ROWS + 1) % 2) is None
    assert folds_for("none", 200, "classification", y) is None
    assert folds_for(3, 200, "regression", y.astype(float)) == 3


def test_folds_that_cannot_be_made_are_said():
    rare = np.array([0] * 100 + [1] * 3)  # a class with fewer rows than folds
    assert folds_for("auto", len(rare), "classification", rare) is None  # auto falls back to validation
    with pytest.raises(UserError, match="evaluation.cv: 5 folds need 5 rows of every class; class 1 has 3"):
        folds_for(5, len(rare), "classification", rare)
    with pytest.raises(UserError, match="evaluation.cv: 10 folds need at least 20 rows"):
        folds_for(10, 12, "regression", np.zeros(12))


def test_folds_are_stratified_and_cover_every_row_once():
    y = np.array([0] * 80 + [1] * 20)
    folds = split_folds(y, "classification", 5, seed=0)
    held_out = np.concatenate([held for _, held in folds])
    assert sorted(held_out) == list(range(100))
    assert all((y[held] == 1).sum() == 4 for _, held in folds)  # 20% of each fold, as in the table


def test_summarize_gives_mean_std_and_folds():
    summary = summarize([{"accuracy": 0.8, "roc_auc": None}, {"accuracy": 0.9, "roc_auc": 0.7}])
    assert summary["accuracy"] == {"mean": pytest.approx(0.85), "std": pytest.approx(0.05), "folds": 2}
    assert summary["roc_auc"] == {"mean": 0.7, "std": 0.0, "folds": 1}


def test_selection_uses_cross_validation_where_computed_and_never_test():
    scores = {
        # led on its lucky validation rows, behind on cross-validation
        "forest": {"val": {"accuracy": 0.95}, "cv": {"accuracy": {"mean": 0.80}}, "selected_on": "cv",
                   "test": {"accuracy": 0.99}},
        "linear": {"val": {"accuracy": 0.85}, "cv": {"accuracy": {"mean": 0.86}}, "selected_on": "cv",
                   "test": {"accuracy": 0.70}},
        "torch_mlp": {"val": {"accuracy": 0.84}, "selected_on": "val", "test": {"accuracy": 1.0}},
    }
    assert rank_models(scores, "accuracy")[0] == "linear"
    scores["torch_mlp"]["val"]["accuracy"] = 0.9
    assert rank_models(scores, "accuracy")[0] == "torch_mlp"


def _table(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 5)).round(4), columns=[f"x{i}" for i in range(5)])
    frame["y"] = np.where(frame["x0"] - frame["x1"] + 0.5 * rng.normal(size=rows) > 0, "up", "down")
    return frame


def test_a_small_table_is_chosen_on_cross_validation_and_tested_as_refitted(ray_session, tmp_path, capsys):
    import joblib
    from sklearn.base import clone

    _table().to_csv(tmp_path / "rows.csv", index=False)
    run = tmp_path / "run"
    args = ["run", "--data", str(tmp_path / "rows.csv"), "--target", "y", "--out", str(run),
            "--set", "baselines.models=[dummy,linear,decision_tree]", "--set", "torch.enabled=false",
            "--set", "keras.enabled=false", "--set", "tune.enabled=false", "--set", "report.importance_repeats=1"]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selection"] == {"method": "cv", "folds": 5, "rows": 255, "refit": "train+val"}
    assert {"dummy", "linear", "decision_tree"} <= set(metrics["models"]) <= {"dummy", "linear", "decision_tree",
                                                                             "ensemble"}
    for name in metrics["models"]:
        entry = metrics["models"][name]
        assert entry["selected_on"] == "cv" and entry["cv"]["accuracy"]["folds"] == 5
        assert 0 <= entry["cv"]["accuracy"]["std"] < 0.2
    # The ensemble, where greedy selection took two members (the dummy never enters), is scored on
    # the same folds out of fold, its weights summing to one.
    cv = {name: entry["cv"]["accuracy"]["mean"] for name, entry in metrics["models"].items()}
    if "ensemble" in metrics["models"]:
        ensemble = metrics["models"]["ensemble"]
        assert sorted(ensemble["members"]) == ["decision_tree", "linear"]
        assert sum(ensemble["weights"].values()) == pytest.approx(1.0, abs=1e-3)
    assert metrics["best_model"] == max(cv, key=cv.get)
    assert cv["linear"] > cv["decision_tree"] > cv["dummy"]

    # What each model learned to rely on: the label is x0 - x1 plus noise.
    linear, tree = metrics["models"]["linear"]["native_importance"], metrics["models"]["decision_tree"]["native_importance"]
    assert linear["kind"] == "coefficient magnitude" and tree["kind"] == "impurity decrease"
    assert {f for f, _ in linear["top"][:2]} == {f for f, _ in tree["top"][:2]} == {"x0", "x1"}
    assert abs(sum(share for _, share in linear["top"]) - 1) < 1e-3  # every feature's share, all 5 kept
    assert "native_importance" not in metrics["models"]["dummy"]

    # A cross-validated model is tested as refitted on train + validation: the same estimator fitted
    # on those rows.
    from rayfit.data import prepare
    from rayfit.config import load_experiment

    prepared = prepare(load_experiment(str(run / "config.yaml")).data, 0)
    exported = joblib.load(run / "models" / "cv:linear" / "estimator.joblib")
    X = np.concatenate([prepared.X_train, prepared.X_val])
    y = np.concatenate([prepared.y_train, prepared.y_val])
    again = clone(exported).fit(X, y)
    assert np.allclose(exported.coef_, again.coef_)
    assert not np.allclose(exported.coef_, clone(exported).fit(prepared.X_train, prepared.y_train).coef_)

    # The exported model (whichever won) predicts raw rows, the ensemble's members loaded with it.
    rows = _table(20, seed=1).drop(columns=["y"])
    rows.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(run), "--data", str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "p.csv")["prediction"]) <= {"up", "down"}

    report = (run / "report.md").read_text()
    assert "chosen on 5-fold cross-validation accuracy" in report
    assert "Cross-validation: 5 folds of train + validation (255 rows)" in report
    assert "| linear | coefficient magnitude | x" in report  # the native importance table


def test_a_soft_vote_averages_its_members_and_saves_with_them(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from rayfit.evaluation.fitted import SklearnModel, SoftVote, load_model
    from rayfit.evaluation.manifest import write_manifest

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] > 0).astype(int)
    members = [SklearnModel("linear", "classification", LogisticRegression().fit(X, y), 2),
               SklearnModel("tree", "classification", DecisionTreeClassifier(max_depth=2).fit(X, y), 2)]
    vote = SoftVote("ensemble", "classification", members)
    assert np.allclose(vote.predict_proba(X), (members[0].predict_proba(X) + members[1].predict_proba(X)) / 2)
    write_manifest(vote.save(tmp_path / "vote"))
    assert np.allclose(load_model(tmp_path / "vote").predict_proba(X), vote.predict_proba(X))
    weighted = SoftVote("ensemble", "classification", members, [0.75, 0.25])
    assert np.allclose(weighted.predict_proba(X), 0.75 * members[0].predict_proba(X) + 0.25 * members[1].predict_proba(X))
    write_manifest(weighted.save(tmp_path / "weighted"))
    assert np.allclose(load_model(tmp_path / "weighted").predict_proba(X), weighted.predict_proba(X))


def test_bagged_a_cross_validated_model_is_its_fold_models_averaged(ray_session, tmp_path):
    """evaluation.refit: bagged: no refit; the five fold models, each fitted on its fold's rows,
    are the tested and exported model, their outputs averaged."""
    from sklearn.base import clone

    from rayfit.data import prepare
    from rayfit.config import load_experiment
    from rayfit.evaluation.fitted import load_model
    from rayfit.evaluation.selection import split_folds

    _table().to_csv(tmp_path / "rows.csv", index=False)
    run = tmp_path / "run"
    args = ["run", "--data", str(tmp_path / "rows.csv"), "--target", "y", "--out", str(run),
            "--set", "baselines.models=[dummy,linear]", "--set", "torch.enabled=false", "--set", "keras.enabled=false",
            "--set", "tune.enabled=false", "--set", "report.importance_repeats=1", "--set", "evaluation.refit=bagged"]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selection"]["refit"] == "bagged" and metrics["models"]["linear"]["refit"] == "bagged"
    assert metrics["models"]["linear"]["native_importance"]["kind"] == "coefficient magnitude"  # the folds' mean
    bagged = load_model(run / "models" / "cv:linear")
    assert len(bagged.members) == 5
    exp = load_experiment(str(run / "config.yaml"))
    prepared = prepare(exp.data, exp.seed)
    X = np.concatenate([prepared.X_train, prepared.X_val])
    y = np.concatenate([prepared.y_train, prepared.y_val])
    fold_models = [clone(bagged.members[0].estimator).fit(X[rows], y[rows]) for rows, _ in split_folds(y, "classification", 5, exp.seed)]
    expected = np.mean([m.predict_proba(prepared.X_test) for m in fold_models], axis=0)
    assert np.allclose(bagged.predict_proba(prepared.X_test), expected, atol=1e-6)
    assert "each classic-ML model's test score is that of its fold models averaged (bagged)" in \
        (run / "report.md").read_text()


def test_the_ensemble_is_scored_from_its_members_out_of_fold_outputs():
    from rayfit.evaluation.selection import ensemble_folds

    y = np.array([1.0, 2.0, 3.0, 4.0])
    folds = [(np.array([2, 3]), np.array([0, 1])), (np.array([0, 1]), np.array([2, 3]))]
    outputs = {"a": [np.array([0.0, 2.0]), np.array([3.0, 4.0])], "b": [np.array([2.0, 2.0]), np.array([3.0, 6.0])]}
    scores = ensemble_folds("regression", y, folds, outputs, {"a": 0.5, "b": 0.5}, None)
    assert scores[0]["mae"] == pytest.approx(0.0) and scores[1]["mae"] == pytest.approx(0.5)
    scores = ensemble_folds("regression", y, folds, outputs, {"a": 0.75, "b": 0.25}, None)
    assert scores[1]["mae"] == pytest.approx((0.0 + 0.5) / 2)  # 4.5 against 4: the weights count


def test_greedy_ensemble_selection_weighs_what_helps_and_leaves_out_what_does_not():
    """Two models wrong in opposite directions average to the truth; a third adds only noise, and the
    dummy never enters. Weights are how often each was added at the best round."""
    from rayfit.evaluation.selection import out_of_fold, select_ensemble

    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    folds = [(np.arange(100, 200), np.arange(100)), (np.arange(100), np.arange(100, 200))]
    split = lambda whole: [whole[:100], whole[100:]]  # noqa: E731
    outputs = {"dummy": split(np.zeros(200)), "high": split(y + 1.0), "low": split(y - 1.0),
               "noisy": split(y + rng.normal(scale=3.0, size=200))}
    assert np.array_equal(out_of_fold(folds, outputs["high"]), y + 1.0)
    weights = select_ensemble("regression", y, folds, outputs, "rmse", None, max_members=8)
    assert weights == {"high": 0.5, "low": 0.5}
    # at most one member: the best single model
    assert select_ensemble("regression", y, folds, outputs, "rmse", None, max_members=1) == {"high": 1.0}


def test_greedy_ensemble_selection_breaks_accuracy_ties_by_log_loss():
    """Accuracy moves in steps: two models right on the same rows are told apart by their
    probabilities, and the better-calibrated one is taken first."""
    from rayfit.evaluation.selection import select_ensemble

    y = np.array([0, 1] * 50)
    folds = [(np.arange(50, 100), np.arange(50)), (np.arange(50), np.arange(50, 100))]
    sure, unsure = np.eye(2)[y] * 0.9 + 0.05, np.eye(2)[y] * 0.2 + 0.4
    outputs = {"unsure": [unsure[:50], unsure[50:]], "sure": [sure[:50], sure[50:]]}
    assert select_ensemble("classification", y, folds, outputs, "accuracy", 2, max_members=8) == {"sure": 1.0}


def test_networks_join_the_folds_within_the_budget_and_say_why_not():
    from types import SimpleNamespace

    from rayfit.config import validate
    from rayfit.stages.network_folds import plan_network_folds
    from rayfit.stages.state import Trained

    trained = {"linear": Trained(None, "sklearn", 0.1), "torch_mlp": Trained(None, "torch", 10.0),
               "keras_mlp": Trained(None, "keras", 100.0),
               "torch_tuned": Trained(None, "torch", 50.0)}
    searches = {"torch_tuned": {"model": "torch", "best_params": {"lr": 0.01},
                                "trials": [{"params": {"lr": 0.1}, "time_total_s": 9.0},
                                           {"params": {"lr": 0.01}, "time_total_s": 4.0}]}}

    def plan(**evaluation):
        evaluation.setdefault("cv_reach", 0)  # the budget alone (out_of_reach has its own test, test_metrics.py)
        state = SimpleNamespace(exp=validate({"evaluation": evaluation, "tune": {"max_t": 7}}), trained=trained,
                                cv={}, cv_folds=5, searches=searches)
        plans, left_out = plan_network_folds(state)
        return {p.name: p for p in plans}, left_out

    plans, left_out = plan(cv_budget_s=100)
    # 5 x 10 s and 5 x 4 s (the tuned one's own best trial) fit in 100 s; 5 x 100 s does not
    assert set(plans) == {"torch_mlp", "torch_tuned"} and set(left_out) == {"keras_mlp"}
    assert "5 folds x 100 s of training would take about 500 s, more than evaluation.cv_budget_s=100" in left_out["keras_mlp"]
    assert plans["torch_tuned"].params == {"lr": 0.01} and plans["torch_tuned"].settings.epochs == 7
    assert plans["torch_mlp"].params == {} and plans["torch_mlp"].network == "mlp"
    assert set(plan(cv_networks=True, cv_budget_s=1)[0]) == {"torch_mlp", "keras_mlp", "torch_tuned"}
    plans, left_out = plan(cv_networks=False)
    assert not plans and set(left_out) == {"torch_mlp", "keras_mlp", "torch_tuned"}
    # the folds planned in two turns (the models stage's networks, then the tuned ones): each turn
    # weighs only the networks it is given
    state = SimpleNamespace(exp=validate({"evaluation": {"cv_reach": 0, "cv_budget_s": 100}, "tune": {"max_t": 7}}),
                            trained=trained, cv={}, cv_folds=5, searches=searches)
    plans, left_out = plan_network_folds(state, None, ["torch_tuned"])
    assert [p.name for p in plans] == ["torch_tuned"] and left_out == {}


# Networks and a tuned network chosen on the same folds as the classic models: tests/test_smoke.py.


def test_a_threshold_is_tuned_where_it_beats_the_most_probable_class():
    """F1 on a rare class: out-of-fold probabilities that rank the rare rows first but seldom reach
    0.5 are decided better at a lower threshold; a model already decided well keeps none."""
    from rayfit.evaluation.selection import tune_threshold
    from rayfit.metrics import decide, score_one

    y = np.array([1] * 20 + [0] * 180)
    p1 = np.concatenate([np.linspace(0.25, 0.45, 20), np.linspace(0.0, 0.3, 180)])
    proba = np.column_stack([1 - p1, p1])
    threshold = tune_threshold(y, proba, "f1")
    assert threshold is not None and 0.25 <= threshold < 0.5
    assert score_one("f1", "classification", y, proba, 2, threshold) > score_one("f1", "classification", y, proba, 2)
    assert np.array_equal(decide(proba, threshold), (p1 >= threshold).astype(int))
    sure = np.column_stack([1 - (y * 0.9 + 0.05), y * 0.9 + 0.05])
    assert tune_threshold(y, sure, "f1") is None  # perfect already at 0.5


def test_a_threshold_goes_with_the_model_into_its_directory_and_its_decisions(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from rayfit.evaluation.fitted import SklearnModel, load_model
    from rayfit.evaluation.manifest import write_manifest
    from rayfit.evaluation.predictions import prediction_frame
    from rayfit.metrics import score_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + rng.normal(size=200) > 1.0).astype(int)
    model = SklearnModel("linear", "classification", LogisticRegression().fit(X, y), 2)
    plain = model.predict(X)
    model.threshold = 0.2
    assert (model.predict(X) >= plain).all() and (model.predict(X) > plain).any()
    assert score_model(model, X, y, 2)["recall"] > score_model(SklearnModel("l", "classification", model.estimator, 2),
                                                                X, y, 2)["recall"]
    write_manifest(model.save(tmp_path / "m"))
    loaded = load_model(tmp_path / "m")
    assert loaded.threshold == 0.2 and np.array_equal(loaded.predict(X), model.predict(X))
    frame = prediction_frame(loaded, X, ["no", "yes"])
    assert list(frame["prediction"] == "yes") == list(model.predict(X) == 1)


def test_chosen_by_f1_each_model_keeps_the_threshold_its_folds_chose(ray_session, tmp_path):
    """A rare class and a weak signal, chosen by F1: thresholds are tuned on out-of-fold predictions,
    stated in metrics.json, the report and model/README.md, and applied by predict and in
    test_predictions.csv."""
    from rayfit.evaluation.fitted import load_model

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 3)).round(4), columns=["x0", "x1", "x2"])
    frame["y"] = np.where(frame["x0"] + 1.5 * rng.normal(size=400) > 2.2, "rare", "common")
    frame.to_csv(tmp_path / "rows.csv", index=False)
    run = tmp_path / "run"
    args = ["run", "--data", str(tmp_path / "rows.csv"), "--target", "y", "--out", str(run),
            "--set", "baselines.models=[dummy,linear]", "--set", "torch.enabled=false", "--set", "keras.enabled=false",
            "--set", "tune.enabled=false", "--set", "report.importance_repeats=1", "--set", "report.primary_metric=f1",
            "--set", "data.class_weight=none"]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    linear = metrics["models"]["linear"]
    assert 0.05 <= linear["threshold"] < 0.5  # the rare class is decided below an even chance
    assert metrics["best_model"] == "linear"  # the dummy is a yardstick; one other model makes no ensemble
    model = load_model(run / "model")
    assert model.threshold == linear["threshold"]
    predictions = pd.read_csv(run / "test_predictions.csv")
    assert list(predictions["prediction"] == "rare") == list(predictions["proba_rare"] >= model.threshold)
    assert (predictions["prediction"] == "rare").sum() > (predictions["proba_rare"] >= 0.5).sum()
    assert f"at least {model.threshold:.2f}" in (run / "model" / "README.md").read_text()
    assert "a decision threshold tuned on out-of-fold predictions for f1" in (run / "report.md").read_text()

"""The fast tier's one end-to-end run (`make test-fast`): a file named as people name them, every
stage of the default pipeline at its smallest (baselines, a PyTorch network and a search, all
chosen on the same cross-validation folds), the run directory's contract, and `rayfit predict` on
raw rows."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import messy_frame
from rayfit.cli import main
from rayfit.cluster.storage import Location
from rayfit.trainers.checkpoints import latest_checkpoint

pytestmark = pytest.mark.smoke

TINY = {"baselines.models": "[dummy,linear,random_forest]", "torch.epochs": 4, "torch.launch": "task",
        "keras.enabled": "false", "tune.num_samples": 2, "tune.max_t": 3, "tune.grace_period": 3,
        "report.importance_repeats": 1,
        "evaluation.cv_reach": 0}  # both networks join the folds, however far behind (network_folds.out_of_reach)


def test_a_browser_named_file_runs_end_to_end_and_predicts(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "customers 2024 (1).csv"  # as a browser saves a second download
    messy_frame(rows=200).to_csv(source, index=False)
    argv = ["run", "--data", str(source), "--target", "label"]
    for key, value in TINY.items():
        argv += ["--set", f"{key}={value}"]
    # The driver never loads a network (nor imports its framework for one): the workers of its
    # framework score, save and export it (trainers/remote_network.py).
    from rayfit.trainers.torch_model import TorchModel

    # The evaluation stage's tasks (permutation importance, the networks' answers) wait under the
    # watchdog like the training stages' do.
    from rayfit import pipeline
    from rayfit.cluster.watchdog import NoWatchdog, current_watchdog

    watched, evaluate = [], pipeline.evaluate

    def evaluate_watched(state):
        watched.append(not isinstance(current_watchdog(), NoWatchdog))
        return evaluate(state)

    with monkeypatch.context() as driver:
        for loader in ("from_checkpoint", "load"):
            driver.setattr(TorchModel, loader, _not_in_the_driver)
        driver.setattr(pipeline, "evaluate", evaluate_watched)
        assert main(argv) == 0, capsys.readouterr().err
    assert watched == [True]

    (run,) = (tmp_path / "runs").iterdir()  # named after the file, made plain
    assert run.name.startswith("customers-2024-1-"), run.name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["models"]) >= {"dummy", "linear", "random_forest", "ensemble", "torch_mlp", "torch_tuned"}
    # Without a time limit the search ran beside the models stage (one trial at a time: its expected
    # training is less than another trial actor costs to start; on the private Ray's BESIDE unit,
    # not a CPU), and the models' folds began before the tuned network's.
    placement = metrics["tuning"]["placement"]
    assert placement.startswith("1 trial at once, each 0 CPU, 1 rayfit_beside (beside the models stage: "), placement
    log = (run / "run.log").read_text()
    assert log.index("torch_tuned: tune torch") < log.index("baselines: done"), log
    assert log.index("cv: 5-fold cross-validation of 3 models and 1 networks (torch_mlp)") < \
        log.index("cv: and of 1 networks (torch_tuned)") < log.index("cv: done"), log
    assert metrics["selection"]["method"] == "cv" and "on_validation" not in metrics["selection"]
    # Every model chosen on the same folds: the classic models refitted on train + validation, the
    # network and the tuned network (with its chosen hyperparameters) trained on each fold's rows.
    for name in ("torch_mlp", "torch_tuned"):
        entry = metrics["models"][name]
        assert entry["selected_on"] == "cv" and entry["refit"] is False and entry["cv"]["accuracy"]["folds"] == 5
    assert metrics["models"]["linear"]["refit"] is True
    for name, most in (("torch_mlp", 4), ("torch_tuned", 3)):
        for fold in range(5):
            with latest_checkpoint(Location.of(run / "checkpoints" / "cv" / name / f"fold_{fold}")).as_directory() as d:
                epochs = [row["epoch"] for row in json.loads((Path(d) / "history.json").read_text())]
            assert 1 <= len(epochs) <= most, (name, fold, epochs)
    cv = {name: entry["cv"]["accuracy"]["mean"] for name, entry in metrics["models"].items()}
    assert metrics["best_model"] == max(cv, key=cv.get)
    assert "torch_mlp, torch_tuned trained on each fold's rows" in (run / "report.md").read_text()
    best = metrics["models"][metrics["best_model"]]["test"]["accuracy"]
    assert best >= metrics["models"]["dummy"]["test"]["accuracy"] + 0.15, metrics["models"]
    for name in ("report.html", "report.md", "config.yaml", "best_params.yaml", "run.log", "model/model.json",
                 "models/torch_mlp/model.pt", "models/torch_tuned/model.pt"):
        assert (run / name).is_file(), name

    rows = messy_frame(rows=30, seed=1).drop(columns="label")
    rows.to_csv(tmp_path / "new rows.csv", index=False)
    assert main(["predict", str(run), "--data", str(tmp_path / "new rows.csv"), "--out", "p.csv"]) == 0
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert len(predictions) == 30 and set(predictions["prediction"]) <= {"yes", "no"}

    _evaluate_scores_new_labelled_rows(run, tmp_path, capsys)


def _not_in_the_driver(*args, **kwargs):
    raise AssertionError("a network was loaded in the driver")


def _evaluate_scores_new_labelled_rows(run: Path, tmp_path: Path, capsys) -> None:
    """`rayfit evaluate`: the run's model on new labelled rows, scores equal to sklearn's on the
    same predictions, a shifted column flagged, and each bad input one error line."""
    import numpy as np
    from sklearn.metrics import accuracy_score, roc_auc_score

    import rayfit

    rows = messy_frame(rows=300, seed=3)
    rows.to_csv(tmp_path / "labelled.csv", index=False)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(tmp_path / "labelled.csv"), "--out", "judged"]) == 0
    out = tmp_path / "judged"
    document = json.loads((out / "metrics.json").read_text())
    best = document["best_model"]
    loaded = rayfit.load(run)
    proba = loaded.best_model.predict_proba(rows.drop(columns="label"))
    truth = rows["label"].to_numpy()
    scores = document["models"][best]["scores"]
    assert scores["accuracy"] == pytest.approx(accuracy_score(truth, proba.columns.to_numpy()[proba.to_numpy().argmax(1)]))
    assert scores["roc_auc"] == pytest.approx(roc_auc_score(truth == "yes", proba["yes"]))
    assert document["rows"] == 300 and document["models"][best]["run_test"] == \
        json.loads((run / "metrics.json").read_text())["models"][best]["test"]
    assert not any(entry["shifted"] for entry in document["drift"].values()), document["drift"]
    assert "shifted" not in (out / "report.md").read_text().split("## Scores")[0].replace("No input column shifted", "")
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    # the same rows with one column moved: flagged, in the report's first paragraph too
    moved = rows.assign(num2=rows["num2"] + 3.0)
    judged = loaded.evaluate(moved)
    assert judged["drift"]["num2"]["shifted"] and judged["drift"]["num2"]["psi"] > 1.0
    assert not judged["drift"]["num1"]["shifted"]
    assert judged["models"][best]["scores"]["accuracy"] < scores["accuracy"]  # the model pays for it
    # bad inputs: one error line each, exit 2, nothing written
    rows.drop(columns="city").to_csv(tmp_path / "no city.csv", index=False)
    rows.assign(label=np.where(rows["label"] == "yes", "yes", "maybe")).to_csv(tmp_path / "new class.csv", index=False)
    for argv, fragment in (
            (["--data", str(tmp_path / "labelled.csv"), "--out", "judged"], "--out judged: already exists"),
            (["--data", str(tmp_path / "no city.csv"), "--out", "x1"], "lacks 1 column of the training data: city"),
            (["--data", str(tmp_path / "new class.csv"), "--out", "x2"],
             "holds class(es) the training data lacks: maybe"),
            (["--data", str(tmp_path / "none.csv"), "--out", "x3"], "none.csv: no such file")):
        capsys.readouterr()
        assert main(["evaluate", str(run), *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], (argv, err)
    assert not any((tmp_path / name).exists() for name in ("x1", "x2", "x3"))


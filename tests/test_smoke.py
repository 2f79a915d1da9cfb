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

    with monkeypatch.context() as driver:
        for loader in ("from_checkpoint", "load"):
            driver.setattr(TorchModel, loader, _not_in_the_driver)
        assert main(argv) == 0, capsys.readouterr().err

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


def _not_in_the_driver(*args, **kwargs):
    raise AssertionError("a network was loaded in the driver")

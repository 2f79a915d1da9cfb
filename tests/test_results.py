"""metrics.json's schema (evaluation/results.py) and the evaluate stage's choice, without Ray."""
from __future__ import annotations

import json
import math

import numpy as np
import yaml

from rayfit.evaluation.results import metrics_document, model_entry, write_results
from rayfit.metrics import rank_models


def test_metrics_json_keeps_its_keys(tmp_path):
    network = model_entry("torch", {"accuracy": np.float64(0.9)}, {"accuracy": 0.8}, 1.23456, "task",
                          {"workers": 1, "device": "cpu", "gpus_per_worker": 0, "amp": False,
                           "launch_reason": "one worker", "launch_figures": {}})
    baseline = model_entry("sklearn", {"accuracy": math.nan}, {"accuracy": 0.7}, 0.5)
    search = {"model": "torch", "searcher": "random", "scheduler": "asha", "trials": [{}, {}],
              "epochs_trained": 5, "epochs_budget": 8, "wall_time_s": 3.21, "best_params": {"lr": 0.01},
              "trial_mode": "inline", "trial_mode_reason": "why", "plan": "2 trials at once"}
    document = metrics_document("classification", "accuracy", "torch_mlp", {"rows": 10, "features": 2, "classes": 2},
                                {"torch_mlp": network, "dummy": baseline}, resources={"nodes": 1},
                                searches={"torch_tuned": search})
    write_results(tmp_path, document, search["best_params"])

    written = json.loads((tmp_path / "metrics.json").read_text())
    assert list(written) == ["task", "primary_metric", "best_model", "dataset", "models", "resources", "tuning",
                             "searches", "selection", "environment"]
    assert list(written["models"]["torch_mlp"]) == ["framework", "test", "val", "train_time_s", "launch", "workers",
                                                    "device", "gpus_per_worker", "amp", "launch_reason", "selected_on"]
    assert written["selection"] == {"method": "validation"}
    environment = written["environment"]
    assert {"rayfit", "ray", "torch", "tensorflow", "scikit-learn"} <= set(environment["packages"])
    import ray

    assert environment["packages"]["ray"] == ray.__version__ and environment["python"].count(".") == 2
    assert written["models"]["torch_mlp"]["train_time_s"] == 1.235
    assert written["models"]["dummy"]["test"]["accuracy"] is None  # NaN -> null
    assert "launch" not in written["models"]["dummy"]
    assert written["tuning"] == written["searches"]["torch_tuned"]
    assert written["tuning"]["trials"] == 2 and written["tuning"]["placement"] == "2 trials at once"
    assert yaml.safe_load((tmp_path / "best_params.yaml").read_text()) == {"lr": 0.01}


def test_the_best_model_is_chosen_on_validation_not_test():
    scores = {"a": {"val": {"accuracy": 0.8, "rmse": 2.0}, "test": {"accuracy": 0.99}, "selected_on": "val"},
              "b": {"val": {"accuracy": 0.9, "rmse": 1.0}, "test": {"accuracy": 0.5}, "selected_on": "val"},
              "c": {"val": {"accuracy": 0.9, "rmse": 3.0}, "test": {"accuracy": 0.6}, "selected_on": "val"}}
    assert rank_models(scores, "accuracy") == ["b", "c", "a"]  # highest first; the first of a tie before
    assert rank_models(scores, "rmse") == ["b", "a", "c"]  # lowest first

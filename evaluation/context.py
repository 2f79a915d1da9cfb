"""Everything the evaluation report needs, as plain Python and numpy.

The pipeline fills one `ReportContext` after training; the plots and the report read only from it,
so they can be tested (and re-rendered) without Ray, PyTorch or Keras.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class ReportContext:
    name: str  # the experiment name; titles the report
    task: str  # "classification" or "regression"
    primary_metric: str  # the metric the best model was chosen on (on validation)
    best_model: str  # a key of `models`
    # rows, features, classes (classification), source, target, split_sizes {"train", "val", "test"}
    dataset: dict[str, Any]
    # name -> {"framework", "test": {metric: value}, "val": {metric: value}, "train_time_s"}
    models: dict[str, dict[str, Any]]
    prep_log: list[str] = field(default_factory=list)  # one cleaning action per line
    # neural model name -> per-epoch {"epoch", "train_loss", "val_loss", ...}
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    best_params: dict[str, Any] = field(default_factory=dict)  # hyperparameters the search chose
    # {"trial_id", "params", "val_loss", "val_accuracy"?, "epochs", "status", "history": [{"epoch", "val_loss"}]}
    trials: list[dict[str, Any]] = field(default_factory=list)
    # every search by tuned model name, the first being the one above: {"model", "searcher",
    # "scheduler", "trial_mode", "trial_mode_reason", "best_params", "trials", "epochs_trained",
    # "epochs_budget", "wall_time_s"}
    searches: dict[str, dict[str, Any]] = field(default_factory=dict)
    y_test: np.ndarray = field(default_factory=lambda: np.empty(0))  # true test targets
    y_pred: np.ndarray = field(default_factory=lambda: np.empty(0))  # best model; class indices if classification
    proba: Optional[np.ndarray] = None  # n x k class probabilities of the best model (classification)
    class_names: Optional[list[str]] = None  # class index -> label
    # (feature, mean drop in the primary metric, std), most important first
    importance: list[tuple[str, float, float]] = field(default_factory=list)
    config_yaml: str = ""  # the resolved configuration
    stage_times: dict[str, float] = field(default_factory=dict)  # pipeline stage -> seconds
    # time_limit: metrics.json's entry (rayfit/budget.py Budget.entry): limit, each stage's budget
    # and actual seconds, what was skipped and why
    time_limit: dict[str, Any] = field(default_factory=dict)
    created: str = ""  # when the run finished
    artifacts: dict[str, str] = field(default_factory=dict)  # label -> path relative to the run dir
    # how the best model was chosen: {"method": "cv", "folds", "rows", "refit"} or {"method": "validation"}
    selection: dict[str, Any] = field(default_factory=dict)
    # the cluster the run was planned on: {"cluster", "nodes", "cpus", "gpus", "notes"?}
    resources: dict[str, Any] = field(default_factory=dict)
    # what it ran on: {python, packages: {name: version}, platform, git_commit?} (results.environment_entry)
    environment: dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None

    @property
    def is_classification(self) -> bool:
        return self.task == "classification"

    @property
    def metric_names(self) -> list[str]:
        """Every metric any model reported on test, in first-seen order."""
        names: dict[str, None] = {}
        for model in self.models.values():
            names.update(dict.fromkeys(model.get("test", {})))
        return list(names)

    def metric(self, model: str, split: str, metric: Optional[str] = None) -> Optional[float]:
        """One model's value of `metric` (default: the primary metric) on "val" or "test"."""
        return self.models[model].get(split, {}).get(metric or self.primary_metric)

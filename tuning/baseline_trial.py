"""A Tune trial over a scikit-learn baseline, trained in steps so schedulers can stop it early.

Tree ensembles grow by a number of trees per step (scikit-learn's warm start, or a booster
continued), each step reported like an epoch of a network; a linear model is one step.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import joblib
import numpy as np
import ray
from ray import tune
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error

from rayfit.evaluation.baselines import BASELINES, grow, make_estimator
from rayfit.evaluation.manifest import write_manifest

ESTIMATOR_FILE = "estimator.joblib"


def _val_metrics(estimator, X, y, task) -> dict:
    if task == "classification":
        proba = estimator.predict_proba(X)
        labels = list(estimator.classes_)
        return {"val_loss": float(log_loss(y, np.clip(proba, 1e-15, 1), labels=labels)),
                "val_accuracy": float(accuracy_score(y, np.asarray(labels)[proba.argmax(axis=1)]))}
    return {"val_loss": float(mean_squared_error(y, estimator.predict(X)))}


def baseline_trial(config: dict, base: dict) -> None:
    from rayfit.cluster.ledger import note

    note(base.get("ledger"))
    data = base["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    X, y = data["X_train"].reshape(len(data["X_train"]), -1), data["y_train"]
    X_val, y_val = data["X_val"].reshape(len(data["X_val"]), -1), data["y_val"]
    name, task = base["baseline"], base["task"]
    weights = base.get("class_weights")
    class_weight = dict(enumerate(weights)) if weights else None
    threads = base.get("threads", 1)
    estimator = make_estimator(name, task, class_weight, base["seed"], threads, params=config,
                               layout=data.get("categories"))
    steps = base["max_t"] if BASELINES[name].growth else 1
    best = float("inf")
    for step in range(1, steps + 1):
        grow(name, estimator, step, X, y, class_weight, threads)
        # planned: its own number of steps (a model that does not grow has one), not the search's max_t
        metrics = {"epoch": step, **_val_metrics(estimator, X_val, y_val, task), "planned": steps}
        if metrics["val_loss"] < best:
            best = metrics["val_loss"]
            with tempfile.TemporaryDirectory() as tmp:
                joblib.dump(estimator, Path(tmp) / ESTIMATOR_FILE)
                write_manifest(Path(tmp))  # checked before the best trial's estimator is unpickled
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        else:
            tune.report(metrics)

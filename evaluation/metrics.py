"""Test and validation metrics, all from sklearn.metrics, computed the same way for every model."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from sklearn import metrics as skm

# Metrics where a smaller value is better; every other metric is maximised.
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "val_loss"}


def default_primary_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "rmse"


def is_better(metric: str, candidate: float, incumbent: float) -> bool:
    if candidate is None or (isinstance(candidate, float) and math.isnan(candidate)):
        return False
    if incumbent is None or (isinstance(incumbent, float) and math.isnan(incumbent)):
        return True
    return candidate < incumbent if metric in LOWER_IS_BETTER else candidate > incumbent


def classification_scores(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, Optional[float]]:
    y_pred = proba.argmax(axis=1)
    average = "binary" if n_classes == 2 else "macro"
    labels = list(range(n_classes))
    scores = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, average=average, labels=labels if average == "macro" else None, zero_division=0),
        "recall": skm.recall_score(y_true, y_pred, average=average, labels=labels if average == "macro" else None, zero_division=0),
        "f1": skm.f1_score(y_true, y_pred, average=average, labels=labels if average == "macro" else None, zero_division=0),
    }
    clipped = np.clip(proba, 1e-15, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    present = np.unique(y_true)
    try:
        if n_classes == 2:
            scores["roc_auc"] = skm.roc_auc_score(y_true, clipped[:, 1]) if len(present) == 2 else None
        elif len(present) == n_classes:
            scores["roc_auc"] = skm.roc_auc_score(y_true, clipped, multi_class="ovr", labels=labels)
        else:
            scores["roc_auc"] = None  # one-vs-rest AUC is undefined when a class is missing from the split
    except ValueError:
        scores["roc_auc"] = None
    scores["log_loss"] = skm.log_loss(y_true, clipped, labels=labels)
    return {k: (None if v is None else float(v)) for k, v in scores.items()}


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(math.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


def score_model(model, X: np.ndarray, y: np.ndarray, n_classes: Optional[int]) -> dict[str, Optional[float]]:
    if model.task == "classification":
        return classification_scores(y, model.predict_proba(X), n_classes)
    return regression_scores(y, model.predict(X))


def score_outputs(task: str, y: np.ndarray, outputs: np.ndarray, n_classes: Optional[int]) -> dict[str, Optional[float]]:
    """The same scores from a model's raw outputs: class probabilities, or predicted values."""
    if task == "classification":
        return classification_scores(y, np.asarray(outputs, dtype=np.float64), n_classes)
    return regression_scores(y, np.asarray(outputs, dtype=np.float64).reshape(-1))

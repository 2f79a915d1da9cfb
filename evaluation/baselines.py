"""scikit-learn baselines: a registry of builders, each trained as its own Ray task."""
from __future__ import annotations

import time
from typing import Callable, Optional

from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

# name -> builder(task, class_weight, seed) -> an unfitted estimator.
# class_weight is None or {class_index: weight}; every estimator that takes one gets it.
BASELINES: dict[str, Callable[[str, Optional[dict], int], object]] = {
    "dummy": lambda task, cw, seed: (
        DummyClassifier(strategy="most_frequent") if task == "classification" else DummyRegressor(strategy="mean")
    ),
    "linear": lambda task, cw, seed: (
        LogisticRegression(max_iter=2000, class_weight=cw) if task == "classification" else Ridge(alpha=1.0)
    ),
    "random_forest": lambda task, cw, seed: (
        RandomForestClassifier(n_estimators=200, class_weight=cw, random_state=seed, n_jobs=1)
        if task == "classification"
        else RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)
    ),
    "gradient_boosting": lambda task, cw, seed: (
        HistGradientBoostingClassifier(class_weight=cw, random_state=seed)
        if task == "classification"
        else HistGradientBoostingRegressor(random_state=seed)
    ),
}


def fit_baseline(name: str, task: str, class_weight: Optional[dict], seed: int, X, y):
    """Fit one baseline; returns (estimator, seconds). Runs inside a Ray task."""
    # sklearn threads inside a 1-CPU Ray task would fight the other tasks for cores.
    from threadpoolctl import threadpool_limits

    estimator = BASELINES[name](task, class_weight, seed)
    X = X.reshape(len(X), -1)  # images and sequences: one flat row per example
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        estimator.fit(X, y)
    return estimator, time.perf_counter() - start

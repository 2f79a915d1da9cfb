"""scikit-learn baselines: the registry (the one place a baseline is named), each trained as its own Ray task.

An entry is a builder, its default search space and tunable hyperparameters (empty: not tunable),
and how it grows in steps a Tune scheduler can stop (trees added per step). The config validates
names and spaces from here; the tuning layer trains from here. Adding a baseline is one entry.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass(frozen=True)
class Baseline:
    # (task, class_weight, seed) -> an unfitted estimator; class_weight is None or {class_index: weight}
    build: Callable[[str, Optional[dict], int], object]
    # default search space in the config's syntax ({name: {kind: args}}); empty: not tunable
    space: dict = field(default_factory=dict)
    tunable: tuple = ()  # hyperparameters a search may set
    growth: Optional[tuple] = None  # (parameter that grows, by how much per step), or one step
    in_steps: dict = field(default_factory=dict)  # parameters set when it grows in steps (besides warm_start)
    # (task, sampled hyperparameters) -> the estimator's own parameters, where a task's estimator
    # spells a hyperparameter differently; None: the same names
    translate: Optional[Callable[[str, dict], dict]] = None

    def params_for(self, task: str, params: dict) -> dict:
        return self.translate(task, params) if self.translate else dict(params)


def _dummy(task, cw, seed):
    from sklearn.dummy import DummyClassifier, DummyRegressor

    return DummyClassifier(strategy="most_frequent") if task == "classification" else DummyRegressor(strategy="mean")


def _linear(task, cw, seed):
    from sklearn.linear_model import LogisticRegression, Ridge

    return LogisticRegression(max_iter=2000, class_weight=cw) if task == "classification" else Ridge(alpha=1.0)


def _linear_params(task, params):
    """C, the inverse regularization strength, for both tasks. Logistic regression minimizes
    C * loss + ||w||^2 / 2; Ridge minimizes loss + alpha * ||w||^2: the same trade-off at
    alpha = 1 / (2 C)."""
    params = dict(params)
    if task == "regression" and "C" in params:
        params["alpha"] = 1.0 / (2.0 * params.pop("C"))
    return params


def _random_forest(task, cw, seed):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    if task == "classification":
        return RandomForestClassifier(n_estimators=200, class_weight=cw, random_state=seed, n_jobs=1)
    return RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)


def _gradient_boosting(task, cw, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if task == "classification":
        return HistGradientBoostingClassifier(class_weight=cw, random_state=seed)
    return HistGradientBoostingRegressor(random_state=seed)


BASELINES: dict[str, Baseline] = {
    "dummy": Baseline(_dummy),
    "linear": Baseline(_linear, space={"C": {"loguniform": [1e-3, 100.0]}}, tunable=("C",),
                       translate=_linear_params),
    "random_forest": Baseline(
        _random_forest,
        space={"max_depth": {"choice": [None, 4, 8, 16]}, "min_samples_leaf": {"randint": [1, 20]},
               "max_features": {"choice": ["sqrt", 0.5, 1.0]}},
        tunable=("max_depth", "min_samples_leaf", "max_features", "min_samples_split"),
        growth=("n_estimators", 20)),
    "gradient_boosting": Baseline(
        _gradient_boosting,
        space={"learning_rate": {"loguniform": [0.01, 0.3]}, "max_leaf_nodes": {"randint": [8, 64]},
               "min_samples_leaf": {"randint": [5, 50]}, "l2_regularization": {"loguniform": [1e-4, 1.0]}},
        tunable=("learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization", "max_depth"),
        growth=("max_iter", 10), in_steps={"early_stopping": False}),  # the scheduler decides when to stop
}


def tunable_baselines() -> list[str]:
    return [name for name, baseline in BASELINES.items() if baseline.tunable]


def fit_baseline(name: str, task: str, class_weight: Optional[dict], seed: int, X, y):
    """Fit one baseline; returns (estimator, seconds). Runs inside a Ray task."""
    # sklearn threads inside a 1-CPU Ray task would fight the other tasks for cores.
    from threadpoolctl import threadpool_limits

    estimator = BASELINES[name].build(task, class_weight, seed)
    X = X.reshape(len(X), -1)  # images and sequences: one flat row per example
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        estimator.fit(X, y)
    return estimator, time.perf_counter() - start

"""Permutation importance: how much the primary metric drops when one feature is shuffled.

Written here rather than taken from sklearn.inspection because that one requires a scikit-learn
estimator (an object with `fit`); this one works for any FittedModel.
"""
from __future__ import annotations

import numpy as np

from rayfit.evaluation.metrics import LOWER_IS_BETTER, score_model


def feature_groups(feature_names) -> dict[str, list[int]]:
    """What is shuffled together: each feature alone, except a free-text column's TF-IDF features
    (`<column>:words__<term>`, `<column>:chars__<n-gram>`), which are the column, shuffled as one."""
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(feature_names):
        column, sep, _ = str(name).partition(":words__")
        if not sep:
            column, sep, _ = str(name).partition(":chars__")
        groups.setdefault(column if sep else str(name), []).append(j)
    return groups


def permutation_importance(model, X, y, feature_names, metric: str, n_classes, repeats: int = 5, seed: int = 0):
    """[(feature, mean drop, std)] sorted by mean drop, largest first.

    A feature is an index of the last axis: a column of a table, a channel of a sequence (shuffled
    across examples with all its time steps, so the feature's whole trace moves together); a text
    column's many features are one (feature_groups).
    """
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def score(X_):
        value = score_model(model, X_, y, n_classes)[metric]
        return sign * (value if value is not None else np.nan)

    rng = np.random.default_rng(seed)
    baseline = score(X)
    rows = []
    shuffled = np.array(X, copy=True)
    for name, j in feature_groups(feature_names).items():
        drops = []
        for _ in range(repeats):
            shuffled[..., j] = X[rng.permutation(len(X))][..., j]
            drops.append(baseline - score(shuffled))
        shuffled[..., j] = X[..., j]
        rows.append((name, float(np.mean(drops)), float(np.std(drops))))
    return sorted(rows, key=lambda row: row[1], reverse=True)

"""Permutation importance: how much the primary metric drops when one feature is shuffled."""
from __future__ import annotations

import numpy as np
from sklearn.inspection import permutation_importance as _sk_permutation_importance

from rayfit.evaluation.metrics import LOWER_IS_BETTER, score_model


def permutation_importance(model, X, y, feature_names, metric: str, n_classes, repeats: int = 5, seed: int = 0):
    """[(feature, mean drop, std)] sorted by mean drop, largest first. Works for any FittedModel."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def scorer(estimator, X_, y_):
        value = score_model(estimator, X_, y_, n_classes)[metric]
        return sign * (value if value is not None else np.nan)

    result = _sk_permutation_importance(model, X, y, scoring=scorer, n_repeats=repeats, random_state=seed)
    rows = [
        (name, float(mean), float(std))
        for name, mean, std in zip(feature_names, result.importances_mean, result.importances_std)
    ]
    return sorted(rows, key=lambda row: row[1], reverse=True)

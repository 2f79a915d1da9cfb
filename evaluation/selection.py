"""Model selection that holds on small data: K-fold cross-validation over train + validation.

On a small table a 15% validation split is a few dozen rows, and the model that leads there is
often not the best on test. With `evaluation.cv` on, every classic-ML model (tuned ones with
their chosen hyperparameters) is scored on K folds of train + validation, stratified for
classification, each fold one Ray task; the model is then refitted on all of train + validation
before the test split scores it. A network is compared by its validation score: a held-out
estimate too, from one split; the report says which score chose each model. The test split is
never used for any choice.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from rayfit.errors import UserError

AUTO_MAX_ROWS = 10_000  # `cv: auto` cross-validates tables of at most this many train + validation rows
AUTO_FOLDS = 5


def folds_for(setting, rows: int, task: str, y: np.ndarray) -> Optional[int]:
    """K for this table (None: select on the validation split). `setting` is auto, none or K."""
    if setting == "none":
        return None
    if setting == "auto":
        if rows > AUTO_MAX_ROWS:
            return None
        k = AUTO_FOLDS
    else:
        k = int(setting)
    if rows < 2 * k:
        raise UserError(f"evaluation.cv: {k} folds need at least {2 * k} rows of train + validation; there are {rows}")
    if task == "classification":
        labels, counts = np.unique(y, return_counts=True)
        if counts.min() < k:
            if setting == "auto":  # a rare class cannot be in every fold: fall back, said in the report
                return None
            raise UserError(f"evaluation.cv: {k} folds need {k} rows of every class; class {labels[counts.argmin()]} "
                            f"has {counts.min()}")
    return k


def split_folds(y: np.ndarray, task: str, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) per fold: stratified for classification, shuffled with the run's seed."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (StratifiedKFold if task == "classification" else KFold)(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))


def score_fold(estimator, name: str, task: str, class_weight, threads: int, X, y, fit_rows, held_out,
               n_classes: Optional[int]) -> tuple[dict, np.ndarray]:
    """Fit an unfitted copy of `estimator` on one fold's rows; (its scores on the rows held out,
    its raw outputs there: what an ensemble's out-of-fold score is made from)."""
    from sklearn.base import clone

    from rayfit.evaluation.baselines import fit_estimator
    from rayfit.evaluation.fitted import SklearnModel
    from rayfit.metrics import score_outputs

    fitted = fit_estimator(name, clone(estimator), X[fit_rows], y[fit_rows], class_weight, threads)
    outputs = SklearnModel(name, task, fitted, n_classes).outputs(X[held_out])
    return score_outputs(task, y[held_out], outputs, n_classes), outputs


def ensemble_members(cv: dict[str, dict], metric: str, size: int) -> list[str]:
    """The best `size` cross-validated models by mean `metric` (the dummy never votes)."""
    from rayfit.metrics import oriented, rank

    means = {name: cv[name].get(metric, {}).get("mean") for name in cv if name != "dummy"}
    return [name for name in rank(means, metric) if np.isfinite(oriented(metric, means[name]))][:size]


def ensemble_folds(task: str, y: np.ndarray, folds, outputs: dict[str, list], members: list[str],
                   n_classes: Optional[int]) -> list[dict]:
    """The soft vote's score on each fold, from its members' out-of-fold outputs: a held-out
    estimate, as honest as theirs."""
    from rayfit.metrics import score_outputs

    return [score_outputs(task, y[held_out], np.mean([outputs[m][i] for m in members], axis=0), n_classes)
            for i, (_, held_out) in enumerate(folds)]


def summarize(fold_scores: list[dict]) -> dict:
    """{metric: {mean, std, folds}} over the folds (a metric some fold could not compute is left out
    of that fold's mean)."""
    summary = {}
    for metric in fold_scores[0]:
        values = [s[metric] for s in fold_scores if s.get(metric) is not None and np.isfinite(s[metric])]
        if values:
            summary[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": len(values)}
    return summary

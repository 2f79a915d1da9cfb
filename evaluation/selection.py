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
               n_classes: Optional[int], keep: bool = False) -> tuple:
    """Fit an unfitted copy of `estimator` on one fold's rows; (its scores on the rows held out,
    its raw outputs there: what an ensemble's out-of-fold score is made from, and with `keep` the
    fitted copy: a bagged model's member)."""
    from sklearn.base import clone

    from rayfit.evaluation.baselines import fit_estimator
    from rayfit.evaluation.fitted import SklearnModel
    from rayfit.metrics import score_outputs

    fitted = fit_estimator(name, clone(estimator), X[fit_rows], y[fit_rows], class_weight, threads, inner_stop=True)
    outputs = SklearnModel(name, task, fitted, n_classes).outputs(X[held_out])
    return (score_outputs(task, y[held_out], outputs, n_classes), outputs) + ((fitted,) if keep else ())


ROUNDS = 25  # greedy ensemble selection's rounds: each adds one member (again, if it is the best addition)


def out_of_fold(folds, per_fold: list) -> np.ndarray:
    """One model's outputs on every row of train + validation, each from the fold that held it out."""
    rows = sum(len(held_out) for _, held_out in folds)
    first = np.asarray(per_fold[0])
    whole = np.zeros((rows, *first.shape[1:]), dtype=np.float64)
    for (_, held_out), outputs in zip(folds, per_fold):
        whole[held_out] = outputs
    return whole


def select_ensemble(task: str, y: np.ndarray, folds, outputs: dict[str, list], metric: str,
                    n_classes: Optional[int], max_members: int, rounds: int = ROUNDS) -> dict[str, float]:
    """Greedy ensemble selection with replacement (Caruana, Niculescu-Mizil, Crew and Ksikes, 2004,
    "Ensemble selection from libraries of models"; the method behind AutoGluon's weighted ensemble):
    starting from nothing, each round adds the candidate whose addition makes the average of the
    chosen out-of-fold outputs score best on `metric` over every row, a member again if that is
    best; the weights are how often each was added, at the round that scored best (the earliest of
    equals). At most `max_members` distinct members. Ties on the metric go to the better log loss
    (classification) or RMSE: accuracy moves in steps, the probabilities under it do not.
    Candidates: every model with out-of-fold outputs, the dummy aside. {member: weight}, summing to 1."""
    from rayfit.metrics import CLASSIFICATION, YARDSTICK, oriented, score_one

    candidates = {name: out_of_fold(folds, per_fold) for name, per_fold in outputs.items() if name != YARDSTICK}
    if not candidates:
        return {}
    tie_break = "log_loss" if task == CLASSIFICATION else "rmse"

    def key(average: np.ndarray) -> tuple:
        value = oriented(metric, score_one(metric, task, y, average, n_classes))
        return (-np.inf if np.isnan(value) else value, -score_one(tie_break, task, y, average, n_classes))

    total, counts, best_key, best_counts = None, {}, None, {}
    for step in range(1, rounds + 1):
        allowed = counts if len(counts) >= max_members else candidates
        scored = [(key((candidates[name] if total is None else total + candidates[name]) / step), name)
                  for name in allowed]
        round_key, chosen = max(scored, key=lambda pair: pair[0])  # the first of equals: registry order
        total = candidates[chosen] if total is None else total + candidates[chosen]
        counts[chosen] = counts.get(chosen, 0) + 1
        if best_key is None or round_key > best_key:
            best_key, best_counts = round_key, dict(counts)
    added = sum(best_counts.values())
    return {name: count / added for name, count in best_counts.items()}


# The choosing metrics a decision threshold is tuned for, on two classes: F1 counts the second class's
# hits and misses at the decision, which the most probable class puts where accuracy wants it.
THRESHOLD_METRICS = ("f1",)
THRESHOLDS = np.round(np.linspace(0.05, 0.95, 91), 2)  # the candidates, in steps of 0.01


def tune_threshold(y: np.ndarray, oof: np.ndarray, metric: str) -> Optional[float]:
    """The decision threshold on the second class's out-of-fold probability that scores best on
    `metric` over every row, where it beats the most probable class (ties: the one nearest 0.5);
    None where no threshold does better. Two classes only."""
    from rayfit.metrics import oriented, score_one

    plain = oriented(metric, score_one(metric, "classification", y, oof, 2))
    scored = [(oriented(metric, score_one(metric, "classification", y, oof, 2, t)), -abs(t - 0.5), float(t))
              for t in THRESHOLDS]
    value, _, threshold = max(scored)
    return threshold if value > plain else None


def ensemble_folds(task: str, y: np.ndarray, folds, outputs: dict[str, list], weights: dict[str, float],
                   n_classes: Optional[int]) -> list[dict]:
    """The weighted ensemble's score on each fold, from its members' out-of-fold outputs: a held-out
    estimate on the same folds as theirs (its weights were chosen on these outputs too, as
    AutoGluon's are: slightly in its favour)."""
    from rayfit.metrics import score_outputs

    return [score_outputs(task, y[held_out], sum(w * np.asarray(outputs[m][i]) for m, w in weights.items()),
                          n_classes)
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

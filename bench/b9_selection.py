"""B9, model selection on small tables: how far the chosen model's test score falls short of the
best candidate's, choosing on the validation split against choosing on cross-validation.

Two small tables scikit-learn ships, a few hundred rows each: breast cancer (classification,
accuracy; 300 rows drawn per seed) and diabetes (regression, r2). For every seed, rayfit's own
split and preprocessing (`prepare`), the default classic-ML zoo fitted with rayfit's registry, and
both rules, with rayfit's selection code: the validation rule picks the best validation score and
is tested as fitted on train; the cross-validation rule picks the best 5-fold mean over train +
validation and is tested as refitted on both. A rule's regret is the best test score among its
candidates less the test score of the one it chose. The ratio is the cross-validation rule's mean
regret over the validation rule's (below 1: it chooses better). In-process, without Ray: this
measures the rule, not the distribution (stages/cross_validate.py runs the same code as Ray tasks).
"""
from __future__ import annotations

import numpy as np

from bench.harness import check, finding, ratio, say
from bench.ray_session import scratch

TARGET = 1.0
TABLES = {"breast_cancer": ("classification", "accuracy", 300), "diabetes": ("regression", "r2", None)}


def _table(name: str, rows, seed: int, directory) -> str:
    import pandas as pd
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "y"})
    if rows:
        frame = frame.sample(n=rows, random_state=seed)
    path = directory / f"{name}-{seed}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def _one_seed(name: str, seed: int, directory) -> dict:
    from sklearn.base import clone

    from rayfit.config import DataConfig
    from rayfit.data import prepare
    from rayfit.evaluation.baselines import baselines_for, fit_baseline, fit_estimator
    from rayfit.evaluation.fitted import SklearnModel
    from rayfit.metrics import score_model
    from rayfit.evaluation.selection import score_fold, split_folds, summarize

    task, metric, rows = TABLES[name]
    prepared = prepare(DataConfig(source=_table(name, rows, seed, directory), target="y"), seed)
    X, y = np.concatenate([prepared.X_train, prepared.X_val]), np.concatenate([prepared.y_train, prepared.y_val])
    folds = split_folds(y, task, 5, seed)
    cw = prepared.class_weights
    val, cv, test_val_rule, test_cv_rule = {}, {}, {}, {}
    for model in baselines_for("default", task):
        if model == "dummy":
            continue
        estimator, _ = fit_baseline(model, task, cw, seed, prepared.X_train, prepared.y_train)
        fitted = SklearnModel(model, task, estimator, prepared.n_classes)
        val[model] = score_model(fitted, prepared.X_val, prepared.y_val, prepared.n_classes)[metric]
        test_val_rule[model] = score_model(fitted, prepared.X_test, prepared.y_test, prepared.n_classes)[metric]
        cv[model] = summarize([score_fold(estimator, model, task, cw, 1, X, y, fit, held, prepared.n_classes)[0]
                               for fit, held in folds])[metric]["mean"]
        refit = SklearnModel(model, task, fit_estimator(model, clone(estimator), X, y, cw), prepared.n_classes)
        test_cv_rule[model] = score_model(refit, prepared.X_test, prepared.y_test, prepared.n_classes)[metric]
    by_val, by_cv = max(val, key=val.get), max(cv, key=cv.get)  # accuracy and r2: higher is better
    return {"val_choice": by_val, "cv_choice": by_cv,
            "val_regret": max(test_val_rule.values()) - test_val_rule[by_val],
            "cv_regret": max(test_cv_rule.values()) - test_cv_rule[by_cv],
            "val_rule_test": test_val_rule[by_val], "cv_rule_test": test_cv_rule[by_cv]}


def run(quick: bool) -> dict:
    seeds = range(2 if quick else 10)
    figures, val_regret, cv_regret = {}, [], []
    with scratch("b9") as work:
        for name in TABLES:
            outcomes = []
            for seed in seeds:
                outcomes.append(_one_seed(name, seed, work))
                say(f"B9 {name} seed {seed}: {outcomes[-1]}")
            metric = TABLES[name][1]
            figures[name] = {
                "metric": metric, "seeds": len(outcomes),
                "val_rule_mean_regret": float(np.mean([o["val_regret"] for o in outcomes])),
                "cv_rule_mean_regret": float(np.mean([o["cv_regret"] for o in outcomes])),
                "val_rule_mean_test": float(np.mean([o["val_rule_test"] for o in outcomes])),
                "cv_rule_mean_test": float(np.mean([o["cv_rule_test"] for o in outcomes])),
                "choices": [(o["val_choice"], o["cv_choice"]) for o in outcomes],
            }
            val_regret += [o["val_regret"] for o in outcomes]
            cv_regret += [o["cv_regret"] for o in outcomes]
    figures["val_rule_mean_regret"] = float(np.mean(val_regret))
    figures["cv_rule_mean_regret"] = float(np.mean(cv_regret))
    return finding(figures, [check("cv regret / validation regret", ratio(figures["cv_rule_mean_regret"],
                                                                          figures["val_rule_mean_regret"]),
                                   "<=", TARGET, interval=_paired_interval(cv_regret, val_regret))])


def _paired_interval(numerator: list, denominator: list, resamples: int = 4000, seed: int = 0):
    """95% percentile bootstrap of mean(numerator) / mean(denominator), resampling the (table, seed)
    draws as pairs: both rules chose on the same draw."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(num), (resamples, len(num)))
    sums = den[picks].sum(axis=1)
    ratios = num[picks].sum(axis=1)[sums > 0] / sums[sums > 0]
    return (float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))) if len(ratios) else None

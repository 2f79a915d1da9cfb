"""Permutation importance: how much the primary metric drops when one feature is shuffled.

Measured for the few models the report details (report.importance_models, the best first) on a
bounded sample of the test rows (report.importance_rows); every other model has its native
importance where it has one.

Written here rather than taken from sklearn.inspection because that one requires a scikit-learn
estimator (an object with `fit`); this one works for any ArrayModel.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from rayfit.metrics import oriented, score_one


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


def sample_rows(n: int, max_rows: Optional[int], seed: int) -> np.ndarray:
    """The test rows importance is measured on: every row, or a seeded sample of `max_rows`."""
    if not max_rows or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def permutation_importance(model, X, y, feature_names, metric: str, n_classes, repeats: int = 5, seed: int = 0):
    """[(feature, mean drop, std)] sorted by mean drop, largest first.

    A feature is an index of the last axis: a column of a table, a channel of a sequence (shuffled
    across examples with all its time steps, so the feature's whole trace moves together); a text
    column's many features are one (feature_groups). A feature's `repeats` shuffles are scored in
    one prediction of `repeats` stacked copies of X: one call per feature, whatever the model.
    """
    def score(outputs):
        return oriented(metric, score_one(metric, model.task, y, outputs, n_classes, getattr(model, "threshold", None)))

    rng = np.random.default_rng(seed)
    n = len(X)
    baseline = score(model.outputs(X))
    rows = []
    stacked = np.repeat(np.asarray(X)[np.newaxis], repeats, axis=0)  # (repeats, n, ...)
    for name, j in feature_groups(feature_names).items():
        for r in range(repeats):
            stacked[r][..., j] = X[..., j][rng.permutation(n)]
        outputs = model.outputs(stacked.reshape(repeats * n, *X.shape[1:]))
        drops = [baseline - score(outputs[r * n:(r + 1) * n]) for r in range(repeats)]
        stacked[..., j] = X[..., j]
        rows.append((name, float(np.mean(drops)), float(np.std(drops))))
    return sorted(rows, key=lambda row: row[1], reverse=True)


# A test split of at most this many values is scored in the driver, which holds every model already;
# a Ray task would first start a worker, copy the model and import its framework again (TensorFlow:
# several seconds), for a computation of well under a second.
IN_PROCESS_VALUES = 250_000


def importance_in_process(X) -> bool:
    return np.asarray(X).size <= IN_PROCESS_VALUES


def importance_here(models: dict, X, y, feature_names, metric: str, n_classes, repeats: int, seed: int,
                    on_done=None) -> dict[str, list]:
    """`permutation_importance` of every model, one after another in this process."""
    found = {}
    for name, model in models.items():
        found[name] = permutation_importance(model, X, y, feature_names, metric, n_classes, repeats, seed)
        if on_done:
            on_done(name, len(found), len(models))
    return found


def importance_on_ray(models: dict, X, y, feature_names, metric: str, n_classes, repeats: int, seed: int,
                      on_done=None) -> dict[str, list]:
    """`permutation_importance` of every model at once, each in a Ray task of one CPU: name ->
    [(feature, mean drop, std)]. A model travels as its saved directory (any framework, any node);
    `on_done(name, done, total)` as each finishes."""
    return start_importance_on_ray(models, X, y, feature_names, metric, n_classes, repeats, seed, on_done)()


def start_importance_on_ray(models: dict, X, y, feature_names, metric: str, n_classes, repeats: int, seed: int,
                            on_done=None):
    """`importance_on_ray` started: its tasks run while the caller goes on; what it returns waits
    for them and gives their results. A network's task runs in its framework's warm workers."""
    import ray

    from rayfit.cluster.launch import as_finished, start
    from rayfit.evaluation.fitted import model_to_bytes
    from rayfit.frameworks import is_network_framework

    X_ref, y_ref = ray.put(X), ray.put(y)
    pending = [start(_importance_task, model_to_bytes(model), X_ref, y_ref, list(feature_names), metric, n_classes,
                     repeats, seed, name=f"rayfit.importance[{name}]", cpus=1, tag=name,
                     pool=model.kind if is_network_framework(model.kind) else None)
               for name, model in models.items()]

    def results() -> dict[str, list]:
        found, total = {}, len(pending)
        for handle, ranked in as_finished(pending):
            name = handle.tag
            found[name] = ranked
            if on_done:
                on_done(name, len(found), total)
        return {name: found[name] for name in models}

    return results


def _importance_task(blob, X, y, feature_names, metric, n_classes, repeats, seed):
    from rayfit.evaluation.fitted import model_from_bytes

    return permutation_importance(model_from_bytes(blob), X, y, feature_names, metric, n_classes, repeats, seed)


def _inner_estimator(estimator):
    """The fitted model under rayfit's wrappers: a target scaler's regressor, a calibrator's
    classifier (its first fold's, or the single one of ensemble=False)."""
    if hasattr(estimator, "regressor_"):
        return _inner_estimator(estimator.regressor_)
    if hasattr(estimator, "calibrated_classifiers_"):
        return _inner_estimator(estimator.calibrated_classifiers_[0].estimator)
    return estimator


def native_importance(model, feature_names) -> tuple[str, list[tuple[str, float]]]:
    """(what it measures, [(feature, share)] largest first) from what the model itself learned:
    trees' impurity decrease, boosters' gain, a linear model's absolute coefficients (features are
    standardized, so they compare). A text column's features add up to the column (feature_groups).
    Shares sum to 1. ("", []) for a model without such a notion (a network, k nearest neighbours,
    an RBF SVM, an ensemble of different models). A bagged model's (fold models of one kind): their
    shares averaged."""
    members = getattr(model, "members", None)
    if members:
        found = [native_importance(member, feature_names) for member in members]
        kinds = {kind for kind, _ in found}
        if len(kinds) != 1 or "" in kinds or len({m.name for m in members}) != 1:
            return "", []
        total: dict[str, float] = {}
        for weight, (_, shares) in zip(model.weights, found):
            for feature, share in shares:
                total[feature] = total.get(feature, 0.0) + weight * share
        return kinds.pop(), sorted(total.items(), key=lambda row: row[1], reverse=True)
    estimator = getattr(model, "estimator", None)
    if estimator is None:
        return "", []
    inner = _inner_estimator(estimator)
    if hasattr(inner, "feature_importances_"):
        booster = type(inner).__module__.split(".")[0] in ("xgboost", "lightgbm") or getattr(inner, "is_booster", False)
        kind, values = ("gain" if booster else "impurity decrease"), np.asarray(inner.feature_importances_, dtype=float)
    elif hasattr(inner, "coef_"):
        coef = np.atleast_2d(np.asarray(inner.coef_, dtype=float))
        kind, values = "coefficient magnitude", np.abs(coef).mean(axis=0)
    else:
        return "", []
    if values.shape != (len(feature_names),) or not np.isfinite(values).all() or values.sum() <= 0:
        return "", []
    grouped = {name: float(values[j].sum()) for name, j in feature_groups(feature_names).items()}
    total = sum(grouped.values())
    return kind, sorted(((name, value / total) for name, value in grouped.items()), key=lambda row: row[1],
                        reverse=True)

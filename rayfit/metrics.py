"""The metric registry: every metric rayfit computes, ranks by or reports, in one place.

Each `Metric` says its name, how it is scored, which way is better, the tasks it serves and how it
reads in the report. Config validation, Tune's `mode`, selection, the ensemble, the leaderboard, the
report, permutation importance and `rayfit.load` all read it; `rank` is the one ordering of models
by a score. This module imports nothing of rayfit and scikit-learn only when something is scored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import numpy as np

CLASSIFICATION, REGRESSION, CLUSTERING = "classification", "regression", "clustering"
TRIAL = "trial"  # reported by every training epoch and Tune trial, on the validation split


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    task: str  # classification, regression, clustering or trial
    title: str  # how the report writes it
    # classification: (y_true, probabilities, n_classes); regression: (y_true, predictions);
    # clustering: (X, assigned) on the shape of the clusters, or (labels, assigned) against a label column
    scorer: Optional[Callable] = None
    needs_labels: bool = False  # clustering: scored against a label column, so never a choosing metric

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    @property
    def mode(self) -> str:
        """Tune's `mode` for this metric."""
        return "max" if self.higher_is_better else "min"


def decide(proba: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
    """The class each row is predicted as: the most probable one, or with a decision `threshold`
    (two classes) the second class where its probability reaches the threshold."""
    proba = np.asarray(proba)
    if threshold is None or proba.ndim != 2 or proba.shape[1] != 2:
        return proba.argmax(axis=1)
    return (proba[:, 1] >= threshold).astype(np.int64)


# A classification scorer: (y_true, probabilities, n_classes, predicted classes) -> the score; the
# decision-based ones read `predicted` (metrics.decide: a tuned threshold moves it), the others the
# probabilities.
def _averaged(name: str):
    """precision, recall or F1: binary for two classes, macro-averaged over every class otherwise."""
    def score(y_true, proba, n_classes, predicted):
        from sklearn import metrics as skm

        multi = n_classes != 2
        return getattr(skm, f"{name}_score")(y_true, predicted, average="macro" if multi else "binary",
                                              labels=list(range(n_classes)) if multi else None, zero_division=0)
    return score


def _accuracy(y_true, proba, n_classes, predicted):
    from sklearn import metrics as skm

    return skm.accuracy_score(y_true, predicted)


def _balanced_accuracy(y_true, proba, n_classes, predicted):
    """The mean over classes of each class's recall: every class counts alike, whatever its size."""
    from sklearn import metrics as skm

    return skm.balanced_accuracy_score(y_true, predicted)


def _roc_auc(y_true, proba, n_classes, predicted=None):
    """One-vs-rest for several classes; undefined (None) where a class is missing from the split."""
    from sklearn import metrics as skm

    present = np.unique(y_true)
    try:
        if n_classes == 2:
            return skm.roc_auc_score(y_true, proba[:, 1]) if len(present) == 2 else None
        if len(present) == n_classes:
            return skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=list(range(n_classes)))
    except ValueError:
        pass
    return None


def _log_loss(y_true, proba, n_classes, predicted=None):
    from sklearn import metrics as skm

    return skm.log_loss(y_true, proba, labels=list(range(n_classes)))


def _sklearn(name: str, transform=None):
    def score(a, b):
        from sklearn import metrics as skm

        value = getattr(skm, name)(a, b)
        return transform(value) if transform else value
    return score


REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", True, CLASSIFICATION, "accuracy", _accuracy),
    Metric("balanced_accuracy", True, CLASSIFICATION, "balanced accuracy", _balanced_accuracy),
    Metric("precision", True, CLASSIFICATION, "precision", _averaged("precision")),
    Metric("recall", True, CLASSIFICATION, "recall", _averaged("recall")),
    Metric("f1", True, CLASSIFICATION, "f1", _averaged("f1")),
    Metric("roc_auc", True, CLASSIFICATION, "roc_auc", _roc_auc),
    Metric("log_loss", False, CLASSIFICATION, "log_loss", _log_loss),
    Metric("rmse", False, REGRESSION, "rmse", _sklearn("mean_squared_error", math.sqrt)),
    Metric("mae", False, REGRESSION, "mae", _sklearn("mean_absolute_error")),
    Metric("r2", True, REGRESSION, "r2", _sklearn("r2_score")),
    Metric("silhouette", True, CLUSTERING, "silhouette", _sklearn("silhouette_score")),
    Metric("davies_bouldin", False, CLUSTERING, "Davies-Bouldin", _sklearn("davies_bouldin_score")),
    Metric("calinski_harabasz", True, CLUSTERING, "Calinski-Harabasz", _sklearn("calinski_harabasz_score")),
    Metric("adjusted_rand", True, CLUSTERING, "adjusted Rand", _sklearn("adjusted_rand_score"), needs_labels=True),
    Metric("normalized_mutual_info", True, CLUSTERING, "NMI", _sklearn("normalized_mutual_info_score"),
           needs_labels=True),
    Metric("val_loss", False, TRIAL, "validation loss"),
    Metric("val_accuracy", True, TRIAL, "validation accuracy"),
)}

DEFAULT = {CLASSIFICATION: "accuracy", REGRESSION: "rmse", CLUSTERING: "silhouette", TRIAL: "val_loss"}


def get(name: str) -> Metric:
    """The registered metric; a name nothing registered is a KeyError naming the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(REGISTRY)}") from None


def names(task: str, choosing: bool = False) -> tuple[str, ...]:
    """The metrics of a task, in the registry's order; `choosing`: those a model can be chosen by
    (a clustering's label scores need a label column and never choose)."""
    return tuple(m.name for m in REGISTRY.values() if m.task == task and not (choosing and m.needs_labels))


def default_metric(task: str) -> str:
    return DEFAULT[task]


def higher_is_better(name: str) -> bool:
    return get(name).higher_is_better


def is_missing(value) -> bool:
    """A metric a model could not produce (None) or that came out undefined (NaN)."""
    if value is None:
        return True
    try:
        return math.isnan(value)
    except TypeError:  # strings and other non-numbers are present, not missing
        return False


def is_better(metric: str, candidate: Optional[float], incumbent: Optional[float]) -> bool:
    """Strictly better by the metric's direction; a missing value is never better, and anything
    present beats a missing incumbent."""
    if is_missing(candidate):
        return False
    if is_missing(incumbent):
        return True
    return candidate > incumbent if higher_is_better(metric) else candidate < incumbent


def oriented(metric: str, value: Optional[float]) -> float:
    """The value with larger always better (NaN where missing): what drops and signs are taken from."""
    if is_missing(value):
        return float("nan")
    return float(value) if higher_is_better(metric) else -float(value)


def rank(scores: Mapping[str, Optional[float]], metric: str) -> list[str]:
    """The names, best first by `metric`'s direction; missing scores last; ties keep their order
    (the first one seen wins). The one ordering every choice, ensemble, leaderboard and plot uses."""
    def key(item):
        value = oriented(metric, item[1])
        return (math.isnan(value), 0.0 if math.isnan(value) else -value)

    return [name for name, _ in sorted(scores.items(), key=key)]


def best(scores: Mapping[str, Optional[float]], metric: str) -> Optional[str]:
    ranked = rank(scores, metric)
    return ranked[0] if ranked else None


def selection_score(entry: Mapping, metric: str) -> tuple[str, Optional[float], Optional[float]]:
    """(where, value, std) of the score a model in metrics.json was chosen on: its cross-validation
    mean where it was cross-validated (`selected_on: cv`), its validation score otherwise, none for
    a network out of reach of the leader (`out_of_reach`); a clustering's candidate carries its
    score itself."""
    if "test" not in entry and "val" not in entry and "cv" not in entry:  # a clustering's entry
        return "data", entry.get(metric), None
    if entry.get("out_of_reach"):  # behind the leader on validation, left out of the folds: never chosen
        return "val", None, None
    cv = entry.get("cv") or {}
    if entry.get("selected_on") == "cv" and metric in cv:
        return "cv", cv[metric].get("mean"), cv[metric].get("std")
    return "val", (entry.get("val") or {}).get(metric), None


def rank_models(models: Mapping[str, Mapping], metric: str) -> list[str]:
    """metrics.json's models, best first by the score each was chosen on (`selection_score`)."""
    return rank({name: selection_score(entry, metric)[1] for name, entry in models.items()}, metric)


YARDSTICK = "dummy"  # always the majority class (or the mean): what every model is measured against
# The metrics a yardstick that leads on the choosing metric is shown beaten on, in this order: those
# that measure what the majority class cannot (a ranking, every class alike, the probabilities).
BEYOND_YARDSTICK = {CLASSIFICATION: ("roc_auc", "balanced_accuracy", "log_loss", "f1"), REGRESSION: ("r2", "mae")}


def choose_model(models: Mapping[str, Mapping], metric: str, task: str) -> tuple[str, Optional[dict]]:
    """(the model a run exports, how the yardstick led, or None). The best by `rank_models`; the
    dummy is a yardstick, never the exported model: where it leads on the choosing metric (a
    rare class that every model predicts too seldom to beat always answering the majority on
    accuracy) the best other model is exported, and the entry names a metric the others beat it on."""
    ranked = rank_models(models, metric)
    others = [name for name in ranked if name != YARDSTICK]
    if not ranked or ranked[0] != YARDSTICK or not others:
        return ranked[0], None
    best = others[0]
    led = {"metric": metric, "yardstick": selection_score(models[YARDSTICK], metric)[1],
           "exported": selection_score(models[best], metric)[1]}
    for candidate in BEYOND_YARDSTICK.get(task, ()):
        theirs, ours = selection_score(models[YARDSTICK], candidate)[1], selection_score(models[best], candidate)[1]
        if is_better(candidate, ours, theirs):
            led["beaten_on"] = {"metric": candidate, "yardstick": theirs, "exported": ours}
            break
    return best, led


def yardstick_note(led: Mapping, exported: str, task: str) -> str:
    """The report's first words where the yardstick led: that no model beat it on the choosing
    metric, what is exported instead, and a metric the exported model did beat it on."""
    answer = "the majority class" if task == CLASSIFICATION else "the training mean"
    line = (f"No model beat always answering {answer} (dummy) on {led['metric']} "
            f"({_shown(led['exported'])} against the dummy's {_shown(led['yardstick'])}); {exported}, the best of "
            f"the others, is exported instead")
    beaten = led.get("beaten_on")
    if beaten:
        line += (f", and it does beat the dummy on {beaten['metric']}: {_shown(beaten['exported'])} against "
                 f"{_shown(beaten['yardstick'])}")
    return line + "."


def _shown(value: Optional[float]) -> str:
    return "n/a" if is_missing(value) else f"{value:.4f}"


# -- scoring


def _normalized(proba: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)


def classification_scores(y_true: np.ndarray, proba: np.ndarray, n_classes: int,
                          threshold: Optional[float] = None) -> dict[str, Optional[float]]:
    clipped = _normalized(proba)
    predicted = decide(clipped, threshold)
    scores = {name: get(name).scorer(y_true, clipped, n_classes, predicted) for name in names(CLASSIFICATION)}
    return {k: (None if v is None else float(v)) for k, v in scores.items()}


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {name: float(get(name).scorer(y_true, y_pred)) for name in names(REGRESSION)}


def score_model(model, X: np.ndarray, y: np.ndarray, n_classes: Optional[int]) -> dict[str, Optional[float]]:
    if model.task == CLASSIFICATION:
        return classification_scores(y, model.predict_proba(X), n_classes, getattr(model, "threshold", None))
    return regression_scores(y, model.predict(X))


def score_one(metric: str, task: str, y: np.ndarray, outputs: np.ndarray, n_classes: Optional[int],
              threshold: Optional[float] = None) -> Optional[float]:
    """One metric from a model's raw outputs (what score_outputs gives for it, computed alone)."""
    scorer = get(metric).scorer
    if task == CLASSIFICATION:
        proba = _normalized(outputs)
        value = scorer(y, proba, n_classes, decide(proba, threshold))
    else:
        value = scorer(y, np.asarray(outputs, dtype=np.float64).reshape(-1))
    return None if value is None else float(value)


def score_outputs(task: str, y: np.ndarray, outputs: np.ndarray, n_classes: Optional[int],
                  threshold: Optional[float] = None) -> dict[str, Optional[float]]:
    """The same scores from a model's raw outputs: class probabilities, or predicted values."""
    if task == CLASSIFICATION:
        return classification_scores(y, np.asarray(outputs, dtype=np.float64), n_classes, threshold)
    return regression_scores(y, np.asarray(outputs, dtype=np.float64).reshape(-1))


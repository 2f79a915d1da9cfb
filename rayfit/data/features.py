"""The features every model sees: which columns stay, and the preprocessing fitted on the rows that
train (the train split, a cluster's training sample, or every row for clustering), with a readable
line in the preparation log for each thing it does; and the class weights of the training split."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from rayfit.config import DataConfig
from rayfit.data import clean
from rayfit.data.preprocessing import DatetimeExpander, build_columns

AUTO_WEIGHT_RATIO = 1.5  # class_weight auto: weight classes when the largest is this many times the smallest


def drop_uninformative_columns(frame: pd.DataFrame, target: Optional[str], cfg: DataConfig,
                               log: list[str]) -> pd.DataFrame:
    """Constant and ID-like columns, as the config says (the target, if any, is kept)."""
    if cfg.drop_constant:
        frame = clean.drop_constant_columns(frame, target, log)
    if cfg.drop_id_like:
        frame = clean.drop_id_like_columns(frame, target, log)
    return frame


def fit_preprocessor(features: pd.DataFrame, train_rows: np.ndarray, kinds: dict[str, list[str]], cfg: DataConfig,
                     log: list[str], fitted_on: str = "train", say_scaling: bool = True) -> Pipeline:
    """The table's preprocessing fitted on the rows at `train_rows` (named by `fitted_on` in the
    log; the imputation lines count what it fills in every row). `say_scaling`: False when the
    numeric scaling is replaced later and said then (on the cluster, by statistics over the whole
    training split)."""
    train = features.iloc[train_rows]
    expander = DatetimeExpander(kinds["datetime"]).fit(train)
    for column, parts in expander.parts_.items():
        log.append(f"expanded datetime column {column!r} into {', '.join(parts)}")
    _log_imputation(features, kinds, log, fitted_on)
    date_parts = [name for name in expander.get_feature_names_out() if name not in train.columns]
    onehot, ordinal = _choose_encodings(train, kinds["categorical"], cfg)
    pipeline = Pipeline([
        ("datetime", expander),
        ("columns", build_columns(kinds["numeric"] + date_parts, onehot, ordinal, kinds["text"],
                                  scaling=cfg.numeric_scaling, rows=len(train))),
    ]).fit(train)
    columns = pipeline.named_steps["columns"]
    if (kinds["numeric"] or date_parts) and say_scaling:
        numbers = len(kinds["numeric"]) + len(date_parts)
        scale = pipeline.named_steps["columns"].named_transformers_["numeric"].named_steps["scale"]
        skewed = int(scale.skewed_.sum()) if hasattr(scale, "skewed_") else (
            numbers if cfg.numeric_scaling == "quantile" else 0)
        if numbers > skewed:
            log.append(f"standardized {numbers - skewed} numeric feature(s) (mean and scale fitted on {fitted_on})")
        if skewed:
            log.append(f"mapped {skewed} numeric feature(s) onto a normal distribution by their quantiles "
                       f"(fitted on {fitted_on}; numeric_scaling: {cfg.numeric_scaling}"
                       + (", their skewness beyond 0.99)" if cfg.numeric_scaling == "auto" else ")"))
    for name, steps, column_names in columns.transformers_:
        if name.startswith("text:"):
            union = steps.named_steps["tfidf"]
            words, chars = (len(vectorizer.vocabulary_) for _, vectorizer in union.transformer_list)
            log.append(f"text column {column_names!r}: TF-IDF of {words} words and word pairs and "
                       f"{chars} character 2- to 4-grams (vocabularies fitted on {fitted_on})")
            continue
        if name not in ("onehot", "ordinal"):
            continue
        reason = "" if name == "onehot" else (
            ", set in the config" if cfg.categorical_encoding == "ordinal"
            else f", more than max_onehot_categories={cfg.max_onehot_categories}")
        for column, categories in zip(column_names, steps.named_steps["encode"].categories_):
            log.append(f"{name.replace('onehot', 'one-hot')} encoded {column!r} ({len(categories)} categories{reason})")
    return pipeline


def _choose_encodings(train: pd.DataFrame, categorical: list[str], cfg: DataConfig) -> tuple[list[str], list[str]]:
    if cfg.categorical_encoding == "onehot":
        return list(categorical), []
    if cfg.categorical_encoding == "ordinal":
        return [], list(categorical)
    onehot = [c for c in categorical if train[c].nunique() <= cfg.max_onehot_categories]
    return onehot, [c for c in categorical if c not in onehot]


def _log_imputation(features: pd.DataFrame, kinds: dict[str, list[str]], log: list[str], fitted_on: str) -> None:
    for column in features.columns:
        if column in kinds["datetime"]:
            missing = int(clean.parse_datetimes(features[column]).isna().sum())
            how, what = "the median of each part", "missing or unreadable dates"
        else:
            missing = int(features[column].isna().sum())
            how = "the median" if column in kinds["numeric"] else "the most frequent value"
            what = "missing value" + ("" if missing == 1 else "s")
        if missing:
            log.append(f"imputed {missing} {what} in {column!r} with {how} (fitted on {fitted_on})")


# `class_weight: auto` follows the metric that chooses the model (report.primary_metric). Balanced
# weights move every model's decision toward the rare classes: what a metric that counts every class
# alike rewards (balanced accuracy, recall, F1: macro over several classes, the second class's for
# two), and what accuracy and log loss, measured at the classes' own frequencies, pay for, as
# precision does. ROC AUC ranks and does not move with the decision: weights only blur its
# probabilities. So auto weighs for the first kind only, and then where the classes differ > 1.5x.
WEIGHED_FOR = ("balanced_accuracy", "recall", "f1")


def class_weights(y_train: np.ndarray, n_classes: int, mode: str, log: list[str],
                  chosen_by: str = "accuracy") -> Optional[dict[int, float]]:
    return class_weights_of_counts(np.bincount(y_train, minlength=n_classes), mode, log, chosen_by)


def class_weights_of_counts(counts: np.ndarray, mode: str, log: list[str],
                            chosen_by: str = "accuracy") -> Optional[dict[int, float]]:
    """Class weights from the training split's count of each class index (class_weight: auto,
    balanced or none); balanced is scikit-learn's: rows / (classes present x the class's rows).
    `chosen_by`: the metric that chooses the run's model, which `auto` follows (WEIGHED_FOR)."""
    if mode == "none":
        return None
    n_classes = len(counts)
    present = np.flatnonzero(counts)
    ratio = counts[present].max() / counts[present].min()
    if mode == "auto" and chosen_by not in WEIGHED_FOR:
        if ratio > AUTO_WEIGHT_RATIO:
            log.append(f"class weights: none, though the largest class is {ratio:.1f}x the smallest in train "
                       f"(class_weight auto: the model is chosen by {chosen_by}, which weighting would trade "
                       f"away; class_weight: balanced weighs them)")
        return None
    if mode == "auto" and ratio <= AUTO_WEIGHT_RATIO:
        return None
    balanced = counts.sum() / (len(present) * counts[present])
    # A class missing from train (unstratified split) keeps weight 1; every index gets an entry.
    weights = {i: 1.0 for i in range(n_classes)} | {int(c): float(w) for c, w in zip(present, balanced)}
    why = f"; class_weight auto, as the model is chosen by {chosen_by}" if mode == "auto" else ""
    log.append(f"class weights: balanced (largest class {ratio:.1f}x the smallest in train{why}): "
               + ", ".join(f"{i}={w:.2f}" for i, w in weights.items()))
    return weights

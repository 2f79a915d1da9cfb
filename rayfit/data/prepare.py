"""Load -> clean -> split -> fit the preprocessing on train only: the arrays every model trains on."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils.class_weight import compute_class_weight

from rayfit.config import DataConfig
from rayfit.data import clean
from rayfit.data.load import load_table
from rayfit.data.preprocessing import DatetimeExpander, build_columns
from rayfit.data.target import detect_task, encode_classes, regression_values, resolve_target
from rayfit.errors import UserError

MIN_ROWS = 20  # below this, a three-way split leaves nothing to learn or judge from
MIN_ROWS_PER_CLASS = 3  # a stratified split puts at least one row of each class in each part
AUTO_WEIGHT_RATIO = 1.5  # class_weight auto: weight classes when the largest is this many times the smallest


@dataclass
class Prepared:
    task: str  # "classification" | "regression"
    target: str
    X_train: np.ndarray  # float32, preprocessed
    X_val: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray  # int64 class indices (classification) or float32 values (regression)
    y_val: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]  # encoded names: "age", "city=Paris", "signup_year"
    raw_columns: list[str]  # the input columns the preprocessor expects
    class_names: Optional[list[str]]
    class_weights: Optional[dict[int, float]]
    preprocessor: Pipeline  # fitted on the train split only
    log: list[str] = field(default_factory=list)  # every cleaning and preprocessing action, readable
    n_rows: int = 0  # rows after cleaning
    source: str = ""

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> Optional[int]:
        return len(self.class_names) if self.task == "classification" else None


def prepare(cfg: DataConfig, seed: int) -> Prepared:
    frame, default_target = load_table(cfg.source)
    frame.columns = [str(c) for c in frame.columns]
    target = resolve_target(frame, cfg, default_target)
    log: list[str] = []

    frame = clean.drop_missing_target(frame, target, log)
    if cfg.drop_duplicates:
        frame = clean.drop_duplicate_rows(frame, log)
    if cfg.drop_constant:
        frame = clean.drop_constant_columns(frame, target, log)
    if cfg.drop_id_like:
        frame = clean.drop_id_like_columns(frame, target, log)
    frame = frame.reset_index(drop=True)
    if frame.shape[1] < 2:
        raise UserError(f"no feature columns left in {cfg.source} after cleaning (only the target {target!r})")
    if len(frame) < MIN_ROWS:
        raise UserError(f"too few rows for a {_split_label(cfg)} split: {len(frame)} rows after cleaning "
                        f"(need at least {MIN_ROWS})")

    task = detect_task(frame[target], cfg.task, log)
    if task == "classification":
        y, class_names = encode_classes(frame[target], log)
    else:
        y, class_names = regression_values(frame[target]), None
    stratified = task == "classification" and cfg.stratify
    train, val, test = _split(len(frame), y, cfg, seed, stratified, len(class_names or ()), log)

    features = frame.drop(columns=[target])
    kinds = clean.column_kinds(frame, target)
    preprocessor = _fit_preprocessor(features, train, kinds, cfg, log)

    def arrays(rows):
        return np.asarray(preprocessor.transform(features.iloc[rows]), dtype=np.float32), y[rows]

    (X_train, y_train), (X_val, y_val), (X_test, y_test) = arrays(train), arrays(val), arrays(test)
    weights = _class_weights(y_train, len(class_names), cfg.class_weight, log) if class_names else None
    return Prepared(
        task=task, target=target, X_train=X_train, X_val=X_val, X_test=X_test,
        y_train=y_train, y_val=y_val, y_test=y_test,
        feature_names=[str(n) for n in preprocessor.get_feature_names_out()], raw_columns=list(features.columns),
        class_names=class_names, class_weights=weights, preprocessor=preprocessor, log=log,
        n_rows=len(frame), source=cfg.source,
    )


def _split_label(cfg: DataConfig) -> str:
    return "/".join(f"{fraction * 100:g}" for fraction in (cfg.split.train, cfg.split.val, cfg.split.test))


def _split(n: int, y: np.ndarray, cfg: DataConfig, seed: int, stratified: bool, n_classes: int, log: list[str]):
    """Row positions of train, val and test; sizes are whole numbers so 1000 rows give exactly 700/150/150."""
    label = f"{_split_label(cfg)}{' stratified' if stratified else ''} split"
    sizes = {"test": round(n * cfg.split.test), "val": round(n * cfg.split.val)}
    sizes = {"train": n - sizes["test"] - sizes["val"], **sizes}
    if stratified:
        counts = np.bincount(y, minlength=n_classes)
        if counts.min() < MIN_ROWS_PER_CLASS:
            raise UserError(f"too few rows for a {label}: the smallest class has {counts.min()} row(s) "
                            f"(need at least {MIN_ROWS_PER_CLASS} per class)")
    for part, size in sizes.items():
        if size < 1 or (stratified and size < n_classes):
            need = f"at least {n_classes} for {n_classes} classes" if stratified else "at least 1"
            raise UserError(f"too few rows for a {label}: {n} rows after cleaning give the {part} split "
                            f"{size} rows (need {need})")
    rows = np.arange(n)
    try:
        rest, test = train_test_split(rows, test_size=sizes["test"], random_state=seed,
                                      stratify=y if stratified else None)
        train, val = train_test_split(rest, test_size=sizes["val"], random_state=seed,
                                      stratify=y[rest] if stratified else None)
    except ValueError as exc:
        raise UserError(f"cannot make a {label} of {n} rows: {str(exc).splitlines()[0]}") from None
    how = ", stratified by the target" if stratified else ""
    log.append(f"split {n} rows into {len(train)}/{len(val)}/{len(test)} (train/val/test{how}, seed {seed})")
    return train, val, test


def _fit_preprocessor(features: pd.DataFrame, train_rows: np.ndarray, kinds: dict[str, list[str]], cfg: DataConfig,
                      log: list[str]) -> Pipeline:
    train = features.iloc[train_rows]
    expander = DatetimeExpander(kinds["datetime"]).fit(train)
    for column, parts in expander.parts_.items():
        log.append(f"expanded datetime column {column!r} into {', '.join(parts)}")
    _log_imputation(features, kinds, log)
    date_parts = [name for name in expander.get_feature_names_out() if name not in train.columns]
    onehot, ordinal = _choose_encodings(train, kinds["categorical"], cfg)
    pipeline = Pipeline([
        ("datetime", expander),
        ("columns", build_columns(kinds["numeric"] + date_parts, onehot, ordinal)),
    ]).fit(train)
    columns = pipeline.named_steps["columns"]
    if kinds["numeric"] or date_parts:
        log.append(f"standardized {len(kinds['numeric']) + len(date_parts)} numeric feature(s) "
                   f"(mean and scale fitted on train)")
    for name, steps, column_names in columns.transformers_:
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


def _log_imputation(features: pd.DataFrame, kinds: dict[str, list[str]], log: list[str]) -> None:
    for column in features.columns:
        if column in kinds["datetime"]:
            missing = int(clean.parse_datetimes(features[column]).isna().sum())
            how, what = "the median of each part", "missing or unreadable dates"
        else:
            missing = int(features[column].isna().sum())
            how = "the median" if column in kinds["numeric"] else "the most frequent value"
            what = "missing value" + ("" if missing == 1 else "s")
        if missing:
            log.append(f"imputed {missing} {what} in {column!r} with {how} (fitted on train)")


def _class_weights(y_train: np.ndarray, n_classes: int, mode: str, log: list[str]) -> Optional[dict[int, float]]:
    if mode == "none":
        return None
    counts = np.bincount(y_train, minlength=n_classes)
    present = np.flatnonzero(counts)
    ratio = counts[present].max() / counts[present].min()
    if mode == "auto" and ratio <= AUTO_WEIGHT_RATIO:
        return None
    balanced = compute_class_weight("balanced", classes=present, y=y_train)
    # A class missing from train (unstratified split) keeps weight 1; every index gets an entry.
    weights = {i: 1.0 for i in range(n_classes)} | {int(c): float(w) for c, w in zip(present, balanced)}
    log.append(f"class weights: balanced (largest class {ratio:.1f}x the smallest in train): "
               + ", ".join(f"{i}={w:.2f}" for i, w in weights.items()))
    return weights

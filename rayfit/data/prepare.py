"""Load -> clean -> split -> fit the preprocessing on train only: the arrays every model trains on.

Tables give 2-D rows; images (N, H, W, C) and sequences (N, T, F) come from rayfit.data.arrays, and
windows of a time-series table from rayfit.data.sequences.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Optional

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from rayfit.config import DataConfig
from rayfit.data import clean
from rayfit.data.arrays import ChannelStandardizer, load_examples, resolve_kind
from rayfit.data.load import load_table
from rayfit.data.preprocessing import DatetimeExpander, build_columns
from rayfit.data.sequences import WindowedSeries, chronological_ranges, numeric_columns, windows_in
from rayfit.data.target import detect_task, encode_classes, regression_values, resolve_target, shorten
from rayfit.errors import UserError

MIN_ROWS = 20  # below this, a three-way split leaves nothing to learn or judge from
MIN_CLUSTER_ROWS = 10  # fewer rows than this do not make clusters worth the name
MIN_ROWS_PER_CLASS = 3  # a stratified split puts at least one row of each class in each part
AUTO_WEIGHT_RATIO = 1.5  # class_weight auto: weight classes when the largest is this many times the smallest


@dataclass
class Prepared:
    task: str  # "classification" | "regression"
    target: str
    X_train: np.ndarray  # float32, preprocessed: (N, features), (N, H, W, C) images or (N, T, F) sequences
    X_val: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray  # int64 class indices (classification) or float32 values (regression)
    y_val: np.ndarray
    y_test: np.ndarray
    # Encoded names: "age", "city=Paris", "signup_year"; the channels of images and sequences.
    feature_names: list[str]
    raw_columns: list[str]  # the input columns the preprocessor expects; none for arrays
    class_names: Optional[list[str]]
    class_weights: Optional[dict[int, float]]
    # Fitted on the train split only; transform(raw) -> float32. A Pipeline for tables, a
    # ChannelStandardizer for arrays, a WindowedSeries for a time-series table.
    preprocessor: Any
    log: list[str] = field(default_factory=list)  # every cleaning and preprocessing action, readable
    n_rows: int = 0  # rows (or examples) after cleaning
    source: str = ""
    kind: str = "tabular"  # "tabular" | "image" | "sequence"
    # the test split's rows as numbered in the source file (0: the first data row); tables only
    test_rows: Optional[np.ndarray] = None
    # data.prepare_on: cluster (rayfit/data/on_cluster.py): the X_/y_ arrays are samples; the whole
    # training split lies transformed at this URI, and these are the splits' true sizes
    train_split: Optional[str] = None
    split_rows: Optional[dict[str, int]] = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: (features,), (H, W, C) or (T, F)."""
        return tuple(self.X_train.shape[1:])

    @property
    def n_features(self) -> int:
        """Input values per example: the columns of a table, every pixel or step of the others."""
        return math.prod(self.input_shape)

    @property
    def n_classes(self) -> Optional[int]:
        return len(self.class_names) if self.task == "classification" else None


def prepare(cfg: DataConfig, seed: int) -> Prepared:
    kind, own_kind = resolve_kind(cfg)
    if kind == "sequence" and own_kind == "tabular":
        return _prepare_time_series(cfg)  # chronological: nothing to shuffle, no seed
    if kind != "tabular":
        return _prepare_examples(cfg, seed, kind)
    frame, default_target = load_table(cfg.source)
    frame.columns = [str(c) for c in frame.columns]
    target = resolve_target(frame, cfg, default_target)
    log: list[str] = []

    frame = clean.infinities_as_missing(frame, log)
    frame = clean.drop_missing_target(frame, target, log)
    if cfg.drop_duplicates:
        frame = clean.drop_duplicate_rows(frame, log)
    frame = _drop_uninformative_columns(frame, target, cfg, log)
    source_rows = frame.index.to_numpy()  # each kept row's number in the file, before cleaning dropped any
    frame = frame.reset_index(drop=True)
    if frame.shape[1] < 2:
        raise UserError(f"no feature columns left in {cfg.source} after cleaning (only the target {target!r})")
    _check_enough_rows(len(frame), cfg)

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
        n_rows=len(frame), source=cfg.source, test_rows=source_rows[test],
    )


@dataclass
class Unlabelled:
    """A table ready for clustering: every row, preprocessed; the label column (if any) kept aside
    to judge the clusters by, never as a feature. Saved like Prepared (save_preprocessing)."""

    X: np.ndarray  # float32 (rows, features), every row of the cleaned table
    labels: Optional[np.ndarray]  # int64 codes of the label column, or None
    label_names: Optional[list[str]]
    target: Optional[str]  # the label column
    feature_names: list[str]
    raw_columns: list[str]
    preprocessor: Any
    log: list[str] = field(default_factory=list)
    n_rows: int = 0
    source: str = ""
    task: str = "clustering"
    kind: str = "tabular"
    class_names: Optional[list[str]] = None  # predictions are cluster numbers, not classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])


def prepare_unlabelled(cfg: DataConfig) -> Unlabelled:
    """Load and clean a table for clustering, and fit its preprocessing on every row (there is no
    split: nothing is predicted that a held-out row could check). Rows are kept as they are in the
    file, duplicates too, so that assignments.csv lines up with it."""
    kind, _ = resolve_kind(cfg)
    if kind != "tabular":
        raise UserError(f"task: clustering takes a table (CSV or Parquet), but {cfg.source} is {kind} data")
    frame, default_target = load_table(cfg.source)
    frame.columns = [str(c) for c in frame.columns]
    target = cfg.target or default_target
    if target is not None and target not in frame.columns:
        raise UserError(f"label column {target!r} not found in {cfg.source}; columns: {shorten(frame.columns)}")
    log: list[str] = ["task: clustering" + (f" (column {target!r} judges the clusters, it is not a feature)"
                                            if target else " (no label column: judged by the clusters' shape alone)")]
    frame = clean.infinities_as_missing(frame, log)
    frame = _drop_uninformative_columns(frame, target, cfg, log).reset_index(drop=True)
    features = frame.drop(columns=[target]) if target else frame
    if features.shape[1] < 1:
        raise UserError(f"no feature columns left in {cfg.source} after cleaning")
    if len(frame) < MIN_CLUSTER_ROWS:
        raise UserError(f"too few rows to cluster: {len(frame)} (need at least {MIN_CLUSTER_ROWS})")
    labels = label_names = None
    if target:
        known = frame[target].notna().to_numpy()
        codes, label_names = encode_classes(frame.loc[known, target], [])
        labels = np.full(len(frame), -1, dtype=np.int64)  # -1: no label (left out of ARI and NMI)
        labels[known] = codes
    kinds = clean.column_kinds(features, None)
    preprocessor = _fit_preprocessor(features, np.arange(len(features)), kinds, cfg, log)
    X = np.asarray(preprocessor.transform(features), dtype=np.float32)
    log = [line.replace("fitted on train", "fitted on every row") for line in log]
    return Unlabelled(X=X, labels=labels, label_names=label_names, target=target,
                      feature_names=[str(n) for n in preprocessor.get_feature_names_out()],
                      raw_columns=list(features.columns), preprocessor=preprocessor, log=log, n_rows=len(frame),
                      source=cfg.source)


def _drop_uninformative_columns(frame: pd.DataFrame, target: Optional[str], cfg: DataConfig,
                                log: list[str]) -> pd.DataFrame:
    """Constant and ID-like columns, as the config says (the target, if any, is kept)."""
    if cfg.drop_constant:
        frame = clean.drop_constant_columns(frame, target, log)
    if cfg.drop_id_like:
        frame = clean.drop_id_like_columns(frame, target, log)
    return frame


def _prepare_examples(cfg: DataConfig, seed: int, kind: str) -> Prepared:
    """Images or sequences: a stratified random split, then per-channel scaling fitted on train."""
    examples = load_examples(cfg, kind)
    log = [examples.description]
    labels = pd.Series(examples.labels, name=examples.target)
    x = examples.x
    missing = labels.isna().to_numpy()
    if missing.any():
        log.append(f"dropped {int(missing.sum())} example(s) with a missing label")
        x, labels = x[~missing], labels[~missing].reset_index(drop=True)
    if not np.isfinite(x).all():
        raise UserError(f"{cfg.source}: the examples hold {int((~np.isfinite(x)).sum())} missing or infinite "
                        f"values; {kind} data must be complete")
    _check_enough_rows(len(x), cfg)
    task = detect_task(labels, cfg.task, log)
    y, class_names = encode_classes(labels, log) if task == "classification" else (regression_values(labels), None)
    stratified = task == "classification" and cfg.stratify
    train, val, test = _split(len(x), y, cfg, seed, stratified, len(class_names or ()), log)
    scaler = ChannelStandardizer().fit(x[train])
    log.append(f"standardized {x.shape[-1]} {kind} channel(s) (mean and std fitted on train)")
    weights = _class_weights(y[train], len(class_names), cfg.class_weight, log) if class_names else None
    return Prepared(
        task=task, target=examples.target,
        X_train=scaler.transform(x[train]), X_val=scaler.transform(x[val]), X_test=scaler.transform(x[test]),
        y_train=y[train], y_val=y[val], y_test=y[test],
        feature_names=examples.channel_names, raw_columns=[], class_names=class_names, class_weights=weights,
        preprocessor=scaler, log=log, n_rows=len(x), source=cfg.source, kind=kind,
    )


def _prepare_time_series(cfg: DataConfig) -> Prepared:
    """Windows of consecutive rows of a numeric table, each predicting the target `horizon` rows later.

    The split is chronological and each part's windows lie within its own rows, so no training
    window sees a validation or test target.
    """
    if cfg.window is None:
        raise UserError("data.window: required for a time-series CSV (kind: sequence)")
    frame, default_target = load_table(cfg.source)
    target = resolve_target(frame, cfg, default_target)
    numeric_columns(frame, cfg.source)
    log: list[str] = []
    if cfg.drop_constant:
        frame = clean.drop_constant_columns(frame, target, log)
    if cfg.drop_id_like:
        frame = clean.drop_id_like_columns(frame, target, log)
    columns = list(frame.columns)
    missing = int(frame.isna().sum().sum())
    if missing:
        # Time order matters: the last known value, not a median over the future.
        frame = frame.ffill().bfill()
        log.append(f"filled {missing} missing value(s) with the previous row's (the next row's at the start)")
    _check_enough_rows(len(frame), cfg)
    task = detect_task(frame[target], cfg.task, log)
    y, class_names = (encode_classes(frame[target], log) if task == "classification"
                      else (regression_values(frame[target]), None))

    window, horizon = cfg.window, cfg.horizon
    ranges = chronological_ranges(len(frame), _split_sizes(len(frame), cfg))
    counts = {part: windows_in(len(rows), window, horizon) for part, rows in ranges.items()}
    for part, rows in ranges.items():
        if counts[part] < 1:
            raise UserError(f"too few rows for a {_split_label(cfg)} chronological split: the {part} split has "
                            f"{len(rows)} rows, fewer than a window of {window} plus a horizon of {horizon} "
                            f"(need at least {window + horizon})")
    series = WindowedSeries(columns, window).fit(frame.iloc[ranges["train"]])

    parts = {}
    for part, rows in ranges.items():
        first_target = rows.start + window - 1 + horizon  # the target of the part's first window
        parts[part] = (series.transform(frame.iloc[rows])[:counts[part]], y[first_target:rows.stop])
    ahead = f"{horizon} row{'s' if horizon > 1 else ''} ahead"
    log.append(f"built {sum(counts.values())} windows of {window} rows x {len(columns)} columns "
               f"predicting {target!r} {ahead}")
    log.append(f"split chronologically {_split_label(cfg)} (no shuffling): rows "
               + ", ".join(f"{rows.start}-{rows.stop - 1} {part} ({counts[part]} windows)"
                           for part, rows in ranges.items()))
    log.append(f"standardized {len(columns)} sequence channel(s) (mean and std fitted on the train rows)")
    (X_train, y_train), (X_val, y_val), (X_test, y_test) = parts["train"], parts["val"], parts["test"]
    weights = _class_weights(y_train, len(class_names), cfg.class_weight, log) if class_names else None
    return Prepared(
        task=task, target=target, X_train=X_train, X_val=X_val, X_test=X_test,
        y_train=y_train, y_val=y_val, y_test=y_test, feature_names=columns, raw_columns=columns,
        class_names=class_names, class_weights=weights, preprocessor=series, log=log,
        n_rows=len(frame), source=cfg.source, kind="sequence",
    )


def _check_enough_rows(n: int, cfg: DataConfig) -> None:
    if n < MIN_ROWS:
        raise UserError(f"too few rows for a {_split_label(cfg)} split: {n} rows after cleaning "
                        f"(need at least {MIN_ROWS})")


def _split_label(cfg: DataConfig) -> str:
    return "/".join(f"{fraction * 100:g}" for fraction in (cfg.split.train, cfg.split.val, cfg.split.test))


def _split(n: int, y: np.ndarray, cfg: DataConfig, seed: int, stratified: bool, n_classes: int, log: list[str]):
    """Row positions of train, val and test; sizes are whole numbers so 1000 rows give exactly 700/150/150."""
    label = f"{_split_label(cfg)}{' stratified' if stratified else ''} split"
    sizes = _split_sizes(n, cfg)
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


def _split_sizes(n: int, cfg: DataConfig) -> dict[str, int]:
    sizes = {"test": round(n * cfg.split.test), "val": round(n * cfg.split.val)}
    return {"train": n - sizes["test"] - sizes["val"], **sizes}


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
        ("columns", build_columns(kinds["numeric"] + date_parts, onehot, ordinal, kinds["text"])),
    ]).fit(train)
    columns = pipeline.named_steps["columns"]
    if kinds["numeric"] or date_parts:
        log.append(f"standardized {len(kinds['numeric']) + len(date_parts)} numeric feature(s) "
                   f"(mean and scale fitted on train)")
    for name, steps, column_names in columns.transformers_:
        if name.startswith("text:"):
            union = steps.named_steps["tfidf"]
            words, chars = (len(vectorizer.vocabulary_) for _, vectorizer in union.transformer_list)
            log.append(f"text column {column_names!r}: TF-IDF of {words} words and word pairs and "
                       f"{chars} character 2- to 4-grams (vocabularies fitted on train)")
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
    return class_weights_of_counts(np.bincount(y_train, minlength=n_classes), mode, log)


def class_weights_of_counts(counts: np.ndarray, mode: str, log: list[str]) -> Optional[dict[int, float]]:
    """Class weights from the training split's count of each class index (class_weight: auto,
    balanced or none); balanced is scikit-learn's: rows / (classes present x the class's rows)."""
    if mode == "none":
        return None
    n_classes = len(counts)
    present = np.flatnonzero(counts)
    ratio = counts[present].max() / counts[present].min()
    if mode == "auto" and ratio <= AUTO_WEIGHT_RATIO:
        return None
    balanced = counts.sum() / (len(present) * counts[present])
    # A class missing from train (unstratified split) keeps weight 1; every index gets an entry.
    weights = {i: 1.0 for i in range(n_classes)} | {int(c): float(w) for c, w in zip(present, balanced)}
    log.append(f"class weights: balanced (largest class {ratio:.1f}x the smallest in train): "
               + ", ".join(f"{i}={w:.2f}" for i, w in weights.items()))
    return weights

"""One way in for data: `check(cfg)` reads a source and says everything wrong with it before anything
else starts; the Source it returns `prepare`s it (split, preprocessing fitted on train only) into one
Prepared, wherever the rows end up (rayfit/data/prepared.py). `prepare(cfg, seed)` does both.

The sources:
- a table on the driver: rows 2-D, split shuffled (stratified by the class), encoded and scaled;
- images (N, H, W, C) or sequences (N, T, F) from rayfit.data.arrays: per-channel scaling;
- a time-series table cut into windows (rayfit.data.sequences): split in file order;
- unlabelled rows for clustering: every row, the label column kept aside to judge the clusters;
- a table too large for the driver, prepared by Ray Data on the cluster (rayfit.data.on_cluster).

A Source's `prepare` needs Ray only where its rows are prepared on the cluster (`where`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from rayfit.cluster.storage import local_copy
from rayfit.config import DataConfig
from rayfit.data import clean
from rayfit.data.arrays import ChannelStandardizer, load_examples, resolve_kind
from rayfit.data.profile import profile_columns
from rayfit.data.features import class_weights, drop_uninformative_columns, fit_preprocessor
from rayfit.data.load import load_table
from rayfit.data.on_cluster import ClusterTable, prepares_on_cluster
from rayfit.data.prepared import ALL, SPLITS, Part, Prepared, Say, Source, Split
from rayfit.data.sequences import WindowedSeries, numeric_columns, windows_in
from rayfit.data.split import chronological_ranges, check_enough_rows, check_split, split_label, split_rows
from rayfit.data.test_file import read_test_rows
from rayfit.data.target import detect_task, encode_classes, regression_values, resolve_target, shorten
from rayfit.errors import UserError

MIN_CLUSTER_ROWS = 10  # fewer rows than this do not make clusters worth the name

def check(cfg: DataConfig) -> Source:
    """Read the source named by `cfg` and check it: bad input raises UserError here, before a run is
    claimed or Ray starts. A file in an object store is read from a local copy (unless the cluster
    prepares it, reading it where it is)."""
    source = _check(cfg)
    if cfg.test and not isinstance(source, Table):
        what = "a table prepared on the cluster" if source.where == "cluster" else (
            "clustering" if source.task == "clustering" else f"{source.kind} data")
        raise UserError(f"data.test: a test file of its own is for a table prepared on the driver; "
                        f"{cfg.source} is {what}")
    return source


def _check(cfg: DataConfig) -> Source:
    if prepares_on_cluster(cfg):
        return ClusterTable.check(cfg)
    with local_copy(cfg.source) as path:
        local = cfg.model_copy(update={"source": path})
        if cfg.task == "clustering":
            return UnlabelledTable(local, shown=cfg.source)
        kind, own_kind = resolve_kind(local)
        if kind == "sequence" and own_kind == "tabular":
            return TimeSeries(local, shown=cfg.source)
        if kind != "tabular":
            return ExampleSet(local, kind, shown=cfg.source)
        return Table(local, shown=cfg.source)


def prepare(cfg: DataConfig, seed: int, shards=None, say: Say = lambda line: None) -> Prepared:
    """check(cfg), then prepare: the one call from a data config to prepared parts."""
    return check(cfg).prepare(seed, shards, say)


def _labels(y: pd.Series, cfg: DataConfig, log: list[str]) -> tuple[str, np.ndarray, Optional[list[str]]]:
    """(the task, the target as class indices or values, the class names)."""
    task = detect_task(y, cfg.task, log)
    if task == "classification":
        return (task, *encode_classes(y, log))
    return task, regression_values(y), None


def _labels_for_split(n: int, labels: pd.Series, cfg: DataConfig, log: list[str]):
    """(task, y, class names, stratified) of `n` rows whose labels must make the configured split."""
    check_enough_rows(n, cfg)
    task, y, class_names = _labels(labels, cfg, log)
    stratified = task == "classification" and cfg.stratify
    check_split(n, y, cfg, stratified, len(class_names or ()))
    return task, y, class_names, stratified


def _weights(y_train: np.ndarray, class_names: Optional[list[str]], cfg: DataConfig, log: list[str],
             chosen_by: str):
    return class_weights(y_train, len(class_names), cfg.class_weight, log, chosen_by) if class_names else None


class Table(Source):
    """A table of independent rows, prepared in driver memory."""

    def __init__(self, cfg: DataConfig, shown: str):
        frame, default_target = load_table(cfg.source)
        frame.columns = [str(c) for c in frame.columns]
        self.cfg, self.shown = cfg, shown
        self.target = target = resolve_target(frame, cfg, default_target)
        self.log = log = []
        frame = clean.infinities_as_missing(frame, log)
        frame = clean.drop_missing_target(frame, target, log)
        if cfg.drop_duplicates is True:
            frame = clean.drop_duplicate_rows(frame, log)
        else:
            clean.note_duplicate_rows(frame, log)
        frame = drop_uninformative_columns(frame, target, cfg, log)
        self.source_rows = frame.index.to_numpy()  # each kept row's number in the file, before cleaning
        frame = frame.reset_index(drop=True)
        if frame.shape[1] < 2:
            raise UserError(f"no feature columns left in {shown} after cleaning (only the target {target!r})")
        self.task, self.y, self.class_names, self.stratified = _labels_for_split(len(frame), frame[target], cfg, log)
        self.frame = frame
        self.test = read_test_rows(cfg.test, target, [c for c in frame.columns if c != target], self.task,
                                   self.class_names, log) if cfg.test else None

    def test_moved(self, test: str) -> None:
        self.cfg = self.cfg.model_copy(update={"test": test})

    def describe(self) -> str:
        test = f"; test file: {len(self.test.y):,} rows" if self.test else ""
        return f"{self.task}, {len(self.frame):,} rows x {self.frame.shape[1] - 1} feature columns{test}"

    def prepare(self, seed: int, shards=None, say: Say = lambda line: None) -> Prepared:
        cfg, frame, y, log = self.cfg, self.frame, self.y, list(self.log)
        rows, split = split_rows(len(frame), y, cfg, seed, self.stratified, log)
        features = frame.drop(columns=[self.target])
        kinds = clean.column_kinds(frame, self.target)
        preprocessor = fit_preprocessor(features, rows["train"], kinds, cfg, log)

        def transformed(rows: pd.DataFrame) -> np.ndarray:
            return np.asarray(preprocessor.transform(rows), dtype=np.float32)

        if self.test:  # the user's own test rows, transformed as `rayfit predict` would
            parts = {name: Part(transformed(features.iloc[rows[name]]), y[rows[name]]) for name in ("train", "val")}
            parts["test"] = Part(transformed(self.test.features), self.test.y)
            test_rows = self.test.rows
            split.rows["test"] = len(test_rows)
            split.test_file = cfg.test
        else:
            parts = {name: Part(transformed(features.iloc[rows[name]]), y[rows[name]]) for name in SPLITS}
            test_rows = self.source_rows[rows["test"]]
        return Prepared(
            task=self.task, target=self.target, parts=parts, split=split,
            feature_names=[str(n) for n in preprocessor.get_feature_names_out()], raw_columns=list(features.columns),
            class_names=self.class_names,
            class_weights=_weights(parts["train"].y, self.class_names, cfg, log, self.chosen_by),
            preprocessor=preprocessor, log=log, n_rows=len(frame), source=self.shown,
            test_rows=test_rows, profile=profile_columns(features.iloc[rows["train"]]),
        )


class ExampleSet(Source):
    """Images or sequences: a stratified random split, then per-channel scaling fitted on train."""

    def __init__(self, cfg: DataConfig, kind: str, shown: str):
        examples = load_examples(cfg, kind)
        self.cfg, self.kind, self.shown, self.target = cfg, kind, shown, examples.target
        self.channel_names = examples.channel_names
        self.log = log = [examples.description]
        labels = pd.Series(examples.labels, name=examples.target)
        x = examples.x
        missing = labels.isna().to_numpy()
        if missing.any():
            log.append(f"dropped {int(missing.sum())} example(s) with a missing label")
            x, labels = x[~missing], labels[~missing].reset_index(drop=True)
        if not np.isfinite(x).all():
            raise UserError(f"{shown}: the examples hold {int((~np.isfinite(x)).sum())} missing or infinite "
                            f"values; {kind} data must be complete")
        self.task, self.y, self.class_names, self.stratified = _labels_for_split(len(x), labels, cfg, log)
        self.x = x

    def describe(self) -> str:
        return f"{self.task}, {len(self.x):,} {self.kind} examples of shape {tuple(self.x.shape[1:])}"

    def prepare(self, seed: int, shards=None, say: Say = lambda line: None) -> Prepared:
        x, y, log = self.x, self.y, list(self.log)
        rows, split = split_rows(len(x), y, self.cfg, seed, self.stratified, log)
        scaler = ChannelStandardizer().fit(x[rows["train"]])
        log.append(f"standardized {x.shape[-1]} {self.kind} channel(s) (mean and std fitted on train)")
        parts = {name: Part(scaler.transform(x[rows[name]]), y[rows[name]]) for name in SPLITS}
        return Prepared(
            task=self.task, target=self.target, parts=parts, split=split,
            feature_names=self.channel_names, raw_columns=[], class_names=self.class_names,
            class_weights=_weights(parts["train"].y, self.class_names, self.cfg, log, self.chosen_by),
            preprocessor=scaler, log=log, n_rows=len(x), source=self.shown, kind=self.kind,
        )


class TimeSeries(Source):
    """Windows of consecutive rows of a numeric table, each predicting the target `horizon` rows later.

    The split is chronological and each part's windows lie within its own rows, so no training
    window sees a validation or test target.
    """

    kind = "sequence"

    def __init__(self, cfg: DataConfig, shown: str):
        if cfg.window is None:
            raise UserError("data.window: required for a time-series CSV (kind: sequence)")
        frame, default_target = load_table(cfg.source)
        self.cfg, self.shown = cfg, shown
        self.target = target = resolve_target(frame, cfg, default_target)
        numeric_columns(frame, shown)
        self.log = log = []
        frame = drop_uninformative_columns(frame, target, cfg, log)
        missing = int(frame.isna().sum().sum())
        if missing:
            # Time order matters: the last known value, not a median over the future.
            frame = frame.ffill().bfill()
            log.append(f"filled {missing} missing value(s) with the previous row's (the next row's at the start)")
        check_enough_rows(len(frame), cfg)
        self.task, self.y, self.class_names = _labels(frame[target], cfg, log)
        window, horizon = cfg.window, cfg.horizon
        self.ranges = chronological_ranges(len(frame), cfg)
        self.counts = {part: windows_in(len(rows), window, horizon) for part, rows in self.ranges.items()}
        for part, rows in self.ranges.items():
            if self.counts[part] < 1:
                raise UserError(f"too few rows for a {split_label(cfg)} chronological split: the {part} split has "
                                f"{len(rows)} rows, fewer than a window of {window} plus a horizon of {horizon} "
                                f"(need at least {window + horizon})")
        self.frame = frame

    def describe(self) -> str:
        return f"{self.task}, {len(self.frame):,} rows cut into windows of {self.cfg.window}"

    def prepare(self, seed: int, shards=None, say: Say = lambda line: None) -> Prepared:
        cfg, frame, log, counts = self.cfg, self.frame, list(self.log), self.counts
        window, horizon, columns = cfg.window, cfg.horizon, list(frame.columns)
        series = WindowedSeries(columns, window).fit(frame.iloc[self.ranges["train"]])
        parts = {}
        for part, rows in self.ranges.items():
            first_target = rows.start + window - 1 + horizon  # the target of the part's first window
            parts[part] = Part(series.transform(frame.iloc[rows])[:counts[part]], self.y[first_target:rows.stop])
        ahead = f"{horizon} row{'s' if horizon > 1 else ''} ahead"
        log.append(f"built {sum(counts.values())} windows of {window} rows x {len(columns)} columns "
                   f"predicting {self.target!r} {ahead}")
        log.append(f"split chronologically {split_label(cfg)} (no shuffling): rows "
                   + ", ".join(f"{rows.start}-{rows.stop - 1} {part} ({counts[part]} windows)"
                               for part, rows in self.ranges.items()))
        log.append(f"standardized {len(columns)} sequence channel(s) (mean and std fitted on the train rows)")
        return Prepared(
            task=self.task, target=self.target, parts=parts, split=Split("chronological", dict(counts)),
            feature_names=columns, raw_columns=columns, class_names=self.class_names,
            class_weights=_weights(parts["train"].y, self.class_names, cfg, log, self.chosen_by),
            preprocessor=series, log=log,
            n_rows=len(frame), source=self.shown, kind="sequence",
        )


class UnlabelledTable(Source):
    """A table for clustering: every row, its preprocessing fitted on every row (nothing is predicted
    that a held-out row could check); the label column, if any, kept aside to judge the clusters by,
    never as a feature. Rows are kept as they are in the file, duplicates too, so that
    assignments.csv lines up with it."""

    task = "clustering"

    def __init__(self, cfg: DataConfig, shown: str):
        kind, _ = resolve_kind(cfg)
        if kind != "tabular":
            raise UserError(f"task: clustering takes a table (CSV or Parquet), but {shown} is {kind} data")
        frame, default_target = load_table(cfg.source)
        frame.columns = [str(c) for c in frame.columns]
        self.cfg, self.shown = cfg, shown
        self.target = target = cfg.target or default_target
        if target is not None and target not in frame.columns:
            raise UserError(f"label column {target!r} not found in {shown}; columns: {shorten(frame.columns)}")
        self.log = log = ["task: clustering" + (f" (column {target!r} judges the clusters, it is not a feature)"
                                                if target else " (no label column: judged by the clusters' shape alone)")]
        frame = clean.infinities_as_missing(frame, log)
        frame = drop_uninformative_columns(frame, target, cfg, log).reset_index(drop=True)
        self.features = frame.drop(columns=[target]) if target else frame
        if self.features.shape[1] < 1:
            raise UserError(f"no feature columns left in {shown} after cleaning")
        if len(frame) < MIN_CLUSTER_ROWS:
            raise UserError(f"too few rows to cluster: {len(frame)} (need at least {MIN_CLUSTER_ROWS})")
        self.labels = self.label_names = None
        if target:
            known = frame[target].notna().to_numpy()
            codes, self.label_names = encode_classes(frame.loc[known, target], [])
            self.labels = np.full(len(frame), -1, dtype=np.int64)  # -1: no label (left out of ARI and NMI)
            self.labels[known] = codes

    def describe(self) -> str:
        return f"clustering, {len(self.features):,} rows x {self.features.shape[1]} columns"

    def prepare(self, seed: int, shards=None, say: Say = lambda line: None) -> Prepared:
        features, log = self.features, list(self.log)
        kinds = clean.column_kinds(features, None)
        preprocessor = fit_preprocessor(features, np.arange(len(features)), kinds, self.cfg, log,
                                        fitted_on="every row")
        X = np.asarray(preprocessor.transform(features), dtype=np.float32)
        return Prepared(
            task="clustering", target=self.target, parts={ALL: Part(X, self.labels)},
            split=Split("none", {ALL: len(X)}), feature_names=[str(n) for n in preprocessor.get_feature_names_out()],
            raw_columns=list(features.columns), class_names=None, class_weights=None, preprocessor=preprocessor,
            log=log, n_rows=len(X), source=self.shown, label_names=self.label_names,
        )

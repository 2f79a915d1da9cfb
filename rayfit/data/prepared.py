"""A checked source (`Source`, implemented in rayfit/data/prepare.py and rayfit/data/on_cluster.py)
and what preparing it hands the run: one type for every source, whose fields say what is where.

`parts` are the arrays in driver memory: train/val/test for a supervised task, one part `all` for
clustering. A table prepared on the cluster (`where == "cluster"`) keeps bounded samples of its
parts here and its whole training split as shards in storage (`train_shards`); `split.rows` is
always every part's true size, wherever the rows lie.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Callable, Optional

import numpy as np

SPLITS = ("train", "val", "test")
ALL = "all"  # clustering: one part, every row, nothing held out


@dataclass
class Split:
    """How the rows were divided into parts."""

    method: str  # "stratified" | "random" | "chronological" | "row hash" | "none" (clustering)
    rows: dict[str, int]  # each part's true size (on the cluster: the whole split, not the sample)
    seed: Optional[int] = None  # none for a chronological split or none at all
    test_file: Optional[str] = None  # the test rows came from this file (data.test), not the source

    @property
    def sampled(self) -> bool:
        return self.method == "row hash"


@dataclass
class Part:
    X: np.ndarray  # float32, preprocessed: (N, features), (N, H, W, C) images or (N, T, F) sequences
    # int64 class indices (classification; clustering: the label column's, -1 where missing),
    # float32 values (regression), or None (clustering without a label column)
    y: Optional[np.ndarray]


@dataclass
class Prepared:
    task: str  # "classification" | "regression" | "clustering"
    target: Optional[str]  # the target (clustering: the label column that judges the clusters, if any)
    parts: dict[str, Part]
    split: Split
    # Encoded names: "age", "city=Paris", "signup_year"; the channels of images and sequences.
    feature_names: list[str]
    raw_columns: list[str]  # the input columns the preprocessor expects; none for arrays
    class_names: Optional[list[str]]  # what a classifier predicts (none for regression and clustering)
    class_weights: Optional[dict[int, float]]
    # Fitted on the train split only (clustering: on every row); transform(raw) -> float32. A
    # Pipeline for tables, a ChannelStandardizer for arrays, a WindowedSeries for a time series.
    preprocessor: Any
    log: list[str] = field(default_factory=list)  # every cleaning and preprocessing action, readable
    n_rows: int = 0  # rows (or examples) after cleaning
    source: str = ""
    kind: str = "tabular"  # "tabular" | "image" | "sequence"
    where: str = "driver"  # "driver": the parts are whole; "cluster": samples, the training split in shards
    train_shards: Optional[str] = None  # where == "cluster": the transformed training split's URI (Parquet)
    # the test split's rows as numbered in the source file (0: the first data row); driver tables only
    test_rows: Optional[np.ndarray] = None
    label_names: Optional[list[str]] = None  # clustering: the label column's classes
    # each raw input column's distribution in the training rows (rayfit/data/profile.py), kept with
    # the model for `rayfit evaluate`'s shift; driver tables only
    profile: Optional[dict] = None

    X_train = property(lambda self: self.parts["train"].X)
    X_val = property(lambda self: self.parts["val"].X)
    X_test = property(lambda self: self.parts["test"].X)
    y_train = property(lambda self: self.parts["train"].y)
    y_val = property(lambda self: self.parts["val"].y)
    y_test = property(lambda self: self.parts["test"].y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: (features,), (H, W, C) or (T, F)."""
        return tuple(next(iter(self.parts.values())).X.shape[1:])

    @property
    def n_features(self) -> int:
        """Input values per example: the columns of a table, every pixel or step of the others."""
        return math.prod(self.input_shape)

    @property
    def n_classes(self) -> Optional[int]:
        return len(self.class_names) if self.task == "classification" else None

    def summary(self) -> str:
        """One line for the progress display."""
        if self.task == "clustering":
            labels = f", label column {self.target!r}" if self.target else ""
            return f"clustering, {self.n_rows} rows, {self.n_features} features{labels}"
        rows = "/".join(f"{self.split.rows[part]:,}" for part in SPLITS)
        line = f"{self.task}, {self.n_rows:,} rows -> {rows}, {self.n_features} features"
        if self.split.test_file:
            line += " (test: the test file)"
        if self.where == "cluster":
            line += f" (samples of {'/'.join(f'{len(self.parts[p].X):,}' for p in SPLITS)} on the driver)"
        return line


Say = Callable[[str], None]


class Source:
    """A data source read and checked. What the run's checks need before it starts: the task, the
    kind of example, the target, where it is prepared; and a line saying what was found."""

    task: str
    kind: str = "tabular"
    target: Optional[str] = None
    where: str = "driver"  # "cluster": prepare() needs Ray, and writes the training split's shards
    chosen_by: str = "accuracy"  # the metric that chooses the run's model: `class_weight: auto` follows it

    def describe(self) -> str:
        raise NotImplementedError

    def moved(self, source: str) -> None:
        """The source file is at `source` now (a run adopting it). The driver's sources hold their
        rows already; a source prepared on the cluster reads it again."""

    def test_moved(self, test: str) -> None:
        """The test file is kept at `test` now, in the run: what the run's results name."""

    def prepare(self, seed: int, shards=None, say: Say = lambda line: None) -> Prepared:
        """The prepared parts. `shards`: the Location the training split is written to when it is
        prepared on the cluster (unused otherwise); `say`: progress lines for a long preparation."""
        raise NotImplementedError

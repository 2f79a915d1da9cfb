"""A test set the user chooses (`rayfit run --test FILE`, `data.test`): rows every model is scored on
and nothing learns from. They are read and checked with the training table, before anything starts;
the training table's preprocessing transforms them as it would rows given to `rayfit predict`
(a category it never saw encodes as none of the known ones).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from rayfit.cluster.storage import local_copy
from rayfit.data import clean
from rayfit.data.builtin import BUILTIN
from rayfit.data.load import load_table
from rayfit.data.target import class_name, regression_values, shorten
from rayfit.errors import UserError


@dataclass
class TestRows:
    features: pd.DataFrame  # the training table's feature columns, in its order
    y: np.ndarray  # class indices of the training table's classes, or values
    rows: np.ndarray  # each row's number in the test file (0: the first data row)


def read_test_rows(source: str, target: str, feature_columns: list[str], task: str,
                   class_names: Optional[list[str]], log: list[str]) -> TestRows:
    """The rows of the test file at `source`, checked against the training table: every feature
    column and the target there, every class one the training rows hold. Extra columns are left out
    and listed; rows without a target are left out and counted."""
    if source in BUILTIN:
        raise UserError(f"data.test: {source!r} is a built-in set; give a .csv or .parquet file of test rows")
    with local_copy(source) as path:
        try:
            frame, _ = load_table(path)
        except UserError as exc:
            raise UserError(f"data.test: {exc}") from None
    return checked_rows(frame, target, feature_columns, task, class_names, source, log)


def checked_rows(frame: pd.DataFrame, target: str, feature_columns: list[str], task: str,
                 class_names: Optional[list[str]], source: str, log: list[str],
                 named: str = "data.test") -> TestRows:
    """Labelled raw rows checked against the training table (read_test_rows; `rayfit evaluate`'s
    rows too): errors name the rows as `named` `source`."""
    where = f"{named} {source}"
    needed = [target, *feature_columns]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise UserError(f"{where}: lacks {len(missing)} column{'s' if len(missing) > 1 else ''} of the "
                        f"training data: {shorten(missing)}")
    extra = [c for c in frame.columns if c not in needed]
    if extra:
        log.append(f"test file: left out {len(extra)} column(s) the models do not use: {shorten(extra)}")
    frame = clean.infinities_as_missing(frame[needed], [])
    known = frame[target].notna().to_numpy()
    if not known.all():
        log.append(f"test file: left out {int((~known).sum())} row(s) with a missing target")
    if not known.any():
        raise UserError(f"{where}: no row has a value in the target column {target!r}")
    rows = np.flatnonzero(known)
    labels = frame[target].iloc[rows]
    if task == "classification":
        y = _class_indices(labels, class_names, where)
    else:
        y = regression_values(labels)
    log.append(f"test: {len(rows):,} rows of {source} (none of them trains, validates or chooses)")
    return TestRows(frame[feature_columns].iloc[rows].reset_index(drop=True), y, rows)


def _class_indices(labels: pd.Series, class_names: list[str], source: str) -> np.ndarray:
    """The training table's class index of each label; a class it lacks is an error naming it."""
    names = labels.map(class_name) if pd.api.types.is_numeric_dtype(labels.dtype) else labels.astype(str)
    index = {name: i for i, name in enumerate(class_names)}
    unseen = sorted(set(names) - set(index))
    if unseen:
        raise UserError(f"{source}: the target {labels.name!r} holds class(es) the training data lacks: "
                        f"{shorten(unseen)} (the training classes: {shorten(class_names)})")
    return names.map(index).to_numpy(dtype=np.int64)

"""The target column: which one, which task it makes, and its encoding as model outputs."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from pandas.api import types

from rayfit.config import DataConfig
from rayfit.errors import UserError

MAX_AUTO_CLASSES = 20  # an integer target with at most this many values is a class label
_SHOWN = 12  # names listed in a message before "... (N more)"


def resolve_target(frame: pd.DataFrame, cfg: DataConfig, default: Optional[str]) -> str:
    target = cfg.target or default
    if target is None:
        raise UserError(f"no target column for {cfg.source}: set data.target in the config (or --target)")
    if target not in frame.columns:
        raise UserError(f"target column {target!r} not found in {cfg.source}; columns: {shorten(frame.columns)}")
    return target


def detect_task(y: pd.Series, requested: str, log: list[str]) -> str:
    if requested != "auto":
        if requested == "classification" and _continuous(y):
            raise UserError(f"task: classification, but target {y.name!r} holds {y.nunique()} distinct non-integer "
                            f"numbers, a continuous quantity; set task: regression (or auto)")
        log.append(f"task: {requested} (set in the config)")
        return requested
    distinct = y.nunique()
    if types.is_bool_dtype(y.dtype) or not types.is_numeric_dtype(y.dtype):
        log.append(f"detected task: classification (target {y.name!r} is not numeric, {distinct} distinct values)")
        return "classification"
    integral = bool(np.all(np.mod(y.to_numpy(dtype=np.float64), 1) == 0))
    if integral and distinct <= MAX_AUTO_CLASSES:
        log.append(f"detected task: classification (target {y.name!r} is integer-valued, {distinct} distinct values)")
        return "classification"
    log.append(f"detected task: regression (target {y.name!r} is numeric, {distinct} distinct values)")
    return "regression"


def _continuous(y: pd.Series) -> bool:
    """Floats with fractional parts in more values than a class label would take."""
    if types.is_bool_dtype(y.dtype) or not types.is_float_dtype(y.dtype):
        return False
    values = y.dropna().to_numpy(dtype=np.float64)
    return bool(np.any(np.mod(values, 1) != 0)) and len(np.unique(values)) > MAX_AUTO_CLASSES


def encode_classes(y: pd.Series, log: list[str]) -> tuple[np.ndarray, list[str]]:
    """Class indices 0..k-1 and the class names, as strings, in sorted order."""
    numeric = types.is_numeric_dtype(y.dtype) and not types.is_bool_dtype(y.dtype)
    keys = y if numeric or types.is_bool_dtype(y.dtype) else y.astype(str)
    classes = np.sort(keys.unique())
    names = [class_name(value) for value in classes]
    if len(classes) < 2:
        raise UserError(f"target {y.name!r} has a single class ({names[0]!r}); classification needs at least 2")
    codes = pd.Index(classes).get_indexer(keys).astype(np.int64)
    pairs = [f"{name}={i}" for i, name in enumerate(names)]
    log.append(f"label-encoded target {y.name!r} into {len(names)} classes: {shorten(pairs)}")
    return codes, names


def regression_values(y: pd.Series) -> np.ndarray:
    if not (types.is_numeric_dtype(y.dtype) or types.is_bool_dtype(y.dtype)):
        example = y.iloc[0]
        raise UserError(f"target {y.name!r} is not numeric (e.g. {example!r}); regression needs numbers, "
                        f"or set data.task: classification")
    return y.to_numpy(dtype=np.float32)


def shorten(names) -> str:
    names = [str(n) for n in names]
    more = len(names) - _SHOWN
    return ", ".join(names[:_SHOWN]) + (f", ... ({more} more)" if more > 0 else "")


def class_name(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)

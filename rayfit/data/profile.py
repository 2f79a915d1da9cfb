"""What each raw input column looked like in the training rows, kept with the model (`profile.json`),
and how far new rows have moved from it: the population stability index (PSI) of every column.

A number is cut at its training deciles, a category counted per value (the most frequent
MAX_CATEGORIES, the rest as one), and a missing value is a bin of its own in both. PSI sums
(new share - training share) x ln(new share / training share) over the bins; above SHIFTED a
column has moved enough to question the model on it (the usual reading: below 0.1 stable, 0.1-0.2
some shift, above 0.2 a shift). `rayfit evaluate` shows it beside the scores.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

PROFILE_FILE = "profile.json"
BINS = 10  # deciles of a numeric column
MAX_CATEGORIES = 20  # a category column's most frequent values, each a bin; the rest share one
SHIFTED = 0.2  # PSI above this: the column is flagged
FLOOR = 1e-4  # an empty bin's share, so that the logarithm stays finite
OTHER, MISSING = "(other)", "(missing)"


def profile_columns(frame: pd.DataFrame) -> dict[str, dict]:
    """{column: its training profile} for the raw columns of `frame` (the training rows)."""
    return {str(column): _profile(frame[column]) for column in frame.columns}


def _profile(values: pd.Series) -> dict:
    missing = float(values.isna().mean()) if len(values) else 0.0
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        edges = np.unique(np.quantile(present.to_numpy(dtype=np.float64), np.linspace(0, 1, BINS + 1)[1:-1])) \
            if len(present) else np.array([])
        return {"kind": "numeric", "edges": [float(e) for e in edges],
                "shares": _numeric_shares(values, edges).tolist()}
    counts = present.astype(str).value_counts()
    top = counts.iloc[:MAX_CATEGORIES]
    total = max(len(values), 1)
    shares = {str(k): float(v) / total for k, v in top.items()}
    return {"kind": "category", "shares": shares, "other": float(counts.iloc[MAX_CATEGORIES:].sum()) / total,
            "missing": missing}


def _numeric_shares(values: pd.Series, edges: np.ndarray) -> np.ndarray:
    """Shares of the bins cut at `edges` (len(edges) + 1 of them), then the missing values' share."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    known = ~np.isnan(numbers)
    counts = np.bincount(np.searchsorted(edges, numbers[known], side="right"), minlength=len(edges) + 1)
    total = max(len(numbers), 1)
    return np.append(counts / total, (~known).sum() / total)


def _category_shares(values: pd.Series, profile: dict) -> tuple[np.ndarray, np.ndarray]:
    """(training shares, new shares) over the profile's values, the rest and the missing."""
    total = max(len(values), 1)
    present = values.dropna().astype(str)
    counts = present.value_counts()
    known = list(profile["shares"])
    new = [float(counts.get(k, 0)) / total for k in known]
    new += [float(counts[~counts.index.isin(known)].sum()) / total, float(values.isna().sum()) / total]
    expected = [profile["shares"][k] for k in known] + [profile["other"], profile["missing"]]
    return np.asarray(expected), np.asarray(new)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of two distributions over the same bins."""
    e, a = np.maximum(expected, FLOOR), np.maximum(actual, FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def shift(profiles: dict[str, dict], frame: pd.DataFrame) -> dict[str, dict]:
    """{column: {psi, shifted, kind}} of the rows in `frame` against the training profiles, the
    most shifted first (a column the frame lacks is left out: the caller has said so already)."""
    found = {}
    for column, profile in profiles.items():
        if column not in frame.columns:
            continue
        if profile["kind"] == "numeric":
            expected = np.asarray(profile["shares"])
            actual = _numeric_shares(frame[column], np.asarray(profile["edges"]))
        else:
            expected, actual = _category_shares(frame[column], profile)
        value = psi(expected, actual)
        found[column] = {"kind": profile["kind"], "psi": round(value, 4), "shifted": bool(value > SHIFTED)}
    return dict(sorted(found.items(), key=lambda item: -item[1]["psi"]))


def shown(value: Optional[float]) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

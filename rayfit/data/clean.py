"""Row and column cleaning before the split, and the column kinds the preprocessing needs.

Every function takes the frame and the prep log, and records what it did as one readable line.
"""
from __future__ import annotations

import re
import warnings

import pandas as pd
from pandas.api import types

# Names that say "this identifies a row": id, uuid, index, key, customer_id, orderId, row_key...
_ID_NAME = re.compile(r"^(id|uuid|guid|index|idx|key|pk|row|rowid|row_id|row_num|rownum)$|(_id|_uuid|_key|_idx)$",
                      re.IGNORECASE)
_CAMEL_ID = re.compile(r"[a-z0-9](Id|ID|Key|Uuid)$")
_NUMBER_TEXT = r"\s*[-+]?\d+(\.\d*)?\s*"

DATETIME_PARSE_SHARE = 0.90  # a text column is a date when this share of its values parse as one
ID_TEXT_UNIQUE_SHARE = 0.95  # a text column is an ID when more than this share of rows are distinct
# A text column is free text (a product name, a description), fed to the models as words and
# character n-grams, when it has more distinct values than this and its values have at least
# TEXT_MIN_WORDS words on average. One-word codes, however many, stay categories (or IDs).
TEXT_MIN_DISTINCT = 20
TEXT_MIN_WORDS = 2.0
_DATETIME_SAMPLE = 1000  # values tried when guessing whether a text column holds dates


def infinities_as_missing(frame: pd.DataFrame, log: list[str]) -> pd.DataFrame:
    """inf and -inf in numeric columns (a CSV's "inf", an overflowed export) become missing values,
    which the imputer then fills like any other gap (or, in the target, drop the row)."""
    import numpy as np

    numeric = [c for c in frame.columns if types.is_float_dtype(frame[c].dtype)]
    counts = {c: int(np.isinf(frame[c].to_numpy(dtype="float64", na_value=np.nan)).sum()) for c in numeric}
    counts = {c: n for c, n in counts.items() if n}
    if not counts:
        return frame
    frame = frame.copy()
    for column, count in counts.items():
        frame[column] = frame[column].replace([np.inf, -np.inf], np.nan)
        log.append(f"{count} infinite value{_s(count)} in {column!r} treated as missing")
    return frame


def drop_missing_target(frame: pd.DataFrame, target: str, log: list[str]) -> pd.DataFrame:
    missing = frame[target].isna()
    if missing.any():
        log.append(f"dropped {int(missing.sum())} row{_s(missing.sum())} with a missing target")
        frame = frame.loc[~missing]
    return frame


def drop_duplicate_rows(frame: pd.DataFrame, log: list[str]) -> pd.DataFrame:
    duplicated = frame.duplicated()
    if duplicated.any():
        log.append(f"dropped {int(duplicated.sum())} exact duplicate row{_s(duplicated.sum())}")
        frame = frame.loc[~duplicated]
    return frame


def note_duplicate_rows(frame: pd.DataFrame, log: list[str]) -> None:
    """Identical rows are kept: on a table of few distinct values they are how often each occurs,
    which every model should learn from as the test rows will show it (dropping a third of such a
    table once cost its boosters 0.04 ROC AUC)."""
    duplicated = int(frame.duplicated().sum())
    if duplicated:
        log.append(f"kept {duplicated} exact duplicate row{_s(duplicated)} (data.drop_duplicates: true drops them)")


def drop_constant_columns(frame: pd.DataFrame, target: str, log: list[str]) -> pd.DataFrame:
    # A missing value counts as a value: a column half empty, half "x" still says something.
    constant = [c for c in frame.columns if c != target and frame[c].nunique(dropna=False) <= 1]
    for column in constant:
        log.append(f"dropped constant column {column!r}")
    return frame.drop(columns=constant)


def drop_id_like_columns(frame: pd.DataFrame, target: str, log: list[str]) -> pd.DataFrame:
    dropped = []
    for column in frame.columns:
        if column == target:
            continue
        reason = id_like_reason(frame[column])
        if reason:
            log.append(f"dropped ID-like column {column!r} ({reason})")
            dropped.append(column)
    return frame.drop(columns=dropped)


def id_like_reason(series: pd.Series) -> str | None:
    """Why a column identifies rows rather than describing them, or None. Floats never do."""
    if types.is_bool_dtype(series.dtype) or types.is_float_dtype(series.dtype):
        return None
    if types.is_integer_dtype(series.dtype):
        values = series.dropna()
        if len(values) != len(series) or not values.is_unique:
            return None
        consecutive = len(values) > 1 and int(values.max()) - int(values.min()) == len(values) - 1
        if _looks_like_id_name(str(series.name)) or consecutive:
            return "unique integer per row"
        return None
    if is_text(series) and not is_free_text(series):
        share = series.nunique(dropna=True) / max(len(series), 1)
        if share > ID_TEXT_UNIQUE_SHARE and not looks_like_datetime(series):
            return "unique text per row" if share == 1 else f"unique text in {share:.0%} of rows"
    return None


def _looks_like_id_name(name: str) -> bool:
    return bool(_ID_NAME.search(name) or _CAMEL_ID.search(name))


def is_text(series: pd.Series) -> bool:
    """Neither a number, a bool nor a datetime: str, object and category columns."""
    dtype = series.dtype
    return not (types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype) or types.is_datetime64_any_dtype(dtype)
                or isinstance(dtype, pd.PeriodDtype) or types.is_timedelta64_dtype(dtype))


def is_free_text(series: pd.Series) -> bool:
    """Words, not codes: a text column of many distinct values of several words each."""
    if not is_text(series):
        return False
    values = series.dropna().astype(str)
    if values.nunique() <= TEXT_MIN_DISTINCT:
        return False
    sample = values.sample(min(len(values), 1000), random_state=0)
    return sample.str.split().str.len().mean() >= TEXT_MIN_WORDS and not looks_like_datetime(series)


def looks_like_datetime(series: pd.Series) -> bool:
    if types.is_datetime64_any_dtype(series.dtype):
        return True
    if not is_text(series):
        return False
    values = series.dropna()
    if values.empty:
        return False
    values = values.sample(min(len(values), _DATETIME_SAMPLE), random_state=0).astype(str)
    # dateutil reads "12" or "2024" as a date; columns of plain numbers written as text are not dates.
    if values.str.fullmatch(_NUMBER_TEXT).all():
        return False
    return parse_datetimes(values).notna().mean() >= DATETIME_PARSE_SHARE


def parse_datetimes(series: pd.Series) -> pd.Series:
    """Timestamps from a datetime or text column; what does not parse becomes NaT."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC")  # the same clock as aware text parsed below
    if types.is_datetime64_any_dtype(series.dtype):
        return series
    text = series.astype(object).where(series.isna(), series.astype(str))
    with warnings.catch_warnings():
        # format="mixed" warns that it parses value by value; that is the point.
        warnings.simplefilter("ignore")
        # utc=True: values with different offsets would otherwise stop the whole column parsing.
        return pd.to_datetime(text, errors="coerce", format="mixed", utc=True)


def column_kinds(frame: pd.DataFrame, target: str) -> dict[str, list[str]]:
    """Feature columns by kind: numeric (bools included), datetime, text (free text), categorical."""
    kinds: dict[str, list[str]] = {"numeric": [], "datetime": [], "text": [], "categorical": []}
    for column in frame.columns:
        if column == target:
            continue
        series = frame[column]
        if types.is_numeric_dtype(series.dtype) or types.is_bool_dtype(series.dtype):
            kinds["numeric"].append(column)
        elif looks_like_datetime(series):
            kinds["datetime"].append(column)
        elif is_free_text(series):
            kinds["text"].append(column)
        else:
            kinds["categorical"].append(column)
    return kinds


def _s(count) -> str:
    return "" if int(count) == 1 else "s"

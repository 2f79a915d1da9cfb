"""One table from a source: a built-in set name, a .csv file, a .parquet file / directory, or an .npz
file with a 2-D `x`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from rayfit.data.arrays import NPZ_SUFFIXES, npz_frame
from rayfit.data.builtin import BUILTIN, BUILTIN_ARRAYS
from rayfit.errors import UserError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")


def load_table(source: str) -> tuple[pd.DataFrame, Optional[str]]:
    """The table and its default target column (None for a .csv / .parquet file: the user names it)."""
    if source in BUILTIN:
        return BUILTIN[source]()
    path = Path(source)
    if path.suffix.lower() in NPZ_SUFFIXES:
        return npz_frame(path), "y"
    reader = _reader_for(path)
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    try:
        frame = reader(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"data file is empty: {path}") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        # pyarrow's ArrowInvalid is a ValueError; keep only the first line of its message.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"could not read data file {path}: {reason}") from None
    if frame.shape[1] == 0:
        raise UserError(f"data file has no columns: {path}")
    if len(frame) == 0:
        raise UserError(f"data file has no rows: {path}")
    names = _csv_header(path) if reader is pd.read_csv else [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # pandas would rename the second one ("a.1") and train on both as if distinct
        raise UserError(f"data file {path} has duplicate column name{'s' if len(repeated) > 1 else ''}: "
                        f"{', '.join(map(repr, repeated))}")
    frame.columns = [str(c) for c in frame.columns]
    _check_cells_are_values(frame, path)
    return frame, None


def _check_cells_are_values(frame: pd.DataFrame, path: Path) -> None:
    """One value per cell: a column of lists or mappings (Parquet's nested types) has no column
    kind the preprocessing knows."""
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        sample = frame[column].dropna().head(100)
        if any(pd.api.types.is_list_like(value) for value in sample):
            raise UserError(f"column {column!r} of {path} holds lists or mappings, not one value per cell; "
                            f"flatten it or drop it")


def _csv_header(path: Path) -> list[str]:
    """The CSV's column names as written (pandas renames repeated ones)."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def _reader_for(path: Path):
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return pd.read_csv
    if suffix in PARQUET_SUFFIXES or (path.is_dir() and any(p.suffix in PARQUET_SUFFIXES for p in path.iterdir())):
        return pd.read_parquet
    supported = ", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES + NPZ_SUFFIXES)
    raise UserError(f"unsupported data source {str(path)!r}: expected a {supported} file "
                    f"(or a directory of .parquet files, or of one image subfolder per class) "
                    f"or a built-in set ({', '.join([*BUILTIN, *BUILTIN_ARRAYS])})")

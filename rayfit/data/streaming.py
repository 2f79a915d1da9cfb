"""The training split as Parquet for Ray Data, so Ray Train workers stream their shards."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rayfit.errors import UserError

FEATURES, LABEL = "x", "y"  # a tensor column of one example each, and the target


def should_stream(cfg, source: str, kind: str) -> bool:
    stream = str(source).lower().endswith((".parquet", ".pq")) if cfg.streaming == "auto" else cfg.streaming
    if stream and kind != "tabular" and cfg.streaming is True:
        raise UserError(f"data.streaming: true streams tabular data only; {source} is {kind} data")
    return bool(stream) and kind == "tabular"


def write_split(X: np.ndarray, y: np.ndarray, path: Path) -> Path:
    """One Parquet file, rows in groups Ray Data reads as blocks; written once (a resumed run reuses it)."""
    from ray.data.extensions import ArrowTensorArray  # registers the tensor type Ray Data reads back

    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table({FEATURES: ArrowTensorArray.from_numpy(np.ascontiguousarray(X)), LABEL: y})
        pq.write_table(table, path, row_group_size=16_384)
    return path

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


# Blocks no larger than this: a worker's memory holds a few blocks at a time (the one it reads and
# the local shuffle buffer's), so their size, not the data set's, bounds it. Ray Data's default
# (128 MiB) would let a worker's peak grow with the data set up to that size.
STREAM_BLOCK_BYTES = 8 * 1024 * 1024


def read_training_split(path: str):
    """The Parquet training split as a materialized Ray Dataset of small blocks.

    Materialized before any worker starts: workers take every CPU, and Ray Data's read tasks,
    queued behind them, would wait forever. Each worker then streams only its shard's blocks from
    the object store (spilled to disk when it is full).
    """
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = context.target_max_block_size
    context.target_max_block_size = STREAM_BLOCK_BYTES
    try:
        return ray.data.read_parquet(path).materialize()
    finally:
        context.target_max_block_size = saved

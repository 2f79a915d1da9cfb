"""The training split as Parquet for Ray Data, so Ray Train workers stream their shards."""
from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rayfit.errors import UserError

FEATURES, LABEL = "x", "y"  # a tensor column of one example each, and the target


# data.streaming: auto streams a training split larger than this share of the cluster's object-store
# memory. Below it the arrays go to the object store once and every worker reads them from there
# (fast, and small); above it they would crowd the store and each worker's memory, so each worker
# streams only its shard through Ray Data. The file format plays no part: a small Parquet file
# trains exactly like the same rows as CSV.
STREAM_OBJECT_STORE_FRACTION = 0.25


def should_stream(cfg, kind: str, train_bytes: int, object_store_bytes: float) -> tuple[bool, str]:
    """Whether the training split streams, and why (a line for the progress display)."""
    size = f"training split {train_bytes / 2**20:.1f} MiB"
    if cfg.streaming is True:
        if kind != "tabular":
            raise UserError(f"data.streaming: true streams tabular data only; {cfg.source} is {kind} data")
        return True, f"{size}, streamed through Ray Data (data.streaming: true)"
    if cfg.streaming is False:
        return False, f"{size}, in the object store (data.streaming: false)"
    limit = STREAM_OBJECT_STORE_FRACTION * object_store_bytes
    if kind == "tabular" and train_bytes > limit:
        return True, (f"{size}, over {STREAM_OBJECT_STORE_FRACTION:.0%} of the object store "
                      f"({object_store_bytes / 2**30:.1f} GiB): streamed through Ray Data")
    return False, (f"{size}, in the object store (streamed above {STREAM_OBJECT_STORE_FRACTION:.0%} of its "
                   f"{object_store_bytes / 2**30:.1f} GiB)")


def write_split(X: np.ndarray, y: np.ndarray, location) -> str:
    """One Parquet file at `location` (cluster/storage.py: a path or an object-store URI, where
    Ray Data's read tasks on any node find it), rows in groups Ray Data reads as blocks. Written
    once: a resumed run reuses it when its digest (kept beside it) matches these arrays, and
    writes it again when not. Returns its URI."""
    import hashlib

    from ray.data.extensions import ArrowTensorArray  # registers the tensor type Ray Data reads back

    from rayfit.cluster.storage import Location

    location = Location.of(location)
    X, y = np.ascontiguousarray(X), np.ascontiguousarray(y)
    digest = hashlib.sha256(X.tobytes() + y.tobytes() + repr((X.shape, X.dtype.str, y.dtype.str)).encode()).hexdigest()
    stamp = location.parent.join(location.name + ".sha256")
    if location.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return location.uri
    fs, path = location.filesystem()
    if location.local:
        location.path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({FEATURES: ArrowTensorArray.from_numpy(X), LABEL: y})
    pq.write_table(table, path, filesystem=fs, row_group_size=16_384)
    stamp.write_bytes(digest.encode())  # after the file: a stamp always describes a whole file
    return location.uri


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

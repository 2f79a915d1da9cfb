"""Parquet through Ray Data: when a training split is streamed instead of held in the object store."""
from __future__ import annotations

import pytest

from rayfit.config import DataConfig
from rayfit.data.streaming import should_stream
from rayfit.errors import UserError


GiB = 2 ** 30


def test_streaming_is_chosen_by_size_not_by_file_format():
    # auto: a training split over a quarter of the object store streams, whatever the file was
    assert not should_stream(DataConfig(source="sales.parquet"), "tabular", 100_000, 8 * GiB)[0]
    assert should_stream(DataConfig(source="sales.csv"), "tabular", 3 * GiB, 8 * GiB)[0]
    assert not should_stream(DataConfig(source="big.npz"), "image", 3 * GiB, 8 * GiB)[0]  # tables only
    # the user's word wins
    assert should_stream(DataConfig(streaming=True), "tabular", 1000, 8 * GiB)[0]
    assert not should_stream(DataConfig(streaming=False), "tabular", 3 * GiB, 8 * GiB)[0]
    with pytest.raises(UserError, match="data.streaming: true streams tabular data only"):
        should_stream(DataConfig(source="x.npz", streaming=True), "image", 1000, 8 * GiB)


# Ray Train workers streaming their shards of a Parquet split, in both frameworks: the worker-group
# contract, tests/test_trainers.py; Tune trials that each stream theirs: tests/test_never_hang.py.

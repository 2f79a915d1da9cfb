"""Parquet through Ray Data: each Ray Train worker streams only its shard of the training split."""
from __future__ import annotations

import numpy as np
import pytest

from rayfit.config import DataConfig, KerasConfig, TorchConfig
from rayfit.data.streaming import should_stream, write_split
from rayfit.errors import UserError
from rayfit.trainers.launch import TrainingData, fit_neural


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


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_workers_stream_their_shard(framework, ray_session, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1200, 8)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)  # binary: one logit, binary cross-entropy
    path = write_split(X[:960], y[:960], tmp_path / "train.parquet")
    # No training arrays in the object store at all: the workers can only read the Parquet shards.
    data = TrainingData(ref=None, task="classification", n_outputs=1, class_weights=None, seed=0,
                        train_path=str(path), val_ref=ray_session.put({"X_val": X[960:], "y_val": y[960:]}))
    settings = (TorchConfig if framework == "torch" else KerasConfig)(epochs=3, workers=2, batch_size=32, lr=1e-2)
    result = fit_neural(framework, "mlp", settings, data, tmp_path / "ckpt")

    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert (result.model.predict(X[960:]) == y[960:]).mean() > 0.85
    if framework == "torch":
        assert all(h["train_rows"] == 480 for h in result.history)  # half of 960 rows per worker

"""The device a worker trains on, and the runtime.json every checkpoint carries, without a GPU.

Ray's assignment is mocked (`ray.get_gpu_ids`), as is CUDA where a case needs it: the rule is
"GPU only when Ray assigned GPU ids and the framework sees a GPU". The training runs call the
training core directly in a task context, in this process, as a Ray task would.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import ray
import torch

from rayfit.config import KerasConfig, TorchConfig
from rayfit.trainers import device as device_module
from rayfit.trainers.contexts import TaskContext
from rayfit.trainers.core import train
from rayfit.trainers.launch import TrainingData, make_loop_config
from rayfit.trainers.torch_adapter import TorchAdapter

CPU_RECORD = {"device": "cpu", "workers": 1, "gpus_per_worker": 0, "amp": False}
FALLBACK_MESSAGE = "rayfit: Ray assigned GPU ids [0] but CUDA is not available to"


@pytest.fixture
def ray_assigns(monkeypatch):
    """ray_assigns(gpu_ids, cuda): this process as a Ray worker given gpu_ids, on a machine with or
    without CUDA; the one-time message not yet said."""

    def assign(gpu_ids: list, cuda: bool) -> None:
        monkeypatch.setattr(ray, "is_initialized", lambda: True)
        monkeypatch.setattr(ray, "get_gpu_ids", lambda: gpu_ids)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)

    monkeypatch.setattr(device_module, "_said_training_on_cpu", False)
    return assign


@pytest.mark.parametrize("gpu_ids, cuda, mixed_precision, expected", [
    ([], True, "auto", ("cpu", False)),  # CUDA on the machine, but Ray gave this worker no GPU
    ([0], False, True, ("cpu", False)),  # Ray's logical GPUs: no device behind them
    ([0], True, "auto", ("cuda:0", True)),
    ([0], True, False, ("cuda:0", False)),
])
def test_torch_device_follows_ray_and_cuda(ray_assigns, gpu_ids, cuda, mixed_precision, expected):
    ray_assigns(gpu_ids, cuda)
    adapter = _torch_adapter(mixed_precision)
    assert (str(adapter.device), adapter.amp) == expected


def _torch_adapter(mixed_precision) -> TorchAdapter:
    settings = TorchConfig(mixed_precision=mixed_precision)
    data = TrainingData({}, "classification", 3, None, seed=0)
    return TorchAdapter(make_loop_config("device_test", "torch", "mlp", settings, data), rank=0, world_size=1)


def test_logical_gpus_fall_back_to_cpu_and_say_so_once(ray_assigns, capsys):
    ray_assigns([0], cuda=False)
    for _ in range(2):
        adapter = _torch_adapter("auto")
        assert adapter.device.type == "cpu" and not adapter.amp
    err = capsys.readouterr().err
    assert err.count(FALLBACK_MESSAGE) == 1, err


def _train_tiny_task(framework: str, settings, tmp_path) -> list[dict]:
    """A 3-class problem small enough to train in a second, trained as a task would."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    X = (rng.standard_normal((96, 4)) + (y - 1)[:, None]).astype(np.float32)
    arrays = {"X_train": X[:72], "y_train": y[:72], "X_val": X[72:], "y_val": y[72:]}
    data = TrainingData(arrays, "classification", 3, None, seed=0)  # a dict in place of an ObjectRef
    config = make_loop_config("device_test", framework, "mlp", settings, data)
    return train(config, TaskContext(str(tmp_path), keep=2))


def _runtime_records(tmp_path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(tmp_path.glob("checkpoint_*/runtime.json"))]


@pytest.mark.parametrize("gpu_ids", [[], [0]], ids=["no-gpu", "logical-gpu"])
def test_torch_checkpoints_record_training_on_cpu(ray_assigns, capsys, tmp_path, gpu_ids):
    ray_assigns(gpu_ids, cuda=False)
    settings = TorchConfig(model="mlp", epochs=2, batch_size=16, hidden_sizes=[8], mixed_precision=True)
    history = _train_tiny_task("torch", settings, tmp_path)

    assert [h["epoch"] for h in history] == [1, 2]
    assert _runtime_records(tmp_path) == [CPU_RECORD, CPU_RECORD]  # one per epoch's checkpoint
    assert capsys.readouterr().err.count(FALLBACK_MESSAGE) == (1 if gpu_ids else 0)


def test_keras_checkpoints_record_training_on_cpu(ray_assigns, capsys, tmp_path):
    ray_assigns([0], cuda=False)  # TensorFlow's own view decides for Keras: this CPU build sees no GPU
    settings = KerasConfig(model="mlp", epochs=2, batch_size=16, hidden_sizes=[8], mixed_precision=True)
    history = _train_tiny_task("keras", settings, tmp_path)

    assert [h["epoch"] for h in history] == [1, 2]
    assert _runtime_records(tmp_path) == [CPU_RECORD, CPU_RECORD]
    assert capsys.readouterr().err.count(FALLBACK_MESSAGE) == 1

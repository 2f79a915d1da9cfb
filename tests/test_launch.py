"""How a network is launched: a Ray Train worker group, or one Ray task when a group buys nothing."""
from __future__ import annotations

import pytest

from rayfit.config import KerasConfig, TorchConfig
from rayfit.trainers import launch as launch_module
from rayfit.trainers.launch import TrainingData, choose_launch, estimate_train_seconds

SMALL = TrainingData(None, "classification", 1, None, seed=0, train_rows=700, input_shape=(20,))


def test_a_small_network_trains_in_one_task():
    chosen = choose_launch("torch", "mlp", TorchConfig(epochs=40), SMALL, use_gpu=False)
    assert chosen.kind == "task" and "less than" in chosen.reason


def test_the_estimate_scales_one_timed_step_to_the_run(monkeypatch):
    assert launch_module.step_seconds("mlp", TorchConfig(), SMALL) > 0  # the probe really trains a step
    monkeypatch.setattr(launch_module, "step_seconds", lambda *args: 0.01)
    # ceil(700 / 32) = 22 steps an epoch, 10 epochs; Keras steps count 3 times PyTorch's
    assert estimate_train_seconds("torch", "mlp", TorchConfig(epochs=10), SMALL) == pytest.approx(2.2)
    assert estimate_train_seconds("keras", "mlp", KerasConfig(epochs=10), SMALL) == pytest.approx(6.6)
    bigger = TrainingData(None, "classification", 1, None, seed=0, train_rows=70_000, input_shape=(20,))
    assert estimate_train_seconds("torch", "mlp", TorchConfig(epochs=10, batch_size=64), bigger) == pytest.approx(
        0.01 * 1094 * 10)


@pytest.mark.parametrize("settings, data, use_gpu, kind", [
    (TorchConfig(launch="ray_train"), SMALL, False, "ray_train"),  # the user's word wins
    (TorchConfig(workers=1), SMALL, False, "task"),  # one worker: nothing to parallelise
    (TorchConfig(), TrainingData(None, "classification", 1, None, 0, train_path="t.parquet", train_rows=700,
                                 input_shape=(20,)), False, "ray_train"),  # streamed: workers read shards
    (TorchConfig(), SMALL, True, "ray_train"),  # GPU workers
])
def test_launch_rules(settings, data, use_gpu, kind):
    assert choose_launch("torch", "mlp", settings, data, use_gpu).kind == kind


def test_a_long_training_gets_a_worker_group(monkeypatch):
    monkeypatch.setattr(launch_module, "estimate_train_seconds", lambda *args: 120.0)
    chosen = choose_launch("torch", "mlp", TorchConfig(workers=2), SMALL, use_gpu=False)
    assert chosen.kind == "ray_train" and "save up to 60 s" in chosen.reason

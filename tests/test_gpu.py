"""GPU paths, run only where CUDA is present (skipped cleanly elsewhere by the `gpu` marker)."""
import numpy as np
import pytest

from rayfit.config import TorchConfig
from rayfit.trainers.launch import TrainingData, fit_neural


@pytest.mark.gpu
def test_torch_trainer_trains_on_a_gpu(ray_session, tmp_path):
    import torch

    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 20)).astype("float32")
    y = (X[:, 0] + X[:, 1] - X[:, 2] > 0).astype("int64")
    arrays = {"X_train": X[:450], "y_train": y[:450], "X_val": X[450:], "y_val": y[450:]}
    data = TrainingData(ray_session.put(arrays), "classification", 1, None, 0)
    settings = TorchConfig(epochs=5, workers=1, gpu=True, mixed_precision=True)
    result = fit_neural("torch", "torch_gpu", settings, data, tmp_path)
    assert torch.cuda.is_available()
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert (result.model.predict(X[450:]) == y[450:]).mean() > 0.8


@pytest.mark.gpu
def test_keras_trainer_trains_on_a_gpu_with_mixed_precision(ray_session, tmp_path):
    from rayfit.config import KerasConfig

    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 20)).astype("float32")
    y = (X[:, 0] + X[:, 1] - X[:, 2] > 0).astype("int64")
    arrays = {"X_train": X[:450], "y_train": y[:450], "X_val": X[450:], "y_val": y[450:]}
    data = TrainingData(ray_session.put(arrays), "classification", 1, None, 0)
    result = fit_neural("keras", "mlp", KerasConfig(epochs=5, workers=1, gpu=True), data, tmp_path)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert (result.model.predict(X[450:]) == y[450:]).mean() > 0.8

"""GPU paths, run only where CUDA is present (skipped cleanly elsewhere by the `gpu` marker).

What the worker really used is read from the checkpoint's runtime.json (NeuralResult.runtime),
written inside the worker: the driver's view of CUDA proves nothing about the worker's.
"""
import numpy as np
import pytest

from rayfit.config import KerasConfig, TorchConfig
from rayfit.trainers.launch import TrainingData, fit_neural

ON_ONE_GPU_WITH_AMP = {"device": "cuda", "workers": 1, "gpus_per_worker": 1, "amp": True}


def _separable(ray_session):
    """A binary problem a small network learns in a few epochs; returns (data, X_val, y_val)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 20)).astype("float32")
    y = (X[:, 0] + X[:, 1] - X[:, 2] > 0).astype("int64")
    arrays = {"X_train": X[:450], "y_train": y[:450], "X_val": X[450:], "y_val": y[450:]}
    return TrainingData(ray_session.put(arrays), "classification", 1, None, seed=0), X[450:], y[450:]


@pytest.mark.gpu
def test_torch_trainer_trains_on_a_gpu_with_mixed_precision(ray_session, tmp_path):
    data, X_val, y_val = _separable(ray_session)
    settings = TorchConfig(model="mlp", epochs=5, workers=1, gpu=True, mixed_precision=True)
    result = fit_neural("torch", "mlp", settings, data, tmp_path)

    assert result.runtime == ON_ONE_GPU_WITH_AMP
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert (result.model.predict(X_val) == y_val).mean() > 0.8


@pytest.mark.gpu
def test_keras_trainer_trains_on_a_gpu_with_mixed_precision(ray_session, tmp_path):
    data, X_val, y_val = _separable(ray_session)
    settings = KerasConfig(model="mlp", epochs=5, workers=1, gpu=True, mixed_precision="auto")
    result = fit_neural("keras", "mlp", settings, data, tmp_path)

    assert result.runtime == ON_ONE_GPU_WITH_AMP
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert (result.model.predict(X_val) == y_val).mean() > 0.8


@pytest.mark.gpu
def test_xgboost_baseline_trains_on_the_gpu_its_task_was_given(ray_session):
    """The baselines stage's own task body, given one GPU: XGBoost trains with device cuda there."""
    from rayfit.stages.baselines import _fit_baseline_task

    data, X_val, y_val = _separable(ray_session)
    task = ray_session.remote(num_cpus=1, num_gpus=1)(_fit_baseline_task)
    estimator, seconds, (device, why) = ray_session.get(task.remote("xgboost", "classification", None, 0, data.ref,
                                                                    None, 1))
    assert device == "cuda", why
    assert (estimator.predict(X_val) == y_val).mean() > 0.8
    assert estimator.get_params()["device"] == "cpu"  # saved to predict anywhere

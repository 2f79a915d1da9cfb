"""Networks on regression learn a standardized target and answer in the target's units."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from rayfit.cluster.plan import WorkerPlan
from rayfit.config import KerasConfig, TorchConfig
from rayfit.trainers.launch import TrainingData, start_in_task
from rayfit.trainers.target_scale import fit_target_scale, standardize, to_target_units
from rayfit.trainers.torch_model import logits_to_output


def test_the_scale_is_the_training_splits_and_round_trips():
    y = np.array([100.0, 200.0, 300.0])
    scale = fit_target_scale(y, "regression")
    assert scale == pytest.approx((200.0, np.std(y)))
    assert standardize(y, scale).mean() == pytest.approx(0) and standardize(y, scale).std() == pytest.approx(1)
    assert to_target_units(standardize(y, scale), scale) == pytest.approx(y)
    assert fit_target_scale(np.array([0, 1, 1]), "classification") is None
    assert fit_target_scale(np.array([5.0, 5.0]), "regression") == (5.0, 1.0)  # a constant target: no division by 0
    # a network's raw output of 1.5 standard deviations is reported in the target's units
    arch = {"target_scale": [200.0, 10.0]}
    assert logits_to_output(np.array([[1.5]]), "regression", arch) == pytest.approx([215.0])


def _learnable(rows: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, 5)).astype(np.float32)
    y = X @ np.array([1.5, -2.0, 1.0, 0.5, 0.0]) + 0.5 * rng.standard_normal(rows)
    return X, y


def _test_r2(framework, X, y, ray_session, storage):
    """A network with the default settings (but one task's worker), trained as `rayfit run` would."""
    train, val = slice(0, 280), slice(280, 340)
    arrays = {"X_train": X[train], "y_train": y[train], "X_val": X[val], "y_val": y[val]}
    data = TrainingData(ray_session.put(arrays), "regression", 1, None, 0, train_rows=280, input_shape=(5,),
                        target_scale=fit_target_scale(y[train], "regression"))
    settings = (TorchConfig if framework == "torch" else KerasConfig)()
    result = start_in_task(framework, "mlp", settings, data, storage, WorkerPlan(1, 1.0)).result()
    return r2_score(y[340:], result.model.predict(X[340:])), result


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_networks_learn_any_target_scale_as_well_as_linear_regression(framework, ray_session, tmp_path):
    X, y = _learnable()
    linear = r2_score(y[340:], LinearRegression().fit(X[:280], y[:280]).predict(X[340:]))
    raw, _ = _test_r2(framework, X, y, ray_session, tmp_path / "raw")
    shifted, result = _test_r2(framework, X, y * 1000 + 5000, ray_session, tmp_path / "shifted")
    assert shifted == pytest.approx(raw, abs=0.02)  # the same learning, whatever the target's units
    assert raw > linear - 0.05, (raw, linear)  # within a few points of linear regression
    # the loss the network early-stopped on is on the standardized scale, not ~1e6
    assert result.history[0]["train_loss"] < 10

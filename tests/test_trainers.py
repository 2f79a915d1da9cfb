"""The training layer's contract, over every registered network of both frameworks."""
from __future__ import annotations

import numpy as np
import pytest

from rayfit.config import KerasConfig, TorchConfig
from rayfit.evaluation.fitted import load_model
from rayfit.trainers.launch import FRAMEWORKS, TrainingData, fit_neural
from rayfit.trainers.registry import NETWORKS

NETWORK_CASES = [(framework, model) for framework, models in NETWORKS.items() for model in models]
SHAPES = {"tabular": (6,), "image": (8, 8, 1), "sequence": (12, 2)}


def tiny_data(kind: str, rows: int = 192, classes: int = 3, seed: int = 0) -> dict:
    """A learnable 3-class problem in the input kind's shape: the class shifts the mean of the input."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    X = rng.standard_normal((rows, *SHAPES[kind])).astype(np.float32)
    X += (y - 1).reshape(-1, *([1] * len(SHAPES[kind]))).astype(np.float32)
    cut = int(rows * 0.75)
    return {"X_train": X[:cut], "y_train": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


def test_registry_matches_builders():
    from rayfit.trainers.keras_models import KERAS_MODELS
    from rayfit.trainers.torch_models import TORCH_MODELS

    assert set(TORCH_MODELS) == set(NETWORKS["torch"])
    assert set(KERAS_MODELS) == set(NETWORKS["keras"])
    assert set(FRAMEWORKS) == set(NETWORKS)


@pytest.mark.parametrize("framework, model", NETWORK_CASES, ids=[f"{f}-{m}" for f, m in NETWORK_CASES])
def test_every_network_trains_checkpoints_and_restores(framework, model, ray_session, tmp_path):
    kind = next(k for k in ("image", "sequence", "tabular") if k in NETWORKS[framework][model])
    arrays = tiny_data(kind)
    data = TrainingData(ray_session.put(arrays), "classification", 3, None, seed=0)
    config_cls = TorchConfig if framework == "torch" else KerasConfig
    settings = config_cls(model=model, epochs=2, workers=2, batch_size=16, lr=3e-3, patience=5,
                          hidden_sizes=[16], cnn={"channels": [8]}, rnn={"hidden_size": 16},
                          transformer={"d_model": 16, "heads": 2, "layers": 1, "ff_dim": 32})
    result = fit_neural(framework, model, settings, data, tmp_path / "ckpt")

    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    checkpoints = sorted(p for p in (tmp_path / "ckpt" / f"{framework}_{model}").glob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == 2  # one per epoch, the latest 2 kept
    assert all((c / "arch.json").is_file() for c in checkpoints)

    X = arrays["X_val"]
    proba = result.model.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    restored = load_model(result.model.save(tmp_path / "export"))
    assert np.allclose(restored.predict_proba(X), proba, atol=1e-5)

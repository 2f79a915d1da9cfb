"""The exported model outside rayfit: a PyTorch network as TorchScript answers as rayfit's own
loader does, and model/README.md says how to load each kind."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rayfit.config import TorchConfig
from rayfit.evaluation.baselines import fit_baseline
from rayfit.evaluation.export import ONNX_FILE, TORCHSCRIPT_FILE, export_extras
from rayfit.evaluation.fitted import SklearnModel
from rayfit.trainers.core import architecture
from rayfit.trainers.torch_model import TorchModel
from rayfit.trainers.torch_models import build_torch_model


@pytest.mark.parametrize("network, shape", [("mlp", (6,)), ("cnn", (8, 8, 1)), ("rnn", (5, 2))])
def test_torchscript_gives_the_networks_own_outputs(network, shape, tmp_path):
    torch.manual_seed(0)
    arch = architecture(TorchConfig(model=network).model_dump(), network, shape, 3)
    model = TorchModel("torch_" + network, "classification", build_torch_model(arch), arch)
    X = np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32)
    prepared = SimpleNamespace(X_train=X, input_shape=shape, class_names=["a", "b", "c"])
    model.save(tmp_path)
    assert export_extras(model, tmp_path, prepared) == [TORCHSCRIPT_FILE, ONNX_FILE, "README.md"]
    scripted = torch.jit.load(str(tmp_path / TORCHSCRIPT_FILE))
    with torch.no_grad():
        logits = scripted(torch.as_tensor(X)).numpy()
    assert np.allclose(_softmax(logits), model.predict_proba(X), atol=1e-5)
    # ONNX, by onnxruntime: the native network's outputs within 1e-5, any batch size
    onnx_logits = _onnx_run(tmp_path / ONNX_FILE, X)[0]
    assert np.allclose(_softmax(onnx_logits), model.predict_proba(X), atol=1e-5)
    readme = (tmp_path / "README.md").read_text()
    assert f"torch.jit.load('{TORCHSCRIPT_FILE}')" in readme and f"(N, {', '.join(map(str, shape))})" in readme
    assert "['a', 'b', 'c']" in readme


@pytest.mark.parametrize("network, shape", [("mlp", (6,)), ("cnn", (8, 8, 1)), ("rnn", (5, 2))])
def test_a_keras_network_as_onnx_answers_as_itself(network, shape, tmp_path):
    from rayfit.config import KerasConfig
    from rayfit.trainers.keras_model import KerasModel
    from rayfit.trainers.keras_models import build_keras_model

    arch = architecture(KerasConfig(model=network).model_dump(), network, shape, 3)
    model = KerasModel("keras_" + network, "classification", build_keras_model(arch), arch)
    X = np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32)
    model.save(tmp_path)
    prepared = SimpleNamespace(X_train=X, input_shape=shape, class_names=["a", "b", "c"])
    assert export_extras(model, tmp_path, prepared) == [ONNX_FILE, "README.md"]
    onnx_logits = _onnx_run(tmp_path / ONNX_FILE, X)[0]
    assert np.allclose(_softmax(onnx_logits), model.predict_proba(X), atol=1e-5)
    assert f"InferenceSession('{ONNX_FILE}')" in (tmp_path / "README.md").read_text()


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _onnx_run(path, X):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


@pytest.mark.parametrize("name, task", [("linear", "classification"), ("random_forest", "classification"),
                                        ("ridge", "regression"), ("extra_trees", "regression")])
def test_a_scikit_learn_model_as_onnx_answers_as_itself(name, task, tmp_path):
    from sklearn.datasets import make_classification, make_regression

    if task == "classification":
        X, y = make_classification(200, 6, n_informative=4, n_classes=3, random_state=0)
    else:
        X, y = make_regression(200, 6, noise=1.0, random_state=0)
    X = X.astype(np.float32)
    estimator, _ = fit_baseline(name, task, None, 0, X, y)
    model = SklearnModel(name, task, estimator, 3 if task == "classification" else None)
    model.save(tmp_path)
    prepared = SimpleNamespace(X_train=X, input_shape=(6,), class_names=["a", "b", "c"])
    assert ONNX_FILE in export_extras(model, tmp_path, prepared)
    outputs = _onnx_run(tmp_path / ONNX_FILE, X)
    if task == "classification":
        assert np.allclose(outputs[1], model.predict_proba(X), atol=1e-5)  # (label, probabilities)
    else:
        assert np.allclose(outputs[0].reshape(-1), model.predict(X), rtol=1e-4, atol=1e-3)  # float32 inside


def test_what_a_converter_cannot_export_is_said_and_the_rest_is_kept(tmp_path):
    """An estimator skl2onnx has no converter for: EXPORT_ERRORS.txt names it, README.md is written."""
    from sklearn.datasets import make_classification

    X, y = make_classification(120, 5, random_state=0)
    X = X.astype(np.float32)
    estimator, _ = fit_baseline("xgboost", "classification", None, 0, X, y)
    model = SklearnModel("xgboost", "classification", estimator, 2)
    model.save(tmp_path)
    written = export_extras(model, tmp_path, SimpleNamespace(X_train=X, input_shape=(5,), class_names=["n", "y"]))
    assert written == ["EXPORT_ERRORS.txt", "README.md"]
    assert (tmp_path / "EXPORT_ERRORS.txt").read_text().startswith("ONNX: ")

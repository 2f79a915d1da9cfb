"""The exported model beyond rayfit's own format: a PyTorch network as TorchScript and ONNX, a
Keras network as ONNX (tf2onnx), a scikit-learn model as ONNX where skl2onnx converts it, and a
`model/README.md` that says what each file is and how to load it without rayfit. An export a
converter cannot make is named, with why, in EXPORT_ERRORS.txt; the run goes on.

rayfit's own loader (`rayfit predict`, `rayfit serve`) reads model.json and the framework's files;
the exports are for a program that has only PyTorch, TensorFlow or scikit-learn. The fitted
preprocessing is a scikit-learn pipeline with rayfit's own transformers (dates, text), so applying
it needs rayfit; the README says what the model expects after it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17


@dataclass(frozen=True)
class ExportExample:
    """What the converters need of the data: two rows after preprocessing (a trace's example) and
    the shape of one (an input signature). Small: it travels to where a network's framework is."""

    X_train: np.ndarray
    input_shape: tuple


def export_extras(model, directory: Path, prepared) -> list[str]:
    """Write the extra exports of `model` into its saved `directory`; the files written."""
    directory = Path(directory)
    example = ExportExample(np.asarray(prepared.X_train[:2], dtype=np.float32), tuple(prepared.input_shape))
    written, failed = model.export_files(directory, example)
    if failed:
        (directory / "EXPORT_ERRORS.txt").write_text("\n".join(failed) + "\n")
        written.append("EXPORT_ERRORS.txt")
    (directory / "README.md").write_text(_readme(model, directory, prepared, written))
    return written + ["README.md"]


def framework_exports(model, directory: Path, example: ExportExample) -> tuple[list[str], list[str]]:
    """(the files written, what could not be, with why) of the model's framework's exports."""
    written, failed = [], []
    exporters = {"torch": [("TorchScript", _torchscript), ("ONNX", _onnx_torch)], "keras": [("ONNX", _onnx_keras)],
                 "sklearn": [("ONNX", _onnx_sklearn)]}
    for what, export in exporters.get(model.kind, []):
        try:
            written.append(export(model, directory, example))
        except Exception as exc:  # noqa: BLE001 - an export a converter cannot make must not lose the run
            failed.append(f"{what}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    return written, failed


def _torchscript(model, directory: Path, example: ExportExample) -> str:
    import torch

    example = torch.as_tensor(example.X_train)
    with torch.no_grad():
        traced = torch.jit.trace(model.network.eval(), example, check_trace=False)
    traced.save(str(directory / TORCHSCRIPT_FILE))
    return TORCHSCRIPT_FILE


def _onnx_torch(model, directory: Path, example: ExportExample) -> str:
    """The network's logits as ONNX (the batch size free), by PyTorch's TorchScript-based exporter."""
    import warnings

    import torch

    example = torch.as_tensor(example.X_train)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices
        torch.onnx.export(model.network.eval(), (example,), str(directory / ONNX_FILE), input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
                          opset_version=ONNX_OPSET, dynamo=False)
    return ONNX_FILE


def _onnx_keras(model, directory: Path, example: ExportExample) -> str:
    """The Keras network's outputs (logits) as ONNX by tf2onnx, the batch size free."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *example.input_shape), tf.float32, name="x"),)
    onnx_model, _ = tf2onnx.convert.from_keras(model.network, input_signature=spec, opset=ONNX_OPSET)
    (directory / ONNX_FILE).write_bytes(onnx_model.SerializeToString())
    return ONNX_FILE


def _onnx_sklearn(model, directory: Path, example: ExportExample) -> str:
    """A scikit-learn estimator as ONNX by skl2onnx: class probabilities as a plain array (no
    ZipMap), or the predicted value. Boosters and some wrappers have no converter: said in
    EXPORT_ERRORS.txt."""
    from skl2onnx import to_onnx

    X = example.X_train.reshape(len(example.X_train), -1)
    options = {"zipmap": False} if model.task == "classification" else None
    onnx_model = to_onnx(model.estimator, X, options=options, target_opset=ONNX_OPSET)
    (directory / ONNX_FILE).write_bytes(onnx_model.SerializeToString())
    return ONNX_FILE


def _readme(model, directory: Path, prepared, exports: list[str]) -> str:
    meta = json.loads((directory / "model.json").read_text())
    shape = ", ".join(str(d) for d in prepared.input_shape)
    classes = prepared.class_names
    if model.task == "classification":
        output = (f"class probabilities over {classes} (in this order)" if model.kind in ("sklearn", "ensemble", "booster")
                  else "logits: one (sigmoid: P(" + str(classes[-1]) + ")) for two classes, else one per class "
                       f"(softmax) over {classes}")
    else:
        output = "the predicted value" + (" in standardized units: multiply by arch.json's target_scale[1] and add "
                                          "target_scale[0]" if model.kind in ("torch", "keras") else "")
    how = {
        "sklearn": "import joblib; estimator = joblib.load('estimator.joblib'); "
                   + ("estimator.predict_proba(X)" if model.task == "classification" else "estimator.predict(X)")
                   + f"; or, where exported, onnxruntime.InferenceSession('{ONNX_FILE}').run(None, {{'X': X}})",
        "torch": f"import torch; net = torch.jit.load('{TORCHSCRIPT_FILE}'); net(torch.as_tensor(X)); or "
                 f"onnxruntime.InferenceSession('{ONNX_FILE}').run(None, {{'x': X}})[0]",
        "keras": "from tensorflow import keras; net = keras.models.load_model('model.keras', compile=False) "
                 "(with rayfit installed for its custom layers); net.predict(X); or, where exported, "
                 f"onnxruntime.InferenceSession('{ONNX_FILE}').run(None, {{'x': X}})[0]",
        "booster": "xgboost.Booster(model_file='booster.json') or lightgbm.Booster(model_file='booster.txt'); .predict",
        "ensemble": "the mean of its members' outputs; each member_*/ directory is a model of its own",
        "clusters": "import joblib; joblib.load('clusters.joblib')['estimator'] (K-Means: .predict(X))",
    }.get(model.kind, "see model.json")
    lines = [
        f"# {meta['name']}: the exported model",
        "",
        f"- Task: {model.task}; kind: {model.kind} (model.json).",
        f"- Input X: float32 rows of shape (N, {shape}), the output of the fitted preprocessing "
        f"(preprocessor.joblib, with rayfit installed: `rayfit.data.preprocessing.load_preprocessing('.')"
        f".transform(raw_rows)`); the features, in order, are `feature_names` in preprocessing.json.",
        f"- Output: {output}.",
        f"- Without rayfit: {how}.",
        "- MANIFEST.json holds the SHA-256 of every file here; rayfit refuses a model whose files changed.",
    ]
    if model.task == "classification" and model.threshold is not None:
        lines.append(f"- Decision: {classes[1]!r} where its probability is at least {model.threshold:.2f} (a threshold "
                     f"tuned on out-of-fold predictions; model.json's `threshold`), else {classes[0]!r}. rayfit "
                     f"predict and serve apply it; the files here give probabilities: apply it to them yourself.")
    if exports:
        lines.append(f"- Also exported: {', '.join(exports)}.")
    lines += ["", "With rayfit: `rayfit predict RUN --data rows.csv` or `rayfit serve RUN`.", ""]
    return "\n".join(lines)

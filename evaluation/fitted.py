"""ArrayModel: the one interface every trained model answers to, whatever framework made it.

Evaluation, the report, export and prediction call `predict` / `predict_proba` / `save` and never
ask which framework is underneath. A saved model is a directory with `model.json` naming its kind.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import joblib
import numpy as np

MODEL_META = "model.json"
MODEL_DIR = "model"  # a run's best model, with the preprocessing every model of the run shares
OTHER_MODELS = "models"  # export.models: all: model/models/<name>/, each a complete model directory


class ArrayModel:
    """A trained model over prepared arrays, whatever trained it (the public `rayfit.FittedModel`
    wraps one with the preprocessing that takes raw rows). Subclasses implement `_raw_predict`
    (class probabilities or regression values)."""

    kind: str = ""
    # Two classes: the second class is predicted where its probability reaches this (tuned on
    # out-of-fold predictions, evaluation/selection.py tune_threshold); None: the most probable class
    threshold: Optional[float] = None
    # False: a model whose computations run in Ray workers (trainers/remote_network.py), which a
    # long computation (permutation importance) goes to as a whole
    in_process: bool = True

    def __init__(self, name: str, task: str):
        self.name = name
        self.task = task

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self._raw_predict(X)
        if self.task == "classification":
            from rayfit.metrics import decide

            return decide(out, self.threshold)
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def predict_proba(self, X: np.ndarray) -> Optional[np.ndarray]:
        if self.task != "classification":
            return None
        return self.outputs(X)

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """What the model computes, as float64: class probabilities (N, classes) or values (N,)."""
        return np.asarray(self._raw_predict(X), dtype=np.float64)

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_files(directory)
        meta = {"kind": self.kind, "name": self.name, "task": self.task, **self._meta(),
                **({"threshold": self.threshold} if self.threshold is not None else {})}
        (directory / MODEL_META).write_text(json.dumps(meta, indent=2))
        return directory

    def export_files(self, directory: Path, example) -> tuple[list[str], list[str]]:
        """The framework's own exports (TorchScript, ONNX) into `directory`: (files written, what
        could not be and why). `example`: evaluation/export.py's ExportExample."""
        from rayfit.evaluation.export import framework_exports

        return framework_exports(self, directory, example)

    # -- for subclasses
    def _raw_predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _save_files(self, directory: Path) -> None:
        raise NotImplementedError

    def _meta(self) -> dict:
        return {}


class SklearnModel(ArrayModel):
    kind = "sklearn"

    def __init__(self, name: str, task: str, estimator, n_classes: Optional[int] = None):
        super().__init__(name, task)
        self.estimator = estimator
        self.n_classes = n_classes

    def _raw_predict(self, X):
        X = np.asarray(X).reshape(len(X), -1)  # images and sequences: one flat row per example
        if self.task != "classification":
            return self.estimator.predict(X)
        proba = self.estimator.predict_proba(X)
        # A class absent from the training split has no column; put it back as zeros.
        classes = list(self.estimator.classes_)
        if self.n_classes and len(classes) != self.n_classes:
            full = np.zeros((len(X), self.n_classes))
            full[:, classes] = proba
            proba = full
        return proba

    def _save_files(self, directory):
        joblib.dump(self.estimator, directory / "estimator.joblib")

    def _meta(self):
        return {"n_classes": self.n_classes}

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "SklearnModel":
        return cls(meta["name"], meta["task"], joblib.load(directory / "estimator.joblib"), meta.get("n_classes"))


class SoftVote(ArrayModel):
    """A soft-voting ensemble: the weighted mean of its members' class probabilities (or predicted
    values); equal weights unless given. Saved as one directory holding each member's."""

    kind = "ensemble"

    def __init__(self, name: str, task: str, members: list[ArrayModel], weights: Optional[list[float]] = None):
        super().__init__(name, task)
        self.members = members
        self.weights = list(weights) if weights is not None else [1.0 / len(members)] * len(members)

    def _raw_predict(self, X):
        return sum(weight * member.outputs(X) for weight, member in zip(self.weights, self.members))

    def _member_dirs(self) -> list[str]:
        return [f"member_{i}_{member.name}" for i, member in enumerate(self.members)]

    def _save_files(self, directory):
        for member, name in zip(self.members, self._member_dirs()):
            member.save(directory / name)

    def _meta(self):
        return {"members": self._member_dirs(), "weights": self.weights}

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "SoftVote":
        return cls(meta["name"], meta["task"], [_load_vouched(directory / name) for name in meta["members"]],
                   meta.get("weights"))  # a run before weighted ensembles: equal weights


# kind -> loader(directory, meta). A framework's kind is its registry name (rayfit/frameworks.py);
# its model class is imported when first needed, so loading a scikit-learn model never imports
# torch or TensorFlow.
LOADERS: dict[str, Callable[[Path, dict], ArrayModel]] = {"sklearn": SklearnModel.load, "ensemble": SoftVote.load}


# kinds whose loader lives in a module of its own
OWN_MODULE = {"booster": "rayfit.trainers.boosters", "clusters": "rayfit.evaluation.clustering"}


def pack_dir(directory: Path) -> bytes:
    """A model directory as one tar archive: what any process on any node can unpack (`unpack_dir`)
    with no shared file system."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(directory, arcname=MODEL_DIR)
    return buffer.getvalue()


def unpack_dir(blob: bytes, into: Path) -> Path:
    """`pack_dir`'s archive unpacked under `into` (tar's data filter: no links or paths out of it)."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(into, filter="data")
    return Path(into) / MODEL_DIR


def model_to_bytes(model: ArrayModel) -> bytes:
    """The model alone, saved with its manifest, as `pack_dir`'s archive (`model_from_bytes`),
    whatever the framework."""
    import tempfile

    from rayfit.evaluation.manifest import write_manifest

    with tempfile.TemporaryDirectory(prefix="rayfit-model-") as tmp:
        model.save(Path(tmp) / MODEL_DIR)
        write_manifest(Path(tmp) / MODEL_DIR)
        return pack_dir(Path(tmp) / MODEL_DIR)


def model_from_bytes(blob: bytes) -> ArrayModel:
    """`model_to_bytes`' archive, handed over in memory by a process of this run (a worker, which
    need not hold RAYFIT_SIGNING_KEY): its digests are checked, not a signature."""
    import tempfile

    from rayfit.evaluation.manifest import verify_manifest

    with tempfile.TemporaryDirectory(prefix="rayfit-model-") as tmp:
        directory = unpack_dir(blob, Path(tmp))
        verify_manifest(directory, signed=False)
        return _load_vouched(directory)


def load_model(directory: Path) -> ArrayModel:
    """The model saved in `directory`, its manifest checked before anything in it is unpickled."""
    from rayfit.evaluation.manifest import verify_manifest

    verify_manifest(directory)
    return _load_vouched(Path(directory))


def _load_vouched(directory: Path) -> ArrayModel:
    """The model in `directory`, whose files a manifest (its own or its parent's) vouched for."""
    from rayfit.errors import read_json
    from rayfit.frameworks import FRAMEWORKS

    meta = read_json(directory / MODEL_META)
    kind = meta["kind"]
    if kind not in LOADERS and kind in OWN_MODULE:  # registered when their module is imported
        import importlib

        importlib.import_module(OWN_MODULE[kind])
    if kind not in LOADERS and kind in FRAMEWORKS:
        LOADERS[kind] = FRAMEWORKS[kind].load("fitted").load
    model = LOADERS[kind](directory, meta)
    model.threshold = meta.get("threshold")
    return model

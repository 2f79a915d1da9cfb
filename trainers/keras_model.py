"""A trained Keras network as a ArrayModel, loaded from a checkpoint directory."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rayfit.evaluation.fitted import ArrayModel
from rayfit.trainers.core import ARCH, logits_to_output

# A checkpoint's files (trainers/keras_adapter.py writes them)
WEIGHTS = "weights.npz"  # the epoch's weights, in model.get_weights() order
BEST_WEIGHTS = "best_weights.npz"  # the best epoch's weights so far
OPTIMIZER = "optimizer.npz"  # the optimizer's variables (step count, moments)
MODEL_FILE = "model.keras"  # an exported model: the network in Keras's own format


def save_arrays(path: Path, arrays: list) -> None:
    np.savez(path, **{f"w{i}": a for i, a in enumerate(arrays)})


def load_arrays(path: Path) -> list:
    with np.load(path) as saved:
        return [saved[f"w{i}"] for i in range(len(saved.files))]


class KerasModel(ArrayModel):
    kind = "keras"

    def __init__(self, name: str, task: str, network, arch: dict):
        super().__init__(name, task)
        self.network = network
        self.arch = arch

    def _raw_predict(self, X, batch: int = 4096):
        # A direct call per batch, not Model.predict: predict builds a data pipeline on every call,
        # about 170 ms here even for a few hundred rows, and permutation importance calls it once
        # per feature and repeat (a direct call: about 3 ms).
        X = np.asarray(X, dtype=np.float32)
        if len(X) == 0:
            out = self.network.predict(X, verbose=0)
        else:
            out = np.concatenate([np.asarray(self.network(X[i:i + batch], training=False), dtype=np.float32)
                                  for i in range(0, len(X), batch)])
        return logits_to_output(np.asarray(out), self.task, self.arch)

    def _save_files(self, directory):
        self.network.save(directory / MODEL_FILE)
        (directory / ARCH).write_text(json.dumps(self.arch, indent=2))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path, name: str, task: str, best: bool = True) -> "KerasModel":
        """best: the best epoch's weights (restore-best), else the checkpoint's own epoch."""
        from tensorflow import keras

        from rayfit.trainers.keras_models import build_keras_model

        checkpoint_dir = Path(checkpoint_dir)
        arch = json.loads((checkpoint_dir / ARCH).read_text())
        keras.mixed_precision.set_global_policy("float32")  # predictions in float32, wherever it trained
        network = build_keras_model(arch)
        weights = checkpoint_dir / BEST_WEIGHTS
        network.set_weights(load_arrays(weights if best and weights.exists() else checkpoint_dir / WEIGHTS))
        return cls(name, task, network, arch)

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "KerasModel":
        from tensorflow import keras

        import rayfit.trainers.keras_models  # noqa: F401  (registers the custom layers model.keras may hold)

        directory = Path(directory)
        network = keras.models.load_model(directory / MODEL_FILE, compile=False)
        return cls(meta["name"], meta["task"], network, json.loads((directory / ARCH).read_text()))


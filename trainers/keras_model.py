"""A trained Keras network as a FittedModel, loaded from a checkpoint directory."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rayfit.evaluation.fitted import LOADERS, FittedModel

MODEL_FILE = "model.keras"
ARCH = "arch.json"


class KerasModel(FittedModel):
    kind = "keras"

    def __init__(self, name: str, task: str, network, arch: dict):
        super().__init__(name, task)
        self.network = network
        self.arch = arch

    def _raw_predict(self, X):
        import tensorflow as tf

        out = self.network(np.asarray(X, dtype=np.float32), training=False)
        if self.task == "classification":
            return tf.nn.softmax(out, axis=1).numpy()
        return out.numpy().reshape(-1)

    def _save_files(self, directory):
        self.network.save(directory / MODEL_FILE)
        (directory / ARCH).write_text(json.dumps(self.arch, indent=2))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path, name: str, task: str) -> "KerasModel":
        from tensorflow import keras

        checkpoint_dir = Path(checkpoint_dir)
        network = keras.models.load_model(checkpoint_dir / MODEL_FILE, compile=False)
        arch = json.loads((checkpoint_dir / ARCH).read_text())
        return cls(name, task, network, arch)

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "KerasModel":
        return cls.from_checkpoint(directory, meta["name"], meta["task"])


LOADERS["keras"] = KerasModel.load

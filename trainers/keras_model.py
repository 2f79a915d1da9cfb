"""A trained Keras network as a FittedModel, loaded from a checkpoint directory."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rayfit.evaluation.fitted import LOADERS, FittedModel
from rayfit.trainers.torch_model import logits_to_output

MODEL_FILE = "model.keras"  # the epoch's model, optimizer state included
BEST_WEIGHTS = "best_weights.npz"  # the best epoch's weights so far
ARCH = "arch.json"


class KerasModel(FittedModel):
    kind = "keras"

    def __init__(self, name: str, task: str, network, arch: dict):
        super().__init__(name, task)
        self.network = network
        self.arch = arch

    def _raw_predict(self, X):
        out = self.network.predict(np.asarray(X, dtype=np.float32), batch_size=4096, verbose=0)
        return logits_to_output(np.asarray(out), self.task, self.arch)

    def _save_files(self, directory):
        self.network.save(directory / MODEL_FILE)
        (directory / ARCH).write_text(json.dumps(self.arch, indent=2))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path, name: str, task: str, best: bool = True) -> "KerasModel":
        from tensorflow import keras

        checkpoint_dir = Path(checkpoint_dir)
        network = keras.models.load_model(checkpoint_dir / MODEL_FILE, compile=False)
        if best and (checkpoint_dir / BEST_WEIGHTS).exists():
            with np.load(checkpoint_dir / BEST_WEIGHTS) as saved:
                network.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
        arch = json.loads((checkpoint_dir / ARCH).read_text())
        return cls(name, task, network, arch)

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "KerasModel":
        return cls.from_checkpoint(directory, meta["name"], meta["task"], best=False)


LOADERS["keras"] = KerasModel.load

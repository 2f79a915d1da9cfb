"""A trained PyTorch network as a FittedModel, loaded from a checkpoint directory."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rayfit.evaluation.fitted import LOADERS, FittedModel
from rayfit.trainers.torch_models import build_torch_model

WEIGHTS = "model.pt"
ARCH = "arch.json"


class TorchModel(FittedModel):
    kind = "torch"

    def __init__(self, name: str, task: str, network: torch.nn.Module, arch: dict):
        super().__init__(name, task)
        self.network = network.eval()
        self.arch = arch

    @torch.no_grad()
    def _raw_predict(self, X):
        out = self.network(torch.as_tensor(np.asarray(X, dtype=np.float32)))
        if self.task == "classification":
            return torch.softmax(out, dim=1).numpy()
        return out.reshape(-1).numpy()

    def _save_files(self, directory):
        torch.save(self.network.state_dict(), directory / WEIGHTS)
        (directory / ARCH).write_text(json.dumps(self.arch, indent=2))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path, name: str, task: str) -> "TorchModel":
        checkpoint_dir = Path(checkpoint_dir)
        arch = json.loads((checkpoint_dir / ARCH).read_text())
        network = build_torch_model(arch)
        network.load_state_dict(torch.load(checkpoint_dir / WEIGHTS, map_location="cpu", weights_only=True))
        return cls(name, task, network, arch)

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "TorchModel":
        return cls.from_checkpoint(directory, meta["name"], meta["task"])


LOADERS["torch"] = TorchModel.load

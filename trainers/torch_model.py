"""A trained PyTorch network as a ArrayModel, loaded from a checkpoint directory."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rayfit.evaluation.fitted import ArrayModel
from rayfit.trainers.core import ARCH, logits_to_output
from rayfit.trainers.torch_models import build_torch_model

# A checkpoint's files (trainers/torch_adapter.py writes them); an exported model has WEIGHTS and ARCH
WEIGHTS = "model.pt"  # the epoch's weights
BEST_WEIGHTS = "best_model.pt"  # the best epoch's weights so far, carried in every checkpoint
OPTIMIZER = "optimizer.pt"  # optimizer and loss-scaler state


class TorchModel(ArrayModel):
    kind = "torch"

    def __init__(self, name: str, task: str, network: torch.nn.Module, arch: dict):
        super().__init__(name, task)
        self.network = network.eval()
        self.arch = arch

    @torch.no_grad()
    def _raw_predict(self, X, batch: int = 4096):
        X = np.asarray(X, dtype=np.float32)
        out = np.concatenate([self.network(torch.as_tensor(X[i:i + batch])).numpy() for i in range(0, len(X), batch)])
        return logits_to_output(out, self.task, self.arch)

    def _save_files(self, directory):
        torch.save(self.network.state_dict(), directory / WEIGHTS)
        (directory / ARCH).write_text(json.dumps(self.arch, indent=2))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Path, name: str, task: str, best: bool = True) -> "TorchModel":
        """best: the best epoch's weights (restore-best), else the checkpoint's own epoch."""
        checkpoint_dir = Path(checkpoint_dir)
        arch = json.loads((checkpoint_dir / ARCH).read_text())
        network = build_torch_model(arch)
        weights = checkpoint_dir / BEST_WEIGHTS
        if not (best and weights.exists()):
            weights = checkpoint_dir / WEIGHTS
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return cls(name, task, network, arch)

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "TorchModel":
        return cls.from_checkpoint(directory, meta["name"], meta["task"], best=False)


"""What a framework brings to the training core: a small typed protocol, one class per framework.

The core (trainers/core.py) owns everything about epochs: the schedule, early stopping, best
weights, history, checkpoints, restore and reporting. An adapter owns the tensors: it builds the
network, trains one epoch over a batch source, predicts, and saves and loads weights and optimizer
state. The adapters give these the same meaning:

- loss: trainers/losses.py, class weights in training and validation alike;
- L1: `l1 * sum(|w|)` over every weight matrix or kernel (not biases, not norms), added to the
  training objective; the reported training loss is the data loss alone, as validation's is;
- weight decay: decoupled (w -= lr * weight_decay * w at each step), for every optimizer;
- gradient clipping: the global norm of all gradients, after they are averaged over workers;
- mixed precision: float16 compute with a dynamic loss scale, on a GPU only;
- after a restore, the optimizer's state is the checkpoint's and its hyperparameters (learning
  rate, weight decay, momentum) are this run's own: a PBT-exploited trial keeps its mutations.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from rayfit.trainers.device import Runtime

# epoch -> this worker's batches for that epoch, reshuffled by epoch (a resumed run replays them)
BatchSource = Callable[[int], Iterable]


class FrameworkAdapter(Protocol):
    runtime: Runtime  # where this worker trains (set at construction)

    def __init__(self, config, rank: int, world_size: int) -> None:
        """Threads, device and (for several workers) the framework's data-parallel setup."""

    def build(self, arch: dict) -> None:
        """The network from its architecture and the optimizer from config.settings."""

    def seed(self, seed: int) -> None:
        """Seed every generator the framework draws from (dropout, shuffles)."""

    def rng_state(self) -> dict: ...

    def set_rng_state(self, state: dict) -> None: ...

    def in_memory_batches(self, X: np.ndarray, y: np.ndarray) -> BatchSource:
        """This worker's share of the arrays (targets already as the loss takes them)."""

    def streamed_batches(self, shard: Any) -> BatchSource:
        """This worker's shard of a Ray Dataset of {"x", "y"} rows (raw targets)."""

    def train_epoch(self, batches: Iterable, lr: float) -> tuple[float, int]:
        """One pass: (mean data loss over every worker's examples, examples this worker saw)."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Raw outputs (logits or standardized values) for every row, as float numpy."""

    def weights(self) -> Any:
        """A copy of the current weights, off the device (the core keeps the best epoch's)."""

    def save(self, directory: Path, best_weights: Any) -> None:
        """The weights, the best weights and the optimizer state, in the framework's formats."""

    def load(self, directory: Path) -> Any:
        """Restore weights and optimizer state; returns the saved best weights."""

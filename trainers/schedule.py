"""Per-epoch learning rate and early stopping, shared by the PyTorch and Keras loops.

Both are plain state machines with `state_dict` / `load_state_dict`, so a checkpoint restores them
exactly and both frameworks follow the same schedule.
"""
from __future__ import annotations

import math


class LearningRateSchedule:
    """lr for each epoch (1-based): linear warm-up, then none / step / cosine / reduce-on-plateau."""

    def __init__(self, base_lr: float, kind: str, epochs: int, warmup_epochs: int = 0, step_size: int = 10,
                 gamma: float = 0.5, plateau_patience: int = 3, min_delta: float = 1e-4):
        self.base_lr, self.kind, self.epochs = base_lr, kind, epochs
        self.warmup, self.step_size, self.gamma = warmup_epochs, step_size, gamma
        self.plateau_patience, self.min_delta = plateau_patience, min_delta
        self.plateau_factor, self.plateau_best, self.plateau_bad = 1.0, math.inf, 0

    @classmethod
    def from_settings(cls, settings: dict) -> "LearningRateSchedule":
        return cls(settings["lr"], settings["schedule"], settings["epochs"], settings["warmup_epochs"],
                   settings["step_size"], settings["gamma"], max(1, settings["patience"] // 2), settings["min_delta"])

    def lr(self, epoch: int) -> float:
        if epoch <= self.warmup:
            return self.base_lr * epoch / (self.warmup + 1)
        e = epoch - self.warmup - 1  # epochs since warm-up ended, from 0
        if self.kind == "step":
            return self.base_lr * self.gamma ** (e // self.step_size)
        if self.kind == "cosine":
            span = max(1, self.epochs - self.warmup)
            return self.base_lr * 0.5 * (1 + math.cos(math.pi * e / span))
        if self.kind == "plateau":
            return self.base_lr * self.plateau_factor
        return self.base_lr

    def observe(self, val_loss: float) -> None:
        """After an epoch: reduce-on-plateau counts epochs without improvement."""
        if self.kind != "plateau":
            return
        if val_loss < self.plateau_best - self.min_delta:
            self.plateau_best, self.plateau_bad = val_loss, 0
        else:
            self.plateau_bad += 1
            if self.plateau_bad >= self.plateau_patience:
                self.plateau_factor *= self.gamma
                self.plateau_bad = 0

    def state_dict(self) -> dict:
        return {"plateau_factor": self.plateau_factor, "plateau_best": self.plateau_best, "plateau_bad": self.plateau_bad}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


class EarlyStopping:
    """Stop after `patience` epochs without a val-loss drop of at least `min_delta`."""

    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def step(self, value: float, epoch: int) -> bool:
        """Record one epoch; True when it is the best so far."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)

"""What a network's loss means, once, for both frameworks: the numpy reference.

Training computes the same quantity in each framework (its adapter, on its own tensors, so it can
differentiate); validation computes it here, from the network's outputs, for every framework. A
parity test holds each adapter's training loss to this definition.

- Regression: mean squared error on the standardized target (trainers/target_scale.py).
- Binary (one logit): binary cross-entropy with logits. Multi-class: softmax cross-entropy.
- Class weights weight each example by its class: sum(w_i * loss_i) / sum(w_i), in training and in
  validation alike.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def squeeze(out: np.ndarray) -> np.ndarray:
    """(N, 1) outputs -> (N,): one logit (binary) or one value (regression)."""
    return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out


def per_example_loss(out: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    out = squeeze(np.asarray(out, dtype=np.float64))
    if task == "regression":
        return (out - np.asarray(y, dtype=np.float64)) ** 2
    if out.ndim == 1:  # binary, one logit: log(1 + e^x) - x*y, stably
        y = np.asarray(y, dtype=np.float64)
        return np.maximum(out, 0) - out * y + np.log1p(np.exp(-np.abs(out)))
    top = out.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(out - top).sum(axis=1))
    return log_z - out[np.arange(len(out)), np.asarray(y, dtype=np.int64)]


def example_weights(y: np.ndarray, task: str, class_weights: Optional[list]) -> np.ndarray:
    if task != "classification" or not class_weights:
        return np.ones(len(y))
    return np.asarray(class_weights, dtype=np.float64)[np.asarray(y, dtype=np.int64)]


def weighted_loss(out: np.ndarray, y: np.ndarray, task: str, class_weights: Optional[list]) -> float:
    weights = example_weights(y, task, class_weights)
    return float((weights * per_example_loss(out, y, task)).sum() / weights.sum())


def validation_metrics(out: np.ndarray, y: np.ndarray, task: str, class_weights: Optional[list]) -> dict:
    """val_loss (class-weighted, as in training) and, for classification, val_accuracy."""
    metrics = {"val_loss": weighted_loss(out, y, task, class_weights)}
    if task == "classification":
        out = squeeze(out)
        predicted = (out > 0).astype(np.int64) if out.ndim == 1 else out.argmax(axis=1)
        metrics["val_accuracy"] = float(np.mean(predicted == np.asarray(y, dtype=np.int64)))
    return metrics

"""Regression targets on a scale networks can learn: standardized with the training split's mean
and standard deviation.

With standardized inputs and a target in the hundreds, a network's first epochs only learn the
target's mean (the loss starts near the target's variance). So every network, in every loop,
trains and early-stops on (y - mean) / std, and its predictions are taken back to the target's
units before any metric, report, export or `rayfit predict`. The scale travels in the network's
arch.json, so a saved model carries it. Classification targets are left alone.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

TargetScale = Optional[Sequence[float]]  # (mean, std) of the training split's target; None: as is


def fit_target_scale(y_train: np.ndarray, task: str) -> TargetScale:
    if task != "regression":
        return None
    std = float(np.std(y_train))
    return (float(np.mean(y_train)), std if std > 0 else 1.0)


def standardize(y, scale: TargetScale):
    """Works on numpy arrays, torch tensors and TensorFlow tensors alike."""
    return y if scale is None else (y - scale[0]) / scale[1]


def to_target_units(values: np.ndarray, scale: TargetScale) -> np.ndarray:
    return values if scale is None else values * scale[1] + scale[0]

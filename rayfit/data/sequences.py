"""Sequence data: the built-in `sequences` set, and windows cut from a numeric time-series table."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from rayfit.errors import UserError

WAVE_SHAPES = ("sine", "square", "sawtooth")


def synthetic_sequences(n: int = 1200, steps: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, steps, 2) noisy waves and their shape names, balanced; channel 2 is the noisy derivative.

    Frequency, phase and amplitude are random, so the shape (not any one time step) tells the class:
    a recurrent network reaches > 0.9 accuracy, a constant guess 1/3.
    """
    rng = np.random.default_rng(seed)
    labels = np.resize(np.arange(len(WAVE_SHAPES)), n)
    rng.shuffle(labels)
    cycles = rng.uniform(1 / 12, 1 / 5, (n, 1))  # periods of 5 to 12 steps: 2.5 to 6 cycles a sequence
    phase = rng.uniform(0, 1, (n, 1))
    amplitude = rng.uniform(0.5, 2.0, (n, 1))
    position = (cycles * np.arange(steps) + phase) % 1.0  # where each step falls within its cycle
    waves = np.stack([np.sin(2 * np.pi * position), np.where(position < 0.5, 1.0, -1.0), 2 * position - 1])
    wave = amplitude * waves[labels, np.arange(n)]
    derivative = np.gradient(wave, axis=1)
    x = np.stack([wave + rng.normal(0, 0.2, wave.shape), derivative + rng.normal(0, 0.2, wave.shape)], axis=-1)
    return x.astype(np.float32), np.asarray(WAVE_SHAPES)[labels]


def numeric_columns(frame: pd.DataFrame, source: str) -> list[str]:
    """Every column is an input channel of the windows, so every column must hold numbers."""
    text = [c for c in frame.columns
            if not (pd.api.types.is_numeric_dtype(frame[c].dtype) or pd.api.types.is_bool_dtype(frame[c].dtype))]
    if text:
        raise UserError(f"{source}: a time-series table (data.kind: sequence) needs numeric columns only; "
                        f"not numeric: {', '.join(map(repr, text))} (drop them from the file)")
    return list(frame.columns)


def windows_in(rows: int, window: int, horizon: int) -> int:
    """Windows that fit in `rows` consecutive rows with their target `horizon` rows after the last one."""
    return max(rows - window - horizon + 1, 0)


class WindowedSeries(TransformerMixin, BaseEstimator):
    """Raw rows -> standardized windows of `window` consecutive rows, one per possible last row.

    Mean and std per column are fitted on the rows given to `fit` (the train range). Missing values
    are carried forward from the row before; what is still missing becomes the train mean.
    """

    def __init__(self, columns: list[str], window: int):
        self.columns = columns
        self.window = window

    def fit(self, frame: pd.DataFrame, y=None):
        values = self._values(frame)
        self.mean_ = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)  # a constant column stays constant, not NaN
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "mean_")
        values = np.nan_to_num((self._values(frame) - self.mean_) / self.scale_, nan=0.0).astype(np.float32)
        if len(values) < self.window:
            raise UserError(f"{len(values)} rows make no window of {self.window} rows")
        # (rows - window + 1, window, columns): a view, copied once so callers may modify it.
        windows = np.lib.stride_tricks.sliding_window_view(values, self.window, axis=0)
        return np.ascontiguousarray(windows.transpose(0, 2, 1))

    def _values(self, frame: pd.DataFrame) -> np.ndarray:
        numbers = frame[self.columns].apply(pd.to_numeric, errors="coerce").astype("float64")
        return numbers.ffill().to_numpy()

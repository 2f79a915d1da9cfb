"""A model directory to a model, and raw rows to predictions: the one path that `rayfit predict`,
`rayfit serve`, the Python API (`rayfit.load`) and the evaluation stage share.

A model directory holds the model (`model.json` and its files), the preprocessing fitted with it and
a manifest of every file; the manifest is checked before anything in the directory is unpickled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd

from rayfit.data.preprocessing import Preprocessing, decode_classes, load_preprocessing

from rayfit.metrics import decide

from .fitted import ArrayModel, load_model
from .manifest import verify_manifest

PROBA_PREFIX = "proba_"


def load_model_dir(directory: Union[str, Path],
                   preprocessing_dir: Optional[Union[str, Path]] = None) -> tuple[ArrayModel, Preprocessing]:
    """The model in `directory` and the preprocessing fitted with it: from `preprocessing_dir` where
    the model directory holds the model alone (a run record's models/<name>/), else its own."""
    directory = Path(directory)
    model = load_model(directory)  # checks the directory's manifest first
    shared = Path(preprocessing_dir) if preprocessing_dir is not None else directory
    if shared != directory:
        verify_manifest(shared)  # before the preprocessing is unpickled
    return model, load_preprocessing(shared)


def prediction_frame(model: ArrayModel, X: np.ndarray, class_names: Optional[list],
                     proba: bool = True) -> pd.DataFrame:
    """A model's answers for prepared arrays: `prediction` in the target's own values and, for a
    classifier (with `proba`), one `proba_<class>` column per class."""
    probabilities = model.predict_proba(X) if proba else None
    # a classifier's prediction is its most probable class (ArrayModel.predict): one pass, not two
    predicted = decide(probabilities, model.threshold) if probabilities is not None else model.predict(X)
    out = pd.DataFrame({"prediction": decode_classes(class_names, predicted)})
    if probabilities is not None:
        for i, name in enumerate(class_names):
            out[f"{PROBA_PREFIX}{name}"] = probabilities[:, i]
    return out


def predict_raw(model: ArrayModel, preprocessing: Preprocessing, raw, proba: bool = True) -> pd.DataFrame:
    """A model's answers for raw rows (a DataFrame, as the run was given them) or raw examples (an
    array): one row per row, or for a time series one per window, whose `last_row` column says which
    input row it ends at (its target lies the horizon after)."""
    out = prediction_frame(model, preprocessing.transform(raw), preprocessing.class_names, proba)
    if preprocessing.kind == "sequence" and preprocessing.takes_rows:
        window = preprocessing.input_shape[0]
        out.insert(0, "last_row", np.arange(window - 1, window - 1 + len(out)))
    return out


def probabilities(frame: pd.DataFrame, class_names: list) -> pd.DataFrame:
    """The `proba_<class>` columns of a prediction frame, named by the classes themselves."""
    return frame[[f"{PROBA_PREFIX}{name}" for name in class_names]].set_axis(class_names, axis=1)

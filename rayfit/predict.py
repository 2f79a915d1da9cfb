"""Predict raw input with a finished run's exported model and its fitted preprocessing.

Tables and time series take raw rows (.csv / .parquet / a 2-D .npz); image and sequence runs take
an .npz file whose array `x` holds the raw examples.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import pandas as pd

from rayfit.cluster.storage import Location
from rayfit.data import load_table
from rayfit.data.arrays import NPZ_SUFFIXES, read_npz
from rayfit.data.preprocessing import Preprocessing
from rayfit.errors import read_json, UserError
from rayfit.evaluation.fitted import MODEL_DIR, MODEL_META, OTHER_MODELS
from rayfit.evaluation.predictions import load_model_dir, predict_raw


def model_location(run: str, model: Optional[str] = None) -> Location:
    """Where the run's model directory is: its best model's (model/), or with `model` the one of that
    name (the best, or one exported by `export.models: all` under model/models/)."""
    location = Location.of(run).join(MODEL_DIR)
    if not location.join(MODEL_META).is_file():
        raise UserError(f"{run}: not a finished rayfit run (no model/{MODEL_META})")
    best = read_json(location.join(MODEL_META)).get("name")
    if model is None or model == best:
        return location
    exported = sorted(child.name for child in location.join(OTHER_MODELS).children()) \
        if location.join(OTHER_MODELS).exists() else []
    if model not in exported:
        others = f"the others exported: {', '.join(exported)}" if exported else \
            "no other model was exported (export.models: all exports every model)"
        raise UserError(f"--model {model}: not among this run's exported models (the best: {best}; {others})")
    return location.join(OTHER_MODELS, model)


def predict_file(run: str, data: str, model: Optional[str] = None) -> pd.DataFrame:
    """Predictions for the rows in `data` by the run at `run` (a directory or a storage URI): by
    its best model, or by the exported model named `model`."""
    location = model_location(run, model)
    if location.local:
        return _predict(Path(location.uri), data)
    with tempfile.TemporaryDirectory(prefix="rayfit-model-") as tmp:
        return _predict(location.download(Path(tmp)), data)


def _predict(model_dir: Path, data: str) -> pd.DataFrame:
    model, preprocessing = load_model_dir(model_dir)
    return predict_raw(model, preprocessing, _read_raw(data, preprocessing))


def _read_raw(data: str, preprocessing: Preprocessing):
    if preprocessing.takes_rows:
        return load_table(data)[0]
    if Path(data).suffix.lower() not in NPZ_SUFFIXES:
        raise UserError(f"--data {data}: this run's model takes {preprocessing.kind} arrays; "
                        f"give an .npz file with the raw examples as array 'x'")
    return read_npz(data, need_y=False)[0]

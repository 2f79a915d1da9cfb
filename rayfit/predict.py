"""Predict raw rows with a finished run's exported model and its fitted preprocessing."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from rayfit.data import load_table
from rayfit.data.preprocessing import load_preprocessing
from rayfit.errors import UserError
from rayfit.evaluation.fitted import MODEL_META, load_model


def predict_file(run_dir: str, data: str) -> pd.DataFrame:
    model_dir = Path(run_dir) / "model"
    if not (model_dir / MODEL_META).is_file():
        raise UserError(f"{run_dir}: not a finished rayfit run (no model/{MODEL_META})")
    frame, _ = load_table(data)
    preprocessing = load_preprocessing(model_dir)
    model = load_model(model_dir)
    X = preprocessing.transform(frame)
    out = pd.DataFrame({"prediction": preprocessing.decode(model.predict(X))})
    proba = model.predict_proba(X)
    if proba is not None:
        for i, name in enumerate(preprocessing.class_names):
            out[f"proba_{name}"] = proba[:, i]
    return out

"""Built-in data sets: a name -> a loader returning (frame, target column), or (x, labels) for
array sets. All load offline."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from rayfit.data.sequences import synthetic_sequences


def synthetic() -> tuple[pd.DataFrame, str]:
    """A linearly separable-ish binary task: a linear model should reach about 0.9 accuracy."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 20))
    noise = rng.standard_normal(1000)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(20)])
    frame["label"] = (frame["x0"] + frame["x1"] - frame["x2"] + 0.5 * noise > 0).astype(int)
    return frame, "label"


def _sklearn_set(name: str, named_classes: bool) -> Callable[[], tuple[pd.DataFrame, str]]:
    def load() -> tuple[pd.DataFrame, str]:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")(as_frame=True)
        frame = bunch.frame.copy()
        if named_classes:
            # Class names ("setosa", "malignant") read better in reports than 0, 1, 2.
            frame["target"] = np.asarray(bunch.target_names)[frame["target"].to_numpy()]
        return frame, "target"

    load.__name__ = name
    return load


BUILTIN: dict[str, Callable[[], tuple[pd.DataFrame, str]]] = {
    "synthetic": synthetic,
    "breast_cancer": _sklearn_set("breast_cancer", named_classes=True),
    "wine": _sklearn_set("wine", named_classes=True),
    "iris": _sklearn_set("iris", named_classes=True),
    "digits": _sklearn_set("digits", named_classes=False),
    "diabetes": _sklearn_set("diabetes", named_classes=False),  # regression
}

# Sets of examples that are not table rows: name -> loader returning (x, labels).
BUILTIN_ARRAYS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "sequences": synthetic_sequences,  # (1200, 30, 2) waves: sine / square / sawtooth
}

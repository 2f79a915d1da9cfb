"""Categorical columns as categories, for a model that splits on them natively (CatBoost's ordered
target statistics) rather than on the one-hot or ordinal columns every other model sees.

The run has one preprocessing; a model that wants categories carries its own step after it, the
way a target scaler carries its scaling: `NativeCategories` wraps the estimator and turns each
categorical column's encoded features back into one integer category code (a one-hot group's
active column, -1 for a category train never saw; an ordinal code unscaled). It is pickled with
the estimator, so the model directory holds it, and `predict` needs nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin


@dataclass(frozen=True)
class CategoricalLayout:
    """Where the categorical columns lie in the preprocessed features."""

    width: int  # features in a preprocessed row
    onehot: tuple  # per one-hot encoded column: the indices of its features
    ordinal: tuple  # per ordinal encoded column: (index, mean, scale) of its standardized code

    @property
    def columns(self) -> int:
        return len(self.onehot) + len(self.ordinal)


def categorical_layout(preprocessor) -> Optional[CategoricalLayout]:
    """The layout of a table's fitted preprocessing (tests/test_categories.py); None where it has no
    categorical column, or is not a table's."""
    from sklearn.compose import ColumnTransformer

    steps = getattr(preprocessor, "named_steps", {})
    columns = steps.get("columns")
    if not isinstance(columns, ColumnTransformer) or not hasattr(columns, "output_indices_"):
        return None
    onehot, ordinal = [], []
    for name, pipeline, _ in columns.transformers_:
        where = columns.output_indices_.get(name)
        if name not in ("onehot", "ordinal") or where is None:
            continue
        if name == "onehot":
            start = where.start
            for categories in pipeline.named_steps["encode"].categories_:
                onehot.append(tuple(range(start, start + len(categories))))
                start += len(categories)
        else:
            scaler = pipeline.named_steps["scale"]
            for j, (mean, scale) in enumerate(zip(scaler.mean_, scaler.scale_)):
                ordinal.append((where.start + j, float(mean), float(scale)))
    if not onehot and not ordinal:
        return None
    width = max(s.stop for s in columns.output_indices_.values())
    return CategoricalLayout(width, tuple(onehot), tuple(ordinal))


OWN = ("estimator", "layout", "argument")  # NativeCategories' own parameters
CODE = "category_"  # the name of an encoded frame's category code columns, numbered


def category_columns(X) -> Optional[list[str]]:
    """The category code columns of a frame `NativeCategories.encode` made; None for an array."""
    return [c for c in X.columns if str(c).startswith(CODE)] if isinstance(X, pd.DataFrame) else None


class NativeCategories(MetaEstimatorMixin, BaseEstimator):
    """`estimator` fitted on the preprocessed features with each categorical column as one category
    code (`encode`): the other features first, in their order, then one code per column. Parameters
    other than its own three reach the estimator, so the registry's hyperparameters, early stopping
    and GPU settings set it as they set an unwrapped one; fitted attributes are the estimator's."""

    def __init__(self, estimator, layout: CategoricalLayout, argument: str = "cat_features"):
        self.estimator = estimator
        self.layout = layout
        self.argument = argument  # the estimator's fit argument that names its categorical columns

    def fit_arguments(self) -> dict:
        return {self.argument: self.category_columns}

    @property
    def category_columns(self) -> list[str]:
        return [f"{CODE}{k}" for k in range(self.layout.columns)]

    def encode(self, X) -> pd.DataFrame:
        X = np.asarray(X).reshape(len(X), -1)
        layout = self.layout
        taken = {j for group in layout.onehot for j in group} | {j for j, _, _ in layout.ordinal}
        rest = [j for j in range(X.shape[1]) if j not in taken]
        frame = pd.DataFrame(X[:, rest].astype(np.float32), columns=[f"feature_{j}" for j in rest])
        codes = []
        for group in layout.onehot:
            block = X[:, list(group)]
            code = block.argmax(axis=1).astype(np.int64)
            code[block.max(axis=1) <= 0] = -1  # a category the training rows never had
            codes.append(code)
        for j, mean, scale in layout.ordinal:
            codes.append(np.rint(X[:, j] * scale + mean).astype(np.int64))
        for name, code in zip(self.category_columns, codes):
            frame[name] = code
        return frame

    def set_params(self, **params):
        own = {k: params.pop(k) for k in list(params) if k in OWN or k.startswith("estimator__")}
        super().set_params(**own)
        if params:
            self.estimator.set_params(**params)
        return self

    def fit(self, X, y, **fit_args):
        self.estimator.fit(self.encode(X), y, **self.fit_arguments(), **fit_args)
        return self

    def predict(self, X):
        return self.estimator.predict(self.encode(X))

    def predict_proba(self, X):
        return self.estimator.predict_proba(self.encode(X))

    @property
    def feature_importances_(self) -> np.ndarray:
        """The estimator's importances in the preprocessed features' order: a category code's is
        shared equally by its one-hot features."""
        inner = np.asarray(self.estimator.feature_importances_, dtype=float)
        layout = self.layout
        taken = {j for group in layout.onehot for j in group} | {j for j, _, _ in layout.ordinal}
        rest = [j for j in range(layout.width) if j not in taken]
        values = np.zeros(layout.width)
        values[rest] = inner[:len(rest)]
        codes = iter(inner[len(rest):])
        for group in layout.onehot:
            values[list(group)] = next(codes) / len(group)
        for j, _, _ in layout.ordinal:
            values[j] = next(codes)
        return values

    def __getattr__(self, name):
        # fitted attributes (classes_, best_iteration_ ...) are the estimator's; never during unpickling
        if name.startswith("__") or name in OWN:
            raise AttributeError(name)
        return getattr(self.estimator, name)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if hasattr(self.estimator, "predict_proba") else "regressor"
        return tags

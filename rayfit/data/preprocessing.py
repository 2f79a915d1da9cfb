"""The fitted preprocessing: datetime parts, imputation, scaling, encoding; saved with a run's model.

The pipeline is fitted on the train split only and later applied to raw rows, which may lack the
target column and may hold categories never seen in training. Image and sequence runs save their
per-channel scaling instead, applied to raw arrays (or, for a time-series table, to raw rows).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from rayfit.data.clean import parse_datetimes
from rayfit.errors import read_json, UserError

if TYPE_CHECKING:
    from rayfit.data.prepare import Prepared

PREPROCESSOR_FILE = "preprocessor.joblib"
PREPROCESSING_META = "preprocessing.json"
DATETIME_PARTS = ("year", "month", "day", "dayofweek")
_ACCESSOR = {"dayofweek": "day_of_week"}  # pandas 3 deprecates .dt.dayofweek


class DatetimeExpander(TransformerMixin, BaseEstimator):
    """Replace each datetime (or date-like text) column by its numeric parts.

    The hour is kept only when the training rows have a time of day other than midnight.
    """

    def __init__(self, columns: Sequence[str] = ()):
        self.columns = columns

    def fit(self, X: pd.DataFrame, y=None):
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.parts_ = {}
        for column in self.columns:
            stamps = parse_datetimes(X[column])
            with_hour = bool((stamps.dt.hour.fillna(0) != 0).any())
            self.parts_[column] = list(DATETIME_PARTS) + (["hour"] if with_hour else [])
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "parts_")
        expanded = [X.drop(columns=list(self.parts_))]
        for column, parts in self.parts_.items():
            stamps = parse_datetimes(X[column])
            expanded.append(pd.DataFrame(
                {f"{column}_{part}": getattr(stamps.dt, _ACCESSOR.get(part, part)).astype("float64") for part in parts}, index=X.index))
        return pd.concat(expanded, axis=1)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "parts_")
        kept = [c for c in self.feature_names_in_ if c not in self.parts_]
        parts = [f"{column}_{part}" for column, names in self.parts_.items() for part in names]
        return np.asarray(kept + parts, dtype=object)


def as_float(X) -> pd.DataFrame:
    """Numbers as float64; anything else (a stray word in a predict file, inf) becomes missing."""
    return pd.DataFrame(X).apply(pd.to_numeric, errors="coerce").astype("float64").replace([np.inf, -np.inf], np.nan)


def as_text(X) -> pd.DataFrame:
    """Categories as Python strings in object columns, missing as NaN: what sklearn's encoders expect."""
    frame = pd.DataFrame(X)
    return frame.astype(str).astype(object).mask(frame.isna(), np.nan)


def category_name(column: str, category) -> str:
    return f"{column}={category}"


TEXT_WORD_FEATURES = 300  # the most frequent words and word pairs kept per text column (fitted on train)
TEXT_CHAR_FEATURES = 300  # the most frequent character 2- to 4-grams kept per text column


def as_documents(column) -> np.ndarray:
    """One text column as strings, missing as empty: what a vectorizer takes."""
    series = pd.Series(np.asarray(column, dtype=object).reshape(-1))
    return series.where(series.notna(), "").astype(str).to_numpy()


def text_steps(column: str) -> Pipeline:
    """TF-IDF of words and word pairs, beside TF-IDF of character n-grams (which still match a
    misspelled or inflected word), each vocabulary capped and fitted on train. Features are named
    `<column>:words__<term>` and `<column>:chars__<n-gram>`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return Pipeline([
        ("as_documents", FunctionTransformer(as_documents, feature_names_out="one-to-one")),
        ("tfidf", FeatureUnion([
            (f"{column}:words", TfidfVectorizer(ngram_range=(1, 2), max_features=TEXT_WORD_FEATURES, sublinear_tf=True,
                                      dtype=np.float32)),
            (f"{column}:chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), max_features=TEXT_CHAR_FEATURES,
                                      sublinear_tf=True, dtype=np.float32)),
        ])),
    ])


QUANTILES = 1000  # numeric_scaling quantile / auto: at most this many quantiles per column
# numeric_scaling: auto maps a column onto a normal distribution by its quantiles where its skewness
# is beyond this, and standardizes the others (AutoGluon's tabular network's rule and threshold:
# autogluon.tabular.models.tabular_nn, `skew_threshold` 0.99)
SKEW_THRESHOLD = 0.99


class SkewAwareScaler(TransformerMixin, BaseEstimator):
    """numeric_scaling: auto. Skewed columns (|skewness| > SKEW_THRESHOLD on the rows it is fitted
    on) by their quantiles onto a normal distribution, the others standardized; `skewed_` says which."""

    def __init__(self, quantiles: int = QUANTILES):
        self.quantiles = quantiles

    def fit(self, X, y=None):
        from scipy.stats import skew
        from sklearn.preprocessing import QuantileTransformer

        X = np.asarray(X, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        spread = X.std(axis=0) > 0
        self.skewed_ = np.zeros(X.shape[1], dtype=bool)
        self.skewed_[spread] = np.abs(np.nan_to_num(skew(X[:, spread], axis=0))) > SKEW_THRESHOLD
        self.standard_ = StandardScaler().fit(X[:, ~self.skewed_]) if (~self.skewed_).any() else None
        self.quantile_ = (QuantileTransformer(n_quantiles=max(2, min(self.quantiles, len(X))),
                                              output_distribution="normal", subsample=100_000, random_state=0)
                          .fit(X[:, self.skewed_]) if self.skewed_.any() else None)
        return self

    def transform(self, X):
        check_is_fitted(self, "skewed_")
        X = np.asarray(X, dtype=np.float64)
        out = np.empty_like(X)
        if self.standard_ is not None:
            out[:, ~self.skewed_] = self.standard_.transform(X[:, ~self.skewed_])
        if self.quantile_ is not None:
            out[:, self.skewed_] = self.quantile_.transform(X[:, self.skewed_])
        return out

    def get_feature_names_out(self, input_features=None):
        return np.asarray(input_features, dtype=object)


def build_columns(numeric: list[str], onehot: list[str], ordinal: list[str], text: Sequence[str] = (),
                  scaling: str = "standard", rows: int = QUANTILES) -> ColumnTransformer:
    """The per-kind steps after datetime expansion; column names are those of the expanded frame.
    Each free-text column has steps of its own (a vectorizer takes one column). `scaling` (the
    config's numeric_scaling) of the numeric columns; `rows`: how many it is fitted on."""
    from sklearn.preprocessing import QuantileTransformer

    scale = (StandardScaler() if scaling == "standard" else SkewAwareScaler(min(QUANTILES, rows)) if scaling == "auto"
             else QuantileTransformer(n_quantiles=max(2, min(QUANTILES, rows)), output_distribution="normal",
                                      subsample=100_000, random_state=0))
    numeric_steps = Pipeline([
        ("as_float", FunctionTransformer(as_float, feature_names_out="one-to-one")),
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("scale", scale),
    ])
    onehot_steps = Pipeline([
        ("as_text", FunctionTransformer(as_text, feature_names_out="one-to-one")),
        ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
        ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False, feature_name_combiner=category_name)),
    ])
    ordinal_steps = Pipeline([
        ("as_text", FunctionTransformer(as_text, feature_names_out="one-to-one")),
        ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
        ("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
        ("scale", StandardScaler()),
    ])
    transformers = [(name, steps, columns) for name, steps, columns in (
        ("numeric", numeric_steps, numeric), ("onehot", onehot_steps, onehot), ("ordinal", ordinal_steps, ordinal),
    ) if columns]
    transformers += [(f"text:{column}", text_steps(column), column) for column in text]
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False)


@dataclass
class Preprocessing:
    """A saved preprocessing, ready for raw input: `transform` it, `decode` predicted class indices."""

    pipeline: Pipeline  # or, for images and sequences, a ChannelStandardizer / WindowedSeries
    task: str
    target: str
    raw_columns: list[str]
    feature_names: list[str]
    class_names: Optional[list[str]]
    kind: str = "tabular"  # runs saved before images and sequences were supported are tables
    input_shape: Optional[list[int]] = None  # one preprocessed example's shape

    @property
    def takes_rows(self) -> bool:
        """Raw input is a table of rows (tables, time series) rather than an array of examples."""
        return self.kind == "tabular" or bool(self.raw_columns)

    def transform(self, data) -> np.ndarray:
        """Raw input -> model input. Tables take a DataFrame of raw rows, and a time series gives one
        window per possible last row; image and sequence runs take a raw array of examples."""
        if not self.takes_rows:
            if isinstance(data, pd.DataFrame):
                shape = ", ".join(map(str, self.input_shape))
                raise UserError(f"this model takes {self.kind} arrays of shape (N, {shape}), not a table")
            return np.asarray(self.pipeline.transform(np.asarray(data)), dtype=np.float32)
        if not isinstance(data, pd.DataFrame):
            raise UserError("this model takes a table of raw rows, not an array")
        missing = [c for c in self.raw_columns if c not in data.columns]
        if missing:
            shown = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
            raise UserError(f"the data lacks {len(missing)} column{'s' if len(missing) > 1 else ''} "
                            f"the model was trained on: {shown}")
        return np.asarray(self.pipeline.transform(data[self.raw_columns]), dtype=np.float32)

    def decode(self, predictions) -> np.ndarray:
        """Class indices -> class names (classification); values pass through (regression)."""
        return decode_classes(self.class_names, predictions)


def decode_classes(class_names: Optional[list], predictions) -> np.ndarray:
    """Class indices -> class names; with no class names (regression) the values pass through."""
    predictions = np.asarray(predictions)
    if class_names is None:
        return predictions
    return np.asarray(class_names, dtype=object)[predictions.astype(np.int64)]


def save_preprocessing(prepared: "Prepared", directory) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(prepared.preprocessor, directory / PREPROCESSOR_FILE)
    meta = {
        "task": prepared.task,
        "target": prepared.target,
        "raw_columns": prepared.raw_columns,
        "feature_names": prepared.feature_names,
        "class_names": prepared.class_names,
        "kind": prepared.kind,
        "input_shape": list(prepared.input_shape),
    }
    (directory / PREPROCESSING_META).write_text(json.dumps(meta, indent=2))
    if getattr(prepared, "profile", None) is not None:  # what `rayfit evaluate` measures shift against
        from rayfit.data.profile import PROFILE_FILE

        (directory / PROFILE_FILE).write_text(json.dumps(prepared.profile))


def load_preprocessing(directory) -> Preprocessing:
    directory = Path(directory)
    for name in (PREPROCESSOR_FILE, PREPROCESSING_META):
        if not (directory / name).is_file():
            raise UserError(f"{directory}: no saved preprocessing ({name} is missing)")
    meta = read_json(directory / PREPROCESSING_META)
    return Preprocessing(pipeline=joblib.load(directory / PREPROCESSOR_FILE), **meta)

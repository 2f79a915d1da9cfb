"""A run as Python objects: what `rayfit.run`, `rayfit.resume` and `rayfit.load` return.

`Run` reads what the run wrote (metrics.json, the model directories, the report), locally or from
an object store, and never changes it. `FittedModel` is one of its models with the preprocessing
fitted with it: raw rows in, predictions in the target's own values out.
"""
from __future__ import annotations

import html
import tempfile
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import pandas as pd

from rayfit.cluster.storage import STATE_FILE, Location, existing_run
from rayfit.errors import read_json, UserError
from rayfit.evaluation.fitted import MODEL_DIR
from rayfit.evaluation.results import METRICS_FILE
from rayfit.run_record import CV_PREFIX, MODELS_DIR

REPORT_FILE = "report.html"


class FittedModel:
    """A trained model and the preprocessing fitted with it: `predict` and `predict_proba` take raw
    rows (a DataFrame with the training table's columns, the target among them or not) as the run
    was given them, missing values and categories included. Image and sequence runs take a raw
    array of examples."""

    def __init__(self, name: str, model, preprocessing):
        self.name = name
        self.model = model  # the ArrayModel (evaluation/fitted.py) over preprocessed arrays
        self.preprocessing = preprocessing

    @property
    def task(self) -> str:
        return self.preprocessing.task

    @property
    def classes(self) -> Optional[list]:
        """The class labels, in the order of predict_proba's columns; None for regression."""
        return self.preprocessing.class_names

    @property
    def features(self) -> list[str]:
        """The raw columns the model reads."""
        return list(self.preprocessing.raw_columns)

    def predict(self, rows) -> pd.Series:
        """The prediction for each row, in the target's own values (class labels, or numbers)."""
        from rayfit.evaluation.predictions import predict_raw

        raw, index = _rows(rows)
        values = predict_raw(self.model, self.preprocessing, raw, proba=False)["prediction"].to_numpy()
        return pd.Series(values, index=_index(index, len(values)), name=self.preprocessing.target or "prediction")

    def predict_proba(self, rows) -> pd.DataFrame:
        """One column per class (named by its label), one row per input row."""
        if self.classes is None:
            raise UserError(f"{self.name}: a {self.task} model has no class probabilities; use predict")
        from rayfit.evaluation.predictions import predict_raw, probabilities

        raw, index = _rows(rows)
        proba = probabilities(predict_raw(self.model, self.preprocessing, raw), self.classes)
        index = _index(index, len(proba))
        return proba if index is None else proba.set_axis(index, axis=0)

    def __repr__(self) -> str:
        return f"<rayfit.FittedModel {self.name}: {self.task}, {len(self.features)} input columns>"


def _rows(rows):
    """Raw input as the preprocessing takes it, and the index to give the answers."""
    if isinstance(rows, pd.DataFrame):
        return rows, rows.index
    if isinstance(rows, Mapping):  # one row as {column: value}
        return pd.DataFrame([rows]), None
    if isinstance(rows, (str, Path)):
        from rayfit.data import load_table

        return load_table(str(rows))[0], None
    if isinstance(rows, list) and rows and isinstance(rows[0], Mapping):
        return pd.DataFrame(rows), None
    return np.asarray(rows), None  # image and sequence runs: an array of raw examples


def _index(index, rows: int):
    # a time series gives one answer per window, fewer than its rows
    return index if index is not None and len(index) == rows else None


class Models(Mapping):
    """Every model the run trained, by name, each loaded when first asked for."""

    def __init__(self, run: "Run"):
        self._run = run
        self._loaded: dict[str, FittedModel] = {}

    def __getitem__(self, name: str) -> FittedModel:
        if name not in self._run.metrics.get("models", {}):
            raise KeyError(name)
        if name not in self._loaded:
            self._loaded[name] = self._run._model(name)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._run.metrics.get("models", {}))

    def __len__(self) -> int:
        return len(self._run.metrics.get("models", {}))

    def __repr__(self) -> str:
        return f"<rayfit models: {', '.join(self)}>"


class Run:
    """A finished run: its metrics, models, leaderboard and report."""

    def __init__(self, where: Union[str, Path, Location], trust_unverified: bool = False):
        self.location = where if isinstance(where, Location) else Location.of(str(where))
        self.trust_unverified = trust_unverified  # model directories without a manifest load
        self._downloads: Optional[tempfile.TemporaryDirectory] = None

    @classmethod
    def load(cls, where: Union[str, Path], trust_unverified: bool = False) -> "Run":
        """The finished run at `where` (a directory or storage URI); UserError if there is none.
        `trust_unverified`: its model directories load without a manifest (the user vouches for them)."""
        location = existing_run(str(where))
        if read_json(location.join(STATE_FILE), f"{where}/{STATE_FILE}").get("status") != "finished":
            raise UserError(f"{where}: the run has not finished; finish it with rayfit.resume({str(where)!r})")
        if not location.join(METRICS_FILE).is_file():
            raise UserError(f"{where}: a finished run without {METRICS_FILE}")
        return cls(location, trust_unverified)

    # -- where
    @property
    def path(self) -> Union[Path, str]:
        """The run's directory (a Path), or its storage URI."""
        return self.location.path if self.location.local else self.location.uri

    @property
    def report_path(self) -> Union[Path, str]:
        where = self.location.join(REPORT_FILE)
        return where.path if where.local else where.uri

    # -- results
    @cached_property
    def metrics(self) -> dict:
        """metrics.json: every model's validation and test scores, the best model, the searches."""
        return read_json(self.location.join(METRICS_FILE))

    @property
    def task(self) -> str:
        return self.metrics["task"]

    @property
    def best_model_name(self) -> str:
        return self.metrics["best_model"]

    @cached_property
    def best_model(self) -> FittedModel:
        """The model the run chose (on validation or cross-validation), as exported in model/."""
        return self._fitted(self.best_model_name, self._local(MODEL_DIR))

    @cached_property
    def models(self) -> Models:
        return Models(self)

    def leaderboard(self) -> pd.DataFrame:
        """One row per model, best first by the score the run chose on (`selection_<metric>`): its
        cross-validation mean where it was cross-validated, its validation score otherwise (which,
        `selected_on` says); then its test scores (`test_<metric>`) and training time."""
        from rayfit.metrics import rank_models, selection_score

        metric, rows = self.metrics["primary_metric"], []
        # scored on the data itself (clustering): the metric's own column; otherwise the held-out
        # score it was chosen on, cv or val (its `selected_on`), beside its test scores
        score = metric if self.task == "clustering" else f"selection_{metric}"
        for name, entry in self.metrics.get("models", {}).items():
            row = {"model": name, "framework": entry.get("framework")}
            if self.task == "clustering":
                row[score] = entry.get(metric)
                row.update({k: v for k, v in entry.items()
                            if k != metric and isinstance(v, (int, float)) and not isinstance(v, bool)})
            else:
                row["selected_on"], row[score], _ = selection_score(entry, metric)
                row.update({f"test_{k}": v for k, v in entry.get("test", {}).items()})
                row["train_time_s"] = entry.get("train_time_s")
            rows.append(row)
        table = pd.DataFrame(rows)
        if table.empty:
            return table
        order = {name: i for i, name in enumerate(rank_models(self.metrics.get("models", {}), metric))}
        table = table.sort_values("model", key=lambda names: names.map(order), kind="stable")
        return table.dropna(axis=1, how="all").set_index("model")

    def evaluate(self, rows) -> dict:
        """The run's exported models scored on labelled raw rows (a DataFrame with the target column),
        without training, and each input column's shift from the training rows: what `rayfit
        evaluate` writes as metrics.json ({models: {name: {scores, run_test}}, drift, ...})."""
        from rayfit.judge import evaluate_rows

        raw, _ = _rows(rows)
        return evaluate_rows(self, raw, shown="the rows given")

    # -- models
    def _model(self, name: str) -> FittedModel:
        refitted = self.location.join(MODELS_DIR, CV_PREFIX + name)
        directory = refitted if refitted.exists() else self.location.join(MODELS_DIR, name)
        if not directory.exists():
            raise UserError(f"{self.path}: model {name!r} was not kept in {MODELS_DIR}/")
        return self._fitted(name, self._local(directory), preprocessing=self._local(MODEL_DIR))

    def _fitted(self, name: str, directory: Path, preprocessing: Optional[Path] = None) -> FittedModel:
        from rayfit.evaluation.manifest import trusting_unverified
        from rayfit.evaluation.predictions import load_model_dir

        with trusting_unverified(self.trust_unverified):
            return FittedModel(name, *load_model_dir(directory, preprocessing))

    def _local(self, where: Union[str, Location]) -> Path:
        """A directory of the run on this machine: itself, or a copy of it from the object store."""
        location = where if isinstance(where, Location) else self.location.join(where)
        if location.local:
            return location.path
        if self._downloads is None:
            self._downloads = tempfile.TemporaryDirectory(prefix="rayfit-load-")
        target = Path(self._downloads.name) / location.uri.replace("://", "_").replace("/", "_")
        return target if target.exists() else location.download(target)

    # -- display
    def __repr__(self) -> str:
        try:
            best = self.metrics.get("best_model")
        except Exception:  # noqa: BLE001 - a repr never fails
            best = None
        return f"<rayfit.Run {self.path}" + (f": best {best}>" if best else ">")

    def _repr_html_(self) -> str:
        """In a notebook: the run's summary and its leaderboard."""
        metrics = self.metrics
        metric, best = metrics["primary_metric"], metrics["best_model"]
        data = metrics.get("dataset", {})
        facts = [("run", str(self.path)), ("task", self.task), ("best model", best),
                 ("rows", data.get("rows")), ("features", data.get("features")),
                 ("cluster", metrics.get("resources", {}).get("cluster")),
                 ("report", str(self.report_path))]
        best_entry = metrics["models"].get(best, {})
        test = best_entry.get("test", {}).get(metric)
        if test is not None:
            facts.insert(3, (f"best's test {metric}", f"{test:.4f}"))
        summary = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                          f"{html.escape(str(v))}</td></tr>" for k, v in facts if v is not None)
        board = self.leaderboard().to_html(float_format=lambda v: f"{v:.4f}", na_rep="", classes="rayfit-leaderboard")
        return (f"<div class='rayfit-run'><b>rayfit run</b><table>{summary}</table>"
                f"<p><b>Leaderboard</b> (best first)</p>{board}</div>")

"""`rayfit evaluate RUN --data labelled.csv`: a finished run's exported models scored on new labelled
rows, without training, with each input column's shift from the training rows beside the scores.

The rows are read and checked as a run's test file is (rayfit/data/test_file.py: every column the
models read and the target there, every class one the run knows); each exported model (the best,
and every other under model/models/ with `export.models: all`) scores them with every metric of
the task; the shift is the population stability index of each raw column against the profile the
run kept of its training rows (rayfit/data/profile.py). The result is a new directory: metrics.json,
report.md and report.html; nothing of the run changes.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

import pandas as pd

from rayfit.errors import read_json, UserError

EVALUATED = "evaluated"  # the default directory: RUN-evaluated-<time>, beside the run


def evaluate_rows(run, rows: pd.DataFrame, shown: str = "the rows") -> dict:
    """The evaluation of `run` (a rayfit.Run) on labelled raw rows: the metrics.json document."""
    from rayfit import metrics
    from rayfit.data.profile import shift
    from rayfit.data.test_file import checked_rows

    if run.task == "clustering":
        raise UserError(f"{run.path}: a clustering run has no target to score against; "
                        f"rayfit predict assigns its clusters")
    if not isinstance(rows, pd.DataFrame):
        raise UserError("evaluate takes a table of labelled rows (a DataFrame or a .csv / .parquet file)")
    exported = _exported(run)
    best = exported[run.best_model_name]
    preprocessing = best.preprocessing
    if preprocessing.kind != "tabular":
        raise UserError(f"{run.path}: a run on {preprocessing.kind} data; rayfit evaluate scores runs on tables")
    checked = checked_rows(rows, preprocessing.target, list(preprocessing.raw_columns), preprocessing.task,
                           preprocessing.class_names, shown, [], named="--data")
    n_classes = len(preprocessing.class_names) if preprocessing.class_names else None
    X = preprocessing.transform(checked.features)
    scores = {name: metrics.score_model(model.model, X, checked.y, n_classes) for name, model in exported.items()}
    profiles = _profiles(run)
    document = {
        "run": str(run.path), "data": shown, "rows": len(checked.y), "task": run.task,
        "primary_metric": run.metrics["primary_metric"], "best_model": run.best_model_name,
        "models": {name: {"scores": scores[name],
                          "run_test": run.metrics["models"].get(name, {}).get("test", {})} for name in exported},
        "drift": shift(profiles, checked.features) if profiles is not None else None,
    }
    if profiles is None:
        document["drift_note"] = "not measured: the run kept no profile of its training rows (a run " \
                                 "before rayfit evaluate, or one prepared on the cluster or of arrays)"
    return document


def _exported(run) -> dict:
    """{name: FittedModel} of the run's exported models, the best first."""
    from rayfit.evaluation.fitted import MODEL_DIR, OTHER_MODELS

    models = {run.best_model_name: run.best_model}
    others = run.location.join(MODEL_DIR, OTHER_MODELS)
    if others.exists():
        for child in sorted(others.children(), key=lambda c: c.name):
            models[child.name] = run._fitted(child.name, run._local(child), preprocessing=run._local(MODEL_DIR))
    return models


def _profiles(run) -> Optional[dict]:
    from rayfit.data.profile import PROFILE_FILE
    from rayfit.evaluation.fitted import MODEL_DIR

    where = run.location.join(MODEL_DIR, PROFILE_FILE)
    return read_json(where) if where.is_file() else None


def evaluate_file(run_dir: str, data: str, out: Optional[str] = None) -> Path:
    """`rayfit evaluate`: the run at `run_dir` scored on the labelled rows in `data`, written to the
    new directory `out` (default: RUN-evaluated-<time> beside a local run, or in the working
    directory for a run in object storage). Returns the directory."""
    from rayfit.cluster.storage import Location, local_copy
    from rayfit.data.load import load_table
    from rayfit.run_view import Run

    destination = _destination(run_dir, out)
    if destination.exists():
        raise UserError(f"--out {destination}: already exists; rayfit never overwrites a directory")
    if not Location.of(data).exists():
        raise UserError(f"--data {data}: no such file")
    run = Run.load(run_dir)
    with local_copy(data) as path:
        frame, _ = load_table(path)
    document = evaluate_rows(run, frame, shown=data)
    _write(document, destination)
    return destination


def _destination(run_dir: str, out: Optional[str]) -> Path:
    if out:
        return Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    from rayfit.cluster.storage import Location

    run = Location.of(run_dir)
    name = f"{Path(run.uri.rstrip('/')).name}-{EVALUATED}-{stamp}"
    return run.path.parent / name if run.local else Path.cwd() / name


def _write(document: dict, destination: Path) -> None:
    """The directory appears whole: written beside it, then renamed; never over anything."""
    from rayfit.evaluation.evaluated_report import write_evaluation_report
    from rayfit.evaluation.results import plain_json

    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        (partial / "metrics.json").write_text(json.dumps(plain_json(document), indent=2, allow_nan=False))
        write_evaluation_report(document, partial)
        os.rename(partial, destination)  # an empty destination made meanwhile is replaced; a full one is an error
    except OSError as exc:
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
        if destination.exists():
            raise UserError(f"--out {destination}: already exists; rayfit never overwrites a directory") from None
        raise UserError(f"--out {destination}: cannot write there: {exc.strerror or exc}") from None


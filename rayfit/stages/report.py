"""Stage: report. The evaluation and the run's history become one ReportContext, rendered as the
plots, report.html and report.md of the run directory."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from rayfit.config import to_yaml
from rayfit.evaluation.results import BEST_PARAMS_FILE, METRICS_FILE, TEST_PREDICTIONS
from rayfit.run_dir import LOG_FILE
from rayfit.stages.evaluate import Evaluation
from rayfit.stages.state import RunState

# label -> path in the run directory, listed by the report
ARTIFACTS = {"best model + preprocessing": "model/", "checkpoints": "checkpoints/", "tuning": "tune/",
             "metrics": METRICS_FILE, "test predictions": TEST_PREDICTIONS, "config": "config.yaml", "best params": BEST_PARAMS_FILE, "log": LOG_FILE}


def render_report(state: RunState, evaluation: Evaluation) -> None:
    display = state.display
    display.start("report", "plots and report")
    ctx = report_context(state.exp, state.prepared, evaluation.metrics, evaluation.best_model,
                         histories={n: t.history for n, t in state.trained.items() if t.history},
                         searches=state.searches, best_params=evaluation.best_params,
                         importance=evaluation.importance, stage_times=evaluation.metrics["timings_s"])
    plots = write_all(ctx, state.run_dir)
    display.finish("report", f"{len(plots)} plots, report.html")


def report_context(exp, prepared, metrics: dict, best_model, histories: dict, searches: dict, best_params: dict,
                   importance: list, stage_times: dict, created: Optional[str] = None):
    """Everything the report shows, from a run's results (a run that just evaluated, or the files
    of a finished one: `rayfit report`)."""
    from rayfit.evaluation.context import ReportContext

    first_search = next(iter(searches.values()), None)
    return ReportContext(
        name=exp.name, task=prepared.task, primary_metric=metrics["primary_metric"], best_model=metrics["best_model"],
        dataset={**metrics["dataset"], "source": prepared.source, "target": prepared.target,
                 "split_sizes": {"train": len(prepared.y_train), "val": len(prepared.y_val), "test": len(prepared.y_test)}},
        models=metrics["models"], prep_log=prepared.log, histories=histories,
        best_params=best_params, trials=first_search["trials"] if first_search is not None else [],
        searches=searches,
        y_test=prepared.y_test, y_pred=best_model.predict(prepared.X_test), proba=best_model.predict_proba(prepared.X_test),
        class_names=prepared.class_names, importance=importance, config_yaml=to_yaml(exp),
        stage_times=stage_times, time_limit=metrics.get("time_limit", {}), created=created or time.strftime("%Y-%m-%d %H:%M:%S"),
        resources=metrics.get("resources", {}), selection=metrics.get("selection", {}),
        artifacts={label: path for label, path in ARTIFACTS.items()
                   if path != TEST_PREDICTIONS or prepared.test_rows is not None}, environment=metrics.get("environment", {}), seed=exp.seed,
    )


def write_all(ctx, run_dir: Path) -> dict:
    from rayfit.evaluation.plots import render_all
    from rayfit.evaluation.report import write_report

    plots = render_all(ctx, Path(run_dir) / "plots")
    write_report(ctx, run_dir, plots)
    return plots

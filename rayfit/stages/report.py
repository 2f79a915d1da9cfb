"""Stage: report. The evaluation and the run's history become one ReportContext, rendered as the
plots, report.html and report.md of the run directory."""
from __future__ import annotations

import time

from rayfit.config import to_yaml
from rayfit.evaluation.results import BEST_PARAMS_FILE, METRICS_FILE
from rayfit.run_dir import LOG_FILE
from rayfit.stages.evaluate import Evaluation
from rayfit.stages.state import RunState

# label -> path in the run directory, listed by the report
ARTIFACTS = {"best model + preprocessing": "model/", "checkpoints": "checkpoints/", "tuning": "tune/",
             "metrics": METRICS_FILE, "config": "config.yaml", "best params": BEST_PARAMS_FILE, "log": LOG_FILE}


def render_report(state: RunState, evaluation: Evaluation) -> None:
    from rayfit.evaluation.context import ReportContext
    from rayfit.evaluation.plots import render_all
    from rayfit.evaluation.report import write_report

    exp, prepared, display = state.exp, state.prepared, state.display
    best_model = evaluation.best_model
    display.start("report", "plots and report")
    ctx = ReportContext(
        name=exp.name, task=prepared.task, primary_metric=state.metric, best_model=evaluation.best,
        dataset={**evaluation.metrics["dataset"], "source": prepared.source, "target": prepared.target,
                 "split_sizes": {"train": len(prepared.y_train), "val": len(prepared.y_val), "test": len(prepared.y_test)}},
        models=evaluation.scores, prep_log=prepared.log,
        histories={n: t.history for n, t in state.trained.items() if t.history},
        best_params=evaluation.best_params, trials=state.search["trials"] if state.search is not None else [],
        searches=state.searches,
        y_test=prepared.y_test, y_pred=best_model.predict(prepared.X_test), proba=best_model.predict_proba(prepared.X_test),
        class_names=prepared.class_names, importance=evaluation.importance, config_yaml=to_yaml(exp),
        stage_times=state.stage_times, created=time.strftime("%Y-%m-%d %H:%M:%S"),
        resources=evaluation.metrics.get("resources", {}), selection=evaluation.metrics.get("selection", {}),
        artifacts=dict(ARTIFACTS),
    )
    plots = render_all(ctx, state.run_dir / "plots")
    write_report(ctx, state.run_dir, plots)
    display.finish("report", f"{len(plots)} plots, report.html")

"""`rayfit report RUN`: a finished run's report rebuilt from what it stored, without training.

The data is prepared again from the run's own config (the same source, which must not have
changed, and the same seed give the same splits); scores, the selection, the resources and the
environment come from metrics.json, histories and searches from run_state.json, the best model from
model/. The plots, report.md and report.html are written again; nothing else is touched.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from rayfit.errors import read_json, UserError
from rayfit.progress import Display


def rebuild_report(run: str, display: Display) -> Path:
    from rayfit.cluster.storage import Location
    from rayfit.config import load_saved_experiment, resolved_for_rows
    from rayfit.evaluation.fitted import MODEL_DIR, load_model
    from rayfit.evaluation.results import BEST_PARAMS_FILE, METRICS_FILE
    from rayfit.run_record import RunRecord
    from rayfit.data import check
    from rayfit.stages.report import report_context, write_all

    if not Location.of(run).local:
        raise UserError(f"{run}: rayfit report rebuilds a run directory on this machine; fetch it first "
                        f"(rayfit fetch {run} --out DIR)")
    run_dir = Path(run)
    if not (run_dir / METRICS_FILE).is_file() or not (run_dir / MODEL_DIR).is_dir():
        raise UserError(f"{run}: not a finished rayfit run (no {METRICS_FILE} or model/)")
    metrics = read_json(run_dir / METRICS_FILE)
    if metrics["task"] == "clustering":
        raise UserError(f"{run}: a clustering run's report is rebuilt by running it again (its embeddings "
                        f"are not stored)")
    record = RunRecord.load(run_dir, shown=run, finished=True)
    exp = load_saved_experiment(run_dir / "config.yaml")
    record.check_source(exp.data.source, needs="rebuilding its report needs")
    display.start("data", f"prepare {exp.data.source}")
    source = check(exp.data)
    if source.where == "cluster":
        raise UserError(f"{run}: its data was prepared on the cluster (data.prepare_on); rayfit report rebuilds "
                        f"the report of a run prepared on the driver only")
    prepared = source.prepare(exp.seed)
    prepared.source = exp.data.source
    display.finish("data", prepared.summary())
    if prepared.task != "clustering":
        exp, _ = resolved_for_rows(exp, prepared.split.rows["train"])  # the settings the run trained with
    display.start("report", f"rebuild the report of {run}")
    stages = record.data["stages"]
    histories = {name: info["history"] for name, info in stages.items()
                 if ":" not in name and info.get("history")}
    searches = {name.removeprefix("search:"): info for name, info in stages.items() if name.startswith("search:")}
    best = metrics["best_model"]
    importance = [tuple(row) for row in (metrics["models"][best].get("permutation_importance") or {}).get("top", [])]
    best_params = yaml.safe_load((run_dir / BEST_PARAMS_FILE).read_text()) if (run_dir / BEST_PARAMS_FILE).is_file() else {}
    ctx = report_context(exp, prepared, metrics, load_model(run_dir / MODEL_DIR), histories, searches, best_params or {},
                         importance, metrics.get("timings_s", {}))
    plots = write_all(ctx, run_dir)
    display.finish("report", f"{len(plots)} plots, report.html")
    return run_dir / "report.html"

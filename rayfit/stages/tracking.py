"""Stage: tracking. The finished run's networks and trials as TensorBoard event files, and with
`tracking: mlflow` the whole run in MLflow (evaluation/tracking.py). Tracking that fails leaves the
run's own results as they are and says so."""
from __future__ import annotations

import time

from rayfit.config import to_yaml
from rayfit.evaluation.tracking import default_uri, log_to_mlflow, write_tensorboard
from rayfit.stages.evaluate import Evaluation
from rayfit.stages.state import RunState

# what the parent MLflow run holds as artifacts, when present
ARTIFACTS = ("report.html", "report.md", "metrics.json", "test_predictions.csv", "config.yaml", "best_params.yaml", "plots", "model")


def track_run(state: RunState, evaluation: Evaluation) -> None:
    import yaml

    started = time.perf_counter()
    histories = {name: t.history for name, t in state.trained.items() if t.history}
    display = state.display
    if histories or state.searches:
        display.start("tensorboard", "TensorBoard event files")
        files = write_tensorboard(state.run_dir, histories, state.searches)
        display.finish("tensorboard", f"{files} event files under tensorboard/")
    if state.exp.tracking == "mlflow":
        uri = state.exp.tracking_uri or default_uri(state.run_dir)
        display.start("mlflow", f"log the run to MLflow at {uri}")
        try:
            # the run's own id: a later run given the same --out never takes this one's records for its own
            parent = log_to_mlflow(uri, state.exp.name, state.location.name, state.record.run_id or str(state.location),
                                   yaml.safe_load(to_yaml(state.exp)), evaluation.metrics, histories, state.searches,
                                   [state.run_dir / name for name in ARTIFACTS])
        except Exception as exc:  # noqa: BLE001 - the run's own results stand; tracking failing is said
            display.finish("mlflow", f"failed: {type(exc).__name__}: {str(exc).strip()[:300]}; the run's results "
                                     f"are in {state.location}")
        else:
            display.finish("mlflow", f"run {parent} with {len(evaluation.metrics['models'])} model runs")
    state.stage_times["tracking"] = time.perf_counter() - started

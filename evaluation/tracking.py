"""Experiment tracking: a finished run in MLflow and in TensorBoard event files.

MLflow (`tracking: mlflow`): one parent run per rayfit run (the resolved config as params, the best
model's test metrics, the report, metrics.json and the exported model as artifacts), a child run per
model (its test, validation and cross-validation metrics, and every epoch of a network), and under a
tuned model's run a child per trial (its hyperparameters and every epoch it trained). The store is a
SQLite file under the run directory by default (`RUN/mlflow/mlflow.db`, artifacts beside it), or
`tracking_uri` (an MLflow server, a database URI).

TensorBoard: every network's and every trial's epochs as scalars under `RUN/tensorboard/`
(`tensorboard --logdir RUN/tensorboard`).

Both are written from the run's stored results when it has finished, so a worker on any node needs
no route to the tracking server, and a resumed run logs once.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Optional

from rayfit.errors import UserError

MLFLOW_DIR = "mlflow"
TENSORBOARD_DIR = "tensorboard"
RUN_TAG = "rayfit.run"  # the parent run's tag naming the rayfit run: a rerun replaces its runs
PARAM_CHARS = 500  # MLflow's limit on a parameter's value in its oldest stores
BATCH = {"metrics": 1000, "params": 100}  # MLflow's limits on one log_batch call


def default_uri(run_dir: Path) -> str:
    return f"sqlite:///{(Path(run_dir) / MLFLOW_DIR / 'mlflow.db').resolve()}"


def check_tracking(tracking: Optional[str], uri: Optional[str]) -> None:
    """Before the run starts: MLflow importable, and an MLflow server named by `tracking_uri` answering."""
    if tracking is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise UserError("tracking: mlflow needs the mlflow package (pip install mlflow-skinny)") from None
    if uri and uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):
                pass
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UserError(f"tracking_uri {uri}: no MLflow server answers there ({reason})") from None


# ----------------------------------------------------------------------------------------------
# TensorBoard


def write_tensorboard(run_dir: Path, histories: dict[str, list], searches: dict[str, dict]) -> int:
    """Event files for every network (tensorboard/<model>/) and every trial
    (tensorboard/<model>/trials/<trial>/); how many were written."""
    root = Path(run_dir) / TENSORBOARD_DIR
    written = 0
    for name, history in histories.items():
        written += _events(root / name, history)
    for model, search in searches.items():
        for trial in search.get("trials", []):
            written += _events(root / model / "trials" / str(trial["trial_id"]), trial.get("history") or [])
    return written


def _summary_writer():
    """tensorboardX's SummaryWriter, imported without PyTorch where this process has not imported
    it already: tensorboardX imports PyTorch, when it can, only to accept its tensors (rayfit
    writes floats), which cost a run's driver about 1.5 s of a core at its end."""
    import sys

    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


def _events(directory: Path, history: list) -> int:
    if not history:
        return 0
    with _summary_writer()(str(directory)) as writer:
        for row in history:
            for key, value in _epoch_values(row):
                writer.add_scalar(_tag(key), value, row["epoch"])
    return 1


def _tag(key: str) -> str:
    """train_loss -> loss/train, val_accuracy -> accuracy/val: one chart per quantity, both splits on it."""
    split, _, quantity = key.partition("_")
    return f"{quantity}/{split}" if split in ("train", "val") and quantity else key


def _epoch_values(row: dict) -> Iterable[tuple[str, float]]:
    for key, value in row.items():
        if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
            yield key, float(value)


# ----------------------------------------------------------------------------------------------
# MLflow


def log_to_mlflow(uri: str, experiment: str, run_name: str, run_id: str, config: dict, metrics: dict,
                  histories: dict[str, list], searches: dict[str, dict], artifacts: list[Path]) -> str:
    """The run as MLflow runs (see the module's docstring); the parent run's id. A rerun of the same
    rayfit run (`run_id`, after a stop) first deletes what an earlier attempt logged."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment(client, experiment, uri)
    for earlier in client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'"):
        client.delete_run(earlier.info.run_id)

    best = metrics["best_model"]
    parent = client.create_run(experiment_id, run_name=run_name,
                               tags={RUN_TAG: run_id, "rayfit.best_model": best, "rayfit.task": metrics["task"]})
    parent_id = parent.info.run_id
    _log(client, parent_id, params=_flat(config),
         values={f"best_{key}": value for key, value in _final(metrics["models"][best]).items()})
    for name, entry in metrics["models"].items():
        child = _child(client, experiment_id, parent_id, name, {"rayfit.framework": entry.get("framework", "")})
        params = {key: entry[key] for key in ("framework", "launch", "workers", "device", "selected_on") if key in entry}
        search = searches.get(name)
        if search is not None:
            params.update(search.get("best_params", {}))
        _log(client, child, params=params, values=_final(entry), steps=histories.get(name, []))
        if search is not None:
            for trial in search.get("trials", []):
                trial_run = _child(client, experiment_id, child, f"{name}/{trial['trial_id']}",
                                   {"rayfit.trial_status": str(trial.get("status", ""))})
                final = {key: trial[key] for key in trial if key.startswith("val_") and isinstance(trial[key], (int, float))}
                _log(client, trial_run, params=trial.get("params", {}), values=final, steps=trial.get("history") or [])
                client.set_terminated(trial_run, "FAILED" if trial.get("status") == "failed" else "FINISHED")
        client.set_terminated(child)
    for path in artifacts:
        if path.is_dir():
            client.log_artifacts(parent_id, str(path), artifact_path=path.name)
        elif path.is_file():
            client.log_artifact(parent_id, str(path))
    client.set_terminated(parent_id)
    return parent_id


def _experiment(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # a local store keeps its artifacts beside its database
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - created meanwhile by another run
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _child(client, experiment_id: str, parent_id: str, name: str, tags: dict) -> str:
    return client.create_run(experiment_id, run_name=name, tags={"mlflow.parentRunId": parent_id, **tags}).info.run_id


def _final(entry: dict) -> dict[str, float]:
    """A model's scores: test_*, val_*, cv_*_mean and cv_*_std, train_time_s."""
    values = {}
    for split in ("test", "val"):
        for key, value in (entry.get(split) or {}).items():
            if isinstance(value, (int, float)):
                values[f"{split}_{key}"] = value
    for key, summary in (entry.get("cv") or {}).items():
        if isinstance(summary, dict):
            for stat in ("mean", "std"):
                if isinstance(summary.get(stat), (int, float)):
                    values[f"cv_{key}_{stat}"] = summary[stat]
    if isinstance(entry.get("train_time_s"), (int, float)):
        values["train_time_s"] = entry["train_time_s"]
    return values


def _log(client, run_id: str, params: dict, values: dict, steps: list = ()) -> None:
    import math
    import time

    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, 0) for key, value in values.items() if math.isfinite(float(value))]
    for row in steps:
        metrics += [Metric(key, value, now, int(row["epoch"])) for key, value in _epoch_values(row)
                    if math.isfinite(value)]
    param_list = [Param(str(key), _param_value(value)) for key, value in params.items()]
    for start in range(0, len(param_list), BATCH["params"]):
        client.log_batch(run_id, params=param_list[start:start + BATCH["params"]])
    for start in range(0, len(metrics), BATCH["metrics"]):
        client.log_batch(run_id, metrics=metrics[start:start + BATCH["metrics"]])


def _param_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= PARAM_CHARS else text[:PARAM_CHARS - 3] + "..."


def _flat(config: dict, prefix: str = "") -> dict[str, object]:
    """A nested config as dotted keys, as `--set` names them: {"torch": {"epochs": 5}} -> {"torch.epochs": 5}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat

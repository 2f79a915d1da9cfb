"""A run's results as files: metrics.json and best_params.yaml, their schema defined here once.

Users' scripts read these keys: renaming or moving one is a breaking change. The report context
(context.py) is filled from the same entries.

metrics.json
    task, primary_metric, best_model (chosen on validation)
    dataset    {rows, features, classes (classification only)}
    models     name -> {framework, test: {metric: value}, val: {metric: value}, train_time_s,
               permutation_importance {top: [[feature, mean drop, std], ...], rows, of_rows, repeats}
               for the report.importance_models best (tables), null with permutation_importance_note
               for the others,
               cv {metric: {mean, std, folds}} and refit (bool) where cross-validated,
               selected_on ("cv" | "val"), out_of_reach (true: a network behind the leader on
               validation, left out of the folds and never chosen),
               and for networks: launch ("ray_train" | "task"), workers, device, gpus_per_worker,
               amp, launch_reason, launch_figures (each only when known)}
    resources  the run plan (cluster/plan.py RunPlan.describe())
    tuning     the first search's entry (the key from before there were several searches)
    searches   tuned model name -> {model, searcher, scheduler, trials (a count), epochs_trained,
               epochs_budget, wall_time_s, best_params, trial_mode, trial_mode_reason, placement}
    timings_s  seconds per stage (data, ray, baselines, each network, each search, cv, evaluate)
    environment {python, packages: {name: version}, platform, git_commit (where the working
               directory is a git checkout; "+changes" when it has uncommitted ones)}
best_params.yaml
    the first search's best hyperparameters; {} when the run had no search

NaN is written as null (JSON has no NaN); numpy scalars and tuples as plain numbers and lists.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

METRICS_FILE = "metrics.json"
BEST_PARAMS_FILE = "best_params.yaml"
TEST_PREDICTIONS = "test_predictions.csv"  # the best model's test predictions, by source row

# A network's entry on how it ran, in this order: workers, device, GPUs, AMP, and why this launch.
HOW_IT_RAN = ("workers", "device", "device_reason", "gpus_per_worker", "amp", "launch_reason", "launch_figures", "nodes",
              "members", "weights")  # an ensemble's: the models that vote, and their weights


NATIVE_TOP = 10  # features kept of a model's native importance in metrics.json


def model_entry(framework: str, test: dict, val: dict, train_time_s: float, launch: str = "",
                run_info: Optional[dict] = None, cv: Optional[dict] = None,
                native_importance: tuple = ("", []), refit=True) -> dict:
    """One model in `models`: its scores on both splits (and on cross-validation, {metric: {mean,
    std, folds}}, where computed), what it was chosen on, for a network how it ran, and for a model
    that has one its native importance ({kind, top: [[feature, share], ...]}: evaluation/importance.py)."""
    info = run_info or {}
    kind, ranked = native_importance
    return {
        "framework": framework,
        "test": test,
        "val": val,
        "train_time_s": round(train_time_s, 3),
        **({"launch": launch} if launch else {}),
        **{k: info[k] for k in HOW_IT_RAN if k in info and info[k] not in ("", {}, [])},
        # refit: the tested model was refitted on train + validation (classic ML); a network chosen on
        # folds is tested as trained
        **({"cv": cv, "refit": refit} if cv else {}),
        "selected_on": "cv" if cv else "val",
        **({"native_importance": {"kind": kind, "top": [[f, round(v, 4)] for f, v in ranked[:NATIVE_TOP]]}}
           if kind else {}),
    }


def dataset_entry(task: str, rows: int, features: int, n_classes: Optional[int],
                  test_file: Optional[str] = None) -> dict:
    dataset = {"rows": rows, "features": features}
    if task == "classification":
        dataset["classes"] = n_classes
    if test_file:  # the test rows are this file's (data.test), not a share of the source's
        dataset["test_file"] = test_file
    return dataset


def search_entry(summary: dict) -> dict:
    """One search in `searches`, from the summary its stage recorded (a run record written before
    searchers, schedulers and trial modes were recorded lacks them)."""
    return {"model": summary["model"], "searcher": summary.get("searcher"), "scheduler": summary.get("scheduler"),
            "trials": len(summary["trials"]), "epochs_trained": summary["epochs_trained"],
            "epochs_budget": summary["epochs_budget"], "wall_time_s": round(summary["wall_time_s"], 3),
            "best_params": summary["best_params"], "trial_mode": summary.get("trial_mode", "inline"),
            "trial_mode_reason": summary.get("trial_mode_reason", ""), "placement": summary.get("plan", ""),
            **({"nodes": summary["nodes"]} if summary.get("nodes") else {})}


def selection_entry(folds: Optional[int], rows: int, on_validation: Optional[dict] = None,
                    refit: str = "train+val") -> dict:
    """How the best model was chosen: K-fold cross-validation over `rows` of train + validation
    (`on_validation`: the networks compared on the validation split instead, and why), or the
    validation split."""
    if folds:
        return {"method": "cv", "folds": folds, "rows": rows, "refit": refit,
                **({"on_validation": on_validation} if on_validation else {})}
    return {"method": "validation"}


PACKAGES = ("rayfit", "ray", "torch", "tensorflow", "scikit-learn", "xgboost", "lightgbm", "numpy", "pandas")


def environment_entry() -> dict:
    """What the run ran on, for reproducing it: Python, the packages' versions, the project's git
    commit (of the working directory, when it is a git checkout), the machine."""
    import platform
    import subprocess
    from importlib import metadata

    versions = {}
    for package in PACKAGES:
        for distribution in (package, f"{package}-cpu"):  # xgboost-cpu provides xgboost
            try:
                versions[package] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    entry = {"python": platform.python_version(), "packages": versions, "platform": platform.platform()}
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if done.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5)
            entry["git_commit"] = done.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return entry


def metrics_document(task: str, primary_metric: str, best_model: str, dataset: dict, models: dict[str, dict],
                     resources: Optional[dict] = None, searches: Optional[dict[str, dict]] = None,
                     selection: Optional[dict] = None, yardstick_led: Optional[dict] = None) -> dict:
    """The whole of metrics.json; `searches` are the search summaries by tuned model name;
    `yardstick_led`: how the dummy led on the choosing metric, where it did (metrics.choose_model)."""
    metrics: dict[str, Any] = {"task": task, "primary_metric": primary_metric, "best_model": best_model,
                               "dataset": dataset, "models": models}
    if resources is not None:
        metrics["resources"] = resources
    summaries = {name: search_entry(summary) for name, summary in (searches or {}).items()}
    if summaries:
        metrics["tuning"] = next(iter(summaries.values()))
        metrics["searches"] = summaries
    metrics["selection"] = dict(selection or {"method": "validation"})
    if yardstick_led:
        metrics["selection"]["yardstick_led"] = yardstick_led
    metrics["environment"] = environment_entry()
    return metrics


def write_results(run_dir: Path, metrics: dict, best_params: dict) -> None:
    """Each file whole or not at all (written beside, then renamed): a run stopped here never
    leaves a truncated metrics.json that looks like a result."""
    from rayfit.cluster.storage import Location

    Location.of(Path(run_dir) / BEST_PARAMS_FILE).write_bytes(
        yaml.safe_dump(plain_json(best_params), sort_keys=False).encode())
    Location.of(Path(run_dir) / METRICS_FILE).write_bytes(
        json.dumps(plain_json(metrics), indent=2, allow_nan=False).encode())


def plain_json(value):
    """numpy scalars and tuples -> plain JSON / YAML types; NaN -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value

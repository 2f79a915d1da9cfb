"""A hyperparameter search over a neural model, each trial training inside itself (no worker group)."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import joblib
from ray import tune

from rayfit.cluster.resources import check_trial_resources, cluster_totals
from rayfit.config import NeuralConfig, TuneSettings
from rayfit.errors import UserError
from rayfit.evaluation.fitted import FittedModel, SklearnModel
from rayfit.trainers.launch import TrainingData, loop_config
from rayfit.tuning.baseline_trial import ESTIMATOR_FILE, baseline_trial
from rayfit.tuning.schedulers import EXPLOITING
from rayfit.tuning.searchers import build_searcher, scheduler_for
from rayfit.tuning.space import to_param_space


@dataclass
class SearchResult:
    model: FittedModel  # the best trial's best checkpoint
    best_params: dict
    trials: list[dict]  # one row per trial: params, final/best metrics, epochs, history
    history: list[dict]  # the best trial's per-epoch metrics
    wall_time_s: float
    epochs_trained: int
    epochs_budget: int  # trials * max_t: what running every trial to the end would cost


def _torch_trial(config: dict, base: dict) -> None:
    """One Tune trial: the framework's own training loop, run in-process."""
    from rayfit.trainers.torch_loop import train_loop_per_worker

    settings = {**base["settings"], **config}
    train_loop_per_worker({**base, "settings": settings})


def _keras_trial(config: dict, base: dict) -> None:
    """One Tune trial of a Keras network, in-process (Keras 3 or tf-keras both work in one process)."""
    from rayfit.trainers.keras_loop import keras_train_loop_per_worker

    keras_train_loop_per_worker({**base, "settings": {**base["settings"], **config}})


# framework -> trial function; any other model is a baseline
TRIALS = {"torch": _torch_trial, "keras": _keras_trial}


class _TrialProgress(tune.Callback):
    """Driver-side: forward trial results to the progress display."""

    def __init__(self, on_event):
        self.on_event = on_event
        self.done = 0

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment state; the display is this process's only.
        return {"on_event": None, "done": self.done}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.on_event:
            self.on_event({"stage": "tune", "trial": trial.trial_id, "epoch": result.get("epoch"),
                       "val_loss": result.get("val_loss"), "done": self.done})

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        if self.on_event:
            self.on_event({"stage": "tune", "trial": trial.trial_id, "done": self.done, "finished": True})


def tuned_name(settings: TuneSettings) -> str:
    """The tuned model's name in the report: torch_tuned, gradient_boosting_tuned, ..."""
    return f"{settings.model}_tuned"


def search_name(settings: TuneSettings) -> str:
    return "search" if settings.model == "torch" else f"search_{settings.model}"


def run_search(settings: TuneSettings, base: NeuralConfig, data: TrainingData, storage: Path,
               on_event=None, n_classes: Optional[int] = None) -> SearchResult:
    from rayfit.trainers.torch_model import TorchModel

    use_gpu = check_trial_resources(settings.cpus_per_trial, settings.gpus_per_trial)
    total_cpus, total_gpus = cluster_totals()
    fits = int(total_cpus // settings.cpus_per_trial)
    if use_gpu:
        fits = min(fits, int(total_gpus // settings.gpus_per_trial))
    concurrent = settings.max_concurrent_trials or max(1, fits)
    # Every trial runs up to max_t epochs; the scheduler decides who stops earlier. Early stopping
    # inside a trial stays on, as in a plain training run.
    base_settings = {**base.model_dump(), "epochs": settings.max_t}
    trial_base = loop_config("tune", base.models[0], base_settings, data, "tune",
                             threads=max(1, int(settings.cpus_per_trial)), use_gpu=use_gpu)
    # PBT restarts trials from other trials' latest checkpoints: checkpoint every epoch for it.
    trial_base["checkpoint_every_epoch"] = settings.scheduler in EXPLOITING
    trial_fn = TRIALS.get(settings.model, baseline_trial)
    if settings.model not in TRIALS:
        trial_base.update(baseline=settings.model, max_t=settings.max_t)
    resources = {"cpu": settings.cpus_per_trial, **({"gpu": settings.gpus_per_trial} if use_gpu else {})}
    trainable = tune.with_resources(tune.with_parameters(trial_fn, base=trial_base), resources)
    # Tune snapshots the search's state every >= 10 s by default; a driver killed in between would
    # rerun trials that had finished. A small search's snapshot takes milliseconds: take one a second.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    path = Path(storage).resolve() / search_name(settings)
    callbacks = [_TrialProgress(on_event)] if on_event else []
    if tune.Tuner.can_restore(path):
        # `rayfit resume`: finished trials are kept, unfinished ones continue from their checkpoints.
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=to_param_space(settings.space),
            tune_config=tune.TuneConfig(
                metric=settings.metric, mode=settings.mode, num_samples=settings.num_samples,
                scheduler=scheduler_for(settings),
                search_alg=build_searcher(settings, data.seed, concurrent),
                time_budget_s=settings.time_budget_s,
                reuse_actors=True,  # about 1 s of actor start-up saved per trial on a laptop
            ),
            run_config=tune.RunConfig(
                name=path.name, storage_path=str(path.parent), verbose=0,
                # Keeping every (small) checkpoint: with num_to_keep set, Tune snapshots its state
                # after each checkpoint, which dominates a small trial.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                callbacks=callbacks,
            ),
        )
    started = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - started

    better = min if settings.mode == "min" else max
    trials = []
    for result in grid:
        if result.error is not None:
            raise RuntimeError(f"tune trial failed: {result.error}")
        frame = result.metrics_dataframe
        columns = [c for c in ("epoch", "train_loss", "val_loss", "val_accuracy", "lr") if frame is not None and c in frame]
        history = frame[columns].to_dict("records") if frame is not None else []
        best_row = better(history, key=lambda r: r[settings.metric]) if history else {}
        trials.append({
            "trial_id": result.metrics.get("trial_id", Path(result.path).name),
            "params": {k: result.config[k] for k in settings.space},
            "val_loss": best_row.get("val_loss", math.nan),
            **({"val_accuracy": best_row["val_accuracy"]} if "val_accuracy" in best_row else {}),
            "epochs": len(history),
            "max_epochs": settings.max_t,
            "status": "completed" if len(history) >= settings.max_t else "stopped early",
            "history": history,
            "_result": result,
        })
    if not trials or all(t["_result"].checkpoint is None for t in trials):
        raise UserError("tune: no trial finished an epoch (is tune.time_budget_s too short?)")
    finished = [t for t in trials if t["_result"].checkpoint is not None]
    best_trial = better(finished, key=lambda t: t.get(settings.metric, math.nan))
    with best_trial["_result"].checkpoint.as_directory() as directory:
        if settings.model == "torch":
            model = TorchModel.from_checkpoint(Path(directory), tuned_name(settings), data.task)
        elif settings.model == "keras":
            from rayfit.trainers.keras_model import KerasModel

            model = KerasModel.from_checkpoint(Path(directory), tuned_name(settings), data.task)
        else:
            estimator = joblib.load(Path(directory) / ESTIMATOR_FILE)
            model = SklearnModel(tuned_name(settings), data.task, estimator, n_classes)
    for trial in trials:
        trial.pop("_result")
    trials.sort(key=lambda t: t["val_loss"])
    return SearchResult(
        model=model, best_params=best_trial["params"], trials=trials, history=best_trial["history"],
        wall_time_s=wall, epochs_trained=sum(t["epochs"] for t in trials),
        epochs_budget=len(trials) * settings.max_t,
    )

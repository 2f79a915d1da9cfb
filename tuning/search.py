"""A hyperparameter search over a network or a baseline; each trial trains inline or through Ray Train."""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import joblib
from ray import tune
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
from ray.tune.logger import JsonLoggerCallback
from ray.tune.result import EXPR_RESULT_FILE

from rayfit.cluster.session import BESIDE, cluster_has
from rayfit.cluster.storage import Location
from rayfit.cluster.plan import ClusterShape, check_trial_request, plan_trials
from rayfit.cluster.watchdog import current_watchdog
from rayfit.config import NeuralConfig, TuneSettings
from rayfit.errors import Interrupted, UserError
from rayfit import metrics
from rayfit.evaluation.fitted import ArrayModel, SklearnModel
from rayfit.evaluation.manifest import verify_manifest
from rayfit.trainers.device import read_runtime
from rayfit.trainers.contexts import CARRIED
from rayfit.trainers.core import HISTORY
from rayfit.trainers.launch import TrainingData, bound_train_seconds, estimate_train_seconds
from rayfit.trainers.remote_network import network_from_checkpoint
from rayfit.frameworks import is_network_framework
from rayfit.tuning.baseline_trial import ESTIMATOR_FILE
from rayfit.tuning.schedulers import decision_epochs
from rayfit.tuning.searchers import build_searcher, scheduler_for
from rayfit.tuning.space import to_param_space
from rayfit.tuning.saved_state import (TRIALS_RECORD, Vouch, finished_trials, record_finished, record_tuner,
                                       state_differs)
from rayfit.tuning.trial_mode import INLINE, TrialMode, choose_trial_mode, surely_inline


class QuietReporter(tune.ProgressReporter):
    """rayfit shows a search's progress itself. Tune's own reporter would print its trial table,
    and in a notebook it clears the cell's output (the live display with it) when it starts."""

    def should_report(self, trials, done: bool = False) -> bool:
        return False

    def report(self, trials, done: bool, *sys_info) -> None:
        pass

HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "epoch_time_s", "early_stopped", "planned")
# Why a trial ended: it failed, trained all its epochs, its own early stopping (patience) ended it,
# or the scheduler (ASHA, median stopping, ...) cut it short
STATUSES = ("failed", "completed", "early stopping", "stopped by scheduler")


@dataclass
class SearchResult:
    model: ArrayModel  # the best trial's best checkpoint
    best_params: dict
    trials: list[dict]  # one row per trial: params, final/best metrics, epochs, history
    history: list[dict]  # the best trial's per-epoch metrics
    wall_time_s: float
    epochs_trained: int
    epochs_budget: int  # trials * max_t: what running every trial to the end would cost
    trial_mode: str = "inline"  # inline or distributed (see tuning/trial_mode.py)
    trial_mode_reason: str = ""
    plan: str = ""  # how trials were placed: "2 trials at once, each 1 CPU"
    trial_mode_figures: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)  # the best trial's runtime.json: device, workers, GPUs, AMP


class _TrialProgress(tune.Callback):
    """Driver-side: forward trial results to the progress display, with the search's best value of
    its metric so far and how many trials ended before `max_t` epochs (cut by the scheduler or by
    their own early stopping)."""

    def __init__(self, on_event, metric: str, mode: str, max_t: int):
        self.on_event = on_event
        self.metric, self.mode, self.max_t = metric, mode, max_t
        self.done = 0
        self.best: Optional[float] = None
        self.stopped_early = 0

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment state; the display is this process's only.
        return {**self.__dict__, "on_event": None}

    def _event(self, trial, **fields) -> dict:
        return {"stage": "tune", "trial": trial.trial_id, "done": self.done, "best": self.best,
                "metric": self.metric, "stopped_early": self.stopped_early, **fields}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and metrics.is_better(self.metric, value, self.best):
            self.best = float(value)
        if self.on_event:
            self.on_event(self._event(trial, epoch=result.get("epoch"), val_loss=result.get("val_loss")))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        epochs = (trial.last_result or {}).get("epoch")
        if isinstance(epochs, int) and epochs < self.max_t:
            self.stopped_early += 1
        if self.on_event:
            self.on_event(self._event(trial, finished=True))


def tuned_name(settings: TuneSettings) -> str:
    """The tuned model's name in the report: torch_tuned, gradient_boosting_tuned, ..."""
    return f"{settings.model}_tuned"


def search_name(settings: TuneSettings) -> str:
    """tune/search for the default model's search (as it always was), tune/search_<model> for others."""
    return "search" if settings.model == TuneSettings.model_fields["model"].default else f"search_{settings.model}"


def _restorable(path: Location, say: Callable[[str], None], keep: bool = True) -> bool:
    """Whether a search was left at `path` that Tune can continue. A search stopped in its first
    moments may have written its `tuner.pkl` (what `Tuner.can_restore` looks for) and not yet its
    experiment state: Tune would then restart it from the pickle alone, without the search space
    (seen: trials with no `lr`). Neither that nor a search whose saved state differs from rayfit's
    manifest of it (tuning/saved_state.py) is unpickled: the search starts again from rayfit's
    record of its finished trials (`_start_over`; `keep`: whether those trials may be kept)."""
    if not tune.Tuner.can_restore(path.uri):  # looks for tuner.pkl; unpickles nothing
        return False
    if not any(child.name.startswith("experiment_state-") for child in path.children()):
        _start_over(path, keep)
        return False
    problem = state_differs(path)
    if problem is None:
        return True
    kept = _start_over(path, keep)
    say(f"{path.name}: its saved state is not what rayfit recorded ({problem}; a driver stopped while Tune "
        f"was saving, or the files were changed): nothing of it is loaded, "
        + (f"the search goes on from rayfit's record of its {kept} finished trial(s)" if kept
           else "the search starts anew"))
    return False


def _start_over(path: Location, keep: bool) -> int:
    """Clears a search's directory but for the trials rayfit recorded as finished (all of it
    where `keep` is False) and that record; how many trials it kept."""
    finished = finished_trials(path) if keep else {}
    kept = {}
    for child in path.children():
        if child.name in finished and child.join(EXPR_RESULT_FILE).is_file():
            kept[child.name] = finished[child.name]
        elif child.name != TRIALS_RECORD:
            child.delete()
    if not kept:
        path.delete()
    else:
        record_finished(path, kept)  # the trials it names are the ones still there
    return len(kept)


def _kept_trials(path: Location) -> list:
    """The finished trials of rayfit's record still in the search's directory, as Tune's results,
    each read from its JSON results (nothing unpickled; a checkpoint is loaded through its manifest)."""
    kept = []
    for directory in finished_trials(path):
        result = _stored_result(path.join(directory))
        if result is not None:
            kept.append(result)
    return kept


def _stored_result(trial: Location):
    """A trial's result from its directory, as `ray.tune.Result.from_path` reads it, without its
    error pickle (a finished trial has none); None where its results cannot be read."""
    import pandas as pd

    try:
        lines = trial.join(EXPR_RESULT_FILE).read_text().splitlines()
    except (OSError, UnicodeDecodeError, UserError):
        return None
    rows = []
    for line in (line for line in lines if line.strip()):
        try:
            row = json.loads(line)
        except ValueError:  # the line being written when the driver stopped
            break
        if not isinstance(row, dict) or not isinstance(row.get("config"), dict):
            return None
        rows.append(row)
    if not rows:
        return None
    fs, fs_path = trial.filesystem()
    names = sorted(child.name for child in trial.children() if child.name.startswith("checkpoint_"))
    return tune.Result(metrics=rows[-1], error=None, path=fs_path, _storage_filesystem=fs,
                       checkpoint=tune.Checkpoint(f"{fs_path}/{names[-1]}", filesystem=fs) if names else None,
                       metrics_dataframe=pd.json_normalize(rows, sep="/"))


def renew_time_budget(tuner, seconds: Optional[float]) -> None:
    """A restored search runs with the TuneConfig it was pickled with, its `time_budget_s` included;
    a run resumed under a time limit gives it what is left now (run_searches' share, or
    tune.time_budget_s), which Tune counts from this start. Tune has no public setter for it."""
    config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)
    if config is not None:
        config.time_budget_s = seconds
    elif seconds is not None:  # a Ray Tune that keeps it elsewhere: the search keeps its first budget
        warnings.warn("this Ray Tune keeps a restored search's TuneConfig where rayfit cannot renew its "
                      "time_budget_s: the resumed search keeps its first one", RuntimeWarning, stacklevel=2)


class NoTrialFinished(UserError):
    """A search whose time ran out before any trial finished an epoch."""


class SearchAbandoned(Exception):
    """Raised inside Tune's loop by Abandoned: an Exception, so Tune stops the trials' actors on its
    way out (a KeyboardInterrupt would leave them to Ray's shutdown); run_search raises Interrupted."""


class Abandoned(tune.Callback):
    """Driver-side: ends the search where it stands once `event` is set, from another thread (a
    search running beside the models stage, whose driver thread met an error or a signal). Its
    trials stay unfinished in Tune's saved state, so `rayfit resume` continues them from their
    checkpoints, as after a signal."""

    def __init__(self, event):
        self.event = event

    def __getstate__(self):  # Tune pickles its callbacks with the experiment state
        return {"event": None}

    def on_step_begin(self, iteration, trials, **info):
        if self.event is not None and self.event.is_set():
            raise SearchAbandoned("the search was abandoned")


def run_search(settings: TuneSettings, base: NeuralConfig, data: TrainingData, storage,
               on_event=None, n_classes: Optional[int] = None, abandon=None, beside: bool = False,
               say: Optional[Callable[[str], None]] = None) -> SearchResult:
    """One Tune search to its best trial. `abandon`: a threading.Event that ends it early
    (Abandoned); `beside`: it runs beside the models stage (stages/searches.py), whose CPUs it
    shares: without tune.max_concurrent_trials, no more trials at once than pay for their actors
    (`trials_at_once_beside`)."""
    cluster = ClusterShape.current()
    check_trial_request(settings.cpus_per_trial, settings.gpus_per_trial, cluster)
    mode = _trial_mode(settings, base, data, cluster)
    plan = plan_trials(mode.mode, settings.cpus_per_trial, settings.gpus_per_trial, mode.workers,
                       settings.max_concurrent_trials, cluster)
    if beside and settings.max_concurrent_trials is None and mode.kind is INLINE:
        at_once, why = trials_at_once_beside(settings, base, data, plan.concurrent)
        plan = replace(plan, concurrent=at_once, note=f"beside the models stage: {why}")
        if at_once == 1 and not plan.use_gpu and settings.cpus_per_trial <= 1 and cluster_has(BESIDE):
            # Its one actor holds the private node's BESIDE unit instead of a CPU: Ray places a
            # trial's placement group only when no queued task takes the CPU a finished one frees,
            # so behind the models' queue of tasks the search would start last, and its tuned
            # model's folds after it. Its work (less than an actor's start-up) runs on the cores'
            # slack beside the models' tasks instead.
            plan = replace(plan, trial_resources={"cpu": 0, BESIDE: 1},
                           note=f"{plan.note}; it holds the node's {BESIDE} unit, not a CPU")
    trial_fn, trial_base = mode.kind.trainable(settings, base, data, plan, stage=tuned_name(settings))
    trainable = tune.with_resources(tune.with_parameters(trial_fn, base=trial_base), plan.trial_resources)
    # Tune snapshots the search's state every >= 10 s by default; a driver killed in between would
    # rerun trials that had finished. A small search's snapshot takes milliseconds: take one a second.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    # Tune writes every result three times (result.json, progress.csv, TensorBoard events); rayfit
    # reads result.json only. One logger instead of three: fewer files and writes per result.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    path = Location.of(storage).join(search_name(settings))  # a directory or a URI (cluster/storage.py)
    callbacks = [JsonLoggerCallback()] + ([_TrialProgress(on_event, settings.metric, settings.mode, settings.max_t)] if on_event else [])
    vouch = Vouch(path)  # the manifest of Tune's saved state, checked by `_restorable` on resume
    callbacks += mode.kind.callbacks() + ([Abandoned(abandon)] if abandon is not None else []) + [vouch]
    # A grid's points are Tune's to enumerate: a grid search is never continued from a record.
    gridded = any(dim.kind == "grid" for dim in settings.space.values())
    restored = _restorable(path, say or (lambda message: None), keep=not gridded)
    # The finished trials of rayfit's record (tuning/saved_state.py): where Tune's own saved state
    # was not loaded, these are the search's finished trials, and only the rest are run.
    kept = _kept_trials(path)
    to_run = settings.num_samples - len(kept)
    if restored:
        # `rayfit resume`: finished trials are kept, unfinished ones continue from their checkpoints.
        tuner = tune.Tuner.restore(path.uri, trainable=trainable, resume_unfinished=True, resume_errored=True)
        renew_time_budget(tuner, settings.time_budget_s)
    elif to_run <= 0:
        tuner = None
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=to_param_space(settings.space),
            tune_config=tune.TuneConfig(
                metric=settings.metric, mode=settings.mode, num_samples=to_run,
                scheduler=scheduler_for(settings),
                # How many trials run at once is the plan's (a distributed trial's actor is a
                # sliver: Tune alone would start trials whose workers could never be placed).
                # Continuing from a record, another seed: the same one would draw the kept trials' points again.
                search_alg=build_searcher(settings, data.seed + len(kept), plan.concurrent),
                time_budget_s=settings.time_budget_s,
                # About 1 s of actor start-up saved per inline trial on a laptop. A distributed
                # trial's actor owns its Ray Train run: a stopped trial's actor must go with it.
                reuse_actors=mode.kind.reuse_actors,
            ),
            run_config=tune.RunConfig(
                name=path.name, storage_path=path.parent.uri, verbose=0, progress_reporter=QuietReporter(),
                stop=current_watchdog().tune_stopper(),
                # Keeping every (small) checkpoint: with num_to_keep set, Tune snapshots its state
                # after each checkpoint, which dominates a small trial.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                # A trial whose process died is retried from its latest checkpoint; one that
                # still fails is recorded as failed and the others go on.
                failure_config=tune.FailureConfig(max_failures=base.max_failures),
                callbacks=callbacks,
            ),
        )
        record_tuner(path)  # written once by the new Tuner, straight to the storage
    started = time.perf_counter()
    try:
        grid = list(tuner.fit()) if tuner is not None else []
    except SearchAbandoned:
        raise Interrupted() from None
    finally:
        vouch.vouch()  # the state as the search left it, where it reached the storage whole
    mode.kind.settle()
    wall = time.perf_counter() - started
    current_watchdog().check()  # a search the watchdog ended is an error, not a result

    known = {Path(result.path).name for result in grid}
    trials = []
    for result in grid + [result for result in kept if Path(result.path).name not in known]:
        # A failed trial (after Tune's retries) is recorded and left out of the choice; the search
        # goes on with the rest, as Tune itself does.
        failed = _last_line(result.error) if result.error is not None else ""
        checkpoint = None if failed else _latest_checkpoint(result)
        history = _trial_history(result, checkpoint)
        best_row = history[metrics.rank({i: r.get(settings.metric) for i, r in enumerate(history)},
                                        settings.metric)[0]] if history else {}
        planned = int((history[-1].get("planned") if history else None) or settings.max_t)
        trials.append({
            "trial_id": result.metrics.get("trial_id", Path(result.path).name),
            "params": {k: result.config[k] for k in settings.space},
            "val_loss": best_row.get("val_loss", math.nan),
            **({"val_accuracy": best_row["val_accuracy"]} if "val_accuracy" in best_row else {}),
            "epochs": len(history),
            "max_epochs": planned,
            # the trial's own time, as its actor measured it (Tune's time_total_s): training,
            # validation and checkpoints, without the search's scheduling around it
            "time_total_s": result.metrics.get("time_total_s", math.nan),
            "status": _status(failed, history, planned),
            **({"error": failed} if failed else {}),
            "history": history,
            "_checkpoint": checkpoint,
        })
    finished = [t for t in trials if t["_checkpoint"] is not None]
    if not finished:
        errors = [t["error"] for t in trials if t.get("error")]
        if errors:
            raise UserError(f"tune: all {len(trials)} trials of {settings.model} failed; the first: {errors[0]}")
        raise NoTrialFinished("tune: no trial finished an epoch (is tune.time_budget_s too short?)")
    best_trial = finished[metrics.rank({i: t.get(settings.metric) for i, t in enumerate(finished)}, settings.metric)[0]]
    model = _load_tuned(settings, best_trial["_checkpoint"], data.task, n_classes)
    runtime = read_runtime(best_trial["_checkpoint"])  # where the best trial really trained
    for trial in trials:
        trial.pop("_checkpoint")
    trials.sort(key=lambda t: (math.isnan(t["val_loss"]), t["val_loss"]))  # failed ones (nan) last
    return SearchResult(
        model=model, best_params=best_trial["params"], trials=trials, history=best_trial["history"],
        wall_time_s=wall, epochs_trained=sum(t["epochs"] for t in trials),
        epochs_budget=len(trials) * settings.max_t, trial_mode=mode.mode, trial_mode_reason=mode.reason,
        plan=plan.describe(), trial_mode_figures=mode.figures,
        runtime=runtime,
    )


def _status(failed: str, history: list[dict], planned: int) -> str:
    """One of STATUSES for a trial's history."""
    if failed:
        return "failed"
    if len(history) >= planned:
        return "completed"
    if history and history[-1].get("early_stopped"):
        return "early stopping"
    return "stopped by scheduler"


def _last_line(error: BaseException) -> str:
    """A failed trial's error as one line: the exception at the bottom of Ray's traceback."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _trial_mode(settings: TuneSettings, base: NeuralConfig, data: TrainingData, cluster: ClusterShape) -> TrialMode:
    def estimate() -> float:
        # One trial as one training run: max_t epochs on the trial's CPUs.
        resources = {"CPU": settings.cpus_per_trial, "GPU": settings.gpus_per_trial}
        return estimate_train_seconds(settings.model, base.models[0], _one_trial(settings, base), data, resources)

    return choose_trial_mode(settings, data.train_path is not None, estimate if data.input_shape else None,
                             bound=_trial_bound(settings, base, data))


def trials_surely_inline(settings: TuneSettings, base: NeuralConfig, data: TrainingData) -> bool:
    """Whether the search's trials will train inside their own one-CPU actors, known without
    measuring anything (tuning/trial_mode.py's surely_inline)."""
    return surely_inline(settings, data.train_path is not None, _trial_bound(settings, base, data))


# What a trial's actor costs to start beyond its framework's import: a Python process with Ray
# Tune imported (about 1 s of a core on 2 cores, measured).
TUNE_ACTOR_START_S = 1.0


def trials_at_once_beside(settings: TuneSettings, base: NeuralConfig, data: TrainingData,
                          fit: int) -> tuple[int, str]:
    """(how many trials run at once, why) for a search beside the models stage, whose CPUs the
    other stages want too: one more trial actor pays for itself only if the search's expected
    training, shared among the actors, saves more than an actor costs to start (a process
    importing Ray Tune and the framework), as `launch: auto` weighs a worker group. The expected
    training: num_samples trials of the bound on max_t epochs, times the share of those epochs
    the scheduler lets an average trial run (ASHA: its rungs, `expected_epoch_share`). `fit`:
    how many fit the cluster at once."""
    from rayfit.frameworks import FRAMEWORKS

    bound = _trial_bound(settings, base, data)
    if bound is None or fit <= 1:
        return fit, "as many as fit"
    work = settings.num_samples * bound * expected_epoch_share(settings)
    start = FRAMEWORKS[settings.model].start_s + TUNE_ACTOR_START_S
    at_once = max(1, min(fit, int(work // start)))
    share = "ASHA's share of " if settings.scheduler == "asha" else ""
    return at_once, (f"at most about {work:.1f} s of training expected in all ({share}{settings.num_samples} "
                     f"trials x {settings.max_t} epochs); each trial actor costs about {start:g} s of a CPU to start")


def expected_epoch_share(settings: TuneSettings) -> float:
    """The share of max_t epochs an average trial runs: under ASHA (one bracket) every trial runs
    to the first rung and 1 / reduction_factor of those reaching a rung go on to the next; else all."""
    if settings.scheduler != "asha":
        return 1.0
    rungs = sorted(decision_epochs(settings) or ()) + [settings.max_t]
    epochs, survivors, reached = 0.0, 1.0, 0
    for rung in rungs:
        epochs += survivors * (rung - reached)
        survivors /= settings.reduction_factor
        reached = rung
    return epochs / settings.max_t


def _one_trial(settings: TuneSettings, base: NeuralConfig) -> NeuralConfig:
    return base.model_copy(update={"epochs": settings.max_t})


def _trial_bound(settings: TuneSettings, base: NeuralConfig, data: TrainingData) -> Optional[float]:
    """An upper bound on one trial's training (max_t epochs), where one is known without a probe."""
    if not is_network_framework(settings.model) or not data.input_shape:
        return None
    return bound_train_seconds(settings.model, base.models[0], _one_trial(settings, base), data)


def _latest_checkpoint(result) -> Optional[Path]:
    """The trial's latest checkpoint as a local directory: Tune's (inline trials) or its Ray Train
    run's (distributed trials report the path with their metrics), fetched from an object store."""
    checkpoint = result.checkpoint
    if checkpoint is None:
        frame = result.metrics_dataframe
        paths = frame[CHECKPOINT_PATH_KEY].dropna() if frame is not None and CHECKPOINT_PATH_KEY in frame else []
        if not len(paths):
            return None
        checkpoint = tune.Checkpoint(paths.iloc[-1], filesystem=result.filesystem)
    elif "trial_id" in result.metrics:  # what the trial wrote last, if Tune's record missed it (trainers/contexts.py)
        from rayfit.trainers.checkpoints import newest_of_owner

        checkpoint = newest_of_owner(checkpoint, result.metrics["trial_id"])
    import pyarrow.fs as pafs

    if isinstance(checkpoint.filesystem, pafs.LocalFileSystem):
        return Path(checkpoint.path)
    return Path(checkpoint.to_directory())


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _trial_history(result, checkpoint: Optional[Path]) -> list[dict]:
    """Per-epoch metrics of the trial's whole lineage.

    A network's checkpoint carries its history, including the epochs a PBT donor trained before
    this trial took its weights (Tune's own record of the trial starts again at each exploit).
    Epochs reported after that checkpoint come from Tune's record, once each.
    """
    frame = result.metrics_dataframe
    reported = []
    for row in (frame.to_dict("records") if frame is not None else []):
        # the epochs carried inside this report (an inline trial reports only at decision points)
        carried = row.get(CARRIED)
        for epoch_row in carried if isinstance(carried, list) else []:
            reported.append({k: epoch_row[k] for k in HISTORY_KEYS if k in epoch_row})
        reported.append({k: row[k] for k in HISTORY_KEYS if k in row and not _blank(row[k])})
    lineage = []
    if checkpoint is not None and (checkpoint / HISTORY).exists():
        lineage = [{k: row[k] for k in HISTORY_KEYS if k in row}
                   for row in json.loads((checkpoint / HISTORY).read_text())]
    last = lineage[-1]["epoch"] if lineage else 0
    # A trial resumed after a killed driver reruns the epochs after its checkpoint: the rerun counts.
    after = {row["epoch"]: row for row in reported if row["epoch"] > last}
    return lineage + [after[epoch] for epoch in sorted(after)]


def _load_tuned(settings: TuneSettings, directory: Path, task: str, n_classes: Optional[int]) -> ArrayModel:
    """The best trial's checkpoint as the tuned model (its best epoch's weights)."""
    if is_network_framework(settings.model):  # held by its framework's workers (trainers/remote_network.py)
        return network_from_checkpoint(settings.model, directory, tuned_name(settings), task, best=True)
    # the trial's checkpoint, before its estimator is unpickled (written by a trial's process,
    # which need not hold RAYFIT_SIGNING_KEY: its digests are checked, not a signature)
    verify_manifest(directory, signed=False)
    return SklearnModel(tuned_name(settings), task, joblib.load(directory / ESTIMATOR_FILE), n_classes)

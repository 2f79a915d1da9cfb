"""How a trial trains a network: inside the trial (inline) or through its own Ray Train run (distributed).

Inline costs nothing beyond the trial's actor; a distributed trial pays a Ray Train launch (about
10-15 s on a laptop, BENCHMARKS.md B3) and buys data parallelism, several GPUs per trial and
streaming from Parquet. `auto` picks distributed only where that trade is worth it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ray import tune

from rayfit.cluster.ledger import stage_key
from rayfit.cluster.orphans import settle_worker_groups
from rayfit.config import TuneSettings
from rayfit.data.streaming import read_training_split
from rayfit.frameworks import is_network_framework
from rayfit.trainers.contexts import train_trial
from rayfit.trainers.launch import (WORKER_GROUP, make_loop_config, surely_one_task, trainer_backend,
                                    worth_a_worker_group)
from rayfit.tuning.baseline_trial import baseline_trial
from rayfit.tuning.schedulers import EXPLOITING, decision_epochs


class TrialKind:
    """How a trial trains, as an object (the launch kinds' counterpart for Tune, trainers/launch.py):
    `name` is what `tune.trial_mode` in a config and `trial_mode` in metrics.json say."""

    name: str
    reuse_actors: bool  # Tune reuses a finished trial's actor for the next one

    def trainable(self, settings: TuneSettings, base, data, plan, stage: str) -> tuple:
        """(the trial function, its constant arguments) for the search's model and trial plan;
        `stage`: the tuned model's name, whose ledger notes where trials ran."""
        raise NotImplementedError

    def callbacks(self) -> list:
        return []

    def settle(self) -> None:
        """After the search: wait for what its trials left behind to go."""


class Inline(TrialKind):
    """The trial trains in its own actor: a network through the training core, or a baseline.
    About 1 s of actor start-up saved per trial on a laptop by reusing actors."""

    name, reuse_actors = "inline", True

    def trainable(self, settings, base, data, plan, stage):
        if not is_network_framework(settings.model):
            return baseline_trial, {"baseline": settings.model, "max_t": settings.max_t, "data": data.ref,
                                    "ledger": stage_key(data.run_key, stage), "task": data.task,
                                    "class_weights": data.class_weights, "seed": data.seed,
                                    "threads": max(1, int(settings.cpus_per_trial))}
        config = make_loop_config("tune", settings.model, base.models[0], _trial_settings(settings, base), data,
                                  threads=max(1, int(settings.cpus_per_trial)), stage=stage)
        # PBT restarts trials from other trials' latest checkpoints: checkpoint every epoch for it.
        return train_trial, {"config": config, "checkpoint_every_epoch": settings.scheduler in EXPLOITING,
                             "report_at": decision_epochs(settings)}


class Distributed(TrialKind):
    """The trial's actor launches its own Ray Train run; a stopped trial's actor must go with it."""

    name, reuse_actors = "distributed", False

    def trainable(self, settings, base, data, plan, stage):
        workers = plan.workers
        config = make_loop_config("tune", settings.model, base.models[0], _trial_settings(settings, base), data,
                                  threads=max(1, round(workers.cpus_per_worker)), streaming=data.train_path is not None,
                                  stage=stage)
        # Read once here, before any trial holds a CPU, and shared by every trial's workers.
        dataset = read_training_split(data.train_path) if data.train_path else None
        return distributed_trial, {"config": config, "plan": workers, "max_failures": base.max_failures,
                                   "train_dataset": dataset, "backend": trainer_backend(settings.model, workers)}

    def callbacks(self) -> list:
        return [FreeStoppedWorkerGroups()]

    def settle(self) -> None:
        settle_worker_groups()


INLINE, DISTRIBUTED = Inline(), Distributed()
TRIAL_KINDS = {kind.name: kind for kind in (INLINE, DISTRIBUTED)}


def _trial_settings(settings: TuneSettings, base):
    """Every trial runs up to max_t epochs; the scheduler decides who stops earlier. Early stopping
    inside a trial stays on, as in a plain training run."""
    return base.model_copy(update={"epochs": settings.max_t})


@dataclass(frozen=True)
class TrialMode:
    kind: TrialKind
    reason: str
    workers: int = 1
    figures: dict = field(default_factory=dict)  # what auto weighed (see trainers/launch.py)

    @property
    def mode(self) -> str:
        return self.kind.name


def choose_trial_mode(settings: TuneSettings, streaming: bool, estimate=None, start_cost=None,
                      bound: Optional[float] = None) -> TrialMode:
    """The configured mode, or auto's choice with the reason the report states.

    estimate: () -> one trial's training alone in seconds, as for any network's launch
    (trainers/launch.py), asked only when it decides: distributed only where the trial's workers
    could save more than a worker group costs to start here, the rule `launch: auto` applies.
    bound: an upper bound on that training known without measuring (an MLP's,
    trainers/launch.py's bound_train_seconds): where even it could not pay for a worker group,
    the trials are inline and nothing is measured.
    """
    ruled = _by_rule(settings, streaming, bound)
    if ruled is not None:
        return ruled
    workers = settings.workers_per_trial
    launch = worth_a_worker_group(settings.model, estimate() if estimate else 0.0, workers,
                                  "training per trial", start_cost)
    kind = DISTRIBUTED if launch.kind is WORKER_GROUP else INLINE
    return TrialMode(kind, launch.reason, workers if kind is DISTRIBUTED else 1, launch.figures)


def surely_inline(settings: TuneSettings, streaming: bool, bound: Optional[float] = None) -> bool:
    """Whether the search's trials train inside their own actors (one CPU each, nothing gang-placed),
    known without measuring anything."""
    ruled = _by_rule(settings, streaming, bound)
    return ruled is not None and ruled.kind is INLINE


def _by_rule(settings: TuneSettings, streaming: bool, bound: Optional[float] = None) -> Optional[TrialMode]:
    """The mode the settings (and the bound on a trial's training) decide; None where only the
    trial's estimated time can."""
    workers = settings.workers_per_trial
    if not is_network_framework(settings.model):
        return TrialMode(INLINE, "baselines train inside the trial")
    if settings.trial_mode == "inline":
        return TrialMode(INLINE, "tune.trial_mode: inline")
    if settings.trial_mode == "distributed":
        return TrialMode(DISTRIBUTED, "tune.trial_mode: distributed", workers)
    if settings.cpus_per_trial / workers < 0.1:
        return TrialMode(INLINE, f"{settings.cpus_per_trial:g} CPUs per trial are too few to share among workers")
    if settings.scheduler in EXPLOITING:
        return TrialMode(INLINE, f"{settings.scheduler} exploits Tune checkpoints, kept by inline trials")
    if streaming:
        return TrialMode(DISTRIBUTED, "the training split streams from Parquet to Ray Train workers", workers)
    if settings.gpus_per_trial > 1:
        return TrialMode(DISTRIBUTED, f"{settings.gpus_per_trial:g} GPUs per trial need one worker each",
                         max(workers, int(settings.gpus_per_trial)))
    if workers == 1:
        return TrialMode(INLINE, "one worker per trial: no worker group to start")
    surely = surely_one_task(settings.model, bound, workers) if bound is not None else None
    if surely is not None:
        return TrialMode(INLINE, surely.reason.replace("of training alone", "of training per trial"), 1, surely.figures)
    return None


def distributed_trial(params: dict, base: dict) -> None:
    """One Tune trial that trains through its own Ray Train run; metrics reach Tune every epoch.

    base: {"config": LoopConfig, "plan": WorkerPlan, "backend": trainer arguments, "max_failures",
    "train_dataset"}. The run lives in the trial's directory, so a resumed search resumes each
    unfinished trial's run from its latest checkpoint.
    """
    import ray.train
    from ray.tune.integration.ray_train import TuneReportCallback

    from rayfit.trainers.launch import worker_group_trainer

    # The trial's directory in the search's storage (a directory or an object store): where the
    # run's checkpoints must go for a resumed search to find them. A developer API of Ray's, the
    # only one that names the storage rather than the trial's local scratch directory.
    from ray.train._internal.session import get_storage

    storage = get_storage()
    dataset = base.get("train_dataset")
    trainer = worker_group_trainer(
        base["config"].with_params(params), base["plan"], backend=base["backend"],
        datasets={"train": dataset} if dataset is not None else None,
        run_config=ray.train.RunConfig(
            name="train", storage_path=storage.trial_fs_path, storage_filesystem=storage.storage_filesystem,
            # The latest checkpoint carries the best epoch's weights and the history: keep one.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=base["max_failures"]),
            callbacks=[TuneReportCallback()],
        ))
    result = trainer.fit()
    if result.error is not None:
        raise result.error


class FreeStoppedWorkerGroups(tune.Callback):
    """Driver-side: when a distributed trial ends (finished, failed or stopped by the scheduler), the
    workers of its Ray Train run are freed for the next trial (cluster/orphans.py says why Ray may
    not). Also every couple of seconds, for a trial whose actor died between two events."""

    INTERVAL_S = 2.0

    def __init__(self):
        self._last = 0.0

    def _free(self) -> None:
        import time

        from rayfit.cluster.orphans import free_orphaned_placement_groups

        self._last = time.monotonic()
        free_orphaned_placement_groups()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._free()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._free()

    def on_step_end(self, iteration, trials, **info):
        import time

        if time.monotonic() - self._last > self.INTERVAL_S:
            self._free()

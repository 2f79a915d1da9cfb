"""How a trial trains a network: inside the trial (inline) or through its own Ray Train run (distributed).

Inline costs nothing beyond the trial's actor; a distributed trial pays a Ray Train launch (about
10-15 s on a laptop, BENCHMARKS.md B3) and buys data parallelism, several GPUs per trial and
streaming from Parquet. `auto` picks distributed only where that trade is worth it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ray import tune

from rayfit.config import TuneSettings
from rayfit.frameworks import is_network_framework
from rayfit.tuning.schedulers import EXPLOITING


@dataclass(frozen=True)
class TrialMode:
    mode: str  # "inline" or "distributed"
    reason: str
    workers: int = 1
    figures: dict = field(default_factory=dict)  # what auto weighed (see trainers/launch.py)


def choose_trial_mode(settings: TuneSettings, streaming: bool, estimate=None, start_cost=None) -> TrialMode:
    """The configured mode, or auto's choice with the reason the report states.

    estimate: () -> one trial's training alone in seconds, as for any network's launch
    (trainers/launch.py), asked only when it decides: distributed only where the trial's workers
    could save more than a worker group costs to start here, the rule `launch: auto` applies.
    """
    from rayfit.trainers.launch import worth_a_worker_group

    workers = settings.workers_per_trial
    if not is_network_framework(settings.model):
        return TrialMode("inline", "baselines train inside the trial")
    if settings.trial_mode == "inline":
        return TrialMode("inline", "tune.trial_mode: inline")
    if settings.trial_mode == "distributed":
        return TrialMode("distributed", "tune.trial_mode: distributed", workers)
    if settings.cpus_per_trial / workers < 0.1:
        return TrialMode("inline", f"{settings.cpus_per_trial:g} CPUs per trial are too few to share among workers")
    if settings.scheduler in EXPLOITING:
        return TrialMode("inline", f"{settings.scheduler} exploits Tune checkpoints, kept by inline trials")
    if streaming:
        return TrialMode("distributed", "the training split streams from Parquet to Ray Train workers", workers)
    if settings.gpus_per_trial > 1:
        return TrialMode("distributed", f"{settings.gpus_per_trial:g} GPUs per trial need one worker each",
                         max(workers, int(settings.gpus_per_trial)))
    if workers == 1:
        return TrialMode("inline", "one worker per trial: no worker group to start")
    launch = worth_a_worker_group(settings.model, estimate() if estimate else 0.0, workers,
                                  "training per trial", start_cost)
    mode = "distributed" if launch.kind == "ray_train" else "inline"
    return TrialMode(mode, launch.reason, workers if mode == "distributed" else 1, launch.figures)


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

"""How a trial trains a network: inside the trial (inline) or through its own Ray Train run (distributed).

Inline costs nothing beyond the trial's actor; a distributed trial pays a Ray Train launch (about
10-15 s on a laptop, BENCHMARKS.md B3) and buys data parallelism, several GPUs per trial and
streaming from Parquet. `auto` picks distributed only where that trade is worth it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ray import tune

from rayfit.config import TuneSettings
from rayfit.trainers.launch import WORKER_GROUP_COST_S

# The distributed trial's own actor only waits on its Ray Train run: a sliver of a CPU, taken out
# of cpus_per_trial so the trial's whole footprint is what the config says.
TRIAL_ACTOR_CPU = 0.01
@dataclass(frozen=True)
class TrialMode:
    mode: str  # "inline" or "distributed"
    reason: str
    workers: int = 1

    def trial_resources(self, settings: TuneSettings, use_gpu: bool) -> dict:
        if self.mode == "inline":
            return {"cpu": settings.cpus_per_trial, **({"gpu": settings.gpus_per_trial} if use_gpu else {})}
        return {"cpu": TRIAL_ACTOR_CPU}

    def worker_resources(self, settings: TuneSettings, use_gpu: bool) -> dict:
        """Each Ray Train worker's share of the trial's CPUs and GPUs."""
        cpus = (settings.cpus_per_trial - TRIAL_ACTOR_CPU) / self.workers
        return {"CPU": cpus, **({"GPU": settings.gpus_per_trial / self.workers} if use_gpu else {})}


def choose_trial_mode(settings: TuneSettings, streaming: bool, trial_seconds: float) -> TrialMode:
    """The configured mode, or auto's choice with the reason the report states.

    trial_seconds: one trial's training alone, estimated as for any network's launch
    (trainers/launch.py): distributed only where its workers could save more than a worker group
    costs to start, the same rule `launch: auto` applies to a plain training run.
    """
    workers = settings.workers_per_trial
    if settings.model not in ("torch", "keras"):
        return TrialMode("inline", "baselines train inside the trial")
    if settings.trial_mode == "inline":
        return TrialMode("inline", "tune.trial_mode: inline")
    if settings.trial_mode == "distributed":
        return TrialMode("distributed", "tune.trial_mode: distributed", workers)
    if settings.cpus_per_trial / workers < 0.1:
        return TrialMode("inline", f"{settings.cpus_per_trial:g} CPUs per trial are too few to share among workers")
    if settings.scheduler in ("pbt", "pb2"):
        return TrialMode("inline", f"{settings.scheduler} exploits Tune checkpoints, kept by inline trials")
    if streaming:
        return TrialMode("distributed", "the training split streams from Parquet to Ray Train workers", workers)
    if settings.gpus_per_trial > 1:
        return TrialMode("distributed", f"{settings.gpus_per_trial:g} GPUs per trial need one worker each",
                         max(workers, int(settings.gpus_per_trial)))
    saving = trial_seconds * (1 - 1 / workers)
    if saving > WORKER_GROUP_COST_S:
        return TrialMode("distributed", f"about {trial_seconds:.0f} s of training per trial; {workers} workers save "
                                        f"up to {saving:.0f} s, more than a worker group costs to start", workers)
    return TrialMode("inline", f"about {trial_seconds:.1f} s of training per trial; {workers} workers would save "
                               f"at most {saving:.1f} s, less than a worker group costs to start")


def distributed_trial(config: dict, base: dict) -> None:
    """One Tune trial that trains through its own Ray Train run; metrics reach Tune every epoch.

    The run lives in the trial's directory, so a resumed search resumes each unfinished trial's
    run from its latest checkpoint.
    """
    import ray.train
    from ray.tune.integration.ray_train import TuneReportCallback

    from rayfit.trainers.launch import FRAMEWORKS

    trainer_cls, loop, _ = FRAMEWORKS[base["framework"]]()
    loop_config = {**base["loop"], "settings": {**base["loop"]["settings"], **config}}
    trainer = trainer_cls(
        loop,
        datasets={"train": base["train_dataset"]} if base.get("train_dataset") is not None else None,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=base["workers"], use_gpu=base["use_gpu"],
                                               resources_per_worker=base["worker_resources"]),
        run_config=ray.train.RunConfig(
            name="train", storage_path=tune.get_context().get_trial_dir(),
            # The latest checkpoint carries the best epoch's weights and the history: keep one.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=base["max_failures"]),
            callbacks=[TuneReportCallback()],
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error

"""Execution contexts: the places a network trains, each an object the training core is handed.

- `WorkerGroupContext`: one worker of a Ray Train worker group (DDP / MultiWorkerMirroredStrategy).
  Checkpoints go to Ray Train's storage, from rank 0; Ray Train restores the latest after a worker
  failure or `rayfit resume`. A Tune trial that launches its own worker group (a distributed trial,
  tuning/trial_mode.py) trains in these too: its Ray Train run lives in the trial's directory.
- `TrialContext`: an inline Tune trial, one process. It checkpoints when it improves (every epoch
  under PBT, whose exploits restart trials from each other's latest checkpoints).
- `TaskContext`: one Ray task, one process. It checkpoints every epoch into a storage location the
  driver hands it, the latest N kept; a retried or resumed task continues from there.

The core asks each the same questions (rank, world size, the checkpoint to continue from, whether
to checkpoint this epoch, how to report) and never which one it is. The entry points at the bottom
are what Ray Train, Tune and a Ray task call.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from rayfit.cluster.ledger import note
from rayfit.trainers.core import LoopConfig, train


class WorkerGroupContext:
    def __init__(self):
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()

    def latest_checkpoint(self, say):
        import ray.train

        from rayfit.trainers.checkpoints import intact_or_earlier

        return intact_or_earlier(ray.train.get_checkpoint(), say)

    def wants_checkpoint(self, improved: bool, final: bool) -> bool:
        return self.rank == 0  # every epoch, from rank 0: the others hold the same weights

    def report(self, metrics: dict, checkpoint_dir: Optional[Path]) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    def train_shard(self):
        import ray.train

        return ray.train.get_dataset_shard("train")


class TrialContext:
    rank, world_size = 0, 1

    def __init__(self, checkpoint_every_epoch: bool = False):
        self.checkpoint_every_epoch = checkpoint_every_epoch

    def latest_checkpoint(self, say):
        from ray import tune

        from rayfit.trainers.checkpoints import intact_or_earlier, newest_of_owner

        checkpoint = tune.get_checkpoint()  # set when a trial is resumed or exploited (PBT)
        # A driver killed within a second of a report leaves Tune's record behind what the trial
        # wrote: continue from the trial's own newest checkpoint, not redo epochs it had finished.
        checkpoint = newest_of_owner(checkpoint, tune.get_context().get_trial_id())
        return intact_or_earlier(checkpoint, say)

    def wants_checkpoint(self, improved: bool, final: bool) -> bool:
        # On improvement (a small trial is not dominated by checkpoint I/O), and at the last epoch:
        # a finished trial that Tune's record missed then resumes finished, with nothing to redo.
        return improved or final or self.checkpoint_every_epoch

    def report(self, metrics: dict, checkpoint_dir: Optional[Path]) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        tune.report(metrics, checkpoint=checkpoint)

    def train_shard(self):
        raise RuntimeError("an inline trial trains on in-memory arrays; streamed trials are distributed")


class TaskContext:
    rank, world_size = 0, 1

    def __init__(self, checkpoint_dir: str, keep: int):
        self.checkpoint_dir, self.keep = checkpoint_dir, keep

    def latest_checkpoint(self, say):
        from rayfit.trainers.checkpoints import latest_checkpoint

        return latest_checkpoint(self.checkpoint_dir, say)

    def wants_checkpoint(self, improved: bool, final: bool) -> bool:
        return True

    def report(self, metrics: dict, checkpoint_dir: Optional[Path]) -> None:
        from rayfit.trainers.checkpoints import save_checkpoint

        save_checkpoint(checkpoint_dir, self.checkpoint_dir, metrics["epoch"], self.keep)

    def train_shard(self):
        raise RuntimeError("a single task trains on in-memory arrays; streaming needs a worker group")


# -- entry points ---------------------------------------------------------------------------------

def train_worker(loop: dict) -> None:
    """Ray Train's train_loop_per_worker: loop = {"config": LoopConfig}."""
    note(loop["config"].ledger)
    train(loop["config"], WorkerGroupContext())


def train_trial(params: dict, base: dict) -> None:
    """An inline Tune trial: base = {"config": LoopConfig, "checkpoint_every_epoch": bool}."""
    note(base["config"].ledger)
    train(base["config"].with_params(params), TrialContext(base.get("checkpoint_every_epoch", False)))


def train_task(config: LoopConfig, checkpoint_dir: str, keep: int) -> dict:
    """One Ray task's body: the history and the seconds it took."""
    note(config.ledger)
    started = time.perf_counter()
    history = train(config, TaskContext(checkpoint_dir, keep))
    return {"history": history, "seconds": time.perf_counter() - started}

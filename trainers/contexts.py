"""Execution contexts: the places a network trains, each an object the training core is handed.

- `WorkerGroupContext`: one worker of a Ray Train worker group (DDP / MultiWorkerMirroredStrategy).
  Checkpoints go to Ray Train's storage, from rank 0; Ray Train restores the latest after a worker
  failure or `rayfit resume`. A Tune trial that launches its own worker group (a distributed trial,
  tuning/trial_mode.py) trains in these too: its Ray Train run lives in the trial's directory.
- `TrialContext`: an inline Tune trial, one process. It checkpoints when it improves (every epoch
  under PBT, whose exploits restart trials from each other's latest checkpoints).
- `TaskContext`: one Ray task, one process. It checkpoints into a storage location the driver hands
  it, the latest N kept; a retried or resumed task continues from there.

A worker group and a task checkpoint by the clock (`CheckpointClock`): after an epoch when waiting
one more would leave more than `checkpoint_every_s` of training unsaved (every epoch when epochs
take longer), and after the last. A killed worker loses at most one epoch or that long, whichever
is more; the epochs it replays are seeded as they were, so the result is the same.

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

CARRIED = "carried"  # a trial's report: the epochs since its previous report, each a metrics dict
REPORT_EVERY_S = 10.0  # a trial reports at least this often, decision point or not


class CheckpointClock:
    """Whether this epoch checkpoints: asked once at the end of each epoch."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self.saved = self.ended = time.monotonic()

    def due(self, final: bool) -> bool:
        now = time.monotonic()
        epoch_s, self.ended = now - self.ended, now
        if final or (now - self.saved) + epoch_s >= self.every_s:  # one more epoch would pass the limit
            self.saved = now
            return True
        return False


class WorkerGroupContext:
    def __init__(self, checkpoint_every_s: float = 0.0):
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.clock = CheckpointClock(checkpoint_every_s)

    def latest_checkpoint(self, say):
        import ray.train

        from rayfit.trainers.checkpoints import intact_or_earlier

        return intact_or_earlier(ray.train.get_checkpoint(), say)

    def wants_checkpoint(self, improved: bool, final: bool, epoch: int) -> bool:
        return self.rank == 0 and self.clock.due(final)  # from rank 0: the others hold the same weights

    def report(self, metrics: dict, checkpoint_dir: Optional[Path]) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    def train_shard(self):
        import ray.train

        return ray.train.get_dataset_shard("train")


class TrialContext:
    """An inline trial reports to Tune only where its scheduler decides something (`report_at`:
    ASHA's rungs; none for FIFO; None: every epoch), at its last epoch, and at least every
    REPORT_EVERY_S (the watchdog's heartbeat, the display's progress). The epochs in between travel
    inside the next report (CARRIED), so the trial's history is whole while Tune handles a few
    results instead of one per epoch."""

    rank, world_size = 0, 1

    def __init__(self, checkpoint_every_epoch: bool = False, report_at: Optional[frozenset] = None):
        self.checkpoint_every_epoch = checkpoint_every_epoch
        self.report_at = report_at
        self._carried: list[dict] = []
        self._improved = False  # since the last checkpoint
        self._due = True
        self._last_report = time.monotonic()

    def latest_checkpoint(self, say):
        from ray import tune

        from rayfit.trainers.checkpoints import intact_or_earlier, newest_of_owner

        checkpoint = tune.get_checkpoint()  # set when a trial is resumed or exploited (PBT)
        # A driver killed within a second of a report leaves Tune's record behind what the trial
        # wrote: continue from the trial's own newest checkpoint, not redo epochs it had finished.
        checkpoint = newest_of_owner(checkpoint, tune.get_context().get_trial_id())
        return intact_or_earlier(checkpoint, say)

    def wants_checkpoint(self, improved: bool, final: bool, epoch: int) -> bool:
        # Asked once per epoch, just before `report`: whether this epoch reports, and with a
        # checkpoint. A checkpoint when the trial improved since the last one (a small trial is not
        # dominated by checkpoint I/O), and at the last epoch: a finished trial that Tune's record
        # missed then resumes finished, with nothing to redo.
        self._improved = self._improved or improved
        self._due = (final or self.checkpoint_every_epoch or self.report_at is None or epoch in self.report_at
                     or time.monotonic() - self._last_report >= REPORT_EVERY_S)
        return self._due and (self._improved or final or self.checkpoint_every_epoch)

    def report(self, metrics: dict, checkpoint_dir: Optional[Path]) -> None:
        from ray import tune

        if not self._due:
            self._carried.append(metrics)
            return
        if self._carried:
            metrics = {**metrics, CARRIED: self._carried}
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        self._carried, self._last_report = [], time.monotonic()
        if checkpoint is not None:
            self._improved = False
        tune.report(metrics, checkpoint=checkpoint)

    def train_shard(self):
        raise RuntimeError("an inline trial trains on in-memory arrays; streamed trials are distributed")


class TaskContext:
    rank, world_size = 0, 1

    def __init__(self, checkpoint_dir: str, keep: int, checkpoint_every_s: float = 0.0):
        self.checkpoint_dir, self.keep = checkpoint_dir, keep
        self.clock = CheckpointClock(checkpoint_every_s)

    def latest_checkpoint(self, say):
        from rayfit.trainers.checkpoints import latest_checkpoint

        return latest_checkpoint(self.checkpoint_dir, say)

    def wants_checkpoint(self, improved: bool, final: bool, epoch: int) -> bool:
        return self.clock.due(final)

    def report(self, metrics: dict, checkpoint_dir: Optional[Path]) -> None:
        from rayfit.trainers.checkpoints import save_checkpoint

        if checkpoint_dir is None:  # not this epoch (CheckpointClock)
            return
        save_checkpoint(checkpoint_dir, self.checkpoint_dir, metrics["epoch"], self.keep)

    def train_shard(self):
        raise RuntimeError("a single task trains on in-memory arrays; streaming needs a worker group")


# -- entry points ---------------------------------------------------------------------------------

def train_worker(loop: dict) -> None:
    """Ray Train's train_loop_per_worker: loop = {"config": LoopConfig}."""
    note(loop["config"].ledger)
    train(loop["config"], WorkerGroupContext(loop["config"].settings.checkpoint_every_s))


def train_trial(params: dict, base: dict) -> None:
    """An inline Tune trial: base = {"config": LoopConfig, "checkpoint_every_epoch": bool,
    "report_at": the scheduler's decision epochs, or None for every epoch}."""
    note(base["config"].ledger)
    train(base["config"].with_params(params),
          TrialContext(base.get("checkpoint_every_epoch", False), base.get("report_at")))


def train_task(config: LoopConfig, checkpoint_dir: str, keep: int) -> dict:
    """One Ray task's body: the history and the seconds it took."""
    note(config.ledger)
    started = time.perf_counter()
    history = train(config, TaskContext(checkpoint_dir, keep, config.settings.checkpoint_every_s))
    return {"history": history, "seconds": time.perf_counter() - started}

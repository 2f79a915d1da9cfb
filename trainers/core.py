"""The training core: one epoch driver for every framework and every place a network trains.

`train(config, context)` runs the epochs: learning-rate schedule and warm-up, early stopping,
best-weights tracking, history, the checkpoint's contents, restore, and the per-epoch report. It
never names a framework: the framework's adapter (trainers/adapter.py, looked up in the registry)
does the tensor work, and the execution context (trainers/contexts.py: a Ray Train worker, a Tune
trial, a single Ray task) says who this worker is, where checkpoints live and how to report.

A checkpoint holds everything needed to continue exactly: the adapter's weights, best weights and
optimizer state, plus train_state.json (epoch, history, schedule, stopper, the RNG state of every
generator, settings), arch.json, history.json and runtime.json; and MANIFEST.json, the SHA-256 of
each, against which a damaged checkpoint is found and passed over (trainers/checkpoints.py).
"""
from __future__ import annotations

import json
import random
import resource
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np

from rayfit.evaluation.manifest import write_manifest
from rayfit.trainers.losses import validation_metrics
from rayfit.frameworks import framework as framework_spec
from rayfit.trainers.schedule import EarlyStopping, LearningRateSchedule
from rayfit.trainers.target_scale import standardize, to_target_units

ARCH = "arch.json"
HISTORY = "history.json"
TRAIN_STATE = "train_state.json"
ARCH_KEYS = ("hidden_sizes", "activation", "dropout", "norm", "cnn", "rnn", "transformer")
SEED_STRIDE = 10_007  # an epoch's seed: seed + SEED_STRIDE * epoch + rank


@dataclass(frozen=True)
class LoopConfig:
    """Everything one network's training needs, typed; the same object in every execution context."""

    name: str  # torch_mlp, keras_cnn, ...
    framework: str  # a key of rayfit/frameworks.py FRAMEWORKS
    network: str  # a network of that framework
    settings: Any  # the framework's NeuralConfig (rayfit/config.py)
    task: str  # "classification" or "regression"
    n_outputs: int  # classes for multi-class; 1 for binary (one logit) and regression
    class_weights: Optional[list]
    seed: int
    data: Any  # {"X_train", "y_train", "X_val", "y_val"} or an ObjectRef of it (X_val/y_val only when streaming)
    streaming: bool = False  # the training split comes from the context's dataset shard
    target_scale: Optional[tuple] = None  # regression: (mean, std) the network learns the target in
    threads: int = 1  # CPU threads this worker was given
    progress: Any = None  # a ProgressHub actor: rank 0 pushes each epoch's metrics
    ledger: str = ""  # cluster/ledger.py: where the stage's processes note the node they run on
    # time_limit (rayfit/budget.py): training stops after the epoch past which another would end
    # after this wall-clock time (time.time()); every worker of a group takes the same decision
    deadline: Optional[float] = None

    def __post_init__(self):
        if "auto" in (self.settings.batch_size, self.settings.epochs):
            raise ValueError("the loop needs a whole batch size and number of epochs: settings.for_rows(train_rows)")

    def with_params(self, params: dict) -> "LoopConfig":
        """A trial's settings: the base settings with the sampled hyperparameters."""
        return replace(self, settings=self.settings.model_copy(update=params))

    def targets(self, y):
        """Targets as the loss takes them: class indices, or a float (standardized) value."""
        if self.task == "classification" and self.n_outputs > 1:
            return np.asarray(y, dtype=np.int64)
        return standardize(np.asarray(y, dtype=np.float64), self.target_scale).astype(np.float32)


class ExecutionContext(Protocol):
    """Where a loop runs: who this worker is, where its checkpoints live, how it reports."""

    rank: int
    world_size: int

    def latest_checkpoint(self, say):  # the newest intact ray.train.Checkpoint, or None; say(text) tells the user
        ...

    def wants_checkpoint(self, improved: bool, final: bool, epoch: int) -> bool:  # final: the loop's last epoch
        ...

    def report(self, metrics: dict, checkpoint_dir: Optional[Path]) -> None:
        ...

    def train_shard(self):  # this worker's shard of the streamed training split
        ...


def architecture(settings: dict, network: str, input_shape, n_outputs: int, target_scale=None) -> dict:
    """What a checkpoint needs to rebuild the network and read its outputs: target_scale takes a
    regression network's outputs back to the target's units."""
    return {"model": network, "input_shape": list(input_shape), "n_outputs": n_outputs,
            "settings": {k: settings[k] for k in ARCH_KEYS},
            "target_scale": list(target_scale) if target_scale is not None else None}


def logits_to_output(out: np.ndarray, task: str, arch: Optional[dict] = None) -> np.ndarray:
    """Class probabilities (one logit: binary, sigmoid; several: softmax) or regression values, in
    the target's units (the network learned a standardized target: trainers/target_scale.py)."""
    if task != "classification":
        return to_target_units(out.reshape(-1).astype(np.float64), (arch or {}).get("target_scale"))
    if out.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-out[:, 0].astype(np.float64)))
        return np.stack([1 - p, p], axis=1)
    shifted = out.astype(np.float64) - out.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class _Run:
    """The state the core carries from epoch to epoch, and into and out of checkpoints."""

    def __init__(self, settings):
        self.schedule = LearningRateSchedule.from_settings(settings.model_dump())
        self.stopper = EarlyStopping(settings.patience, settings.min_delta)
        self.history: list[dict] = []
        self.best_weights = None
        self.epoch = 0

    def state(self, settings, adapter) -> dict:
        return {"epoch": self.epoch, "history": self.history, "schedule": self.schedule.state_dict(),
                "stopper": self.stopper.state_dict(), "settings": settings.model_dump(mode="json"),
                "rng": {"python": _jsonable(random.getstate()), "numpy": _jsonable(np.random.get_state()),
                        "framework": adapter.rng_state()}}

    def restore(self, state: dict, adapter) -> None:
        self.epoch, self.history = state["epoch"], state["history"]
        self.schedule.load_state_dict(state["schedule"])
        self.stopper.load_state_dict(state["stopper"])
        python = state["rng"]["python"]
        random.setstate((python[0], tuple(python[1]), python[2]))
        numpy = state["rng"]["numpy"]
        np.random.set_state((numpy[0], np.asarray(numpy[1], dtype=np.uint32), *numpy[2:]))
        adapter.set_rng_state(state["rng"]["framework"])


def train(config: LoopConfig, context: ExecutionContext) -> list[dict]:
    """Train one network; returns its per-epoch metrics."""
    import ray

    data = ray.get(config.data) if isinstance(config.data, ray.ObjectRef) else config.data
    settings = config.settings
    adapter = framework_spec(config.framework).load("adapter")(config, context.rank, context.world_size)
    X_val, y_val = np.asarray(data["X_val"], dtype=np.float32), config.targets(data["y_val"])
    arch = architecture(settings.model_dump(), config.network, X_val.shape[1:], config.n_outputs, config.target_scale)

    _seed_everything(adapter, config.seed)  # the same initial weights on every worker and in every rerun
    adapter.build(arch)
    run = _Run(settings)
    checkpoint = context.latest_checkpoint(_teller(config, context))
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            run.best_weights = adapter.load(Path(directory))
            run.restore(json.loads((Path(directory) / TRAIN_STATE).read_text()), adapter)

    if config.streaming:
        batches = adapter.streamed_batches(context.train_shard())
    else:
        batches = adapter.in_memory_batches(np.asarray(data["X_train"], dtype=np.float32),
                                            config.targets(data["y_train"]))

    for epoch in range(run.epoch + 1, settings.epochs + 1):
        if run.stopper.should_stop:  # restored from a checkpoint written at the stopping epoch
            break
        started = time.perf_counter()
        # Randomness is a function of (seed, epoch, rank): a resumed run replays exactly.
        _seed_everything(adapter, config.seed + SEED_STRIDE * epoch + context.rank)
        lr = run.schedule.lr(epoch)
        train_loss, rows = adapter.train_epoch(batches(epoch), lr)
        train_s = time.perf_counter() - started  # the epoch's training alone, before validation
        # Every worker scores the same full validation set with the same weights, so every worker
        # takes the same early-stopping decision and the report barriers stay in step.
        metrics = {"epoch": epoch, "train_loss": train_loss,
                   **validation_metrics(adapter.predict(X_val), y_val, config.task, config.class_weights),
                   "lr": lr, "train_rows": rows,
                   "epoch_time_s": time.perf_counter() - started,  # training + validation
                   "train_s": train_s,
                   # this process's peak resident memory so far (Linux: KiB): what streaming keeps flat
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        improved = run.stopper.step(metrics["val_loss"], epoch)
        metrics["early_stopped"] = bool(run.stopper.should_stop)  # its own patience ended it here
        if epoch < settings.epochs and not run.stopper.should_stop and _out_of_time(config, context, epoch,
                                                                                   metrics["epoch_time_s"]):
            metrics["stopped_by_time_limit"] = True
        run.schedule.observe(metrics["val_loss"])
        if improved or run.best_weights is None:
            run.best_weights = adapter.weights()
        run.history.append(metrics)
        run.epoch = epoch
        _report(config, context, adapter, run, arch, metrics, improved)
        if run.stopper.should_stop or metrics.get("stopped_by_time_limit"):
            break
    return run.history


def _out_of_time(config: LoopConfig, context, epoch: int, epoch_s: float) -> bool:
    """Whether another epoch would end past the deadline. A worker group's workers ask the progress
    hub, where the first to ask decides for all (their clocks and epochs differ a little, and a
    worker that stopped alone would leave the others waiting for it)."""
    if config.deadline is None:
        return False
    if context.world_size > 1:
        if config.progress is None:  # nothing to agree through: the group runs its epochs
            return False
        import ray

        return ray.get(config.progress.out_of_time.remote(config.name, epoch, time.time() + epoch_s > config.deadline))
    return time.time() + epoch_s > config.deadline


def _report(config: LoopConfig, context, adapter, run: _Run, arch: dict, metrics: dict, improved: bool) -> None:
    if config.progress is not None and context.rank == 0:
        config.progress.push.remote({"stage": config.name, "epoch": metrics["epoch"],
                                     "epochs": config.settings.epochs, "metrics": metrics})
    final = metrics["epoch"] >= config.settings.epochs or run.stopper.should_stop \
        or metrics.get("stopped_by_time_limit", False)
    if not context.wants_checkpoint(improved, final, metrics["epoch"]):
        context.report(metrics, None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        adapter.save(directory, run.best_weights)
        (directory / TRAIN_STATE).write_text(json.dumps(run.state(config.settings, adapter)))
        (directory / ARCH).write_text(json.dumps(arch))
        (directory / HISTORY).write_text(json.dumps(run.history))
        adapter.runtime.write(directory)
        write_manifest(directory)  # last: what a resume checks the files against
        context.report(metrics, directory)


def _teller(config: LoopConfig, context):
    """How a worker tells the user something (rank 0 only): a line on the driver's display, through
    the progress hub, or printed where there is none."""
    def say(text: str) -> None:
        if context.rank != 0:
            return
        if config.progress is not None:
            config.progress.push.remote({"stage": config.name, "note": text})
        else:
            print(f"rayfit: {config.name}: {text}", flush=True)
    return say


def _seed_everything(adapter, seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    adapter.seed(seed)


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_history(checkpoint_dir: Path) -> list[dict]:
    return json.loads((Path(checkpoint_dir) / HISTORY).read_text())

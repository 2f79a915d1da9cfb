"""Train a neural model with Ray Train (a worker group) or in one Ray task, and return it as a FittedModel."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import ray

from rayfit.cluster.resources import check_worker_resources
from rayfit.data.streaming import read_training_split
from rayfit.evaluation.fitted import FittedModel


@dataclass
class TrainingData:
    """What every training loop receives: arrays in the object store and the task's shape."""

    ref: Any  # ObjectRef of {"X_train", "y_train", "X_val", "y_val"}
    task: str
    n_outputs: int  # classes for multi-class; 1 for binary (one logit) and regression
    class_weights: Optional[list[float]]
    seed: int
    train_path: Optional[str] = None  # Parquet of the training split: Ray Train workers stream their shards
    val_ref: Any = None  # with train_path: ObjectRef of {"X_val", "y_val"} only, so workers never get X_train
    train_rows: int = 0  # the training split's size and one row's shape: what a trial's cost is estimated from
    input_shape: tuple = ()

@dataclass
class NeuralResult:
    model: FittedModel
    history: list[dict]  # per-epoch metrics, for the learning curves
    train_time_s: float
    best_epoch: int


def _torch_framework():
    from ray.train.torch import TorchTrainer

    from rayfit.trainers.torch_loop import train_loop_per_worker
    from rayfit.trainers.torch_model import TorchModel

    return TorchTrainer, train_loop_per_worker, TorchModel.from_checkpoint


def _keras_framework():
    from ray.train.tensorflow import TensorflowTrainer

    from rayfit.trainers.keras_loop import keras_train_loop_per_worker
    from rayfit.trainers.keras_model import KerasModel

    return TensorflowTrainer, keras_train_loop_per_worker, KerasModel.from_checkpoint


# framework -> () -> (Ray Train trainer class, loop, checkpoint loader); imported when used.
FRAMEWORKS: dict[str, Callable[[], tuple]] = {"torch": _torch_framework, "keras": _keras_framework}


def loop_config(name: str, model: str, settings: dict, data: TrainingData, mode: str, progress=None,
                threads: int = 1, use_gpu: bool = False) -> dict:
    streaming = mode == "train" and data.train_path is not None
    return {"name": name, "model": model, "settings": settings, "data": data.val_ref if streaming else data.ref,
            "task": data.task,
            "n_outputs": data.n_outputs, "class_weights": data.class_weights, "seed": data.seed, "mode": mode,
            "progress": progress, "threads": threads, "use_gpu": use_gpu, "streaming": streaming}


def fit_neural(framework: str, model: str, settings, data: TrainingData, storage: Path, progress=None) -> NeuralResult:
    """Train one network of `settings` (a NeuralConfig) data-parallel with Ray Train.

    Re-running with the same storage resumes: Ray Train finds the run's latest checkpoint and the
    loop continues from it (after a worker failure, or `rayfit resume`).
    """
    import ray.train

    name = f"{framework}_{model}"
    trainer_cls, loop, load_checkpoint = FRAMEWORKS[framework]()
    use_gpu = check_worker_resources(framework, settings.workers, settings.cpus_per_worker, settings.gpu)
    resources = {"CPU": settings.cpus_per_worker, **({"GPU": settings.gpus_per_worker} if use_gpu else {})}
    datasets = {"train": read_training_split(data.train_path)} if data.train_path else None
    trainer = trainer_cls(
        loop,
        datasets=datasets,
        train_loop_config=loop_config(name, model, settings.model_dump(), data, "train", progress,
                                      threads=int(settings.cpus_per_worker), use_gpu=use_gpu),
        scaling_config=ray.train.ScalingConfig(num_workers=settings.workers, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(Path(storage).resolve()),
            # The latest N checkpoints; each carries the best epoch's weights too.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=settings.keep_checkpoints),
            failure_config=ray.train.FailureConfig(max_failures=settings.max_failures),
        ),
    )
    started = time.perf_counter()
    result = trainer.fit()
    elapsed = time.perf_counter() - started
    if result.error is not None:
        raise result.error
    with result.checkpoint.as_directory() as directory:
        fitted = load_checkpoint(Path(directory), name, data.task, best=settings.restore_best)
        history = json.loads((Path(directory) / "history.json").read_text())
    best_epoch = min(history, key=lambda m: m["val_loss"])["epoch"] if history else 0
    return NeuralResult(model=fitted, history=history, train_time_s=elapsed, best_epoch=best_epoch)


# -- One Ray task instead of a worker group ------------------------------------------------------

# What starting a Ray Train worker group costs on a laptop (BENCHMARKS.md, B3): a data-parallel
# run pays it back only when it saves more than this.
WORKER_GROUP_COST_S = 15.0
# Keras steps cost more than PyTorch's on small networks; the probe times PyTorch's.
STEP_COST_FACTOR = {"torch": 1.0, "keras": 3.0}


@dataclass(frozen=True)
class Launch:
    kind: str  # "ray_train" or "task"
    reason: str


def step_seconds(model: str, settings, data: TrainingData) -> float:
    """Time a few optimisation steps of the network (PyTorch) on one worker's threads: the median
    after a warm-up step."""
    import torch

    from rayfit.trainers.torch_loop import architecture
    from rayfit.trainers.torch_models import build_torch_model

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(settings.cpus_per_worker)))
    try:
        torch.manual_seed(0)
        network = build_torch_model(architecture(settings.model_dump(), model, data.input_shape, data.n_outputs))
        optimizer = torch.optim.SGD(network.parameters(), lr=1e-3)
        x = torch.randn(settings.batch_size, *data.input_shape)
        timings = []
        for _ in range(4):
            started = time.perf_counter()
            optimizer.zero_grad()
            network(x).float().pow(2).mean().backward()
            optimizer.step()
            timings.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return sorted(timings[1:])[1]


def estimate_train_seconds(framework: str, model: str, settings, data: TrainingData) -> float:
    """One step's time scaled to the run: steps per epoch x epochs (an upper bound: early stopping
    may end sooner), Keras steps taken as dearer than PyTorch's."""
    steps = math.ceil(data.train_rows / settings.batch_size) * settings.epochs
    return step_seconds(model, settings, data) * steps * STEP_COST_FACTOR[framework]


def choose_launch(framework: str, model: str, settings, data: TrainingData, use_gpu: bool) -> Launch:
    """The configured launch, or auto's choice with the reason the run states."""
    if settings.launch != "auto":
        return Launch(settings.launch, f"{framework}.launch: {settings.launch}")
    if data.train_path is not None:
        return Launch("ray_train", "the training split streams from Parquet to Ray Train workers")
    if settings.workers == 1:
        return Launch("task", "one worker: no worker group to start")
    if use_gpu:
        return Launch("ray_train", f"{settings.workers} GPU workers")
    seconds = estimate_train_seconds(framework, model, settings, data)
    # At best, n workers cut the training to 1/n: worth a worker group only if that saves its cost.
    saving = seconds * (1 - 1 / settings.workers)
    if saving > WORKER_GROUP_COST_S:
        return Launch("ray_train", f"about {seconds:.0f} s of training alone; {settings.workers} workers "
                                   f"save up to {saving:.0f} s, more than a worker group costs to start")
    return Launch("task", f"about {seconds:.1f} s of training alone; {settings.workers} workers would save "
                          f"at most {saving:.1f} s, less than the ~{WORKER_GROUP_COST_S:.0f} s a worker group "
                          f"takes to start")


def _train_in_task(framework: str, config: dict) -> dict:
    if framework == "torch":
        from rayfit.trainers.torch_loop import train_loop_per_worker as loop
    else:
        from rayfit.trainers.keras_loop import keras_train_loop_per_worker as loop
    started = time.perf_counter()
    history = loop(config)
    return {"history": history, "seconds": time.perf_counter() - started}


@dataclass
class PendingFit:
    """A network training in a Ray task; `result()` waits for it."""

    ref: Any
    name: str
    framework: str
    task: str
    checkpoint_dir: Path
    restore_best: bool

    def result(self) -> NeuralResult:
        from rayfit.trainers.task_checkpoints import latest_checkpoint

        outcome = ray.get(self.ref)
        _, _, load_checkpoint = FRAMEWORKS[self.framework]()
        with latest_checkpoint(self.checkpoint_dir).as_directory() as directory:
            fitted = load_checkpoint(Path(directory), self.name, self.task, best=self.restore_best)
            history = json.loads((Path(directory) / "history.json").read_text())
        best_epoch = min(history, key=lambda m: m["val_loss"])["epoch"] if history else 0
        return NeuralResult(model=fitted, history=history, train_time_s=outcome["seconds"], best_epoch=best_epoch)


def start_in_task(framework: str, model: str, settings, data: TrainingData, storage: Path, use_gpu: bool,
                  progress=None) -> PendingFit:
    """Train one network in one Ray task (one process, no worker group) and return at once.

    The task checkpoints every epoch under storage/<name>; when its worker dies Ray retries it (up
    to max_failures times) and it continues from the latest checkpoint, as does `rayfit resume`.
    """
    name = f"{framework}_{model}"
    config = loop_config(name, model, settings.model_dump(), data, "task", progress,
                         threads=int(settings.cpus_per_worker), use_gpu=use_gpu)
    config["checkpoint_dir"] = str(Path(storage).resolve() / name)
    task = ray.remote(_train_in_task).options(
        num_cpus=settings.cpus_per_worker, num_gpus=settings.gpus_per_worker if use_gpu else 0,
        max_retries=settings.max_failures, name=f"rayfit.train[{name}]")
    return PendingFit(task.remote(framework, config), name, framework, data.task, Path(config["checkpoint_dir"]),
                      settings.restore_best)

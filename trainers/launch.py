"""Launch a Ray Train run for a neural model and return it as a FittedModel."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import ray
import ray.data

from rayfit.cluster.resources import check_worker_resources
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
    # The Parquet file is read into the object store before the workers start: they take every
    # CPU, and Ray Data's read tasks, queued behind them, would wait forever. Each worker then
    # streams only its shard's blocks from the object store (spilled to disk when it is full).
    datasets = {"train": ray.data.read_parquet(data.train_path).materialize()} if data.train_path else None
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

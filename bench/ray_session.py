"""Ray the way rayfit runs it, and what the benchmarks read from a rayfit Ray Train run."""
from __future__ import annotations

import dataclasses
import itertools
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray


def start_ray() -> bool:
    """rayfit's own start-up (environment, runtime env, Train controller settings); True if it started Ray."""
    from rayfit.cluster.session import ensure_ray

    import bench

    # Workers unpickle bench's actor and loops by value, whatever directory they were started in.
    ray.cloudpickle.register_pickle_by_value(bench)
    return ensure_ray().started


@ray.remote(num_cpus=0)
class EpochClock:
    """Stands in for rayfit's progress mailbox: rank 0 pushes one event per epoch, stamped here on
    arrival. The gaps between stamps are epochs of wall time, checkpoint and report included."""

    def __init__(self):
        self.stamps: list[tuple[int, float]] = []

    def push(self, event: dict) -> None:
        self.stamps.append((int(event["epoch"]), time.time()))

    def read(self) -> list[tuple[int, float]]:
        return self.stamps


def gaps(stamps: list[tuple[int, float]]) -> list[float]:
    """Seconds between consecutive epochs' stamps: epoch 2 onwards, the first epoch has no predecessor."""
    ordered = sorted(stamps)
    return [b[1] - a[1] for a, b in itertools.pairwise(ordered)]


def training_data(arrays: dict, seed: int = 0, train_path=None, val_only: bool = False):
    """rayfit's TrainingData for binary classification arrays (X_train, y_train, X_val, y_val).

    Fields the installed rayfit does not have are left out, so the bench runs against older and
    newer versions of the dataclass alike.
    """
    from rayfit.trainers.launch import TrainingData

    X_train = arrays.get("X_train")
    val_ref = ray.put({"X_val": arrays["X_val"], "y_val": arrays["y_val"]}) if val_only else None
    values = {
        "ref": val_ref if val_only else ray.put(arrays), "task": "classification", "n_outputs": 1,
        "class_weights": None, "seed": seed, "train_path": str(train_path) if train_path else None,
        "val_ref": val_ref, "train_rows": int(len(X_train)) if X_train is not None else 0,
        "input_shape": tuple(X_train.shape[1:]) if X_train is not None else tuple(arrays["X_val"].shape[1:]),
    }
    known = {f.name for f in dataclasses.fields(TrainingData)}
    return TrainingData(**{k: v for k, v in values.items() if k in known})


def fit_rayfit(framework: str, model: str, settings, data, storage: Path) -> dict:
    """One `rayfit.trainers.launch.fit_neural` run: its history, its fit time, wall time per epoch."""
    from rayfit.trainers.launch import fit_neural

    clock = EpochClock.remote()
    # Wait until the actor runs: events sent while it starts would be stamped together on arrival.
    ray.get(clock.read.remote())
    started = time.perf_counter()
    result = fit_neural(framework, model, settings, data, storage, progress=clock)
    total = time.perf_counter() - started
    stamps = ray.get(clock.read.remote())
    ray.kill(clock)
    return {"history": result.history, "fit_s": result.train_time_s, "launch_total_s": total,
            "epoch_wall_s": gaps(stamps)}


@contextmanager
def scratch(prefix: str):
    """A temporary directory for a benchmark's data and Ray Train storage, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"rayfit-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def binary_table(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A learnable binary task: a noisy linear rule on standard-normal float32 features."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    w = rng.standard_normal(features).astype(np.float32)
    y = (X @ w + 0.5 * rng.standard_normal(rows, dtype=np.float32) > 0).astype(np.int64)
    return X, y


def trial_training(search_dir: Path) -> tuple[float, int]:
    """The seconds and epochs every trial of a search trained: the epoch_time_s (training and
    validation) of each epoch in its result.json, those carried inside a report included."""
    import json

    seconds, epochs = 0.0, 0
    for results in Path(search_dir).glob("*/result.json"):
        for line in results.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            for epoch in [*(row.get("carried") or []), row]:
                if "epoch_time_s" in epoch:
                    seconds += float(epoch["epoch_time_s"])
                    epochs += 1
    return seconds, epochs

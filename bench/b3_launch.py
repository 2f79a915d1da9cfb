"""B3, fixed cost per training launch: rayfit's trainer launch against a stock TorchTrainer.fit()
of an empty loop, alternating in one Ray session (rayfit's: its Train controller settings apply to
both sides, since Ray Train reads them from the session's environment).

rayfit's side is `fit_neural` of a tiny MLP for one epoch on 256 rows with 2 workers (rayfit's
default), timed end to end: validation, resource check, trainer start, one epoch with its
checkpoint, and loading the model back. The stock side is the same worker group running nothing.
"""
from __future__ import annotations

import os
import time

from bench.harness import alternate, check, finding, median, ratio
from bench.ray_session import binary_table, fit_rayfit, scratch, training_data

TARGET = 1.5
WORKERS = 2


def empty_loop() -> None:
    """The stock side's whole training: nothing."""


def stock_fit(storage) -> float:
    import ray.train
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(empty_loop,
                           scaling_config=ray.train.ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1}),
                           run_config=ray.train.RunConfig(name="empty", storage_path=str(storage)))
    started = time.perf_counter()
    result = trainer.fit()
    elapsed = time.perf_counter() - started
    if result.error is not None:
        raise result.error
    return elapsed


def run(quick: bool) -> dict:
    from rayfit.config import TorchConfig

    repeats = 2 if quick else 4
    X, y = binary_table(320, 8, seed=3)
    data = training_data({"X_train": X[:256], "y_train": y[:256], "X_val": X[256:], "y_val": y[256:]})
    settings = TorchConfig(hidden_sizes=[8], epochs=1, batch_size=32, workers=WORKERS, cpus_per_worker=1, gpu=False)
    with scratch("b3") as work:
        samples = alternate({
            "stock": lambda r: {"launch_s": stock_fit(work / f"stock-{r}")},
            "rayfit": lambda r: fit_rayfit("torch", "mlp", settings, data, work / f"rayfit-{r}"),
        }, repeats, "B3")
    stock_s = median([s["launch_s"] for s in samples["stock"]])
    rayfit_s = median([s["launch_total_s"] for s in samples["rayfit"]])
    figures = {
        "rayfit_launch_s": rayfit_s, "stock_launch_s": stock_s, "workers": WORKERS, "repeats": repeats,
        # trainer.fit() alone inside rayfit's launch; the rest is checks before and loading after
        "rayfit_trainer_fit_s": median([s["fit_s"] for s in samples["rayfit"]]),
        "rayfit_launch_s_each": [s["launch_total_s"] for s in samples["rayfit"]],
        "stock_launch_s_each": [s["launch_s"] for s in samples["stock"]],
        "train_env": {k: os.environ.get(k) for k in ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",
                                                     "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")},
    }
    return finding(figures, [check("rayfit / stock launch", ratio(rayfit_s, stock_s), "<=", TARGET)])

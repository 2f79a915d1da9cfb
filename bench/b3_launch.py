"""B3, fixed cost per training launch: rayfit's trainer launch against a stock TorchTrainer.fit()
of an empty loop, alternating.

rayfit's side is `fit_neural` of a tiny MLP for one epoch on 256 rows with 2 workers (rayfit's
default), timed end to end in the bench's Ray session (rayfit's, with its Train controller settings):
validation, resource check, trainer start, one epoch with its checkpoint, and loading the model back.
The stock side is the same worker group running nothing, in a process of its own with a Ray started
by plain `ray.init()` (bench/stock_launch.py): Ray's own defaults, nothing of rayfit's.
"""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

from bench.harness import alternate, bootstrap_ratio, check, finding, median, ratio
from bench.paths import REPO
from bench.ray_session import binary_table, fit_rayfit, scratch, training_data
from bench.stock_launch import WORKERS

TARGET = 1.5
# rayfit's settings for the Ray Train controller: kept out of the stock process's environment
RAYFIT_ENV = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_ADDRESS")


@contextmanager
def stock_process(storage):
    """bench/stock_launch.py running, after its untimed first fit; yields (fit(storage) -> s, first s)."""
    env = {k: v for k, v in os.environ.items() if k not in RAYFIT_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "bench.stock_launch", str(storage / "warm-up")], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def answer(word: str) -> float:
        line = proc.stdout.readline().split()
        if len(line) != 2 or line[0] != word:
            raise RuntimeError(f"the stock process answered {line!r} (exit {proc.poll()})")
        return float(line[1])

    try:
        first = answer("ready")

        def fit(path) -> float:
            proc.stdin.write(f"fit {path}\n")
            proc.stdin.flush()
            return answer("took")

        yield fit, first
    finally:
        if proc.poll() is None:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(quick: bool) -> dict:
    from rayfit.config import TorchConfig

    repeats = 1 if quick else 6
    X, y = binary_table(320, 8, seed=3)
    data = training_data({"X_train": X[:256], "y_train": y[:256], "X_val": X[256:], "y_val": y[256:]})
    settings = TorchConfig(hidden_sizes=[8], epochs=1, batch_size=32, workers=WORKERS, cpus_per_worker=1, gpu=False)
    with scratch("b3") as work, stock_process(work) as (stock_fit, stock_first_s):
        samples = alternate({
            "stock": lambda r: {"launch_s": stock_fit(work / f"stock-{r}")},
            "rayfit": lambda r: fit_rayfit("torch", "mlp", settings, data, work / f"rayfit-{r}"),
        }, repeats, "B3")
    stock_s = median([s["launch_s"] for s in samples["stock"]])
    rayfit_s = median([s["launch_total_s"] for s in samples["rayfit"]])
    interval = bootstrap_ratio([s["launch_total_s"] for s in samples["rayfit"]], [s["launch_s"] for s in samples["stock"]])
    figures = {
        "rayfit_launch_s": rayfit_s, "stock_launch_s": stock_s, "workers": WORKERS, "repeats": repeats,
        "stock_first_launch_s": stock_first_s,  # its session's first fit, untimed: worker processes start
        # trainer.fit() alone inside rayfit's launch; the rest is checks before and loading after
        "rayfit_trainer_fit_s": median([s["fit_s"] for s in samples["rayfit"]]),
        "rayfit_launch_s_each": [s["launch_total_s"] for s in samples["rayfit"]],
        "stock_launch_s_each": [s["launch_s"] for s in samples["stock"]],
        # rayfit's side's Train settings; the stock process runs without them
        "rayfit_train_env": {k: os.environ.get(k) for k in RAYFIT_ENV[:2]},
    }
    return finding(figures, [check("rayfit / stock launch", ratio(rayfit_s, stock_s), "<=", TARGET, interval=interval)])

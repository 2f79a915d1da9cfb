"""B8, per-trial overhead of a search: many trials of the quickstart MLP at 1 epoch each, a pure
overhead test, through rayfit's `run_search` against stock Ray Tune running the same trainable.

Each side's overhead per trial is the trial slots' time not spent training:
(wall x trials at once - the trials' own training seconds) / trials, where a trial's training
seconds are the epoch_time_s (training and validation) it reported. The stock side runs in a process
of its own joined to the bench's Ray session, so none of rayfit's Tune settings (its environment
variables, callbacks, reuse of actors) reach it: a plain `Tuner(trainable, tune_config=...)` with
Ray's defaults, once as it comes and once with `reuse_actors=True`. The ratio is rayfit's overhead
per trial over stock Tune's best.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.harness import alternate, bootstrap_ratio, check, finding, median, ratio
from bench.paths import REPO
from bench.ray_session import scratch, trial_training

TARGET = 0.25  # rayfit's overhead per trial over stock Tune's (reuse_actors=True)
TARGET_S = 0.25  # and at most this many seconds a trial
RAYFIT_TUNE_ENV = ("TUNE_GLOBAL_CHECKPOINT_S", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS")
SPACE = {"lr": {"loguniform": [1e-4, 1e-1]}, "dropout": {"uniform": [0.0, 0.5]}}


def _quickstart():
    from rayfit.config import DataConfig, TorchConfig, TuneSettings
    from rayfit.data import prepare

    from bench.ray_session import training_data

    prepared = prepare(DataConfig(source="synthetic"), seed=0)
    data = training_data({"X_train": prepared.X_train, "y_train": prepared.y_train,
                          "X_val": prepared.X_val, "y_val": prepared.y_val})
    return data, TorchConfig(hidden_sizes=[64, 32], patience=1), TuneSettings


def _rayfit_side(trials: int, storage) -> dict:
    from rayfit.tuning.search import run_search, search_name

    data, base, TuneSettings = _quickstart()
    settings = TuneSettings(num_samples=trials, max_t=1, grace_period=1, scheduler="fifo", space=SPACE)
    result = run_search(settings, base, data, storage)
    return {"wall_s": result.wall_time_s, "trained_s": trial_training(storage / search_name(settings))[0],
            # the plan reads "2 trials at once, each 1 CPU"
            "concurrent": int(result.plan.split(" ")[0]), "plan": result.plan, "trials": len(result.trials)}


def _stock_side(trials: int, storage, reuse: bool) -> dict:
    import ray

    address = ray.get_runtime_context().gcs_address
    # rayfit's Tune settings, set in this process by its searches, stay out of the stock side
    env = {k: v for k, v in os.environ.items() if k not in RAYFIT_TUNE_ENV}
    done = subprocess.run([sys.executable, "-m", "bench.b8_trial_overhead", address, str(trials), str(storage),
                           "reuse" if reuse else "fresh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("B8 ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"stock Tune side failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix("B8 "))


def _overhead(side: dict) -> float:
    return (side["wall_s"] * side["concurrent"] - side["trained_s"]) / side["trials"]


def run(quick: bool) -> dict:
    trials = 8 if quick else 256
    repeats = 1 if quick else 2  # the two sides compared alternate; stock Tune's fresh actors, the slow one, run once
    with scratch("b8") as work:
        samples = alternate({
            "stock_reuse": lambda r: _stock_side(trials, work / f"stock-reuse-{r}", reuse=True),
            "rayfit": lambda r: _rayfit_side(trials, work / f"rayfit-{r}"),
        }, repeats, "B8")
        samples.update(alternate({"stock": lambda r: _stock_side(trials, work / f"stock-{r}", reuse=False)}, 1, "B8"))
    figures = {"trials": trials, "repeats": repeats}
    for side, runs in samples.items():
        figures[f"{side}_wall_s"] = median([s["wall_s"] for s in runs])
        figures[f"{side}_wall_s_per_trial"] = median([s["wall_s"] / s["trials"] for s in runs])
        figures[f"{side}_overhead_s_per_trial"] = median([_overhead(s) for s in runs])
        figures[f"{side}_trained_s"] = median([s["trained_s"] for s in runs])
        figures[f"{side}_concurrent"] = runs[-1]["concurrent"]
        figures[f"{side}_overhead_s_per_trial_each"] = [_overhead(s) for s in runs]
    head = ratio(figures["rayfit_overhead_s_per_trial"], figures["stock_reuse_overhead_s_per_trial"])
    interval = bootstrap_ratio(figures["rayfit_overhead_s_per_trial_each"],
                               figures["stock_reuse_overhead_s_per_trial_each"])
    return finding(figures, [
        check("rayfit / stock Tune (reuse_actors) overhead per trial", head, "<=", TARGET, interval=interval),
        check("rayfit's overhead per trial", figures["rayfit_overhead_s_per_trial"], "<=", TARGET_S, " s"),
    ])


def _stock(address: str, trials: int, storage: str, reuse: bool) -> None:
    """The stock side, in its own process: Ray Tune as it comes, on rayfit's trainable."""
    import time

    import ray
    from ray import tune

    import rayfit  # noqa: F401  (tf-keras before anything imports TensorFlow)
    from rayfit.tuning.space import to_param_space
    from rayfit.trainers.contexts import train_trial
    from rayfit.trainers.launch import make_loop_config

    ray.init(address=address)
    data, base, TuneSettings = _quickstart()
    config = make_loop_config("tune", "torch", "mlp", base.model_copy(update={"epochs": 1}), data, threads=1,
                              stage="stock")
    trainable = tune.with_resources(tune.with_parameters(train_trial, base={"config": config}), {"cpu": 1})
    tuner = tune.Tuner(trainable, param_space=to_param_space(TuneSettings(space=SPACE).space),
                       tune_config=tune.TuneConfig(num_samples=trials, metric="val_loss", mode="min", reuse_actors=reuse),
                       run_config=tune.RunConfig(name="stock", storage_path=storage, verbose=0))
    started = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - started
    # each trial's one epoch, from its last result (the logger files are Tune's choice here)
    trained = sum(float(result.metrics.get("epoch_time_s", 0.0)) for result in grid)
    print("B8 " + json.dumps({"wall_s": wall, "trained_s": trained, "concurrent": int(ray.cluster_resources()["CPU"]),
                              "trials": len(grid)}), flush=True)


if __name__ == "__main__":
    _stock(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "reuse")

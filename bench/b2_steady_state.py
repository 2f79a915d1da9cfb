"""B2, steady-state training overhead: seconds per epoch of rayfit's Ray Train run with 1 worker
against the same loop without Ray, for PyTorch (TorchTrainer) and Keras (TensorflowTrainer).

Same network (an MLP big enough for an epoch to take seconds), same data, batch size, optimizer and
threads (a worker of 2 CPUs runs 2 threads; the plain process is given 2). rayfit's side is timed
by the wall time between consecutive epochs (rank 0's per-epoch progress event, stamped on arrival),
so its per-epoch checkpoint and report count; the first epoch is left out on both sides.
"""
from __future__ import annotations

import numpy as np

from bench.harness import alternate, bootstrap_ratio, check, finding, median, ratio, say, steady
from bench.plain_loops import run_plain
from bench.ray_session import binary_table, fit_rayfit, scratch, training_data

TARGET = 1.05
THREADS = 2


def _sizes(quick: bool) -> dict:
    if quick:
        return {"rows": 4_000, "val_rows": 1_000, "features": 100, "hidden": [128, 128], "batch": 256,
                "epochs": 3, "repeats": 1}
    # 10 timed epochs (the first is warm-up) by 3 alternating repeats per side
    return {"rows": 60_000, "val_rows": 6_000, "features": 100, "hidden": [512, 512], "batch": 256,
            "epochs": 11, "repeats": 3}


def _compare(framework: str, sizes: dict, arrays: dict, data_path, work) -> dict:
    from rayfit.config import KerasConfig, TorchConfig

    config_cls = TorchConfig if framework == "torch" else KerasConfig
    epochs = sizes["epochs"]
    settings = config_cls(hidden_sizes=sizes["hidden"], batch_size=sizes["batch"], epochs=epochs,
                          workers=1, cpus_per_worker=THREADS, gpu=False, patience=epochs + 1)
    data = training_data(arrays)

    def ray_side(repeat: int) -> dict:
        run = fit_rayfit(framework, "mlp", settings, data, work / f"{framework}-{repeat}")
        compute = [row["epoch_time_s"] for row in run["history"] if "epoch_time_s" in row]
        # the gaps between rank 0's epoch events: the first epoch is already left out
        return {"epoch_s": median(run["epoch_wall_s"]), "epochs_s": list(run["epoch_wall_s"]),
                "compute_epoch_s": median(steady(compute)), "fit_s": run["fit_s"]}

    def plain_side(repeat: int) -> dict:
        times = steady(run_plain(framework, data_path, settings.model_dump(), epochs, THREADS)["epoch_s"])
        return {"epoch_s": median(times), "epochs_s": times}

    samples = alternate({"plain": plain_side, "ray": ray_side}, sizes["repeats"], f"B2 {framework}")
    # the median epoch over every timed epoch of every repeat, per side
    plain_s = median([t for s in samples["plain"] for t in s["epochs_s"]])
    ray_s = median([t for s in samples["ray"] for t in s["epochs_s"]])
    interval = bootstrap_ratio([s["epochs_s"] for s in samples["ray"]], [s["epochs_s"] for s in samples["plain"]])
    compute_s = median([s["compute_epoch_s"] for s in samples["ray"]])
    return {
        f"{framework}_plain_s_per_epoch": plain_s,
        f"{framework}_ray_s_per_epoch": ray_s,
        # rayfit's own epoch_time_s (training + validation, without checkpoint and report); torch only
        f"{framework}_ray_compute_s_per_epoch": compute_s,
        f"{framework}_ray_fit_s": median([s["fit_s"] for s in samples["ray"]]),
        f"{framework}_ratio": ratio(ray_s, plain_s),
        f"{framework}_ratio_interval": list(interval) if interval else None,
        f"{framework}_ray_s_per_epoch_each": [s["epochs_s"] for s in samples["ray"]],
        f"{framework}_plain_s_per_epoch_each": [s["epochs_s"] for s in samples["plain"]],
    }


def run(quick: bool) -> dict:
    sizes = _sizes(quick)
    X, y = binary_table(sizes["rows"] + sizes["val_rows"], sizes["features"], seed=2)
    split = sizes["rows"]
    arrays = {"X_train": X[:split], "y_train": y[:split], "X_val": X[split:], "y_val": y[split:]}
    figures = {"rows": sizes["rows"], "features": sizes["features"], "hidden": sizes["hidden"],
               "batch_size": sizes["batch"], "epochs": sizes["epochs"], "threads": THREADS,
               "repeats": sizes["repeats"], "workers": 1}
    with scratch("b2") as work:
        data_path = work / "arrays.npz"
        np.savez(data_path, **arrays)
        for framework in ("torch", "keras"):
            say(f"B2 {framework}: {sizes['rows']} rows x {sizes['features']}, MLP {sizes['hidden']}, "
                f"batch {sizes['batch']}, {sizes['epochs']} epochs")
            figures.update(_compare(framework, sizes, arrays, data_path, work))
    return finding(figures, [check(f"{fw}: Ray Train / plain s per epoch", figures[f"{fw}_ratio"], "<=", TARGET,
                                   interval=figures[f"{fw}_ratio_interval"]) for fw in ("torch", "keras")])

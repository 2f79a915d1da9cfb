"""B2, steady-state training overhead: seconds per epoch of rayfit's Ray Train run with 1 worker
against the same loop without Ray, for PyTorch (TorchTrainer) and Keras (TensorflowTrainer).

Same network (an MLP big enough for an epoch to take seconds), same data, batch size, optimizer and
threads (a worker of 2 CPUs runs 2 threads; the plain process is given 2). rayfit's side is timed
by the wall time between consecutive epochs (rank 0's per-epoch progress event, stamped on arrival),
so its per-epoch checkpoint and report count; the first epoch is left out on both sides.
"""
from __future__ import annotations

import numpy as np

from bench.harness import alternate, check, finding, median, ratio, say, steady
from bench.plain_loops import run_plain
from bench.ray_session import binary_table, fit_rayfit, scratch, training_data

TARGET = 1.05
THREADS = 2


def _sizes(quick: bool) -> dict:
    if quick:
        return {"rows": 4_000, "val_rows": 1_000, "features": 100, "hidden": [128, 128], "batch": 256,
                "epochs": 3, "repeats": 1}
    return {"rows": 60_000, "val_rows": 6_000, "features": 100, "hidden": [512, 512], "batch": 256,
            "epochs": 4, "repeats": 2}


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
        return {"epoch_s": median(run["epoch_wall_s"]), "compute_epoch_s": median(steady(compute)),
                "fit_s": run["fit_s"]}

    def plain_side(repeat: int) -> dict:
        times = run_plain(framework, data_path, settings.model_dump(), epochs, THREADS)["epoch_s"]
        return {"epoch_s": median(steady(times))}

    samples = alternate({"plain": plain_side, "ray": ray_side}, sizes["repeats"], f"B2 {framework}")
    plain_s = median([s["epoch_s"] for s in samples["plain"]])
    ray_s = median([s["epoch_s"] for s in samples["ray"]])
    compute_s = median([s["compute_epoch_s"] for s in samples["ray"]])
    return {
        f"{framework}_plain_s_per_epoch": plain_s,
        f"{framework}_ray_s_per_epoch": ray_s,
        # rayfit's own epoch_time_s (training + validation, without checkpoint and report); torch only
        f"{framework}_ray_compute_s_per_epoch": compute_s,
        f"{framework}_ray_fit_s": median([s["fit_s"] for s in samples["ray"]]),
        f"{framework}_ratio": ratio(ray_s, plain_s),
        f"{framework}_ray_s_per_epoch_each": [s["epoch_s"] for s in samples["ray"]],
        f"{framework}_plain_s_per_epoch_each": [s["epoch_s"] for s in samples["plain"]],
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
    return finding(figures, [check("torch: Ray Train / plain s per epoch", figures["torch_ratio"], "<=", TARGET),
                             check("keras: Ray Train / plain s per epoch", figures["keras_ratio"], "<=", TARGET)])

"""B5, data-parallel scaling: rayfit's PyTorch CNN trained by 2 workers against 1, each worker one
CPU and one thread (rayfit sets a worker's threads from its CPUs), on 2 cores; and 1 worker with 2
threads for comparison.

The batch size is per worker (rayfit's convention), so 2 workers take half the steps of 1 per
epoch. Throughput is training rows per second of wall time between consecutive epochs (rank 0's
progress events): per-epoch validation (every worker scores the whole validation split), the
gradient all-reduce, the checkpoint and the report all count. rayfit's own epoch_time_s (training
and validation, before the checkpoint) gives a second throughput figure.
"""
from __future__ import annotations

import numpy as np

from bench import ddp_breakdown
from bench.harness import alternate, bootstrap_ratio, check, finding, median, ratio, steady
from bench.ray_session import fit_rayfit, scratch, training_data

TARGET = 1.7
LAYOUTS = {"1w1t": (1, 1), "2w1t": (2, 1), "1w2t": (1, 2)}  # name -> (workers, CPUs = threads per worker)


def _images(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 one-channel images; the label says whether the upper half is brighter than the lower."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 28, 28, 1), dtype=np.float32)
    y = (x[:, :14].mean(axis=(1, 2, 3)) > x[:, 14:].mean(axis=(1, 2, 3))).astype(np.int64)
    return x, y


def run(quick: bool) -> dict:
    from rayfit.config import TorchConfig

    sizes = {"rows": 1_024, "val_rows": 128, "epochs": 3, "repeats": 1} if quick else \
            {"rows": 8_192, "val_rows": 512, "epochs": 4, "repeats": 2}
    x, y = _images(sizes["rows"] + sizes["val_rows"], seed=5)
    split = sizes["rows"]
    data = training_data({"X_train": x[:split], "y_train": y[:split], "X_val": x[split:], "y_val": y[split:]})

    def layout(name: str, work):
        workers, cpus = LAYOUTS[name]
        settings = TorchConfig(model="cnn", cnn={"channels": [32, 64], "kernel_size": 3}, hidden_sizes=[64],
                               batch_size=64, epochs=sizes["epochs"], workers=workers, cpus_per_worker=cpus,
                               gpu=False, patience=sizes["epochs"] + 1)

        def side(repeat: int) -> dict:
            run = fit_rayfit("torch", "cnn", settings, data, work / f"{name}-{repeat}")
            compute = steady([row["epoch_time_s"] for row in run["history"] if "epoch_time_s" in row])
            return {"rows_per_s": sizes["rows"] / median(run["epoch_wall_s"]),
                    "epoch_rows_per_s": [sizes["rows"] / wall for wall in run["epoch_wall_s"]],
                    "compute_rows_per_s": sizes["rows"] / median(compute) if compute else None}

        return side

    with scratch("b5") as work:
        samples = alternate({name: layout(name, work) for name in LAYOUTS}, sizes["repeats"], "B5")
    # Where the time goes, outside Ray (bench/ddp_breakdown.py): the machine's ceiling for two
    # independent workers, DDP's all-reduce, and DDP's settings.
    steps = 20 if quick else 60
    breakdown = alternate({name: (lambda mode, n: lambda repeat: ddp_breakdown.measure(mode, n, steps=steps))(*spec)
                           for name, spec in ddp_breakdown.SIDES.items()}, 1 if quick else 3, "B5 breakdown")
    figures = {**sizes, "model": "cnn 32-64, dense 64", "batch_size_per_worker": 64}
    for name in LAYOUTS:
        figures[f"{name}_rows_per_s"] = median([s["rows_per_s"] for s in samples[name]])
        figures[f"{name}_compute_rows_per_s"] = median([s["compute_rows_per_s"] for s in samples[name]])
        figures[f"{name}_rows_per_s_each"] = [s["rows_per_s"] for s in samples[name]]
    figures["speedup_2w_over_1w"] = ratio(figures["2w1t_rows_per_s"], figures["1w1t_rows_per_s"])
    figures["speedup_1w2t_over_1w"] = ratio(figures["1w2t_rows_per_s"], figures["1w1t_rows_per_s"])
    figures["compute_speedup_2w_over_1w"] = ratio(figures["2w1t_compute_rows_per_s"], figures["1w1t_compute_rows_per_s"])
    solo = median([m["rows_per_s"] for m in breakdown["solo"]])
    for name, measured in breakdown.items():
        figures[f"outside_ray_{name}_rows_per_s"] = median([m["rows_per_s"] for m in measured])
        figures[f"outside_ray_{name}_over_solo"] = ratio(figures[f"outside_ray_{name}_rows_per_s"], solo)
        for part in ("data", "forward_backward", "optimizer"):
            figures[f"outside_ray_{name}_{part}_ms_per_step"] = median([m[f"{part}_ms_per_step"] for m in measured])
    interval = bootstrap_ratio([s["epoch_rows_per_s"] for s in samples["2w1t"]],
                               [s["epoch_rows_per_s"] for s in samples["1w1t"]])
    return finding(figures, [check("2 workers / 1 worker throughput", figures["speedup_2w_over_1w"], ">=", TARGET,
                                   interval=interval)])

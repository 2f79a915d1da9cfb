"""B6, growth: training throughput and peak memory per worker as the data grows from 10k to 100k
to 1M rows of 100 features, on rayfit's streaming path.

Each size is written as Parquet by `rayfit.data.streaming.write_split` and trained by `fit_neural`
with `train_path` set, as `rayfit run` does for a Parquet source: Ray Data reads the file into the
object store and each of the 2 workers (1 CPU each, rayfit's default) iterates its own shard. The
validation split is the same 2,000 rows at every size. Seconds per row are rank 0's epoch_time_s
of the last epoch over the rows of the training split. Peak memory per worker is read from outside
the workers (bench/worker_memory.py: the kernel's peak resident set, VmHWM, of each Ray Train
worker process, and the largest unique set size sampled), since rayfit's loop reports none.
"""
from __future__ import annotations

from bench.harness import alternate, check, finding, median, ratio, say
from bench.ray_session import binary_table, fit_rayfit, scratch, training_data
from bench.worker_memory import PeakWorkerMemory

SECONDS_PER_ROW_TARGET = 1.2  # at the largest size, at most this many times the middle size's
MEMORY_TARGET = 1.5
VAL_ROWS = 2_000
FEATURES = 100


def run(quick: bool) -> dict:
    from rayfit.config import TorchConfig
    from rayfit.data.streaming import write_split

    sizes = [1_000, 5_000, 20_000] if quick else [10_000, 100_000, 1_000_000]
    epochs = 2
    repeats = 1 if quick else 2
    settings = TorchConfig(batch_size=256, epochs=epochs, workers=2, cpus_per_worker=1, gpu=False,
                           patience=epochs + 1)
    X_val, y_val = binary_table(VAL_ROWS, FEATURES, seed=60)
    with scratch("b6") as work:
        paths = {}
        for rows in sizes:
            say(f"B6: writing {rows:,} rows x {FEATURES} as Parquet")
            X, y = binary_table(rows, FEATURES, seed=6)
            paths[rows] = write_split(X, y, work / f"train-{rows}.parquet")
            del X, y

        def size(rows: int):
            def side(repeat: int) -> dict:
                data = training_data({"X_val": X_val, "y_val": y_val}, train_path=paths[rows], val_only=True)
                with PeakWorkerMemory() as memory:
                    run = fit_rayfit("torch", "mlp", settings, data, work / f"run-{rows}-{repeat}")
                last = run["history"][-1]
                return {"s_per_row": last["epoch_time_s"] / rows, "rows_per_s": rows / last["epoch_time_s"],
                        "rank0_rows": last.get("train_rows"), "loop_peak_rss_mb": last.get("peak_rss_mb"),
                        **memory.summary()}
            return side

        samples = alternate({f"{rows}": size(rows) for rows in sizes}, repeats, "B6")
    small, middle, large = (str(n) for n in sizes)
    figures = {"sizes": sizes, "features": FEATURES, "epochs": epochs, "repeats": repeats, "workers": 2,
               "batch_size": 256, "memory_source": "VmHWM of each RayTrainWorker process (bench/worker_memory.py)"}
    for name, runs in samples.items():
        figures[f"{name}_s_per_row"] = median([s["s_per_row"] for s in runs])
        figures[f"{name}_rows_per_s"] = median([s["rows_per_s"] for s in runs])
        figures[f"{name}_peak_rss_mb_per_worker"] = median([s["peak_rss_mb"] for s in runs])
        figures[f"{name}_peak_uss_mb_per_worker"] = median([s["peak_uss_mb"] for s in runs])
        figures[f"{name}_workers_seen"] = runs[-1]["workers_seen"]
        if runs[-1]["loop_peak_rss_mb"] is not None:  # if rayfit's loop reports its own peak
            figures[f"{name}_loop_peak_rss_mb"] = median([s["loop_peak_rss_mb"] for s in runs])
    time_ratio = ratio(figures[f"{large}_s_per_row"], figures[f"{middle}_s_per_row"])
    memory_ratio = ratio(figures[f"{large}_peak_rss_mb_per_worker"], figures[f"{middle}_peak_rss_mb_per_worker"])
    figures.update(s_per_row_ratio=time_ratio, peak_memory_ratio=memory_ratio,
                   s_per_row_ratio_small_to_middle=ratio(figures[f"{middle}_s_per_row"], figures[f"{small}_s_per_row"]))
    return finding(figures, [
        check(f"s per row: {large} / {middle} rows", time_ratio, "<=", SECONDS_PER_ROW_TARGET),
        check(f"peak memory per worker: {large} / {middle} rows", memory_ratio, "<=", MEMORY_TARGET),
    ])

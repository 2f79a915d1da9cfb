"""B6, growth, end to end: `rayfit run` on 100k, 1M and 5M rows of 100 columns (Parquet), prepared
on the cluster (`data.prepare_on: cluster`), the driver under a memory limit smaller than the table.

Each size is generated here, chunk by chunk, as one Parquet file of 100 float32 columns and a
binary target. Each run joins a one-node local Ray cluster of 2 CPUs (`rayfit cluster up`'s
LocalCluster, up for the whole benchmark), so the driver process is the driver alone: Ray Data's
tasks and the Ray Train workers run in the cluster's processes. The driver runs in a memory cgroup
whose limit is below the table's size in memory; it must complete there.

Measured per size:
- seconds per training row: each epoch's own training time (`train_s`, validation left out: the
  validation sample is a fixed cost that does not grow with the data), over the rows rank 0 read;
  the first epoch is left out (warm-up);
- peak memory of the driver (its own VmHWM, written as it exits: bench/driver_peak.py) and of each
  Ray Train worker (VmHWM sampled from outside: bench/worker_memory.py);
- the preparation's time (the data stage) and the run's wall time.

Targets: seconds per row at the largest size at most 1.1x those at the smallest, with a bootstrap
interval over the epochs; driver and worker peak memory at the largest at most 1.5x the smallest;
the largest run completes under the driver's memory limit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from bench.harness import bootstrap_ratio, check, finding, median, ratio, say
from bench.paths import BENCH, REPO
from bench.ray_session import scratch
from bench.worker_memory import PeakWorkerMemory

SECONDS_PER_ROW_TARGET = 1.1  # at the largest size, at most this many times the smallest's
MEMORY_TARGET = 1.5
FEATURES = 100
CHUNK_ROWS = 250_000
DRIVER_LIMIT_MB = 1280  # the driver's memory cgroup: less than the 5M-row table (1.9 GiB as float32); a driver peaks near 0.6 GiB
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")


def write_table(path: Path, rows: int, seed: int = 6) -> int:
    """`rows` of a learnable binary task as Parquet, written a chunk at a time (never whole in memory).
    Returns the table's size in memory as float32, in bytes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    w = rng.standard_normal(FEATURES).astype(np.float32)
    names = [f"f{i}" for i in range(FEATURES)]
    writer = None
    try:
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            X = rng.standard_normal((n, FEATURES), dtype=np.float32)
            y = (X @ w + 0.5 * rng.standard_normal(n, dtype=np.float32) > 0).astype(np.int8)
            table = pa.table({**{name: X[:, j] for j, name in enumerate(names)}, "y": y})
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=65_536)
    finally:
        if writer is not None:
            writer.close()
    return rows * (FEATURES * 4 + 1)


class MemoryLimit:
    """A memory cgroup (v1) for the driver process: it is killed if it needs more than `mb`."""

    def __init__(self, mb: int):
        self.mb = mb
        self.path = CGROUP_ROOT / f"rayfit-bench-b6-{os.getpid()}"
        self.why_not: Optional[str] = None
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / "memory.limit_in_bytes").write_text(str(mb * 2**20))
        except OSError as exc:
            self.why_not = f"no memory cgroup here ({exc.strerror or exc})"

    def enter(self) -> None:
        """In the child, before exec: join the cgroup."""
        if self.why_not is None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def killed_for_memory(self) -> bool:
        try:
            return int((self.path / "memory.failcnt").read_text()) > 0 and "oom_kill 1" in \
                (self.path / "memory.oom_control").read_text()
        except OSError:
            return False

    def close(self) -> None:
        if self.why_not is None:
            try:
                self.path.rmdir()
            except OSError:
                pass


def _run(source: Path, out: Path, address: str, env: dict, epochs: int, driver_rows: int,
         limit: MemoryLimit) -> dict:
    peak_file = out.with_suffix(".driver_peak")
    command = [sys.executable, str(BENCH / "driver_peak.py"), str(peak_file),
               "run", "--data", str(source), "--target", "y", "--out", str(out), "--address", address,
               "--set", "data.prepare_on=cluster", "--set", f"data.driver_rows={driver_rows}",
               "--set", "baselines.models=[dummy,linear]", "--set", "keras.enabled=false",
               "--set", "tune.enabled=false", "--set", "evaluation.cv=none", "--set", "report.importance_repeats=1",
               "--set", f"torch.epochs={epochs}", "--set", f"torch.patience={epochs}", "--set", "torch.workers=2",
               "--set", "torch.launch=ray_train", "--set", "torch.batch_size=1024"]
    started = time.perf_counter()
    with PeakWorkerMemory(anywhere=True) as workers:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=3600,
                              preexec_fn=limit.enter, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        cause = " (killed by the driver's memory limit)" if limit.killed_for_memory() else ""
        raise RuntimeError(f"rayfit run on {source.name} failed, exit {done.returncode}{cause}:\n{done.stderr[-3000:]}")
    state = json.loads((out / "run_state.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    history = state["stages"]["torch_mlp"]["history"]
    timed = history[1:] or history
    return {"wall_s": wall, "data_s": metrics["timings_s"].get("data"),
            "s_per_row_each": [e["train_s"] / e["train_rows"] for e in timed],
            "rank0_rows": timed[-1]["train_rows"], "val_s": median([e["epoch_time_s"] - e["train_s"] for e in timed]),
            "driver_peak_mb": float(peak_file.read_text()) / 1024, "test_accuracy": metrics["models"]["torch_mlp"]["test"]["accuracy"],
            **workers.summary()}


def run(quick: bool) -> dict:
    from rayfit.cluster.local import LocalCluster

    sizes = [5_000, 20_000] if quick else [100_000, 1_000_000, 5_000_000]
    driver_rows = 2_000 if quick else 50_000  # rayfit's default
    epochs = 2 if quick else 3
    with scratch("b6") as work:
        limit = MemoryLimit(DRIVER_LIMIT_MB)
        cluster = LocalCluster.up(work / "cluster", cpus=[2])
        try:
            env = {**os.environ, **cluster.env()}
            results = {}
            for rows in sizes:
                say(f"B6: writing {rows:,} rows x {FEATURES} as Parquet")
                source = work / f"table-{rows}.parquet"
                table_bytes = write_table(source, rows)
                say(f"B6: rayfit run on {rows:,} rows ({source.stat().st_size / 2**20:,.0f} MiB Parquet, "
                    f"{table_bytes / 2**20:,.0f} MiB in memory), driver limited to {DRIVER_LIMIT_MB} MiB")
                results[rows] = {**_run(source, work / f"run-{rows}", cluster.address, env, epochs, driver_rows, limit),
                                 "table_mb": table_bytes / 2**20}
                say(f"B6: {rows:,} rows took {results[rows]['wall_s']:.0f} s (data {results[rows]['data_s']:.0f} s)")
                source.unlink()
        finally:
            cluster.down()
            limit.close()
    small, large = sizes[0], sizes[-1]
    figures: dict = {"sizes": sizes, "features": FEATURES, "epochs": epochs, "repeats": 1, "workers": 2,
                     "batch_size": 1024, "driver_rows": driver_rows, "driver_limit_mb": DRIVER_LIMIT_MB,
                     "driver_limit": limit.why_not or f"memory cgroup of {DRIVER_LIMIT_MB} MiB",
                     "memory_source": "driver: its own VmHWM at exit; workers: VmHWM of each RayTrainWorker"}
    for rows, result in results.items():
        for key in ("wall_s", "data_s", "rank0_rows", "val_s", "driver_peak_mb", "peak_rss_mb", "peak_uss_mb",
                    "peak_anon_mb", "peak_shmem_mb", "workers_seen", "table_mb", "test_accuracy"):
            figures[f"{rows}_{key}"] = result.get(key)
        figures[f"{rows}_s_per_row"] = median(result["s_per_row_each"])
        figures[f"{rows}_rows_per_s"] = 1 / figures[f"{rows}_s_per_row"]
        figures[f"{rows}_s_per_row_each"] = result["s_per_row_each"]
    interval = bootstrap_ratio([results[large]["s_per_row_each"]], [results[small]["s_per_row_each"]])
    time_ratio = ratio(figures[f"{large}_s_per_row"], figures[f"{small}_s_per_row"])
    driver_ratio = ratio(figures[f"{large}_driver_peak_mb"], figures[f"{small}_driver_peak_mb"])
    worker_ratio = ratio(figures[f"{large}_peak_anon_mb"], figures[f"{small}_peak_anon_mb"])
    figures["worker_resident_ratio"] = ratio(figures[f"{large}_peak_rss_mb"], figures[f"{small}_peak_rss_mb"])
    figures.update(s_per_row_ratio=time_ratio, s_per_row_interval=interval, driver_memory_ratio=driver_ratio,
                   peak_memory_ratio=worker_ratio,
                   larger_than_driver=results[large]["table_mb"] > DRIVER_LIMIT_MB and limit.why_not is None)
    return finding(figures, [
        check(f"s per training row: {large:,} / {small:,} rows", time_ratio, "<=", SECONDS_PER_ROW_TARGET,
              interval=interval),
        check(f"driver peak memory: {large:,} / {small:,} rows", driver_ratio, "<=", MEMORY_TARGET),
        check(f"peak private memory per worker: {large:,} / {small:,} rows", worker_ratio, "<=", MEMORY_TARGET),
        check(f"{large:,} rows ({results[large]['table_mb']:,.0f} MiB) completed with the driver limited to "
              f"{DRIVER_LIMIT_MB} MiB (1: yes)", 1.0 if figures["larger_than_driver"] else 0.0, ">=", 1.0),
    ])

"""B1, laptop overhead: `rayfit run bench/configs/b1.yaml` against bench/plain_script.py.

Both do the seed example's work on the quickstart data (three scikit-learn baselines, a PyTorch
and a Keras MLP 64-32 with dropout 0.3 for 50 epochs at batch 32, five test metrics, a comparison
plot). Each side is timed from process start to exit, so interpreter start-up and imports count on
both sides, and rayfit's Ray start-up, Ray Train launches, checkpoints and report count on its side.

Three sides alternate: the plain script; rayfit cold (`ray.address: local`, its own Ray started and
stopped in the run, as on a laptop); rayfit warm, joining a Ray already running on this machine
(`--address`, a one-node `rayfit cluster up` of 2 CPUs, up for the whole benchmark).
"""
from __future__ import annotations

import json
import subprocess
import sys
import os
import time
from pathlib import Path
from typing import Optional

from bench.harness import alternate, bootstrap_ratio, check, finding, median, ratio
from bench.paths import BENCH, REPO
from bench.plain_script import METRICS
from bench.ray_session import scratch
from bench.tables import rayfit_command

CONFIG = BENCH / "configs" / "b1.yaml"
TARGET = 1.5  # rayfit's cold wall time at most this many times the plain script's
WARM_TARGET = 1.0  # joining a running Ray: no slower than the script


def _timed(command: list[str], what: str, env: Optional[dict] = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200, check=False, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def _test_scores(metrics_path: Path, nested: bool) -> dict:
    models = json.loads(metrics_path.read_text())["models"]
    return {name: {m: (entry["test"] if nested else entry).get(m) for m in METRICS} for name, entry in models.items()}


def run(quick: bool) -> dict:
    from rayfit.cluster.local import LocalCluster

    epochs, repeats = (3, 1) if quick else (50, 5)
    with scratch("b1") as work:
        cluster = LocalCluster.up(work / "cluster", cpus=[2])  # the warm side's running Ray
        try:
            def rayfit_side(address: str, env: Optional[dict]):
                def side(repeat: int) -> dict:
                    out = work / f"rayfit-{address.replace(':', '_')}-{repeat}"
                    command = [*rayfit_command(), "run", str(CONFIG), "--out", str(out), "--address", address,
                               "--set", f"torch.epochs={epochs}", "--set", f"keras.epochs={epochs}",
                               "--set", f"torch.patience={epochs}", "--set", f"keras.patience={epochs}"]
                    seconds = _timed(command, f"rayfit run --address {address}", env)
                    models = json.loads((out / "metrics.json").read_text())["models"]
                    return {"wall_s": seconds, "scores": _test_scores(out / "metrics.json", nested=True),
                            "train_time_s": {name: entry["train_time_s"] for name, entry in models.items()},
                            # networks: "ray_train" (a worker group) or "task" (one Ray task), as rayfit chose
                            "launch": {name: entry["launch"] for name, entry in models.items() if entry.get("launch")}}
                return side

            def plain_side(repeat: int) -> dict:
                out = work / f"plain-{repeat}"
                command = [sys.executable, str(BENCH / "plain_script.py"), "--out", str(out), "--epochs", str(epochs)]
                seconds = _timed(command, "plain script")
                return {"wall_s": seconds, "scores": _test_scores(out / "metrics.json", nested=False),
                        "stage_times_s": json.loads((out / "metrics.json").read_text())["stage_times_s"]}

            samples = alternate({"plain": plain_side, "rayfit": rayfit_side("local", None),
                                 "rayfit_warm": rayfit_side(cluster.address, {**os.environ, **cluster.env()})},
                                repeats, "B1")
        finally:
            cluster.down()
    walls = {side: [s["wall_s"] for s in samples[side]] for side in samples}
    rayfit_s, warm_s, plain_s = median(walls["rayfit"]), median(walls["rayfit_warm"]), median(walls["plain"])
    cold = bootstrap_ratio(walls["rayfit"], walls["plain"])
    warm = bootstrap_ratio(walls["rayfit_warm"], walls["plain"])
    figures = {
        "rayfit_wall_s": rayfit_s, "rayfit_warm_wall_s": warm_s, "plain_wall_s": plain_s, "repeats": repeats,
        "epochs": epochs, "warm_ratio": ratio(warm_s, plain_s),
        "rayfit_wall_s_each": walls["rayfit"], "rayfit_warm_wall_s_each": walls["rayfit_warm"],
        "plain_wall_s_each": walls["plain"],
        "rayfit_train_time_s": samples["rayfit"][-1]["train_time_s"],
        "rayfit_launch": samples["rayfit"][-1]["launch"],
        "plain_stage_times_s": samples["plain"][-1]["stage_times_s"],
        # The same work should give comparable models: test accuracy of each side's last run.
        "test_accuracy": {"rayfit": {n: s["accuracy"] for n, s in samples["rayfit"][-1]["scores"].items()},
                          "plain": {n: s["accuracy"] for n, s in samples["plain"][-1]["scores"].items()}},
    }
    return finding(figures, [check("rayfit cold / plain wall time", ratio(rayfit_s, plain_s), "<=", TARGET, interval=cold),
                             check("rayfit warm (a running Ray) / plain wall time", figures["warm_ratio"], "<=",
                                   WARM_TARGET, interval=warm)])

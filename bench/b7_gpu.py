"""B7, GPU (only with one): rayfit's Ray Train run with 1 GPU worker against the plain PyTorch loop
on the same GPU, the GPU's utilization during the Ray Train run, and the mixed-precision speed-up
(rayfit's autocast + GradScaler against float32, both through Ray Train).

Without a usable CUDA GPU nothing is measured: the entry says why, with no figures.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np

from bench.harness import Sampler, alternate, check, finding, median, ratio, skipped, steady
from bench.machine import gpus
from bench.plain_loops import run_plain
from bench.ray_session import binary_table, fit_rayfit, scratch, training_data

TARGET = 1.05  # Ray Train's seconds per epoch at most this many times the plain loop's, as in B2


def unavailable() -> str | None:
    """Why B7 cannot run here, or None."""
    if not gpus():
        return "no NVIDIA GPU on this machine (nvidia-smi lists none)"
    import torch

    if not torch.cuda.is_available():
        return f"an NVIDIA GPU is present but this PyTorch ({torch.__version__}) cannot use it (a CPU build?)"
    import ray

    if ray.cluster_resources().get("GPU", 0) < 1:
        return "the Ray session sees no GPU"
    return None


class GpuUtilization(Sampler):
    """nvidia-smi's utilization.gpu (percent of time a kernel ran), sampled every half second."""

    def __init__(self):
        super().__init__(0.5)
        self.samples: list[float] = []

    def sample(self) -> None:
        out = subprocess.run([shutil.which("nvidia-smi") or "nvidia-smi", "--query-gpu=utilization.gpu",
                              "--format=csv,noheader,nounits", "--id=0"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            self.samples.append(float(out.stdout.split()[0]))


def run(quick: bool) -> dict:
    reason = unavailable()
    if reason:
        return skipped(reason, f"<= {TARGET:g}")
    from rayfit.config import TorchConfig

    sizes = {"rows": 20_000, "hidden": [256, 256], "batch": 512, "epochs": 3, "repeats": 1} if quick else \
            {"rows": 500_000, "hidden": [2048, 2048], "batch": 1024, "epochs": 4, "repeats": 2}
    X, y = binary_table(sizes["rows"] + 10_000, 256, seed=7)
    split = sizes["rows"]
    arrays = {"X_train": X[:split], "y_train": y[:split], "X_val": X[split:], "y_val": y[split:]}
    data = training_data(arrays)

    def settings(amp: bool) -> TorchConfig:
        return TorchConfig(hidden_sizes=sizes["hidden"], batch_size=sizes["batch"], epochs=sizes["epochs"],
                           workers=1, cpus_per_worker=1, gpu=True, gpus_per_worker=1, mixed_precision=amp,
                           patience=sizes["epochs"] + 1)

    with scratch("b7") as work:
        data_path = work / "arrays.npz"
        np.savez(data_path, **arrays)

        def ray_side(amp: bool):
            def side(repeat: int) -> dict:
                with GpuUtilization() as utilization:
                    run = fit_rayfit("torch", "mlp", settings(amp), data, work / f"ray-{amp}-{repeat}")
                return {"epoch_s": median(run["epoch_wall_s"]), "gpu_util": median(utilization.samples)}
            return side

        def plain_side(repeat: int) -> dict:
            times = run_plain("torch", data_path, settings(False).model_dump(), sizes["epochs"], 1, device="cuda")
            return {"epoch_s": median(steady(times["epoch_s"]))}

        samples = alternate({"plain": plain_side, "ray_fp32": ray_side(False), "ray_amp": ray_side(True)},
                            sizes["repeats"], "B7")
    plain_s = median([s["epoch_s"] for s in samples["plain"]])
    fp32_s = median([s["epoch_s"] for s in samples["ray_fp32"]])
    amp_s = median([s["epoch_s"] for s in samples["ray_amp"]])
    figures = {**sizes, "plain_s_per_epoch": plain_s, "ray_s_per_epoch": fp32_s, "ray_amp_s_per_epoch": amp_s,
               "ray_rows_per_s": sizes["rows"] / fp32_s, "plain_rows_per_s": sizes["rows"] / plain_s,
               "gpu_utilization_pct": median([s["gpu_util"] for s in samples["ray_fp32"]]),
               "gpu_utilization_amp_pct": median([s["gpu_util"] for s in samples["ray_amp"]]),
               "mixed_precision_speedup": ratio(fp32_s, amp_s), "gpus": gpus()}
    return finding(figures, [check("Ray Train / plain s per epoch (GPU)", ratio(fp32_s, plain_s), "<=", TARGET)])

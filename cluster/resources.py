"""Check that a request fits the cluster before launching it: Ray waits forever on one that does not."""
from __future__ import annotations

from typing import Union

import ray

from rayfit.errors import UserError


def cluster_totals() -> tuple[float, float]:
    resources = ray.cluster_resources()
    return float(resources.get("CPU", 0)), float(resources.get("GPU", 0))


def check_worker_resources(key: str, workers: int, cpus_per_worker: float, gpu: Union[str, bool]) -> bool:
    """Validate a Ray Train worker group; returns whether it uses GPUs."""
    cpus, gpus = cluster_totals()
    if gpu is True and gpus < 1:
        raise UserError(f"{key}.gpu: true, but the Ray cluster has no GPU (set {key}.gpu: auto or false)")
    use_gpu = gpus >= 1 if gpu == "auto" else bool(gpu)
    if use_gpu and workers > gpus:
        raise UserError(f"{key}.workers: {workers} GPU workers requested, the cluster has {gpus:g} GPUs")
    needed = workers * cpus_per_worker
    if needed > cpus:
        raise UserError(
            f"{key}.workers: {workers} workers x {cpus_per_worker:g} CPUs = {needed:g} CPUs, "
            f"the Ray cluster has {cpus:g} (lower {key}.workers or {key}.cpus_per_worker)")
    return use_gpu


def check_trial_resources(cpus_per_trial: float, gpus_per_trial: float = 0) -> bool:
    """Validate one Tune trial's request (fractions pack several on a device); returns whether it uses GPUs."""
    cpus, gpus = cluster_totals()
    if cpus_per_trial > cpus:
        raise UserError(f"tune.cpus_per_trial: {cpus_per_trial:g} CPUs per trial, the Ray cluster has {cpus:g}")
    if gpus_per_trial > 0 and gpus == 0:
        raise UserError(f"tune.gpus_per_trial: {gpus_per_trial:g}, but the Ray cluster has no GPU "
                        "(set tune.gpus_per_trial: 0)")
    if gpus_per_trial > gpus:
        raise UserError(f"tune.gpus_per_trial: {gpus_per_trial:g} GPUs per trial, the Ray cluster has {gpus:g}")
    return gpus_per_trial > 0

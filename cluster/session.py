"""Start or join Ray once per process, with the settings every rayfit stage relies on."""
from __future__ import annotations

import os
from typing import Optional

import ray

from rayfit.errors import UserError

# Environment every Ray worker needs. TF_USE_LEGACY_KERAS: Keras 3 fails under
# MultiWorkerMirroredStrategy (keras-team/keras#20585, ray-project/ray#47464); tf-keras works.
WORKER_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}

# Ray Train V2's controller polls its workers every 2 s by default, and a worker's per-epoch report
# waits for the next poll. Measured here (BENCHMARKS.md): 50 short epochs with a checkpoint each took
# 68 s polling every 1 s and 28 s every 0.25 s; the launch itself 10.3 s at 0.25 s, 12.3 s at 1 s.
# These are read by the controller.
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def ensure_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, dashboard: bool = False) -> bool:
    """Initialise Ray unless this process already has a session. Returns True if it started one."""
    for key, value in {**WORKER_ENV, **TRAIN_ENV}.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        return False
    kwargs = dict(runtime_env={"env_vars": WORKER_ENV}, log_to_driver=True, configure_logging=True)
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=num_cpus, include_dashboard=dashboard)
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise UserError(f"ray.address: cannot connect to Ray at {address!r}: {exc}") from None
    return True

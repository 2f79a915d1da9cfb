"""Trial schedulers: name -> builder(TuneSettings)."""
from __future__ import annotations

from typing import Callable

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

SCHEDULERS: dict[str, Callable] = {
    "asha": lambda s: ASHAScheduler(time_attr="training_iteration", max_t=s.max_t,
                                    grace_period=s.grace_period, reduction_factor=s.reduction_factor),
    "fifo": lambda s: FIFOScheduler(),
}

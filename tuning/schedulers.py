"""Trial schedulers: name -> builder(TuneSettings). Early stopping (asha, hyperband, median) or
evolution from checkpoints (pbt, pb2)."""
from __future__ import annotations

from typing import Callable

from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
)

from rayfit.errors import UserError
from rayfit.tuning.space import to_bounds, to_mutations

EPOCH = "training_iteration"  # a trial reports once per epoch


def _pb2(s):
    try:
        from ray.tune.schedulers.pb2 import PB2

        import GPy  # noqa: F401  (PB2's Gaussian process; reported here rather than mid-search)
    except ImportError:
        raise UserError("tune.scheduler: pb2 needs the GPy package (pip install GPy); or use pbt") from None
    return PB2(time_attr=EPOCH, perturbation_interval=s.perturbation_interval, quantile_fraction=s.quantile_fraction,
               hyperparam_bounds=to_bounds(s.space))


SCHEDULERS: dict[str, Callable] = {
    "fifo": lambda s: FIFOScheduler(),
    "asha": lambda s: ASHAScheduler(time_attr=EPOCH, max_t=s.max_t, grace_period=s.grace_period,
                                    reduction_factor=s.reduction_factor),
    "hyperband": lambda s: HyperBandScheduler(time_attr=EPOCH, max_t=s.max_t, reduction_factor=s.reduction_factor),
    "median": lambda s: MedianStoppingRule(time_attr=EPOCH, grace_period=s.grace_period, min_samples_required=3),
    # A bottom trial clones a top trial's checkpoint saved at the top trial's own last perturbation
    # point: with trials out of step, some perturbation points exploit nothing.
    "pbt": lambda s: PopulationBasedTraining(time_attr=EPOCH, perturbation_interval=s.perturbation_interval,
                                             quantile_fraction=s.quantile_fraction,
                                             hyperparam_mutations=to_mutations(s.space)),
    "pb2": _pb2,
}

# Schedulers that restart trials from other trials' checkpoints: trials must checkpoint every epoch.
EXPLOITING = {"pbt", "pb2"}

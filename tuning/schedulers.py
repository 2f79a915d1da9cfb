"""Trial schedulers: the registry, name -> builder(TuneSettings). Early stopping (asha, hyperband,
median) or evolution from checkpoints (pbt, pb2). Ray is imported when a scheduler is built, so the
config can validate names from here."""
from __future__ import annotations

from typing import Callable

from rayfit.errors import UserError

EPOCH = "training_iteration"  # a trial reports once per epoch


def _fifo(s):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha(s):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr=EPOCH, max_t=s.max_t, grace_period=s.grace_period,
                         reduction_factor=s.reduction_factor)


def _hyperband(s):
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(time_attr=EPOCH, max_t=s.max_t, reduction_factor=s.reduction_factor)


def _median(s):
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr=EPOCH, grace_period=s.grace_period, min_samples_required=3)


def _pbt(s):
    # A bottom trial clones a top trial's checkpoint saved at the top trial's own last perturbation
    # point: with trials out of step, some perturbation points exploit nothing.
    from ray.tune.schedulers import PopulationBasedTraining

    from rayfit.tuning.space import to_mutations

    return PopulationBasedTraining(time_attr=EPOCH, perturbation_interval=s.perturbation_interval,
                                   quantile_fraction=s.quantile_fraction, hyperparam_mutations=to_mutations(s.space))


def _pb2(s):
    try:
        from ray.tune.schedulers.pb2 import PB2

        import GPy  # noqa: F401  (PB2's Gaussian process; reported here rather than mid-search)
    except ImportError:
        raise UserError("tune.scheduler: pb2 needs the GPy package (pip install GPy); or use pbt") from None
    from rayfit.tuning.space import to_bounds

    return PB2(time_attr=EPOCH, perturbation_interval=s.perturbation_interval, quantile_fraction=s.quantile_fraction,
               hyperparam_bounds=to_bounds(s.space))


SCHEDULERS: dict[str, Callable] = {
    "fifo": _fifo, "asha": _asha, "hyperband": _hyperband, "median": _median, "pbt": _pbt, "pb2": _pb2,
}

# Schedulers that restart trials from other trials' checkpoints: trials must checkpoint every epoch.
EXPLOITING = ("pbt", "pb2")

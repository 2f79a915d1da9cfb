"""Trial schedulers: the registry, name -> builder(TuneSettings). Early stopping (asha, hyperband,
median) or evolution from checkpoints (pbt, pb2). Ray is imported when a scheduler is built, so the
config can validate names from here."""
from __future__ import annotations

from typing import Callable, Optional

from rayfit.errors import UserError

# What the schedulers count. A trial reports to Tune only at its scheduler's decision points
# (trainers/contexts.py), so the stopping schedulers count epochs, not reports. PBT and PB2 get a
# report every epoch and keep Tune's own count, which an exploited trial restarts from its donor's.
EPOCH = "epoch"
REPORTS = "training_iteration"


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

    return PopulationBasedTraining(time_attr=REPORTS, perturbation_interval=s.perturbation_interval,
                                   quantile_fraction=s.quantile_fraction, hyperparam_mutations=to_mutations(s.space))


def _pb2(s):
    try:
        from ray.tune.schedulers.pb2 import PB2

        import GPy  # noqa: F401  (PB2's Gaussian process; reported here rather than mid-search)
    except ImportError:
        raise UserError("tune.scheduler: pb2 needs the GPy package (pip install GPy); or use pbt") from None
    from rayfit.tuning.space import to_bounds

    return PB2(time_attr=REPORTS, perturbation_interval=s.perturbation_interval, quantile_fraction=s.quantile_fraction,
               hyperparam_bounds=to_bounds(s.space))


SCHEDULERS: dict[str, Callable] = {
    "fifo": _fifo, "asha": _asha, "hyperband": _hyperband, "median": _median, "pbt": _pbt, "pb2": _pb2,
}

# Schedulers that restart trials from other trials' checkpoints: trials must checkpoint every epoch.
EXPLOITING = ("pbt", "pb2")


def decision_epochs(s) -> Optional[frozenset[int]]:
    """The epochs at which the scheduler decides anything about a trial, where a trial reports to
    Tune (and at its last epoch); None: every epoch. FIFO decides nothing; ASHA only at its rungs,
    grace_period x reduction_factor^k below max_t (as Ray's ASHA builds them, one bracket)."""
    if s.scheduler == "fifo":
        return frozenset()
    if s.scheduler == "asha":
        rungs, epoch = set(), s.grace_period
        while epoch < s.max_t:
            rungs.add(int(epoch))
            epoch *= s.reduction_factor
        return frozenset(rungs)
    return None

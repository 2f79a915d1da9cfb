"""Search algorithms: the registry, name -> builder(TuneSettings, seed). Model-based ones (optuna,
hyperopt, bohb) are limited to max_concurrent_trials so they learn from finished trials before
proposing more. Ray is imported when a searcher is built, so the config can validate names from here."""
from __future__ import annotations

from typing import Callable

from rayfit.errors import UserError


def _needs(package: str, searcher: str):
    raise UserError(f"tune.searcher: {searcher} needs the {package} package (pip install {package}); "
                    f"or use random, grid or optuna")


def _optuna(s, seed):
    from optuna.samplers import TPESampler
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(sampler=TPESampler(seed=seed))


def _hyperopt(s, seed):
    try:
        from ray.tune.search.hyperopt import HyperOptSearch

        import hyperopt  # noqa: F401
    except ImportError:
        _needs("hyperopt", "hyperopt")
    return HyperOptSearch(random_state_seed=seed)


def _bohb(s, seed):
    try:
        from ray.tune.search.bohb import TuneBOHB

        import ConfigSpace  # noqa: F401
        import hpbandster  # noqa: F401
    except ImportError:
        _needs("hpbandster ConfigSpace", "bohb")
    return TuneBOHB(seed=seed)


def _variants(s, seed):
    # Random and grid trials are limited only when asked: resources already bound them, and PBT
    # needs its whole population alive to exploit within it. Tune expands grid dimensions itself.
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


SEARCHERS: dict[str, Callable] = {
    "random": _variants,
    "grid": _variants,
    "optuna": _optuna,
    "hyperopt": _hyperopt,
    "bohb": _bohb,
}
MODEL_BASED = ("optuna", "hyperopt", "bohb")


def build_searcher(settings, seed: int, concurrent: int):
    """The searcher with its concurrency limit, `concurrent` trials at once (the resource plan's,
    cluster/plan.py). Tune ignores TuneConfig's max_concurrent_trials for a variant generator, so
    the limit lives with the searcher.
    """
    from ray.tune.search import ConcurrencyLimiter

    searcher = SEARCHERS[settings.searcher](settings, seed)
    if settings.searcher in MODEL_BASED:
        return ConcurrencyLimiter(searcher, max_concurrent=concurrent)
    searcher.max_concurrent = concurrent  # BasicVariantGenerator's own limit
    return searcher


def scheduler_for(settings):
    """BOHB comes with its own scheduler (HyperBandForBOHB); every other searcher takes the configured one."""
    from rayfit.tuning.schedulers import SCHEDULERS

    if settings.searcher == "bohb":
        from ray.tune.schedulers import HyperBandForBOHB

        return HyperBandForBOHB(time_attr="training_iteration", max_t=settings.max_t,
                                reduction_factor=settings.reduction_factor)
    return SCHEDULERS[settings.scheduler](settings)

"""The YAML search-space syntax -> Ray Tune domains (and PBT's mutation spec)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ray import tune

if TYPE_CHECKING:
    from rayfit.config import SearchDim

# kind -> (dimension -> Tune domain)
DOMAINS = {
    "uniform": lambda d: tune.uniform(*d.uniform),
    "loguniform": lambda d: tune.loguniform(*d.loguniform),
    "quniform": lambda d: tune.quniform(*d.quniform),
    "randint": lambda d: tune.randint(*d.randint),
    "choice": lambda d: tune.choice(d.choice),
    "grid": lambda d: tune.grid_search(d.grid),
}


def to_param_space(space: dict[str, SearchDim]) -> dict:
    return {name: DOMAINS[dim.kind](dim) for name, dim in space.items()}


def to_mutations(space: dict[str, SearchDim]) -> dict:
    """PBT's hyperparam_mutations: a domain to resample from, or the list of values to step through."""
    return {name: (list(dim.choice or dim.grid) if dim.kind in ("choice", "grid") else DOMAINS[dim.kind](dim))
            for name, dim in space.items()}


def to_bounds(space: dict[str, SearchDim]) -> dict:
    """PB2's hyperparam_bounds: [low, high] of each continuous dimension."""
    return {name: list(getattr(dim, dim.kind)[:2]) for name, dim in space.items()}

"""The YAML search-space syntax -> Ray Tune domains."""
from __future__ import annotations

from ray import tune

from rayfit.config import SearchDim

# kind -> (dimension -> Tune domain)
DOMAINS = {
    "uniform": lambda d: tune.uniform(*d.uniform),
    "loguniform": lambda d: tune.loguniform(*d.loguniform),
    "randint": lambda d: tune.randint(*d.randint),
    "choice": lambda d: tune.choice(d.choice),
}


def to_param_space(space: dict[str, SearchDim]) -> dict:
    return {name: DOMAINS[dim.kind](dim) for name, dim in space.items()}

"""PyTorch networks: name -> builder. A builder says what the network is; the loop owns training."""
from __future__ import annotations

from typing import Callable

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def mlp(in_features: int, out_features: int, hidden_sizes: list[int], activation: str = "relu", dropout: float = 0.0) -> nn.Module:
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


TORCH_MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp}


def build_torch_model(arch: dict) -> nn.Module:
    """arch: {"model", "in_features", "out_features", and the builder's own settings}."""
    arch = dict(arch)
    return TORCH_MODELS[arch.pop("model")](**arch)

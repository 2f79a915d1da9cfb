"""PyTorch networks: name -> builder. A builder says what the network is; the loop owns training.

Every builder takes (input_shape, n_outputs, settings) where input_shape is one example's shape:
(F,) tabular, (H, W, C) image, (T, F) sequence; settings are the framework's NeuralConfig fields.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def _norm(kind: str, width: int, dims: int = 1) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm1d(width) if dims == 1 else nn.BatchNorm2d(width)]
    if kind == "layer":
        return [nn.LayerNorm(width)] if dims == 1 else [nn.GroupNorm(1, width)]
    return []


def dense_stack(width: int, n_outputs: int, settings: dict) -> nn.Sequential:
    """Hidden layers (linear -> norm -> activation -> dropout) and the output layer."""
    layers: list[nn.Module] = []
    for size in settings["hidden_sizes"]:
        layers += [nn.Linear(width, size), *_norm(settings["norm"], size), ACTIVATIONS[settings["activation"]]()]
        if settings["dropout"] > 0:
            layers.append(nn.Dropout(settings["dropout"]))
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def mlp(input_shape, n_outputs, settings) -> nn.Module:
    return nn.Sequential(nn.Flatten(), dense_stack(math.prod(input_shape), n_outputs, settings))


class CNN(nn.Module):
    """Conv blocks (conv -> norm -> activation -> max-pool while the map is > 1 px), then a dense head."""

    def __init__(self, input_shape, n_outputs, settings):
        super().__init__()
        height, width, channels = input_shape
        cnn = settings["cnn"]
        blocks: list[nn.Module] = []
        for filters in cnn["channels"]:
            blocks += [nn.Conv2d(channels, filters, cnn["kernel_size"], padding="same"),
                       *_norm(settings["norm"], filters, dims=2), ACTIVATIONS[settings["activation"]]()]
            if min(height, width) >= 2:
                blocks.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            channels = filters
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), dense_stack(channels * height * width, n_outputs, settings))

    def forward(self, x):  # x: (N, H, W, C), channels last like the data
        return self.head(self.features(x.permute(0, 3, 1, 2)))


class RNN(nn.Module):
    """An LSTM / GRU over the sequence; the last step's state feeds a dense head."""

    def __init__(self, input_shape, n_outputs, settings):
        super().__init__()
        _, features = input_shape
        rnn = settings["rnn"]
        cell = nn.LSTM if rnn["cell"] == "lstm" else nn.GRU
        self.rnn = cell(features, rnn["hidden_size"], num_layers=rnn["layers"], batch_first=True,
                        bidirectional=rnn["bidirectional"], dropout=settings["dropout"] if rnn["layers"] > 1 else 0.0)
        self.head = dense_stack(rnn["hidden_size"] * (2 if rnn["bidirectional"] else 1), n_outputs, settings)

    def forward(self, x):  # x: (N, T, F)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class Transformer(nn.Module):
    """A small encoder. Sequences: one token per time step; tabular rows: one token per feature."""

    def __init__(self, input_shape, n_outputs, settings):
        super().__init__()
        spec = settings["transformer"]
        self.tabular = len(input_shape) == 1
        tokens, features = (input_shape[0], 1) if self.tabular else input_shape
        self.embed = nn.Linear(features, spec["d_model"])
        # A learned position (or, for tabular, feature identity) embedding per token.
        self.position = nn.Parameter(torch.zeros(1, tokens, spec["d_model"]))
        layer = nn.TransformerEncoderLayer(spec["d_model"], spec["heads"], spec["ff_dim"], settings["dropout"],
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, spec["layers"], enable_nested_tensor=False)
        self.norm = nn.LayerNorm(spec["d_model"])
        self.head = dense_stack(spec["d_model"], n_outputs, settings)

    def forward(self, x):
        if self.tabular:
            x = x.unsqueeze(-1)  # (N, F) -> (N, F tokens, 1)
        h = self.encoder(self.embed(x) + self.position)
        return self.head(self.norm(h.mean(dim=1)))


TORCH_MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": CNN, "rnn": RNN, "transformer": Transformer}


def build_torch_model(arch: dict) -> nn.Module:
    """arch: {"model", "input_shape", "n_outputs", "settings"}, as saved in every checkpoint."""
    return TORCH_MODELS[arch["model"]](tuple(arch["input_shape"]), arch["n_outputs"], arch["settings"])

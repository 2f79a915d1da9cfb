"""Keras networks: name -> builder. TensorFlow is imported inside, only where a builder runs."""
from __future__ import annotations

from typing import Callable


def mlp(in_features: int, out_features: int, hidden_sizes: list[int], activation: str = "relu", dropout: float = 0.0):
    from tensorflow import keras  # tf-keras, through TF_USE_LEGACY_KERAS=1 (see rayfit/__init__.py)

    inputs = keras.Input(shape=(in_features,))
    x = inputs
    for size in hidden_sizes:
        x = keras.layers.Dense(size, activation=activation)(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(out_features)(x)  # logits / values; the loss applies softmax
    return keras.Model(inputs, outputs)


KERAS_MODELS: dict[str, Callable] = {"mlp": mlp}


def build_keras_model(arch: dict):
    arch = dict(arch)
    return KERAS_MODELS[arch.pop("model")](**arch)

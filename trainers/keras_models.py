"""Keras networks: name -> builder(input_shape, n_outputs, settings), like torch_models.py.

TensorFlow is imported inside the builders, only where one runs (tf-keras, through
TF_USE_LEGACY_KERAS=1: see rayfit/__init__.py).
"""
from __future__ import annotations

from typing import Callable


def _regularizer(keras, settings):
    return keras.regularizers.l1(settings["l1"]) if settings["l1"] > 0 else None


def _norm(keras, kind: str):
    if kind == "batch":
        return [keras.layers.BatchNormalization()]
    if kind == "layer":
        return [keras.layers.LayerNormalization()]
    return []


def _dense_stack(keras, x, n_outputs: int, settings):
    for size in settings["hidden_sizes"]:
        x = keras.layers.Dense(size, kernel_regularizer=_regularizer(keras, settings))(x)
        for layer in _norm(keras, settings["norm"]):
            x = layer(x)
        x = keras.layers.Activation(settings["activation"])(x)
        if settings["dropout"] > 0:
            x = keras.layers.Dropout(settings["dropout"])(x)
    # Logits / values, kept in float32 under a mixed-precision policy for a stable loss.
    return keras.layers.Dense(n_outputs, dtype="float32")(x)


def mlp(input_shape, n_outputs, settings):
    from tensorflow import keras

    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    return keras.Model(inputs, _dense_stack(keras, x, n_outputs, settings))


def cnn(input_shape, n_outputs, settings):
    """Conv blocks (conv -> norm -> activation -> 2x2 max-pool while the map is > 1 px), dense head."""
    from tensorflow import keras

    height, width, _ = input_shape
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for filters in settings["cnn"]["channels"]:
        x = keras.layers.Conv2D(filters, settings["cnn"]["kernel_size"], padding="same",
                                kernel_regularizer=_regularizer(keras, settings))(x)
        for layer in _norm(keras, settings["norm"]):
            x = layer(x)
        x = keras.layers.Activation(settings["activation"])(x)
        if min(height, width) >= 2:
            x = keras.layers.MaxPooling2D(2)(x)
            height, width = height // 2, width // 2
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, _dense_stack(keras, x, n_outputs, settings))


KERAS_MODELS: dict[str, Callable] = {"mlp": mlp, "cnn": cnn}


def build_keras_model(arch: dict):
    return KERAS_MODELS[arch["model"]](tuple(arch["input_shape"]), arch["n_outputs"], arch["settings"])

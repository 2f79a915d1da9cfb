"""Keras networks: name -> builder(input_shape, n_outputs, settings), like torch_models.py.

tf-keras (legacy Keras 2), through TF_USE_LEGACY_KERAS=1 set by rayfit/__init__.py before this
import. TensorFlow is imported here, at the top, so that importing this module registers its custom
layer: a saved network that holds one loads once this module is imported (trainers/keras_model.py).
The L1 penalty is no layer regularizer: the training loop adds it to the loss, as PyTorch's does.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf
from tensorflow import keras


@keras.utils.register_keras_serializable(package="rayfit")
class PositionEmbedding(keras.layers.Layer):
    """A learned embedding per token, (1, tokens, width), initialised to zeros and added to the input."""

    def build(self, input_shape):
        self.position = self.add_weight(name="position", shape=(1, input_shape[1], input_shape[2]),
                                        initializer="zeros", trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        return inputs + tf.cast(self.position, inputs.dtype)

    def get_config(self):
        return super().get_config()  # no arguments of its own: the weight's shape comes from the input


def _norm(keras, kind: str):
    if kind == "batch":
        return [keras.layers.BatchNormalization()]
    if kind == "layer":
        return [keras.layers.LayerNormalization()]
    return []


def _dense_stack(keras, x, n_outputs: int, settings):
    for size in settings["hidden_sizes"]:
        x = keras.layers.Dense(size)(x)
        for layer in _norm(keras, settings["norm"]):
            x = layer(x)
        x = keras.layers.Activation(settings["activation"])(x)
        if settings["dropout"] > 0:
            x = keras.layers.Dropout(settings["dropout"])(x)
    # Logits / values, kept in float32 under a mixed-precision policy for a stable loss.
    return keras.layers.Dense(n_outputs, dtype="float32")(x)


def mlp(input_shape, n_outputs, settings):
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    return keras.Model(inputs, _dense_stack(keras, x, n_outputs, settings))


def cnn(input_shape, n_outputs, settings):
    """Conv blocks (conv -> norm -> activation -> 2x2 max-pool while the map is > 1 px), dense head."""
    height, width, _ = input_shape
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for filters in settings["cnn"]["channels"]:
        x = keras.layers.Conv2D(filters, settings["cnn"]["kernel_size"], padding="same")(x)
        for layer in _norm(keras, settings["norm"]):
            x = layer(x)
        x = keras.layers.Activation(settings["activation"])(x)
        if min(height, width) >= 2:
            x = keras.layers.MaxPooling2D(2)(x)
            height, width = height // 2, width // 2
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, _dense_stack(keras, x, n_outputs, settings))


def rnn(input_shape, n_outputs, settings):
    """Stacked LSTM / GRU layers over the sequence (N, T, F); the last step's output feeds a dense head.

    As torch's nn.LSTM / nn.GRU: dropout between stacked layers only, and a bidirectional network's
    last step is [forward at T-1, backward at T-1] (Keras' own final backward state, at step 0, is not).
    """
    spec = settings["rnn"]
    cell = keras.layers.LSTM if spec["cell"] == "lstm" else keras.layers.GRU  # GRU: reset_after, as torch
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for i in range(spec["layers"]):
        last = i == spec["layers"] - 1
        layer = cell(spec["hidden_size"], return_sequences=not last or spec["bidirectional"])
        x = keras.layers.Bidirectional(layer)(x) if spec["bidirectional"] else layer(x)
        if not last and settings["dropout"] > 0:
            x = keras.layers.Dropout(settings["dropout"])(x)
    if spec["bidirectional"]:
        x = x[:, -1]  # every step's outputs aligned in time: take the last one
    return keras.Model(inputs, _dense_stack(keras, x, n_outputs, settings))


def transformer(input_shape, n_outputs, settings):
    """A small pre-norm encoder, as torch_models.Transformer. Sequences (T, F): one token per time step;
    tabular rows (F,): one token of width 1 per feature."""
    spec, rate = settings["transformer"], settings["dropout"]
    d_model = spec["d_model"]
    eps = 1e-5  # torch's LayerNorm epsilon (Keras' default is 1e-3)
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Reshape((input_shape[0], 1))(inputs) if len(input_shape) == 1 else inputs
    x = keras.layers.Dense(d_model)(x)
    # A learned position (or, for tabular, feature identity) embedding per token.
    x = PositionEmbedding()(x)
    for _ in range(spec["layers"]):  # nn.TransformerEncoderLayer(norm_first=True, activation="gelu")
        h = keras.layers.LayerNormalization(epsilon=eps)(x)
        h = keras.layers.MultiHeadAttention(spec["heads"], key_dim=d_model // spec["heads"], dropout=rate)(h, h)
        x = keras.layers.Add()([x, keras.layers.Dropout(rate)(h)])
        h = keras.layers.LayerNormalization(epsilon=eps)(x)
        h = keras.layers.Dropout(rate)(keras.layers.Dense(spec["ff_dim"], activation="gelu")(h))
        h = keras.layers.Dropout(rate)(keras.layers.Dense(d_model)(h))
        x = keras.layers.Add()([x, h])
    x = keras.layers.GlobalAveragePooling1D()(x)  # mean over tokens, then the final norm, as torch
    x = keras.layers.LayerNormalization(epsilon=eps)(x)
    return keras.Model(inputs, _dense_stack(keras, x, n_outputs, settings))


KERAS_MODELS: dict[str, Callable] = {"mlp": mlp, "cnn": cnn, "rnn": rnn, "transformer": transformer}


def build_keras_model(arch: dict):
    return KERAS_MODELS[arch["model"]](tuple(arch["input_shape"]), arch["n_outputs"], arch["settings"])

"""The frameworks and their networks: the one place a framework or a network is named.

Kept free of torch and TensorFlow imports so the config can validate names at once. Everything a
framework brings is looked up here by name and imported when used: its adapter (the small typed
protocol the training core drives, trainers/adapter.py), its Ray Train trainer, its ArrayModel.
Adding a network is one entry in `networks` plus its builder; a contract test picks it up.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

ANY = ("tabular", "image", "sequence")


@dataclass(frozen=True)
class Framework:
    name: str  # the config section and the prefix of its models' names: torch_mlp, keras_cnn
    label: str  # what a person calls it
    networks: dict  # network name -> input kinds it accepts (an MLP flattens images and sequences)
    adapter: str  # "module:Class" implementing trainers/adapter.py's FrameworkAdapter
    builders: str  # "module:DICT" of network name -> builder(input_shape, n_outputs, settings)
    fitted: str  # "module:Class": the trained network as a ArrayModel
    trainer: str  # "module:Class": its Ray Train trainer
    step_cost_factor: float  # a step's cost against PyTorch's (the launch estimate times PyTorch's)
    # Seconds a fresh worker takes to import the framework and build a small network (a 2-core
    # machine, measured: what a time limit must leave a network beyond its epochs)
    start_s: float = 4.0
    backend: str = ""  # "module:function(WorkerPlan) -> extra trainer arguments", where it needs any

    def load(self, what: str) -> Any:
        module, _, attr = getattr(self, what).partition(":")
        return getattr(importlib.import_module(module), attr)


FRAMEWORKS: dict[str, Framework] = {
    "torch": Framework(
        "torch", "PyTorch",
        networks={"mlp": ANY, "cnn": ("image",), "rnn": ("sequence",), "transformer": ("sequence", "tabular")},
        adapter="rayfit.trainers.torch_adapter:TorchAdapter",
        builders="rayfit.trainers.torch_models:TORCH_MODELS",
        fitted="rayfit.trainers.torch_model:TorchModel",
        trainer="ray.train.torch:TorchTrainer",
        step_cost_factor=1.0,
        start_s=3.0,
        backend="rayfit.trainers.torch_adapter:trainer_backend"),
    "keras": Framework(
        "keras", "Keras",
        networks={"mlp": ANY, "cnn": ("image",), "rnn": ("sequence",), "transformer": ("sequence", "tabular")},
        adapter="rayfit.trainers.keras_adapter:KerasAdapter",
        builders="rayfit.trainers.keras_models:KERAS_MODELS",
        fitted="rayfit.trainers.keras_model:KerasModel",
        trainer="ray.train.tensorflow:TensorflowTrainer",
        # The probe times PyTorch's steps. A Keras epoch of an MLP costs 0.6-1.2x PyTorch's since one
        # worker steps without tf.data or strategy.run (700 and 30,000 rows, batch 32 and 256); at
        # most 1.3x is the promise, and the estimate takes that.
        step_cost_factor=1.3,
        start_s=6.0),
}

# framework -> network -> input kinds (the config's and the preflight's view of FRAMEWORKS)
NETWORKS: dict[str, dict[str, tuple[str, ...]]] = {name: f.networks for name, f in FRAMEWORKS.items()}


def framework(name: str) -> Framework:
    return FRAMEWORKS[name]


def is_network_framework(name: str) -> bool:
    """Whether a search's `model` names a framework (its networks) rather than a baseline."""
    return name in FRAMEWORKS

"""Which networks exist, per framework, and what input each takes.

Kept free of torch and TensorFlow imports so the config can validate model names at once; the
builders live in torch_models.py / keras_models.py and a contract test keeps the two in step.
"""
from __future__ import annotations

ANY = ("tabular", "image", "sequence")

# framework -> model name -> input kinds it accepts (an MLP flattens images and sequences)
NETWORKS: dict[str, dict[str, tuple[str, ...]]] = {
    "torch": {"mlp": ANY, "cnn": ("image",), "rnn": ("sequence",), "transformer": ("sequence", "tabular")},
    "keras": {"mlp": ANY, "cnn": ("image",)},
}

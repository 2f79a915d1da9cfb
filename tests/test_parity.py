"""One meaning in both frameworks: the same weights give the same losses, penalties and updates.

Each case drove the PyTorch and Keras loops apart before they shared one core: class weights in
the validation loss, where L1 was counted, coupled against decoupled weight decay, and whose
hyperparameters a restored (PBT-exploited) optimizer kept. No Ray: the adapters run in-process.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rayfit.config import KerasConfig, TorchConfig
from rayfit.trainers.core import LoopConfig, architecture
from rayfit.trainers.losses import validation_metrics, weighted_loss
from rayfit.frameworks import framework

CLASS_WEIGHTS = [0.5, 2.0, 1.25]
CONFIGS = {"torch": TorchConfig, "keras": KerasConfig}


def _data(rows: int = 48, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    X = (rng.standard_normal((rows, 5)) + (y - 1)[:, None]).astype(np.float32)
    return {"X_train": X, "y_train": y, "X_val": X, "y_val": y}


def _adapter(name: str, task: str = "classification", n_outputs: int = 3, class_weights=CLASS_WEIGHTS, **settings):
    settings = CONFIGS[name](model="mlp", hidden_sizes=[8], dropout=0.0, **settings).for_rows(48)
    config = LoopConfig("parity", name, "mlp", settings, task, n_outputs, class_weights, 0, _data())
    adapter = framework(name).load("adapter")(config, rank=0, world_size=1)
    adapter.seed(0)
    adapter.build(architecture(settings.model_dump(), "mlp", (5,), n_outputs))
    return adapter


def _same_weights(torch_adapter, keras_adapter) -> None:
    """Copy the PyTorch MLP's weights into the Keras one (Dense kernels are transposed Linear weights)."""
    linear = [m for m in torch_adapter.raw.modules() if isinstance(m, torch.nn.Linear)]
    weights = []
    for layer in linear:
        weights += [layer.weight.detach().numpy().T, layer.bias.detach().numpy()]
    keras_adapter.network.set_weights(weights)


@pytest.mark.parametrize("task, n_outputs, class_weights", [
    ("classification", 3, CLASS_WEIGHTS),  # multi-class, weighted
    ("classification", 1, [0.7, 1.9]),  # binary: one logit, both classes weighted
    ("regression", 1, None),
])
def test_the_same_weights_give_the_same_validation_loss_in_both_frameworks(task, n_outputs, class_weights):
    t, k = (_adapter(n, task, n_outputs, class_weights) for n in ("torch", "keras"))
    _same_weights(t, k)
    data = _data()
    y = data["y_val"] if task == "classification" and n_outputs > 1 else (data["y_val"] > 0).astype(np.float32)
    out_t, out_k = t.predict(data["X_val"]), k.predict(data["X_val"])
    assert np.allclose(out_t, out_k, atol=1e-5)
    loss_t = validation_metrics(out_t, y, task, class_weights)["val_loss"]
    loss_k = validation_metrics(out_k, y, task, class_weights)["val_loss"]
    assert loss_t == pytest.approx(loss_k, rel=1e-5)
    if class_weights:  # the weights count: an unweighted loss differs
        assert loss_t != pytest.approx(weighted_loss(out_t, y, task, None), rel=1e-3)


def test_each_framework_trains_on_the_loss_validation_reports():
    """The training objective each adapter differentiates equals the reference definition."""
    import tensorflow as tf

    from rayfit.trainers.keras_adapter import weighted_loss as keras_loss
    from rayfit.trainers.torch_adapter import weighted_loss as torch_loss

    rng = np.random.default_rng(1)
    for out, y, task in [(rng.standard_normal((20, 3)), rng.integers(0, 3, 20), "classification"),
                         (rng.standard_normal((20, 1)), rng.integers(0, 2, 20), "classification"),
                         (rng.standard_normal((20, 1)), rng.standard_normal(20), "regression")]:
        weights = (CLASS_WEIGHTS[:out.shape[1]] if out.shape[1] > 1 else [0.7, 1.9]) if task == "classification" else None
        reference = weighted_loss(out, y, task, weights)
        as_torch = torch_loss(torch.tensor(out, dtype=torch.float32), torch.tensor(y), task,
                              torch.tensor(weights) if weights else None)
        as_keras = keras_loss(tf, tf.constant(out, tf.float32), tf.constant(y), task,
                              tf.constant(weights, tf.float32) if weights else None)
        assert float(as_torch) == pytest.approx(reference, rel=1e-5)
        assert float(as_keras) == pytest.approx(reference, rel=1e-5)


def test_l1_is_counted_the_same_way_in_both_frameworks():
    """The same weights give the same penalty, and neither framework's reported training loss
    includes it (with lr 0 the training loss equals the data loss on the training rows)."""
    from rayfit.trainers.keras_adapter import penalized_variables
    from rayfit.trainers.torch_adapter import l1_penalty

    t, k = (_adapter(n, l1=0.5, lr=1e-12) for n in ("torch", "keras"))
    _same_weights(t, k)
    keras_penalty = sum(float(np.abs(v.numpy()).sum()) for v in penalized_variables(k.network))
    assert float(l1_penalty(t.raw).detach()) == pytest.approx(keras_penalty, rel=1e-5)

    data = _data()
    data_loss = weighted_loss(t.predict(data["X_train"]), data["y_train"], "classification", CLASS_WEIGHTS)
    for adapter in (t, k):
        batches = adapter.in_memory_batches(data["X_train"], data["y_train"])
        train_loss, rows = adapter.train_epoch(batches(1), lr=1e-12)
        assert rows == len(data["y_train"])
        # batch means weighted by rows: close to, not exactly, the whole-set weighted mean
        assert train_loss == pytest.approx(data_loss, rel=0.05)  # the penalty would add 0.5 * keras_penalty


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_weight_decay_is_decoupled_in_both_frameworks(optimizer):
    """With no gradient, a step only decays: w <- w * (1 - lr * weight_decay), for every optimizer
    (coupled decay would go through Adam's normalisation and move w by about lr instead)."""
    import tensorflow as tf

    lr, decay = 0.1, 0.5
    extra = {"momentum": 0.9} if optimizer in ("sgd", "rmsprop") else {}
    t, k = (_adapter(n, optimizer=optimizer, weight_decay=decay, lr=lr, **extra) for n in ("torch", "keras"))
    _same_weights(t, k)
    before = t.weights()["1.0.weight"].clone()

    for p in t.model.parameters():
        p.grad = torch.zeros_like(p)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    t.step(lr * decay)  # train_epoch's update
    k.keras.backend.set_value(k.optimizer.learning_rate, lr)
    k.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in k.network.trainable_variables])

    expected = before.numpy() * (1 - lr * decay)
    assert np.allclose(t.weights()["1.0.weight"].numpy(), expected, atol=1e-6)
    assert np.allclose(k.network.get_weights()[0], expected.T, atol=1e-6)


@pytest.mark.parametrize("name", ["torch", "keras"])
def test_a_restored_optimizer_keeps_this_runs_hyperparameters(name, tmp_path):
    """A PBT exploit restores the donor's weights and optimizer state; the trial keeps its own
    mutated momentum (and its own learning rate and weight decay, set at every step)."""
    donor = _adapter(name, optimizer="sgd", momentum=0.5, weight_decay=0.1)
    donor.save(tmp_path, donor.weights())
    trial = _adapter(name, optimizer="sgd", momentum=0.8, weight_decay=0.3)
    trial.load(tmp_path)

    if name == "torch":
        assert [g["momentum"] for g in trial.optimizer.param_groups] == [0.8]
        assert all(torch.equal(a, b) for a, b in zip(trial.weights().values(), donor.weights().values()))
    else:
        assert float(trial.optimizer.momentum) == pytest.approx(0.8)
        assert float(trial.optimizer.weight_decay) == pytest.approx(0.3)
        assert all(np.array_equal(a, b) for a, b in zip(trial.weights(), donor.weights()))


@pytest.mark.parametrize("name", ["torch", "keras"])
def test_a_mutated_optimizer_starts_its_own_state(name, tmp_path):
    """PBT may mutate `optimizer` itself: the exploiting trial takes the weights, not another
    optimizer's state."""
    data = _data()
    donor = _adapter(name, optimizer="adam")
    donor.train_epoch(donor.in_memory_batches(data["X_train"], data["y_train"])(1), lr=0.01)
    donor.save(tmp_path, donor.weights())
    trial = _adapter(name, optimizer="sgd", momentum=0.8)
    trial.load(tmp_path)
    if name == "torch":
        assert not trial.optimizer.state  # no Adam moments in SGD
    else:
        assert int(trial.optimizer.iterations) == 0
    loss, _ = trial.train_epoch(trial.in_memory_batches(data["X_train"], data["y_train"])(1), lr=0.01)
    assert np.isfinite(loss)

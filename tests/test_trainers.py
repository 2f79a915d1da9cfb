"""The training layer's contract: every registered network of every framework, in every execution
context (a single Ray task, an inline Tune trial; a Ray Train worker group of 2 once per framework),
trains through the one training core: the loss falls, checkpoints are written and pruned, the
restored model predicts the same. A network added to the registry is picked up here."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from rayfit.cluster.plan import WorkerPlan
from rayfit.config import KerasConfig, TorchConfig
from rayfit.evaluation.fitted import load_model
from rayfit.evaluation.manifest import write_manifest
from rayfit.trainers.adapter import FrameworkAdapter
from rayfit.trainers.launch import TrainingData, fit_neural, make_loop_config, start_in_task
from rayfit.frameworks import FRAMEWORKS

NETWORK_CASES = [(f, n) for f, spec in FRAMEWORKS.items() for n in spec.networks]
IDS = [f"{f}-{n}" for f, n in NETWORK_CASES]
SHAPES = {"tabular": (6,), "image": (8, 8, 1), "sequence": (12, 2)}
CONFIGS = {"torch": TorchConfig, "keras": KerasConfig}
EPOCHS, KEEP = 3, 2  # enough epochs for pruning to happen


def tiny_data(kind: str, rows: int = 192, classes: int = 3, seed: int = 0) -> dict:
    """A learnable 3-class problem in the input kind's shape: the class shifts the mean of the input."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    X = rng.standard_normal((rows, *SHAPES[kind])).astype(np.float32)
    X += (y - 1).reshape(-1, *([1] * len(SHAPES[kind]))).astype(np.float32)
    cut = int(rows * 0.75)
    return {"X_train": X[:cut], "y_train": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


def _case(framework: str, network: str):
    """(arrays, settings) for one network: small, and only its own section set."""
    kind = next(k for k in ("image", "sequence", "tabular") if k in FRAMEWORKS[framework].networks[network])
    sections = {"cnn": {"channels": [8]}, "rnn": {"hidden_size": 16},
                "transformer": {"d_model": 16, "heads": 2, "layers": 1, "ff_dim": 32}}
    settings = CONFIGS[framework](model=network, epochs=EPOCHS, workers=2, batch_size=16, lr=3e-3, patience=50,
                                  dropout=0.0, hidden_sizes=[16], keep_checkpoints=KEEP, checkpoint_every_s=0,
                                  **({network: sections[network]} if network in sections else {}))
    return tiny_data(kind), settings


def test_the_registry_is_complete():
    """Every framework names a builder for each of its networks and an adapter with the protocol."""
    protocol = {name for name, _ in inspect.getmembers(FrameworkAdapter, inspect.isfunction) if not name.startswith("__")}
    for name, spec in FRAMEWORKS.items():
        assert set(spec.load("builders")) == set(spec.networks), name
        adapter = spec.load("adapter")
        assert protocol <= {n for n, _ in inspect.getmembers(adapter, inspect.isfunction)}, name
        assert hasattr(spec.load("fitted"), "from_checkpoint") and spec.load("trainer") is not None
    # both frameworks offer the same networks
    assert len({tuple(sorted(spec.networks)) for spec in FRAMEWORKS.values()}) == 1


def _check(history: list[dict], model, arrays: dict, checkpoints: list[Path], tmp_path: Path) -> None:
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    assert history[-1]["train_loss"] < history[0]["train_loss"], history
    assert len(checkpoints) == KEEP, checkpoints  # one per epoch (checkpoint_every_s: 0), pruned to the latest KEEP
    assert all((c / "arch.json").is_file() and (c / "train_state.json").is_file() for c in checkpoints)
    X = arrays["X_val"]
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    write_manifest(model.save(tmp_path / "export"))  # as a run keeps a model: its manifest last
    restored = load_model(tmp_path / "export")
    assert np.allclose(restored.predict_proba(X), proba, atol=1e-5)


def _numbered(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("checkpoint_*") if p.is_dir())


@pytest.mark.parametrize("framework, network", NETWORK_CASES, ids=IDS)
def test_every_network_trains_in_a_single_task(framework, network, ray_session, tmp_path):
    arrays, settings = _case(framework, network)
    data = TrainingData(ray_session.put(arrays), "classification", 3, None, seed=0)
    result = start_in_task(framework, network, settings, data, tmp_path / "ckpt", WorkerPlan(1, 1)).result()
    _check(result.history, result.model, arrays, _numbered(tmp_path / "ckpt" / f"{framework}_{network}"), tmp_path)


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_each_framework_trains_in_a_worker_group_of_two(framework, ray_session, tmp_path):
    """The worker-group contract once per framework: the worker context never sees which network it
    trains (the single-task and trial tests above and below cover every builder), and a group deals
    its workers their rows by index (DistributedSampler, tf.data's sharding), whatever an input's
    shape, so one network per framework proves the group's part: two ranks, DDP /
    MultiWorkerMirroredStrategy, rank-0 checkpoints, the restored model. Its training split is a
    Parquet file streamed through Ray Data, the harder way in: no training rows in the object store
    at all, each worker reads its own shard (arrays in memory through a group: the suite's full run,
    tests/conftest.py FULL_RUN, both frameworks)."""
    from rayfit.data.streaming import write_split

    network = "mlp"  # streaming is for tables
    arrays, settings = _case(framework, network)
    path = write_split(arrays["X_train"], arrays["y_train"], tmp_path / "train.parquet")
    data = TrainingData(ref=None, task="classification", n_outputs=3, class_weights=None, seed=0, train_path=str(path),
                        val_ref=ray_session.put({"X_val": arrays["X_val"], "y_val": arrays["y_val"]}))
    result = fit_neural(framework, network, settings, data, tmp_path / "ckpt",
                        plan=WorkerPlan(2, 0.5))  # two workers on this 2-CPU machine, beside the driver's tasks
    assert result.runtime["workers"] == 2
    _check(result.history, result.model, arrays, _numbered(tmp_path / "ckpt" / f"{framework}_{network}"), tmp_path)
    assert (result.model.predict(arrays["X_val"]) == arrays["y_val"]).mean() > 0.7  # it learned from its shards
    if framework == "torch":  # each worker read half of the 144 training rows
        assert all(h["train_rows"] == 72 for h in result.history), result.history


def _network_trial(params: dict, base: dict) -> None:
    """A Tune trial that trains the network its grid point names, in an inline-trial context."""
    from rayfit.trainers.contexts import TrialContext
    from rayfit.trainers.core import train

    train(base["configs"][params["network"]], TrialContext(checkpoint_every_epoch=True))


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_every_network_trains_in_an_inline_tune_trial(framework, ray_session, tmp_path):
    import sys

    import ray.cloudpickle
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from rayfit.trainers.launch import load_checkpoint

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import tests/

    networks = list(FRAMEWORKS[framework].networks)
    cases = {n: _case(framework, n) for n in networks}
    configs = {n: make_loop_config(f"{framework}_{n}", framework, n, settings,
                                   TrainingData(ray_session.put(arrays), "classification", 3, None, seed=0))
               for n, (arrays, settings) in cases.items()}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_network_trial, base={"configs": configs}), {"CPU": 1}),
        param_space={"network": tune.grid_search(networks)},
        # as rayfit's inline searches run (tuning/search.py): a trial's actor serves the next trial,
        # which is what a trial context must survive (and each new actor would import its framework)
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="contract", verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP),
                                  # result.json, whatever TUNE_DISABLE_AUTO_CALLBACK_LOGGERS says
                                  callbacks=[JsonLoggerCallback()]),
    )
    results = tuner.fit()
    assert len(results) == len(networks) and not results.errors
    for result in results:
        network = result.config["network"]
        reported = result.metrics_dataframe.to_dict("records")
        model, saved_history, _ = load_checkpoint(framework, Path(result.checkpoint.path), network, "classification",
                                                  best=True)
        assert [h["epoch"] for h in saved_history] == list(range(1, EPOCHS + 1))
        _check(reported, model, cases[network][0], _numbered(Path(result.path)), tmp_path / network)

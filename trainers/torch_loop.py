"""The PyTorch training loop: one loop for a Ray Train worker (DDP) and for a Ray Tune trial.

It reads like plain PyTorch. Ray appears in three places: preparing the model and loader for
data parallelism, reporting metrics with a checkpoint, and (rank 0) telling the driver's progress
display about the epoch.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
from ray import tune
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rayfit.trainers.torch_models import build_torch_model
from rayfit.trainers.torch_model import ARCH, WEIGHTS

ARCH_KEYS = ("hidden_sizes", "activation", "dropout")


def architecture(settings: dict, n_features: int, n_outputs: int) -> dict:
    return {"model": settings["model"], "in_features": n_features, "out_features": n_outputs,
            **{k: settings[k] for k in ARCH_KEYS}}


class EarlyStopping:
    """Stop after `patience` epochs without a val-loss drop of at least `min_delta`."""

    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best = float("inf")
        self.best_epoch = -1
        self.bad_epochs = 0

    def step(self, value: float, epoch: int) -> bool:
        """Record one epoch; True when it is the best so far."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


def _loss_fn(task: str, class_weights):
    if task == "classification":
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        return nn.CrossEntropyLoss(weight=weight)
    return nn.MSELoss()


def _targets(y: np.ndarray, task: str) -> torch.Tensor:
    return torch.as_tensor(y, dtype=torch.long) if task == "classification" else torch.as_tensor(y, dtype=torch.float32)


@torch.no_grad()
def _evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_fn, task: str, device) -> dict:
    model.eval()
    out = model(X.to(device))
    if task == "regression":
        out = out.reshape(-1)
    metrics = {"val_loss": float(loss_fn(out, y.to(device)))}
    if task == "classification":
        metrics["val_accuracy"] = float((out.argmax(dim=1).cpu() == y).float().mean())
    return metrics


def _save_checkpoint(directory: Path, model: nn.Module, optimizer, arch: dict, epoch: int, best: float, history: list) -> None:
    torch.save(model.state_dict(), directory / WEIGHTS)
    (directory / ARCH).write_text(json.dumps(arch))
    (directory / "history.json").write_text(json.dumps(history))
    # Everything needed to continue: optimizer, epoch, best metric, RNG state.
    torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch, "best_val_loss": best,
                "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state()},
               directory / "train_state.pt")


def train_loop_per_worker(config: dict) -> list[dict]:
    """Train one network. config: settings (NeuralConfig fields), data, task, n_outputs,
    class_weights, seed, mode ("train": a Ray Train worker; "tune": a Tune trial), progress, name."""
    settings, task, mode = config["settings"], config["task"], config["mode"]
    data = config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    # One thread per CPU this worker was given; more would fight the other workers for cores.
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    torch.manual_seed(config["seed"])
    np.random.seed(config["seed"])

    if mode == "train":
        context = ray.train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
        device = ray.train.torch.get_device()
    else:
        rank, world, device = 0, 1, torch.device("cpu")

    X_train = torch.as_tensor(data["X_train"])
    y_train = _targets(data["y_train"], task)
    X_val, y_val = torch.as_tensor(data["X_val"]), _targets(data["y_val"], task)

    arch = architecture(settings, X_train.shape[1], config["n_outputs"])
    model = build_torch_model(arch)
    generator = torch.Generator().manual_seed(config["seed"])
    loader = DataLoader(TensorDataset(X_train, y_train), batch_size=settings["batch_size"], shuffle=True,
                        generator=generator, pin_memory=device.type == "cuda")
    if mode == "train":
        # DDP wrapper, DistributedSampler, device placement: Ray's three lines of data parallelism.
        model = ray.train.torch.prepare_model(model)
        loader = ray.train.torch.prepare_data_loader(loader)
    raw_model = model.module if hasattr(model, "module") else model

    loss_fn = _loss_fn(task, config.get("class_weights")).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    stopper = EarlyStopping(settings["patience"], settings["min_delta"])
    history: list[dict] = []
    epochs = int(settings["epochs"])

    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)  # a new shuffle per epoch across workers
        model.train()
        total, count = torch.zeros((), device=device), torch.zeros((), device=device)
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            out = model(xb)
            loss = loss_fn(out.reshape(-1) if task == "regression" else out, yb)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(xb)
            count += len(xb)
        if world > 1:
            # Mean training loss over all workers' samples (a sync point, once per epoch).
            torch.distributed.all_reduce(total)
            torch.distributed.all_reduce(count)
        metrics = {"epoch": epoch, "train_loss": float(total / count), **_evaluate(raw_model, X_val, y_val, loss_fn, task, device)}
        metrics["epoch_time_s"] = time.perf_counter() - started
        improved = stopper.step(metrics["val_loss"], epoch)
        history.append(metrics)

        # Every worker computed the same val loss on the same weights, so every worker takes the
        # same early-stopping decision and the report barrier stays in step.
        stop = stopper.should_stop or epoch == epochs
        _report(config, mode, rank, metrics, history, raw_model, optimizer, arch, stopper.best, improved)
        if stop:
            break
    return history


def _report(config, mode, rank, metrics, history, model, optimizer, arch, best, improved) -> None:
    progress = config.get("progress")
    if mode == "train":
        if progress is not None and rank == 0:
            progress.push.remote({"stage": config["name"], "epoch": metrics["epoch"],
                                  "epochs": config["settings"]["epochs"], "metrics": metrics})
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:  # one copy of the weights is enough; the others report metrics only
                _save_checkpoint(Path(tmp), model, optimizer, arch, metrics["epoch"], best, history)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
        return

    # A trial checkpoints only when it improves: its latest checkpoint is its best.
    if improved:
        with tempfile.TemporaryDirectory() as tmp:
            _save_checkpoint(Path(tmp), model, optimizer, arch, metrics["epoch"], best, history)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
    else:
        tune.report(metrics)


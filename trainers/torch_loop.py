"""The PyTorch training loop: one loop for a Ray Train worker (DDP) and for a Ray Tune trial.

It reads like plain PyTorch. Ray appears where data parallelism is set up (`prepare_model`,
`prepare_data_loader`), where a checkpoint is restored (`get_checkpoint`) and where metrics are
reported with a checkpoint (`report`).
"""
from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
from ray import tune
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rayfit.trainers.device import DeviceChoice, Runtime, choose_device
from rayfit.trainers.schedule import EarlyStopping, LearningRateSchedule
from rayfit.trainers.target_scale import standardize
from rayfit.trainers.task_checkpoints import latest_checkpoint, save_checkpoint
from rayfit.trainers.torch_model import ARCH, BEST_WEIGHTS, WEIGHTS
from rayfit.trainers.torch_models import build_torch_model

ARCH_KEYS = ("hidden_sizes", "activation", "dropout", "norm", "l1", "cnn", "rnn", "transformer")
TRAIN_STATE = "train_state.pt"

OPTIMIZERS = {
    "adamw": lambda params, s: torch.optim.AdamW(params, lr=s["lr"], weight_decay=s["weight_decay"]),
    "adam": lambda params, s: torch.optim.Adam(params, lr=s["lr"], weight_decay=s["weight_decay"]),
    "sgd": lambda params, s: torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"]),
    "rmsprop": lambda params, s: torch.optim.RMSprop(params, lr=s["lr"], momentum=s["momentum"],
                                                     weight_decay=s["weight_decay"]),
}


def architecture(settings: dict, model: str, input_shape, n_outputs: int, target_scale=None) -> dict:
    """What a checkpoint needs to rebuild the network and read its outputs (shared with the Keras
    loop): target_scale takes a regression network's outputs back to the target's units."""
    return {"model": model, "input_shape": list(input_shape), "n_outputs": n_outputs,
            "settings": {k: settings[k] for k in ARCH_KEYS},
            "target_scale": list(target_scale) if target_scale is not None else None}


def _targets(y: np.ndarray, task: str, n_outputs: int, scale=None) -> torch.Tensor:
    if task == "classification" and n_outputs > 1:
        return torch.as_tensor(y, dtype=torch.long)
    # regression (standardized, trainers/target_scale.py), or binary with one logit
    return torch.as_tensor(standardize(np.asarray(y, dtype=np.float64), scale), dtype=torch.float32)


def _loss_fn(task: str, n_outputs: int, class_weights: Optional[list]):
    if task == "regression":
        return nn.MSELoss()
    if n_outputs == 1:  # binary: one logit, binary cross-entropy; class weights as the positive weight
        pos_weight = torch.tensor(class_weights[1] / class_weights[0]) if class_weights else None
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    return nn.CrossEntropyLoss(weight=torch.tensor(class_weights, dtype=torch.float32) if class_weights else None)


def _squeeze(out: torch.Tensor) -> torch.Tensor:
    return out[:, 0] if out.shape[1] == 1 else out


@torch.no_grad()
def _evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_fn, task: str, device, batch: int = 1024) -> dict:
    model.eval()
    out = torch.cat([model(X[i:i + batch].to(device)).float() for i in range(0, len(X), batch)])
    out, y = _squeeze(out), y.to(device)
    metrics = {"val_loss": float(loss_fn(out, y))}
    if task == "classification":
        predicted = (out > 0).long() if out.dim() == 1 else out.argmax(dim=1)
        metrics["val_accuracy"] = float((predicted == y.long()).float().mean())
    return metrics


def _l1_penalty(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)


def _torch_device(mode: str, mixed_precision) -> tuple[torch.device, DeviceChoice]:
    """This worker's torch device, and the framework-neutral choice behind it (see device.py)."""
    choice = choose_device("PyTorch", torch.cuda.is_available(), mixed_precision)
    if choice.type == "cpu":
        return torch.device("cpu"), choice
    # Ray Train shares CUDA_VISIBLE_DEVICES between a node's workers (NCCL needs it), so get_device()
    # picks this worker's GPU; a task or a trial sees only its own GPUs, the first being cuda:0.
    return (ray.train.torch.get_device() if mode == "train" else torch.device("cuda:0")), choice


def _restore(config: dict, mode: str):
    """The checkpoint to continue from: Ray Train's after a worker failure or `rayfit resume`,
    Tune's when a trial is resumed or exploited (PBT), a task's own when it was retried or resumed."""
    if mode == "task":
        return latest_checkpoint(config["checkpoint_dir"])
    return ray.train.get_checkpoint() if mode == "train" else tune.get_checkpoint()


def train_loop_per_worker(config: dict) -> list[dict]:
    """Train one network. config: name, model, settings (NeuralConfig fields), data, task, n_outputs,
    class_weights, seed, threads, mode ("train": a Ray Train worker; "tune": a Tune trial; "task": one
    Ray task, checkpointing to checkpoint_dir), progress."""
    settings, task, mode, seed = config["settings"], config["task"], config["mode"], config["seed"]
    data = config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    # One thread per CPU this worker was given; more would fight the other workers for cores.
    torch.set_num_threads(max(1, int(config.get("threads", 1))))

    if mode == "train":
        context = ray.train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
    else:
        rank, world = 0, 1
    device, choice = _torch_device(mode, settings["mixed_precision"])
    use_amp = choice.amp  # autocast + GradScaler: on CUDA only
    # One device per worker: DistributedDataParallel spans workers, not a worker's GPUs.
    runtime = Runtime(device.type, world, gpus_per_worker=1 if device.type == "cuda" else 0, amp=use_amp)

    n_outputs = config["n_outputs"]
    scale = config.get("target_scale")
    X_val, y_val = torch.as_tensor(data["X_val"]), _targets(data["y_val"], task, n_outputs, scale)
    arch = architecture(settings, config["model"], X_val.shape[1:], n_outputs, scale)

    torch.manual_seed(seed)  # the same initial weights on every worker and in every rerun
    model = build_torch_model(arch).to(device)
    state = _load_state(_restore(config, mode), model)
    if mode == "train":
        # DistributedDataParallel on our device: Ray's own choice would be cuda:N even where Ray's
        # GPUs are logical and CUDA is absent.
        model = ray.train.torch.prepare_model(model, move_to_device=device)
    raw_model = model.module if hasattr(model, "module") else model

    optimizer = OPTIMIZERS[settings["optimizer"]](model.parameters(), settings)
    schedule = LearningRateSchedule.from_settings(settings)
    stopper = EarlyStopping(settings["patience"], settings["min_delta"])
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = _loss_fn(task, n_outputs, config.get("class_weights")).to(device)
    history: list[dict] = []
    best_weights = None
    start_epoch = 1
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # a PBT exploit keeps the weights, not the donor's settings
            for key in ("weight_decay", "momentum"):
                if key in group:
                    group[key] = settings[key]
        schedule.load_state_dict(state["schedule"])
        stopper.load_state_dict(state["stopper"])
        if state["scaler"]:  # empty when the checkpoint was written without AMP (on CPU)
            scaler.load_state_dict(state["scaler"])
        history, best_weights, start_epoch = state["history"], state["best_weights"], state["epoch"] + 1

    batches = _batches(config, data, n_outputs, device)

    epochs = int(settings["epochs"])
    for epoch in range(start_epoch, epochs + 1):
        started = time.perf_counter()
        # Randomness is a function of (seed, epoch, rank): a resumed run replays exactly.
        torch.manual_seed(seed + 10_007 * epoch + rank)
        lr = schedule.lr(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr

        model.train()
        total, count = torch.zeros((), device=device), torch.zeros((), device=device)
        for xb, yb in batches(epoch):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, y_val.dtype, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(_squeeze(model(xb)), yb)
            total += loss.detach().float() * len(xb)
            count += len(xb)
            if settings["l1"] > 0:
                loss = loss + settings["l1"] * _l1_penalty(raw_model)
            scaler.scale(loss).backward()
            if settings["grad_clip"]:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
        rows = int(count)  # this worker's share of the epoch
        if world > 1:
            # Mean training loss over every worker's samples (a sync point, once per epoch).
            torch.distributed.all_reduce(total)
            torch.distributed.all_reduce(count)
        metrics = {"epoch": epoch, "train_loss": float(total / count),
                   **_evaluate(raw_model, X_val, y_val, loss_fn, task, device), "lr": lr,
                   "train_rows": rows}
        metrics["epoch_time_s"] = time.perf_counter() - started
        # This process's peak resident memory so far (Linux: KiB): what streaming keeps flat.
        metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # Every worker computed the same val loss on the same weights, so every worker takes the
        # same early-stopping decision and Ray's report barrier stays in step.
        improved = stopper.step(metrics["val_loss"], epoch)
        schedule.observe(metrics["val_loss"])
        if improved or best_weights is None:
            best_weights = {k: v.detach().to("cpu", copy=True) for k, v in raw_model.state_dict().items()}
        history.append(metrics)
        train_state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                       "stopper": stopper.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                       "history": history, "best_weights": best_weights, "settings": settings,
                       "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state()}
        _report(config, mode, rank, metrics, raw_model, arch, train_state, runtime, improved)
        if stopper.should_stop:
            break
    return history


def _batches(config: dict, data: dict, n_outputs: int, device):
    """epoch -> an iterable of (x, y) batches of this worker's share, reshuffled each epoch.

    In memory: a DataLoader (Ray adds the DistributedSampler). Streaming: this worker's shard of
    the Ray Dataset, read block by block, so no worker ever holds the whole training set.
    """
    settings, seed = config["settings"], config["seed"]
    if config.get("streaming"):
        shard = ray.train.get_dataset_shard("train")

        def stream(epoch):
            for batch in shard.iter_torch_batches(batch_size=settings["batch_size"], device=device,
                                                  local_shuffle_buffer_size=8 * settings["batch_size"],
                                                  local_shuffle_seed=seed + epoch):
                yield batch["x"], standardize(batch["y"], config.get("target_scale"))

        return stream

    X = torch.as_tensor(data["X_train"])
    y = _targets(data["y_train"], config["task"], n_outputs, config.get("target_scale"))
    generator = torch.Generator()
    loader = DataLoader(TensorDataset(X, y), batch_size=settings["batch_size"], shuffle=True,
                        generator=generator, pin_memory=device.type == "cuda")
    if config["mode"] == "train":
        # The DistributedSampler only: the loop moves batches to its device itself, since Ray's
        # device moves would target cuda:N even where Ray's GPUs are logical and CUDA is absent.
        loader = ray.train.torch.prepare_data_loader(loader, move_to_device=False)

    def in_memory(epoch):
        generator.manual_seed(seed + epoch)  # the order is a function of the epoch: resumable
        if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        return loader

    return in_memory


def _load_state(checkpoint, model: nn.Module) -> Optional[dict]:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        model.load_state_dict(torch.load(Path(directory) / WEIGHTS, map_location="cpu", weights_only=True))
        return torch.load(Path(directory) / TRAIN_STATE, map_location="cpu", weights_only=False)


def _write_checkpoint(directory: Path, model: nn.Module, arch: dict, train_state: dict, runtime: Runtime) -> None:
    """Everything needed to continue (see STYLE.md #6) and to restore the best epoch's weights."""
    torch.save(model.state_dict(), directory / WEIGHTS)
    torch.save(train_state["best_weights"], directory / BEST_WEIGHTS)
    torch.save(train_state, directory / TRAIN_STATE)
    (directory / ARCH).write_text(json.dumps(arch))
    (directory / "history.json").write_text(json.dumps(train_state["history"]))
    runtime.write(directory)


def _report(config, mode, rank, metrics, model, arch, train_state, runtime, improved) -> None:
    progress = config.get("progress")
    if progress is not None and rank == 0:
        progress.push.remote({"stage": config["name"], "epoch": metrics["epoch"],
                              "epochs": config["settings"]["epochs"], "metrics": metrics})
    if mode == "task":  # one process: a checkpoint every epoch, kept in the run directory
        with tempfile.TemporaryDirectory() as tmp:
            _write_checkpoint(Path(tmp), model, arch, train_state, runtime)
            save_checkpoint(Path(tmp), config["checkpoint_dir"], metrics["epoch"], config["settings"]["keep_checkpoints"])
        return
    report, checkpoint_cls = (ray.train.report, ray.train.Checkpoint) if mode == "train" else (tune.report, tune.Checkpoint)
    # Ray Train: a checkpoint every epoch, from rank 0 (the others hold the same weights).
    # Tune: only when the trial improves, so a small trial is not dominated by checkpoint I/O
    # (every epoch under PBT, which restarts trials from each other's latest checkpoints).
    write = rank == 0 if mode == "train" else (improved or config.get("checkpoint_every_epoch", False))
    if not write:
        report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        _write_checkpoint(Path(tmp), model, arch, train_state, runtime)
        report(metrics, checkpoint=checkpoint_cls.from_directory(tmp))

"""PyTorch under the training core (trainers/adapter.py): plain PyTorch, DistributedDataParallel
across the workers of a Ray Train worker group (whose process group Ray Train sets up)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, TensorDataset

from rayfit.trainers.device import Runtime, choose_device, local_gpu_index
from rayfit.trainers.target_scale import standardize
from rayfit.trainers.torch_models import build_torch_model
from rayfit.trainers.torch_model import BEST_WEIGHTS, OPTIMIZER, WEIGHTS

# PyTorch's defaults (the Keras adapter uses the same); weight decay is applied by the adapter,
# decoupled, for every optimizer (see adapter.py).
OPTIMIZERS = {
    "adamw": lambda params, s: torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0),
    "adam": lambda params, s: torch.optim.Adam(params, lr=s.lr),
    "sgd": lambda params, s: torch.optim.SGD(params, lr=s.lr, momentum=s.momentum),
    "rmsprop": lambda params, s: torch.optim.RMSprop(params, lr=s.lr, momentum=s.momentum),
}


def weighted_loss(out: torch.Tensor, y: torch.Tensor, task: str, class_weights) -> torch.Tensor:
    """trainers/losses.py's definition on tensors."""
    out = out[:, 0] if out.dim() == 2 and out.shape[1] == 1 else out
    if task == "regression":
        per = (out - y) ** 2
    elif out.dim() == 1:
        per = F.binary_cross_entropy_with_logits(out, y.float(), reduction="none")
    else:
        per = F.cross_entropy(out, y.long(), reduction="none")
    if class_weights is None:
        return per.mean()
    weights = class_weights[y.long()]
    return (weights * per).sum() / weights.sum()


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """sum(|w|) over every weight matrix or kernel: parameters of two or more dimensions."""
    return sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)


class TorchAdapter:
    def __init__(self, config, rank: int, world_size: int):
        self.config, self.settings, self.rank, self.world = config, config.settings, rank, world_size
        # One thread per CPU this worker was given; more would fight the other workers for cores.
        torch.set_num_threads(max(1, int(config.threads)))
        choice = choose_device("PyTorch", torch.cuda.is_available(), self.settings.mixed_precision)
        self.device = torch.device(f"cuda:{local_gpu_index()}" if choice.type == "cuda" else "cpu")
        self.amp = choice.amp  # autocast + GradScaler: on CUDA only
        # One device per worker: DistributedDataParallel spans workers, not a worker's GPUs.
        self.runtime = Runtime(choice.type, world_size, gpus_per_worker=1 if choice.type == "cuda" else 0,
                               amp=self.amp)
        weights = config.class_weights if config.task == "classification" else None
        self.class_weights = torch.tensor(weights, dtype=torch.float32, device=self.device) if weights else None

    # -- network and optimizer
    def build(self, arch: dict) -> None:
        self.raw = build_torch_model(arch).to(self.device)
        self.model = self.raw
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.raw, device_ids=[self.device] if self.device.type == "cuda" else None)
        self.parameters = list(self.model.parameters())
        self.optimizer = OPTIMIZERS[self.settings.optimizer](self.parameters, self.settings)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)  # CPU and every CUDA device

    def rng_state(self) -> dict:
        state = {"cpu": torch.get_rng_state().tolist()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device).tolist()
        return state

    def set_rng_state(self, state: dict) -> None:
        torch.set_rng_state(torch.tensor(state["cpu"], dtype=torch.uint8))
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), self.device)

    # -- data
    def in_memory_batches(self, X: np.ndarray, y: np.ndarray):
        dataset = TensorDataset(torch.as_tensor(X), torch.as_tensor(y))
        seed = self.config.seed
        if self.world > 1:  # this worker's share, as DistributedSampler deals it
            sampler = DistributedSampler(dataset, num_replicas=self.world, rank=self.rank, shuffle=True, seed=seed)
        else:
            generator = torch.Generator()
            sampler = RandomSampler(dataset, generator=generator)
        loader = DataLoader(dataset, batch_size=self.settings.batch_size, sampler=sampler,
                            pin_memory=self.device.type == "cuda")

        def batches(epoch: int):
            # The order is a function of the epoch: a resumed run replays it.
            if self.world > 1:
                sampler.set_epoch(epoch)
            else:
                generator.manual_seed(seed + epoch)
            return loader

        return batches

    def streamed_batches(self, shard):
        settings, config = self.settings, self.config
        label = torch.long if config.task == "classification" and config.n_outputs > 1 else torch.float32

        def batches(epoch: int):
            for batch in shard.iter_torch_batches(batch_size=settings.batch_size, device=self.device,
                                                  local_shuffle_buffer_size=8 * settings.batch_size,
                                                  local_shuffle_seed=config.seed + epoch):
                y = batch["y"] if label == torch.long else standardize(batch["y"].double(), config.target_scale)
                yield batch["x"], y.to(label)

        return batches

    # -- one epoch
    def train_epoch(self, batches, lr: float) -> tuple[float, int]:
        settings, device = self.settings, self.device
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        decay = lr * settings.weight_decay
        self.model.train()
        total, count = torch.zeros((), device=device), torch.zeros((), device=device)
        for xb, yb in batches:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=self.amp):
                out = self.model(xb)
            loss = weighted_loss(out.float(), yb, self.config.task, self.class_weights)
            total += loss.detach() * len(xb)
            count += len(xb)
            if settings.l1 > 0:
                loss = loss + settings.l1 * l1_penalty(self.raw)
            self.scaler.scale(loss).backward()
            if settings.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), settings.grad_clip)
            self.step(decay)
        rows = int(count)  # this worker's share of the epoch
        if self.world > 1:
            # The mean over every worker's examples (a sync point, once per epoch).
            torch.distributed.all_reduce(total)
            torch.distributed.all_reduce(count)
        return float(total / count), rows

    def step(self, decay: float) -> None:
        """Decoupled weight decay (w -= lr * weight_decay * w), then the optimizer's update."""
        if decay:
            with torch.no_grad():  # one fused call over every parameter, not a kernel launch each
                torch._foreach_mul_(self.parameters, 1 - decay)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    @torch.no_grad()
    def predict(self, X: np.ndarray, batch: int = 1024) -> np.ndarray:
        self.raw.eval()
        X = torch.as_tensor(X)
        return torch.cat([self.raw(X[i:i + batch].to(self.device)).float().cpu()
                          for i in range(0, len(X), batch)]).numpy()

    # -- state
    def weights(self):
        return {k: v.detach().to("cpu", copy=True) for k, v in self.raw.state_dict().items()}

    def save(self, directory: Path, best_weights) -> None:
        torch.save(self.raw.state_dict(), directory / WEIGHTS)
        torch.save(best_weights, directory / BEST_WEIGHTS)
        torch.save({"kind": self.settings.optimizer, "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict()}, directory / OPTIMIZER)

    def load(self, directory: Path):
        self.raw.load_state_dict(torch.load(directory / WEIGHTS, map_location=self.device, weights_only=True))
        state = torch.load(directory / OPTIMIZER, map_location=self.device, weights_only=True)
        if state["kind"] == self.settings.optimizer:  # a PBT exploit may have mutated the optimizer itself
            self.optimizer.load_state_dict(state["optimizer"])
            for group in self.optimizer.param_groups:  # this run's hyperparameters, not the checkpoint's
                if "momentum" in group:
                    group["momentum"] = self.settings.momentum
        if state["scaler"]:  # empty when written without AMP (on CPU)
            self.scaler.load_state_dict(state["scaler"])
        return torch.load(directory / BEST_WEIGHTS, map_location="cpu", weights_only=True)


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def trainer_backend(plan) -> dict:
    """TorchTrainer's backend for the workers' real devices. On GPU workers PyTorch defaults to
    NCCL, which needs CUDA: where Ray's GPUs are logical (no CUDA on the workers' node), gloo."""
    if not plan.use_gpu:
        return {}
    from ray.train.torch import TorchConfig

    from rayfit.cluster.launch import start

    has_cuda = start(_cuda_available, name="rayfit.probe_cuda", cpus=plan.cpus_per_worker,
                     gpus=plan.gpus_per_worker, pool="torch").result()
    return {} if has_cuda else {"torch_config": TorchConfig(backend="gloo")}

"""Where a data-parallel step's time goes, outside Ray: rayfit's CNN (the same network B5 trains,
built by rayfit's own builder), one thread per process, on in-memory batches.

Sides, each `steps` optimizer steps of `batch` rows per process after `warmup` untimed steps:
- solo: one process;
- pair: two independent processes at once, no communication: the ceiling this machine's cores
  give two workers, whatever the framework;
- ddp: two processes under DistributedDataParallel (gloo), gradients all-reduced every step;
- ddp_bucket_<MB>: the same with another gradient bucket size;
- ddp_sync_every_<k>: gradients accumulated under `no_sync()` and all-reduced every k-th step
  (an optimizer step then covers k batches per process: the all-reduce's cost per row falls k-fold).

Each process times its data (taking the next batch), its forward and backward, and its optimizer
step; the all-reduce is inside backward under DDP, so it shows as backward time above `pair`'s.
"""
from __future__ import annotations

import os
import socket
import time

import numpy as np

CNN_SETTINGS = {"model": "cnn", "cnn": {"channels": [32, 64], "kernel_size": 3}, "hidden_sizes": [64]}  # B5's


def _network():
    from rayfit.config import TorchConfig
    from rayfit.trainers.core import architecture
    from rayfit.trainers.torch_models import build_torch_model

    settings = TorchConfig(**CNN_SETTINGS).model_dump()
    return build_torch_model(architecture(settings, "cnn", (28, 28, 1), 1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, mode: dict, steps: int, warmup: int, batch: int, queue) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(rank)
    distributed = mode.get("ddp", False)
    if distributed:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    model = _network()
    if distributed:
        model = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=mode.get("bucket_mb", 25))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(rank)
    pool = [(torch.as_tensor(rng.standard_normal((batch, 28, 28, 1), dtype=np.float32)),
             torch.as_tensor(rng.integers(0, 2, batch).astype(np.float32))) for _ in range(8)]
    every = mode.get("sync_every", 1)
    times = {"data": 0.0, "forward_backward": 0.0, "optimizer": 0.0}
    started = None
    for step in range(warmup + steps):
        if step == warmup:
            if distributed:
                dist.barrier()
            times = {key: 0.0 for key in times}
            started = time.perf_counter()
        t0 = time.perf_counter()
        x, y = pool[step % len(pool)]
        x, y = x.clone(), y.clone()  # a fresh batch, as a loader hands over
        t1 = time.perf_counter()
        sync = (step + 1) % every == 0
        if distributed and not sync:
            with model.no_sync():
                loss_fn(model(x).squeeze(-1), y).backward()
        else:
            loss_fn(model(x).squeeze(-1), y).backward()
        t2 = time.perf_counter()
        if sync:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if step >= warmup:
            times["data"] += t1 - t0
            times["forward_backward"] += t2 - t1
            times["optimizer"] += t3 - t2
    if distributed:
        dist.barrier()
    wall = time.perf_counter() - started
    queue.put({"rank": rank, "wall_s": wall, "rows": steps * batch, **{f"{k}_s": v for k, v in times.items()}})
    if distributed:
        dist.destroy_process_group()


def measure(mode: dict, processes: int, steps: int = 60, warmup: int = 10, batch: int = 64) -> dict:
    """Rows per second over all processes, and rank 0's breakdown in ms per step."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    workers = [context.Process(target=_worker, args=(rank, processes, port, mode, steps, warmup, batch, queue))
               for rank in range(processes)]
    for worker in workers:
        worker.start()
    results = sorted((queue.get(timeout=600) for _ in workers), key=lambda r: r["rank"])
    for worker in workers:
        worker.join()
    wall = max(r["wall_s"] for r in results)
    first = results[0]
    return {"rows_per_s": sum(r["rows"] for r in results) / wall,
            **{f"{key}_ms_per_step": 1000 * first[f"{key}_s"] / steps
               for key in ("data", "forward_backward", "optimizer")}}


SIDES = {
    "solo": ({}, 1),
    "pair": ({}, 2),
    "ddp": ({"ddp": True}, 2),
    "ddp_bucket_1": ({"ddp": True, "bucket_mb": 1}, 2),
    "ddp_bucket_100": ({"ddp": True, "bucket_mb": 100}, 2),
    "ddp_sync_every_4": ({"ddp": True, "sync_every": 4}, 2),
}

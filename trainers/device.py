"""Where a training worker trains, one meaning for PyTorch and Keras, and the record of it.

A worker trains on a GPU only when Ray assigned it GPU ids *and* its framework sees a GPU. Ray's
GPUs can be logical (`ray.init(num_gpus=4)` on a CPU machine): Ray schedules them and sets
CUDA_VISIBLE_DEVICES, but there is no device behind them. Then the worker trains on CPU and says so.
Every checkpoint carries runtime.json: what the worker really trained on, not what was asked for.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Union


from rayfit.cluster.plan import assigned_gpu_ids

RUNTIME_FILE = "runtime.json"

_said_training_on_cpu = False  # said once per process: not once per epoch, trial or reused actor


@dataclass(frozen=True)
class DeviceChoice:
    """One worker's choice: where it trains, and whether mixed precision runs there."""

    type: str  # "cuda" or "cpu"
    amp: bool


@dataclass(frozen=True)
class Runtime:
    """What a run really trained on, written into each of its checkpoints as runtime.json."""

    device: str  # "cuda" or "cpu"
    workers: int  # data-parallel workers; 1 for a single task or a Tune trial
    gpus_per_worker: int  # GPUs each worker trains on; 0 on CPU
    amp: bool  # whether mixed precision ran

    def write(self, checkpoint_dir: Path) -> None:
        (Path(checkpoint_dir) / RUNTIME_FILE).write_text(json.dumps(asdict(self)))


def local_gpu_index() -> int:
    """This process's first Ray-assigned GPU as an index into the devices CUDA shows it. A task or a
    trial sees only its own GPUs (index 0); Ray Train shows a node's workers all of the node's
    GPUs (NCCL needs them), so each worker finds its own among them."""
    import os

    ids = [str(i) for i in assigned_gpu_ids()]
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible.index(ids[0]) if ids and ids[0] in visible else 0


def choose_device(framework: str, framework_sees_gpu: bool, mixed_precision: Union[str, bool]) -> DeviceChoice:
    """GPU when Ray assigned this process GPUs and `framework` sees one, else CPU.

    mixed_precision ("auto", True or False): float16 pays on a GPU, so it runs only there.
    """
    gpu_ids = assigned_gpu_ids()
    if gpu_ids and not framework_sees_gpu:
        _say_training_on_cpu(framework, gpu_ids)
    on_gpu = bool(gpu_ids) and framework_sees_gpu
    return DeviceChoice("cuda" if on_gpu else "cpu", amp=on_gpu and mixed_precision in ("auto", True))


def _say_training_on_cpu(framework: str, gpu_ids: list) -> None:
    global _said_training_on_cpu
    if not _said_training_on_cpu:
        _said_training_on_cpu = True
        # Written, not print()ed: Ray Train patches print() into its logger, which echoes it twice.
        sys.stderr.write(f"rayfit: Ray assigned GPU ids {gpu_ids} but CUDA is not available to {framework} "
                         "here; training on CPU\n")
        sys.stderr.flush()


def read_runtime(checkpoint_dir: Path) -> dict:
    """A checkpoint's runtime record; empty for one written before checkpoints carried it."""
    path = Path(checkpoint_dir) / RUNTIME_FILE
    from rayfit.errors import read_json

    return read_json(path) if path.exists() else {}

"""What `launch: auto` and `tune.trial_mode: auto` weigh, measured where training runs.

- The worker-group start-up cost: an empty Ray Train run of 2 workers, timed on this cluster once
  per framework and cached per cluster (its Ray version and nodes' shape), so a laptop pays the
  measurement once, not every run. It is re-measured after `CACHE_DAYS`.
- One optimisation step: timed with what one worker holds, so the figure is the worker's (its
  node, its threads, its GPU). On a cluster of this machine alone and no GPU, in the driver with the
  worker's threads (a Ray task would first start a process and import the framework: about 7 s on
  2 cores); otherwise in a Ray task holding one worker's resources.

Both figures, and where they came from, go into the progress line, the report and metrics.json.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

# No worker group starts faster than this: it spawns processes that import the framework and join
# a process group (8-16 s for PyTorch on 2 laptop cores, BENCHMARKS.md B3). A network whose workers
# could save less than this trains in one task without measuring anything.
MIN_START_S = 2.0
CACHE_DAYS = 7
# A bound on an MLP's training step on one CPU thread, before any probe: its arithmetic (six
# float32 operations a weight a row: forward, backward, update) at a floor of a core's speed, plus
# a fixed cost a step (measured here: PyTorch's small-MLP step about 1 ms at batch 32, Keras's
# whole-epoch call less a step).
STEP_OVERHEAD_S = 0.0015
FLOPS_FLOOR = 1e9


@dataclass(frozen=True)
class StartCost:
    seconds: float
    source: str  # "measured now" or "measured <date> on this cluster (cached)"


def cache_dir() -> Path:
    return Path(os.environ.get("RAYFIT_CACHE_DIR") or Path.home() / ".cache" / "rayfit")


def cluster_key(framework: str) -> str:
    import ray

    from rayfit.cluster.plan import ClusterShape

    nodes = ",".join(f"{c:g}c{g:g}g" for c, g in sorted(ClusterShape.current().nodes))
    return f"{framework}|ray {ray.__version__}|{nodes}|{os.uname().nodename}"


def worker_group_start_cost(framework: str) -> StartCost:
    """The seconds a 2-worker Ray Train group of `framework` takes to start and stop, on this cluster."""
    known = known_worker_group_start_cost(framework)
    if known is not None:
        return known
    path = cache_dir() / "worker_group_start.json"
    key = cluster_key(framework)
    cache = _read(path)
    seconds = _time_empty_run(framework)
    cache[key] = {"seconds": round(seconds, 2), "at": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")  # this writer's own
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(path)  # atomic: two runs measuring at once never leave half a file
    except OSError:
        pass  # a read-only home: measured every run, still correct
    return StartCost(seconds, "measured now")


def known_worker_group_start_cost(framework: str) -> Optional[StartCost]:
    """The cached measurement of worker_group_start_cost, if there is one: nothing is measured."""
    entry = _read(cache_dir() / "worker_group_start.json").get(cluster_key(framework))
    if entry and time.time() - entry["at"] < CACHE_DAYS * 86400:
        day = time.strftime("%Y-%m-%d", time.localtime(entry["at"]))
        return StartCost(entry["seconds"], f"measured {day} on this cluster (cached)")
    return None


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _empty_loop(config):
    pass


def _time_empty_run(framework: str) -> float:
    """An empty training run: the fixed cost of a worker group, nothing else. Its workers take a
    sliver of a CPU each, so the measurement never waits on work that is already running."""
    import ray.train

    from rayfit.frameworks import framework as framework_spec

    trainer_cls = framework_spec(framework).load("trainer")
    with tempfile.TemporaryDirectory(prefix="rayfit-calibrate-") as storage:
        trainer = trainer_cls(
            _empty_loop,
            scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.01}),
            run_config=ray.train.RunConfig(name="calibrate", storage_path=storage),
        )
        started = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - started


def _probe(model: str, settings: dict, input_shape: tuple, n_outputs: int, threads: int) -> float:
    """Runs on a worker: a few optimisation steps of the network; the median after a warm-up."""
    import torch

    from rayfit.trainers.core import architecture
    from rayfit.trainers.torch_models import build_torch_model

    torch.set_num_threads(max(1, threads))
    device = torch.device("cuda" if torch.cuda.is_available() and _has_gpu_ids() else "cpu")
    torch.manual_seed(0)
    network = build_torch_model(architecture(settings, model, input_shape, n_outputs)).to(device)
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-3)
    x = torch.randn(settings["batch_size"], *input_shape, device=device)
    timings = []
    for _ in range(4):
        started = time.perf_counter()
        optimizer.zero_grad()
        network(x).float().pow(2).mean().backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    return sorted(timings[1:])[1]


def _has_gpu_ids() -> bool:
    import ray

    return bool(ray.get_gpu_ids())


_probed: dict[str, float] = {}  # one probe per network shape and worker per driver: Keras's MLP reuses PyTorch's


def step_seconds_on_worker(model: str, settings, input_shape: tuple, n_outputs: int, resources: dict) -> float:
    """Time one step where a worker would run: a Ray task holding one worker's resources."""
    from rayfit.trainers.core import architecture

    arch = architecture(settings.model_dump(), model, input_shape, n_outputs)
    key = json.dumps([arch, settings.batch_size, resources], sort_keys=True, default=str)
    if key not in _probed:
        _probed[key] = _probe_on_worker(model, settings, input_shape, n_outputs, resources)
    return _probed[key]


def _probe_on_worker(model: str, settings, input_shape: tuple, n_outputs: int, resources: dict) -> float:
    from rayfit.cluster.launch import start

    # In PyTorch's pool: the worker it warms trains the network next; the driver never imports PyTorch.
    return start(_probe, model, settings.model_dump(), tuple(input_shape), n_outputs, int(resources.get("CPU", 1)),
                 name="rayfit.probe_step", cpus=resources.get("CPU", 1), gpus=resources.get("GPU", 0),
                 pool="torch").result()


def mlp_step_bound(arch: dict, batch: int) -> Optional[float]:
    """An upper bound on the seconds of one training step of an MLP of `arch` at `batch` rows
    (trainers/core.py's architecture); None for other networks, whose steps only a probe can tell."""
    if arch["model"] != "mlp":
        return None
    widths = [math.prod(arch["input_shape"]), *arch["settings"]["hidden_sizes"], arch["n_outputs"]]
    weights = sum(a * b + b for a, b in zip(widths, widths[1:]))
    return STEP_OVERHEAD_S + 6 * weights * batch / FLOPS_FLOOR


def describe(cost: StartCost) -> dict:
    return asdict(cost)

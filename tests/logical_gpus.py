"""Run by tests/test_logical_gpus.py in its own process: a Ray of 2 CPUs and 2 *logical* GPUs.

Ray schedules GPU requests against logical GPUs and sets CUDA_VISIBLE_DEVICES, but there is no
device behind them: what this checks is placement (how many trials and workers fit, what is
refused), and that a worker given a GPU without CUDA trains on CPU. Prints one JSON line.
"""
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray

import rayfit  # noqa: F401  (TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from rayfit.cluster.plan import ClusterShape, plan_trials, plan_workers
from rayfit.cluster.session import ensure_ray
from rayfit.config import TorchConfig, TuneSettings
from rayfit.errors import UserError
from rayfit.trainers.launch import TrainingData, fit_neural
from rayfit.tuning.search import run_search

ensure_ray(address="local", num_cpus=2, num_gpus=2)
report = {}
cluster = ClusterShape.current()
rng = np.random.default_rng(0)
X = rng.standard_normal((200, 6)).astype("float32")
y = (X[:, 0] > 0).astype("int64")
arrays = {"X_train": X[:160], "y_train": y[:160], "X_val": X[160:], "y_val": y[160:]}
data = TrainingData(ray.put(arrays), "classification", 1, None, 0, train_rows=160, input_shape=(6,))
work = Path(tempfile.mkdtemp())

# 1. gpus_per_trial 0.5 on 2 GPUs: 4 trials at once. A thread watches the free GPUs while the
#    search runs: all 4 trials placed together leave none.
settings = TuneSettings(num_samples=4, max_t=2, grace_period=1, scheduler="fifo", cpus_per_trial=0.25,
                        gpus_per_trial=0.5, trial_mode="inline", space={"lr": {"loguniform": [1e-3, 1e-2]}})
report["trial_plan"] = plan_trials("inline", 0.25, 0.5, 1, None, cluster).describe()
least_free = [2.0]
done = threading.Event()


def watch():
    while not done.wait(0.05):
        least_free[0] = min(least_free[0], ray.available_resources().get("GPU", 0.0))


threading.Thread(target=watch, daemon=True).start()
search = run_search(settings, TorchConfig(hidden_sizes=[8], batch_size=32), data, work / "tune")
done.set()
report["trials"] = len(search.trials)
report["least_free_gpus"] = least_free[0]

# 2. a worker group of 2 GPU workers is placed; without CUDA each trains on CPU (gloo, not NCCL)
result = fit_neural("torch", "mlp", TorchConfig(epochs=2, workers=2, gpu=True, launch="ray_train"), data,
                    work / "group")
report["group_runtime"] = result.runtime

# 3. requests above the cluster's GPUs
try:
    plan_workers("torch", 8, 0.25, 1, True, cluster)
except UserError as exc:
    report["explicit_error"] = str(exc)
report["auto_plan"] = plan_workers("torch", 8, 0.25, 1, "auto", cluster).describe()
report["auto_note"] = plan_workers("torch", 8, 0.25, 1, "auto", cluster).note
try:
    plan_trials("inline", 0.1, 8, 1, None, cluster)
except UserError as exc:
    report["trial_error"] = str(exc)

# 4. a run on this cluster: the baseline with a GPU mode (xgboost) asks for a GPU (baselines.gpu:
#    auto), gets one, finds no CUDA behind it and trains on CPU, and says why
from rayfit.cli import main  # noqa: E402

out = work / "run"
code = main(["run", "--data", "iris", "--out", str(out), "--set", "baselines.models=[dummy,xgboost]",
             "--set", "baselines.gpus_per_model=0.5", "--set", "torch.enabled=false", "--set", "keras.enabled=false",
             "--set", "tune.enabled=false", "--set", "evaluation.cv=none", "--set", "report.importance_repeats=1"])
models = json.loads((out / "metrics.json").read_text())["models"] if code == 0 else {}
report["baseline_run"] = {"code": code, **{name: {k: models[name].get(k) for k in ("device", "device_reason")}
                                           for name in models}}
sys.stdout.write("REPORT " + json.dumps(report) + "\n")

"""Faults: a training worker killed mid-run, and a driver killed mid-run then `rayfit resume`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from rayfit.cli import main
from rayfit.config import TorchConfig
from rayfit.progress import ProgressHub
from rayfit.trainers.launch import TrainingData, fit_neural


def _train_workers(marker: str) -> list[psutil.Process]:
    """This test's training processes: under this process's own Ray (its raylet's children), never
    another Ray's on the machine (a parallel test worker's)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if marker in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def _fit_in_task(framework, model, settings, data, storage, progress):
    from rayfit.cluster.plan import WorkerPlan
    from rayfit.trainers.launch import start_in_task

    plan = WorkerPlan(1, settings.cpus_per_worker)
    return start_in_task(framework, model, settings, data, storage, plan, progress=progress).result()


# launch -> (how it trains, the process title of what trains)
LAUNCHES = {"ray_train": (fit_neural, "RayTrainWorker"), "task": (_fit_in_task, "rayfit.train[torch_mlp]")}


def _slow_enough_data(rows: int = 12000, seed: int = 0) -> dict:
    """Epochs of about a second on these cores: enough time to kill something mid-run."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, 20)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] - X[:, 2] > 0).astype(np.int64)
    cut = int(rows * 0.8)
    return {"X_train": X[:cut], "y_train": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


@pytest.mark.parametrize("launch", LAUNCHES)
def test_a_killed_worker_costs_at_most_one_epoch(ray_session, tmp_path, launch):
    fit, marker = LAUNCHES[launch]
    epochs = 6
    hub = ProgressHub.remote()
    data = TrainingData(ray_session.put(_slow_enough_data()), "classification", 1, None, seed=0)
    # checkpoint_every_s=0: every epoch, so the kill costs at most one (the clock's own rule is
    # tests/test_launch.py's; `make chaos` checks the time it allows)
    settings = TorchConfig(epochs=epochs, workers=2, batch_size=16, patience=100, max_failures=2, checkpoint_every_s=0)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=fit("torch", "mlp", settings, data, tmp_path, progress=hub)))
    thread.start()
    seen, killed, epoch_at_kill = [], None, None
    while thread.is_alive():
        seen += [event["epoch"] for event in ray_session.get(hub.drain.remote()) if "epoch" in event]
        if killed is None and seen and max(seen) >= 2:
            workers = _train_workers(marker)
            assert workers, f"no {marker} process found"
            killed, epoch_at_kill = workers[-1].pid, max(seen)
            os.kill(killed, signal.SIGKILL)  # a worker lost mid-run, as a node failure would
        time.sleep(0.05)
    thread.join()
    seen += [event["epoch"] for event in ray_session.get(hub.drain.remote()) if "epoch" in event]

    assert killed is not None and epoch_at_kill < epochs, "the kill came after the last epoch"
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
    history = outcome["result"].history
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))  # every epoch completed
    assert sorted(set(seen)) == list(range(1, epochs + 1))
    assert len(seen) - epochs <= 1, f"epochs run: {seen}"  # at most one epoch repeated


EXPERIMENT = """
name: resume
data: {source: DATA, target: label}
baselines: {enabled: false}
OTHER: {enabled: false}
tune: {enabled: false}
FRAMEWORK: {epochs: 6, workers: 2, batch_size: 16, patience: 100, hidden_sizes: [32, 16], launch: LAUNCH,
  checkpoint_every_s: 0}
report: {importance_repeats: 1}
evaluation: {cv_networks: false}
"""


def _latest_checkpoint(run_dir: Path, framework: str) -> Path:
    return sorted(p for p in (run_dir / "checkpoints" / f"{framework}_mlp").glob("checkpoint_*") if p.is_dir())[-1]


def _continued_from(run_dir: Path, framework: str, launch: str) -> Path:
    """The checkpoint a resume is handed: the one Ray Train's own record names as its latest (the
    newest directory may not be recorded yet), or the task store's newest complete one."""
    import json

    store = run_dir / "checkpoints" / f"{framework}_mlp"
    if launch == "ray_train":
        snapshot = json.loads((store / "checkpoint_manager_snapshot.json").read_text())
        return store / snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
    return sorted(p.parent for p in store.glob("checkpoint_*/.complete"))[-1]


def _truncate_weights(checkpoint: Path) -> None:
    """Half of the checkpoint's largest file (its weights) lost, as on a disk that filled up."""
    weights = max((p for p in checkpoint.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _weights(directory: Path, framework: str, exported: bool = False) -> list[np.ndarray]:
    """Every weight tensor of a checkpoint (or an exported model), as numpy, in a fixed order."""
    if framework == "torch":
        return [t.numpy() for t in torch.load(directory / "model.pt", map_location="cpu", weights_only=True).values()]
    if exported:
        from rayfit.evaluation.fitted import load_model

        return load_model(directory).network.get_weights()
    with np.load(directory / "weights.npz") as saved:
        return [saved[f"w{i}"] for i in range(len(saved.files))]


# Each framework and each launch once, not every pairing: the checkpoint store and its resume
# belong to the launch (Ray Train's checkpoint manager, or the task's own store), the saving and
# restoring of weights to the framework's adapter over one training core; Keras under Ray Train
# (a MultiWorkerMirroredStrategy model restored on every worker) is the pairing most likely to drift.
@pytest.mark.parametrize("framework, launch", [("keras", "ray_train"), ("torch", "task")])
def test_a_resumed_run_ends_with_the_same_weights(ray_session, tmp_path, launch, framework):
    rows = _slow_enough_data(2400 if framework == "keras" else 10000)
    import pandas as pd

    frame = pd.DataFrame(np.column_stack([rows["X_train"], rows["y_train"]]),
                         columns=[f"x{i}" for i in range(20)] + ["label"])
    frame["label"] = frame["label"].astype(int)
    frame.to_csv(tmp_path / "data.csv", index=False)
    config = tmp_path / "exp.yaml"
    other = "keras" if framework == "torch" else "torch"
    config.write_text(EXPERIMENT.replace("DATA", str(tmp_path / "data.csv")).replace("LAUNCH", launch)
                      .replace("OTHER", other).replace("FRAMEWORK", framework))

    # The uninterrupted run, in this process.
    assert main(["run", str(config), "--out", str(tmp_path / "whole")]) == 0

    # The same run in its own driver process, joined to this Ray cluster, killed after epoch 2.
    address = ray_session.get_runtime_context().gcs_address
    interrupted = tmp_path / "interrupted"
    rayfit = Path(sys.executable).with_name("rayfit")
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen([str(rayfit), "run", str(config), "--out", str(interrupted),
                                   "--set", f"ray.address={address}"], stdout=log, stderr=log, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline and driver.poll() is None:
            ckpt = interrupted / "checkpoints" / f"{framework}_mlp"
            if ckpt.is_dir() and len([p for p in ckpt.glob("checkpoint_*") if p.is_dir()]) >= 2:
                break
            time.sleep(0.1)
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert not (interrupted / "report.html").exists()
    # The checkpoint the resume would continue from is damaged too: it is passed over for the one
    # before it (or, where none is left, training starts over), and the run still ends the same.
    damaged = _continued_from(interrupted, framework, launch)
    _truncate_weights(damaged)

    assert main(["resume", str(interrupted)]) == 0
    assert (interrupted / "report.html").is_file()
    assert f"{framework}_mlp: checkpoint {damaged} is damaged (" in (interrupted / "run.log").read_text()
    # The last epoch's weights, tensor by tensor, and the best epoch's (the exported model).
    for whole, resumed in [
        (_weights(_latest_checkpoint(tmp_path / "whole", framework), framework),
         _weights(_latest_checkpoint(interrupted, framework), framework)),
        (_weights(tmp_path / "whole" / "models" / f"{framework}_mlp", framework, exported=True),
         _weights(interrupted / "models" / f"{framework}_mlp", framework, exported=True)),
    ]:
        assert len(whole) == len(resumed) > 0
        for a, b in zip(whole, resumed):
            assert np.array_equal(a, b)


def test_resume_refuses_a_finished_run(tmp_path, capsys):
    (tmp_path / "run_state.json").write_text('{"status": "finished", "stages": {}}')
    assert main(["resume", str(tmp_path)]) == 2
    assert "already finished" in capsys.readouterr().err


SEARCH = """
name: search
data: {source: DATA, target: label}
baselines: {enabled: false}
torch: {enabled: false, hidden_sizes: [32], patience: 100, batch_size: 8}
keras: {enabled: false}
tune: {num_samples: 6, max_t: 6, scheduler: fifo, max_concurrent_trials: 2, space: {lr: {loguniform: [0.0001, 0.01]}}}
report: {importance_repeats: 1}
evaluation: {cv_networks: false}
"""


def _finished_trials(search_dir: Path, epochs: int) -> dict[str, int]:
    """trial directory -> results written, for the trials that reached the last epoch (a FIFO
    trial reports once, at its end, carrying the epochs before)."""
    import json

    counts = {}
    for result in search_dir.glob("*/result.json"):
        lines = [line for line in result.read_text().splitlines() if line.strip()]
        try:
            last = json.loads(lines[-1])["epoch"] if lines else 0
        except (ValueError, KeyError):  # being written
            continue
        if last >= epochs:
            counts[result.parent.name] = len(lines)
    return counts


def test_a_killed_search_is_finished_by_resume(ray_session, tmp_path):
    rows = _slow_enough_data(12000)  # a trial takes several seconds: the kill lands with trials under way
    import pandas as pd

    frame = pd.DataFrame(rows["X_train"], columns=[f"x{i}" for i in range(20)])
    frame["label"] = rows["y_train"]
    frame.to_csv(tmp_path / "data.csv", index=False)
    config = tmp_path / "search.yaml"
    config.write_text(SEARCH.replace("DATA", str(tmp_path / "data.csv")))

    address = ray_session.get_runtime_context().gcs_address
    run_dir = tmp_path / "run"
    search_dir = run_dir / "tune" / "search"
    rayfit = Path(sys.executable).with_name("rayfit")
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen([str(rayfit), "run", str(config), "--out", str(run_dir),
                                   "--set", f"ray.address={address}"], stdout=log, stderr=log, start_new_session=True)
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None and len(_finished_trials(search_dir, 6)) < 2:
            time.sleep(0.1)
        time.sleep(2)  # past Tune's next snapshot of the search state (one a second)
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    before = _finished_trials(search_dir, 6)
    assert 2 <= len(before) < 6

    assert main(["resume", str(run_dir)]) == 0
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["tuning"]["trials"] == 6
    # Every trial ran its 6 epochs (its history, from its checkpoint: a trial whose last epoch was
    # checkpointed but not yet logged when the driver died resumes finished, with nothing to log)
    state = json.loads((run_dir / "run_state.json").read_text())
    assert [t["epochs"] for t in state["stages"]["search:torch_tuned"]["trials"]] == [6] * 6
    after = _finished_trials(search_dir, 6)
    for trial, lines in before.items():
        assert after[trial] == lines, f"finished trial {trial} ran again"
    assert (run_dir / "report.html").is_file() and "torch_tuned" in metrics["models"]

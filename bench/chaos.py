"""`make chaos`: faults injected at random moments, and what survived them, counted.

    python -m bench.chaos                    # 10 runs per framework and launch kind, 5 driver kills
    python -m bench.chaos --runs 2 --driver-runs 1 --cluster-runs 1 --seed 7

- **A training worker SIGKILLed** at a random epoch (Ray Train worker group, and one Ray task), for
  PyTorch and Keras: a run survives when it finishes every epoch, loses at most one epoch or the
  checkpoint interval of training (`checkpoint_every_s`, 5 s), whichever is more, and ends
  with the validation loss of the same run left alone (the runs are deterministic: equal to 1e-6).
- **The cluster a run joined stopped** (`rayfit cluster up`, then down) at a random moment: a run
  survives when the driver ends within 30 s with the `error:` naming the cluster and the resume
  command, and `rayfit resume` on a private Ray finishes it.
- **The driver SIGKILLed** at a random moment of `rayfit run` with a search: a run survives when
  `rayfit resume` finishes it, says how many stages it found finished, and trains none of them
  again, nor any trial of the search that had finished (its results are not written again).

Repeatable: the moments come from `--seed`. Bounded: every run has a time limit. The small form of
each fault runs in the test suite (tests/test_fault_tolerance.py, tests/test_local_cluster.py).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/chaos.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import psutil

import rayfit  # noqa: F401  (chooses tf-keras before anything imports TensorFlow)

EPOCHS = 6
RAYFIT = str(Path(sys.executable).with_name("rayfit"))


def _data(rows: int) -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 20)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] - X[:, 2] > 0).astype(np.int64)
    cut = int(rows * 0.8)
    return {"X_train": X[:cut], "y_train": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


def _fit(framework: str, launch: str, data, storage: Path, hub):
    from rayfit.cluster.plan import WorkerPlan
    from rayfit.config import KerasConfig, TorchConfig
    from rayfit.trainers.launch import fit_neural, start_in_task

    settings = (TorchConfig if framework == "torch" else KerasConfig)(
        epochs=EPOCHS, workers=2, batch_size=16, patience=100, max_failures=2, hidden_sizes=[32, 16])
    if launch == "ray_train":
        return fit_neural(framework, "mlp", settings, data, storage, progress=hub)
    plan = WorkerPlan(1, settings.cpus_per_worker)
    return start_in_task(framework, "mlp", settings, data, storage, plan, progress=hub).result()


def _processes(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


def worker_kills(framework: str, launch: str, runs: int, rng: np.random.Generator, work: Path) -> tuple[int, list]:
    """(runs that survived, one line per run)."""
    import ray

    from rayfit.progress import ProgressHub
    from rayfit.trainers.launch import TrainingData

    marker = "RayTrainWorker" if launch == "ray_train" else f"rayfit.train[{framework}_mlp]"
    data = TrainingData(ray.put(_data(4000 if framework == "keras" else 10000)), "classification", 1, None, seed=0)
    reference = _fit(framework, launch, data, work / f"{framework}-{launch}-reference", ProgressHub.remote())
    expected = reference.history[-1]["val_loss"]
    survived, lines = 0, []
    for run in range(runs):
        kill_at = int(rng.integers(1, EPOCHS))  # after this epoch is reported, before the last
        hub, outcome, seen, killed = ProgressHub.remote(), {}, [], False

        def train():
            try:
                outcome["result"] = _fit(framework, launch, data, work / f"{framework}-{launch}-{run}", hub)
            except Exception as exc:  # noqa: BLE001 - a run that did not survive is counted, not raised
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=train)
        thread.start()
        deadline = time.monotonic() + 600
        while thread.is_alive() and time.monotonic() < deadline:
            seen += [event["epoch"] for event in ray.get(hub.drain.remote()) if "epoch" in event]
            if not killed and seen and max(seen) >= kill_at:
                victims = _processes(marker)
                if victims:
                    os.kill(victims[-1].pid, signal.SIGKILL)
                    killed = True
            time.sleep(0.05)
        thread.join(timeout=60)
        seen += [event["epoch"] for event in ray.get(hub.drain.remote()) if "epoch" in event]
        result = outcome.get("result")
        history = [h["epoch"] for h in result.history] if result else []
        repeated = len(seen) - len(set(seen))
        same = result is not None and abs(result.history[-1]["val_loss"] - expected) <= 1e-6
        lost_s, allowed_s = _lost_training(seen, result)
        ok = killed and history == list(range(1, EPOCHS + 1)) and lost_s <= allowed_s and same
        survived += ok
        lines.append(f"{framework}/{launch} run {run + 1}: killed after epoch {kill_at}: "
                     + ("survived" if ok else "LOST")
                     + f" (epochs repeated {repeated}, {lost_s:.1f} s of training lost, at most {allowed_s:.1f} s allowed,"
                     + f" val_loss {result.history[-1]['val_loss']:.6f} vs {expected:.6f})"
                     if result else f"{framework}/{launch} run {run + 1}: LOST ({outcome.get('error', 'no result')})")
    return survived, lines


def _lost_training(seen: list[int], result) -> tuple[float, float]:
    """(seconds of training the kill cost: the epochs run twice, allowed: one epoch or the
    checkpoint interval, whichever is more, with a tenth for the clock's own noise)."""
    from rayfit.config import TorchConfig

    if result is None:
        return float("inf"), 0.0
    times = {h["epoch"]: h["epoch_time_s"] for h in result.history}
    lost = sum(times.get(epoch, 0.0) for epoch in set(seen) if seen.count(epoch) > 1)
    return lost, 1.1 * max(TorchConfig().checkpoint_every_s, max(times.values()))


TRIAL_EPOCHS = 4
EXPERIMENT = """
name: chaos
data: {source: breast_cancer}
baselines: {models: [dummy, linear]}
torch: {epochs: 8, launch: task, patience: 100, hidden_sizes: [32]}
keras: {enabled: false}
tune: {num_samples: 4, max_t: 4, grace_period: 4, scheduler: fifo}  # max_t: TRIAL_EPOCHS
report: {importance_repeats: 1}
"""


def _finished_trials(run_dir: Path, epochs: int) -> dict[str, int]:
    """trial directory -> results it wrote, for the search's trials that reached their last epoch."""
    counts = {}
    for result in (run_dir / "tune" / "search").glob("*/result.json"):
        lines = [line for line in result.read_text().splitlines() if line.strip()]
        try:  # a FIFO trial reports once, at its end, carrying the epochs before
            if lines and json.loads(lines[-1])["epoch"] >= epochs:
                counts[result.parent.name] = len(lines)
        except (ValueError, KeyError):  # being written
            continue
    return counts


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][-300:] if lines else ""


ALWAYS_AGAIN = ("data", "ray", "evaluate", "importance", "export", "report", "mlflow", "tensorboard")


def driver_kills(runs: int, rng: np.random.Generator, work: Path) -> tuple[int, list]:
    """SIGKILL `rayfit run` at a random moment, then `rayfit resume`: (survived, lines)."""
    config = work / "chaos.yaml"
    config.write_text(EXPERIMENT)
    env = {**os.environ, "RAY_ADDRESS": ""}
    started = time.monotonic()
    full = subprocess.run([RAYFIT, "run", str(config), "--out", str(work / "uninterrupted"), "--address", "local"],
                          capture_output=True, text=True, env=env, timeout=900)
    span = time.monotonic() - started
    if full.returncode != 0:
        return 0, [f"driver: the uninterrupted run failed: {full.stderr[-300:]}"]
    survived, lines = 0, []
    for run in range(runs):
        out = work / f"driver-{run}"
        at = float(rng.uniform(0.3, 0.9)) * span  # between Ray's start and the report
        proc = subprocess.Popen([RAYFIT, "run", str(config), "--out", str(out), "--address", "local"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        time.sleep(at)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the private Ray it started: a lost machine
        before = proc.communicate()[0]
        if not (out / "run_state.json").is_file():
            lines.append(f"driver run {run + 1}: killed at {at:.1f} s, before the run was recorded: nothing to lose")
            survived += 1
            continue
        trials_before = _finished_trials(out, TRIAL_EPOCHS)
        resumed = subprocess.run([RAYFIT, "resume", str(out), "--address", "local"], capture_output=True, text=True,
                                 env=env, timeout=900)
        trials_after = _finished_trials(out, TRIAL_EPOCHS)
        # A finished trial ran again if it wrote more results after the resume (or lost its own).
        trials_redone = [t for t, lines in trials_before.items() if trials_after.get(t) != lines]
        shown = " ".join(resumed.stdout.split())
        found = re.search(r"(\d+) stage\(s\) already finished", shown)
        finished_before = set(re.findall(r"(\w+): done", " ".join(before.split())))
        # Preparing the data, starting Ray, evaluating (its importance too), the export, the report
        # and tracking always run again; a training stage (baselines, a network, a search) that had
        # finished must not.
        redone = [stage for stage in finished_before if f"{stage}: done" in shown and stage not in ALWAYS_AGAIN]
        ok = (resumed.returncode == 0 and found is not None and not redone and not trials_redone
              and (out / "report.html").is_file())
        survived += ok
        lines.append(f"driver run {run + 1}: killed at {at:.1f} s, {found.group(1) if found else '?'} stage(s) and "
                     f"{len(trials_before)} finished trial(s) kept: "
                     + ("survived" if ok else f"LOST (exit {resumed.returncode}, redone {redone + trials_redone}; "
                                              f"last words: {_last_line(resumed.stderr)})"))
    return survived, lines


def cluster_losses(runs: int, rng: np.random.Generator, work: Path) -> tuple[int, list]:
    """`rayfit run` joined to a cluster of its own (`rayfit cluster up`), the cluster's GCS killed at
    a random moment after the run is recorded, then `rayfit resume` on a private Ray: a run survives
    when the driver's last line is the `error:` that names the cluster and the resume command,
    within 30 s of the loss, and the resume finishes it. (The GCS alone: where the driver's own
    node's raylet dies at once too, Ray's core worker ends the driver at once, exit 1, unheard.)"""
    from rayfit.cluster.local import LocalCluster

    config = work / "chaos.yaml"
    config.write_text(EXPERIMENT)
    survived, lines = 0, []
    for run in range(runs):
        directory, out = work / f"cluster-{run}", work / f"lost-{run}"
        up = subprocess.run([RAYFIT, "cluster", "up", "--cpus", "2", "--dir", str(directory)], capture_output=True,
                            text=True, timeout=300)
        if up.returncode != 0:
            lines.append(f"cluster run {run + 1}: the cluster did not start: {_last_line(up.stderr)}")
            continue
        cluster = LocalCluster.load(directory)
        env = {**os.environ, **cluster.env(), "RAY_ADDRESS": ""}
        try:
            proc = subprocess.Popen([RAYFIT, "run", str(config), "--out", str(out), "--address", cluster.address],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            deadline = time.monotonic() + 300
            while not (out / "run_state.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(float(rng.uniform(1.0, 15.0)))  # somewhere in training, the search or the report
            finished_first = proc.poll() is not None
            from rayfit.cluster.local import group_processes

            for process in group_processes(cluster.nodes[0].pid):  # the GCS goes away (see the docstring)
                if process.name() == "gcs_server":
                    process.kill()
            lost_at = time.monotonic()
            stdout, stderr = proc.communicate(timeout=120)
            took = time.monotonic() - lost_at
        finally:
            if (directory / "cluster.json").exists():
                cluster.down()
        if finished_first:
            lines.append(f"cluster run {run + 1}: finished before the cluster was stopped: nothing to lose")
            survived += 1
            continue
        said = [line for line in (stderr + stdout).splitlines() if line.startswith("error: ")]
        told = (proc.returncode == 2 and bool(said) and "stopped answering" in said[-1]
                and said[-1].endswith(f"resume with: rayfit resume {out}") and took < 30)
        resumed = subprocess.run([RAYFIT, "resume", str(out), "--address", "local"], capture_output=True, text=True,
                                 env={**os.environ, "RAY_ADDRESS": ""}, timeout=900)
        ok = told and resumed.returncode == 0 and (out / "report.html").is_file()
        survived += ok
        lines.append(f"cluster run {run + 1}: stopped, the driver out {took:.0f} s later (exit {proc.returncode}): "
                     + ("survived" if ok else f"LOST (said: {said[-1][:200] if said else _last_line(stderr)}; "
                                              f"resume exit {resumed.returncode}: {_last_line(resumed.stderr)})"))
    return survived, lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="worker kills per framework and launch kind")
    parser.add_argument("--driver-runs", type=int, default=5, help="driver kills")
    parser.add_argument("--cluster-runs", type=int, default=3, help="joined clusters stopped mid-run")
    parser.add_argument("--seed", type=int, default=0, help="where the faults land")
    parser.add_argument("--log", default="bench/results/chaos.log",
                        help="where Ray's own output goes (default bench/results/chaos.log)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    from rayfit.cluster.session import ensure_ray
    from rayfit.run_dir import output_to_log, terminal_stream

    out = terminal_stream()  # Ray's and TensorFlow's own output goes to the log below

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    total = lost = 0
    with tempfile.TemporaryDirectory(prefix="rayfit-chaos-") as tmp:
        work = Path(tmp)
        with output_to_log(Path(args.log), verbose=False):
            ensure_ray("local", num_cpus=2)
            for framework in ("torch", "keras") if args.runs else ():
                for launch in ("ray_train", "task"):
                    survived, lines = worker_kills(framework, launch, args.runs, rng, work)
                    say("\n".join(lines))
                    say(f"worker killed, {framework}/{launch}: {survived}/{args.runs} survived")
                    total, lost = total + args.runs, lost + args.runs - survived
            import ray

            ray.shutdown()
        if args.driver_runs:
            survived, lines = driver_kills(args.driver_runs, rng, work)
            say("\n".join(lines))
            say(f"driver killed: {survived}/{args.driver_runs} survived")
            total, lost = total + args.driver_runs, lost + args.driver_runs - survived
        if args.cluster_runs:
            survived, lines = cluster_losses(args.cluster_runs, rng, work)
            say("\n".join(lines))
            say(f"cluster stopped mid-run: {survived}/{args.cluster_runs} survived")
            total, lost = total + args.cluster_runs, lost + args.cluster_runs - survived
    say(f"chaos: {total - lost}/{total} runs survived their fault" + (f", {lost} LOST" if lost else ", nothing lost"))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())

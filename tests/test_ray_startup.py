"""Starting or joining Ray never hangs: a stale `ray start` pointer, an address that does not
answer, and SIGINT / SIGTERM at any stage.

Where to find Ray and whether it answers are decided by cluster/session.py's functions, tested here in
this process as a fresh process would see it (`no_ray_here`: the suite's shared session hidden).
What only a real process shows (a real signal during Ray's start-up and during training, Ray and its
workers gone afterwards, Ctrl-C in each training stage) runs the installed `rayfit` in a process of
its own, in a session of its own (so whatever it starts can be found, and cleaned up, by process
group), with a Ray temp dir of its own (so Ray's pointer file and sessions live there, never in the
machine's /tmp/ray, where other Ray sessions may be running).
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from rayfit.cli import main
from rayfit.config import load_experiment, to_yaml
from rayfit.run_record import STATE_FILE, RunRecord

RAYFIT = Path(sys.executable).with_name("rayfit")
# Baselines only, on a 150-row set: the cheapest complete run.
TINY_OVERRIDES = ("torch.enabled=false", "keras.enabled=false", "tune.enabled=false",
                  "baselines.models=[dummy,linear]", "report.importance_repeats=1")
TINY = ["--data", "iris", *(arg for override in TINY_OVERRIDES for arg in ("--set", override))]
# The bound on failing to join: the connect timeout, plus slack for a busy machine.
SLACK_S = 10


@pytest.fixture
def ray_tmpdir():
    """$RAY_TMPDIR for the process under test: Ray's pointer file is <it>/ray/ray_current_cluster
    (ray/_common/utils.py, get_ray_address_file). Short, under /tmp: Ray's Unix socket paths inside
    it must fit in 107 bytes, which pytest's tmp_path can exceed."""
    path = Path(tempfile.mkdtemp(prefix="rf-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _closed_port() -> int:
    """A port nothing listens on (refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stale_pointer(ray_tmpdir: Path) -> str:
    """What a `ray start --head` killed by a signal leaves behind: the pointer, and nothing at it."""
    address = f"127.0.0.1:{_closed_port()}"
    (ray_tmpdir / "ray").mkdir(parents=True, exist_ok=True)
    (ray_tmpdir / "ray" / "ray_current_cluster").write_text(address)
    return address


class Rayfit:
    """A `rayfit` command in its own session; its output (stdout and stderr, in order) read as it comes."""

    def __init__(self, args, ray_tmpdir: Path, cwd: Path, **env):
        environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        # COLUMNS: one line per progress event, not wrapped at 80 columns by rich
        environ.update(RAY_TMPDIR=str(ray_tmpdir), COLUMNS="1000", **env)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(RAYFIT), *args], cwd=cwd, env=environ, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _take(self, timeout: float):
        line = self._queue.get(timeout=timeout)
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, text: str, timeout: float = 120) -> None:
        """Read on until a line holds `text`; fail (with the output) if the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._take(max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {text!r} within {timeout} s:\n" + self.output)
            if line is None:
                pytest.fail(f"rayfit ended before {text!r}:\n" + self.output)
            if text in line:
                return

    def finish(self, timeout: float = 180) -> int:
        """Wait for the exit; the exit status."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"rayfit still running after {timeout} s:\n" + self.output)
        while self._take(timeout=10) is not None:
            pass
        return self.proc.returncode

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def last_line(self) -> str:
        return next(line for line in reversed(self.lines) if line.strip())

    def leftovers(self, grace_s: float = 15) -> list[str]:
        """Processes still in the command's process group (Ray's, if it did not stop them), after a
        grace period for ones that are on their way out."""
        deadline = time.monotonic() + grace_s
        while True:
            left = []
            for proc in psutil.process_iter(["pid", "name"]):
                try:
                    if os.getpgid(proc.info["pid"]) == self.proc.pid:
                        left.append(f"{proc.info['pid']} {proc.info['name']}")
                except (ProcessLookupError, psutil.Error):
                    pass
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)

    def kill_leftovers(self) -> None:
        """Clean up after a failed test: only this command's own process group."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


@pytest.fixture
def rayfit_command(ray_tmpdir, tmp_path):
    """Start rayfit commands; whatever they leave running is killed afterwards."""
    started: list[Rayfit] = []

    def start(*args, **env) -> Rayfit:
        started.append(Rayfit(args, ray_tmpdir, tmp_path, **env))
        return started[-1]

    yield start
    for command in started:
        command.kill_leftovers()


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def no_ray_here(monkeypatch, ray_tmpdir):
    """This process as a fresh one sees Ray: no session in it (the suite's shared one hidden), no
    RAY_ADDRESS, and Ray's pointer file under a temp dir of the test's own. Nothing here may start
    Ray: `_init` records what would have been started."""
    import ray

    from rayfit.cluster import session

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmpdir))
    started: list[str] = []
    monkeypatch.setattr(session, "_init", lambda target, address, **local: started.append(address))
    return started


# ----------------------------------------------------------------------------------------------
# No address: a stale pointer is not followed


def test_a_stale_pointer_is_ignored_and_a_private_ray_started(no_ray_here, ray_tmpdir):
    from rayfit.cluster.session import POINTER, RaySession, ensure_ray, find_ray

    stale = _stale_pointer(ray_tmpdir)
    pointer = ray_tmpdir / "ray" / "ray_current_cluster"
    target = find_ray(None)
    assert (target.address, target.source, target.found_here) == (stale, POINTER, True)
    assert target.describe(15) == f"join the local cluster at {stale} if it answers, else start a private Ray"
    assert ensure_ray(None) == RaySession(True, f"started a private Ray (ignored a stale pointer to {stale} in "
                                                f"{pointer}: connection refused)")
    # "local": a private instance; None would follow the stale pointer again inside ray.init
    assert no_ray_here == ["local"]
    assert pointer.read_text() == stale  # Ray's file is left alone: rayfit only declines to follow it


def test_a_private_ray_starts_lean_its_workers_taking_the_driver_s_environment(no_ray_here, monkeypatch):
    """No dashboard unless asked (ray.dashboard), and no job runtime_env while the driver's own
    environment already holds what workers need: only then does Ray use the workers it starts
    beside the raylet. Where the user's environment differs, the job sets what workers need."""
    from rayfit.cluster import session
    from rayfit.config import load_experiment

    calls = []
    monkeypatch.setattr(session, "_init", lambda target, address, **local: calls.append(local))
    for key, value in session.WORKER_ENV.items():  # as a fresh driver has them (ensure_ray's setdefault)
        monkeypatch.setenv(key, value)
    assert load_experiment(data="iris").ray.dashboard is False
    session.ensure_ray("local", dashboard=False)
    assert calls[-1]["include_dashboard"] is False and calls[-1]["runtime_env"] is None
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's own choice
    session.ensure_ray("local", dashboard=True)
    assert calls[-1]["include_dashboard"] is True
    assert calls[-1]["runtime_env"] == {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}}


# ----------------------------------------------------------------------------------------------
# An address that does not answer: an error naming it, within the timeout


def _resumable_run(run_dir: Path) -> Path:
    """A run directory as `rayfit run` leaves it when stopped before any stage finished."""
    run_dir.mkdir()
    exp = load_experiment(data="iris", overrides=TINY_OVERRIDES)
    (run_dir / "config.yaml").write_text(to_yaml(exp))
    RunRecord.create(run_dir, "iris")
    return run_dir


# how the address is given -> (its command-line arguments, its environment, the key the error names)
ADDRESS_SOURCES = {
    "--address": (lambda a: ["--address", a], lambda a: {}, "ray.address"),
    "ray.address": (lambda a: ["--set", f"ray.address={a}"], lambda a: {}, "ray.address"),
    "RAY_ADDRESS": (lambda a: [], lambda a: {"RAY_ADDRESS": a}, "RAY_ADDRESS"),
}


@pytest.mark.parametrize("given", list(ADDRESS_SOURCES))
def test_an_address_that_refuses_is_an_error_naming_it(given, no_ray_here, tmp_path, monkeypatch, capfd):
    args, env, key = ADDRESS_SOURCES[given]
    address = f"127.0.0.1:{_closed_port()}"
    for name, value in env(address).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert main(["run", *TINY, "--out", "run", *args(address)]) == 2
    assert time.monotonic() - started < 15 + SLACK_S  # the default ray.connect_timeout_s, and slack
    out, err = capfd.readouterr()
    assert f"ray: join {address} ({key}; up to 15 s)" in _flat(out)
    assert err.strip() == f"error: {key}: cannot join Ray at {address}: connection refused"
    assert "Traceback" not in out + err and no_ray_here == []
    assert not (tmp_path / "run").exists()  # the run directory it claimed is given back


def test_resume_address_overrides_the_runs_own(no_ray_here, tmp_path, capfd):
    run_dir = _resumable_run(tmp_path / "interrupted")
    address = f"127.0.0.1:{_closed_port()}"
    assert main(["resume", str(run_dir), "--address", address]) == 2
    out, err = capfd.readouterr()
    assert f"ray: join {address}" in _flat(out)
    assert err.strip() == f"error: ray.address: cannot join Ray at {address}: connection refused"
    assert (run_dir / STATE_FILE).is_file()  # still there to resume once the cluster is back


def test_an_open_port_where_no_ray_answers_fails_within_the_timeout(no_ray_here, tmp_path, monkeypatch, capfd):
    """The kernel accepts TCP connections to a listening socket that never reads: past the TCP check,
    Ray's own client would wait there for minutes."""
    monkeypatch.chdir(tmp_path)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        assert main(["run", *TINY, "--out", "run", "--address", address, "--set", "ray.connect_timeout_s=2"]) == 2
        assert time.monotonic() - started < 2 + SLACK_S
    out, err = capfd.readouterr()
    assert f"ray: join {address} (ray.address; up to 2 s)" in _flat(out)
    assert err.strip() == f"error: ray.address: cannot join Ray at {address}: a port is open there, " \
                          f"but no Ray answers within 2 s"
    assert no_ray_here == []


# ----------------------------------------------------------------------------------------------
# Signals


def test_a_private_ray_keeps_idle_workers_for_the_next_stage(ray_session):
    """The suite's Ray is private (ensure_ray "local"): four workers busy at once, then idle for 3 s,
    are all still there to serve the next stage (Ray's default kills idle workers above the CPU count
    after 1 s, and the next stage's tasks paid fresh workers and their imports again)."""
    import ray

    @ray.remote(num_cpus=0)
    class Barrier:
        def __init__(self):
            self.arrived = 0

        def arrive(self) -> int:
            self.arrived += 1
            return self.arrived

        def count(self) -> int:
            return self.arrived

    @ray.remote(num_cpus=0.5)
    def pid(barrier):
        ray.get(barrier.arrive.remote())
        while ray.get(barrier.count.remote()) < 4:  # the four at once: four workers
            time.sleep(0.05)
        return os.getpid()

    barrier = Barrier.remote()
    workers = set(ray.get([pid.remote(barrier) for _ in range(4)], timeout=120))
    ray.kill(barrier)
    assert len(workers) == 4
    time.sleep(3)
    assert all(psutil.pid_exists(worker) for worker in workers)


def test_sigterm_during_ray_startup_stops_at_once_and_the_run_resumes(rayfit_command, tmp_path, ray_session,
                                                                     monkeypatch):
    run = rayfit_command("run", *TINY, "--out", "run")
    run.wait_for("ray: start a private Ray")
    time.sleep(1)  # inside ray.init, which takes about 5 s here
    run.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert run.finish(timeout=30) == 130, run.output
    assert time.monotonic() - signalled < SLACK_S, run.output
    assert "ray: done" not in run.output  # it was stopped during the start-up, not after
    assert run.last_line == "error: interrupted by SIGTERM; resume with: rayfit resume run", run.output
    assert run.leftovers() == []  # the half-started Ray is stopped too

    monkeypatch.chdir(tmp_path)  # resumed here, on the suite's Ray: the record is what is tested
    assert main(["resume", "run"]) == 0
    assert (tmp_path / "run" / "report.html").is_file()


def test_sigterm_during_training_stops_ray_and_names_the_resume_command(rayfit_command, tmp_path):
    # Long enough that the signal always lands mid-training; one Ray task, not a worker group,
    # to keep the test cheap.
    run = rayfit_command("run", *TINY, "--out", "run", "--set", "baselines.enabled=false", "--set", "torch.enabled=true",
                 "--set", "torch.launch=task", "--set", "torch.epochs=20000", "--set", "torch.patience=20000")
    run.wait_for("torch_mlp: 2/20000")
    checkpoints = tmp_path / "run" / "checkpoints" / "torch_mlp"
    waited = time.monotonic()  # the first checkpoint comes after torch.checkpoint_every_s (5 s) of training
    while not list(checkpoints.glob("checkpoint_*")) and time.monotonic() - waited < 60:
        time.sleep(0.2)
    run.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert run.finish(timeout=30) == 130, run.output
    assert time.monotonic() - signalled < SLACK_S, run.output
    assert run.last_line == "error: interrupted by SIGTERM; resume with: rayfit resume run", run.output
    assert run.leftovers() == []  # Ray, its workers and the training task included
    state = json.loads((tmp_path / "run" / STATE_FILE).read_text())
    assert state["status"] == "running" and "torch_mlp" not in state["stages"]
    assert list(checkpoints.glob("checkpoint_*"))  # resume continues here


# Ctrl-C in each training stage of one run in turn: the baselines' Ray tasks, a Ray Train worker
# group, a Tune search. Each time Ray stops, what finished stays finished, and `rayfit resume`
# goes on from there; the last resume (in this process, on the suite's Ray) finishes the run.
CTRL_C_EXPERIMENT = """
name: ctrl-c
data: {source: DATA, target: label}
baselines: {models: [dummy, linear, random_forest]}
torch: {epochs: 8, launch: ray_train, workers: 2, batch_size: 16, patience: 100, hidden_sizes: [32]}
keras: {enabled: false}
tune: {num_samples: 2, max_t: 2, grace_period: 2, scheduler: fifo, max_concurrent_trials: 1}
report: {importance_repeats: 1}
evaluation: {cv_networks: false}
"""


def _ctrl_c(command: Rayfit, run_dir: Path) -> dict:
    """SIGINT now: exit 130 within the slack, the resume command named, Ray and its workers gone;
    the run's record as it was left."""
    command.proc.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    assert command.finish(timeout=60) == 130, command.output
    assert time.monotonic() - signalled < SLACK_S, command.output
    assert command.last_line == f"error: interrupted by SIGINT; resume with: rayfit resume {run_dir.name}", \
        command.output
    assert command.leftovers() == []
    state = json.loads((run_dir / STATE_FILE).read_text())
    assert state["status"] == "running"
    return state["stages"]


def test_ctrl_c_in_each_training_stage_leaves_a_run_that_resume_finishes(rayfit_command, tmp_path, ray_session,
                                                                             monkeypatch, capfd):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)  # 12k rows: a worker group's epoch takes about a second here
    frame = pd.DataFrame(rng.standard_normal((12000, 20)).round(4), columns=[f"x{i}" for i in range(20)])
    frame["label"] = (frame["x0"] + frame["x1"] - frame["x2"] > 0).astype(int)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "exp.yaml").write_text(CTRL_C_EXPERIMENT.replace("DATA", str(tmp_path / "rows.csv")))
    run_dir = tmp_path / "run"
    baselines = {"dummy", "linear", "random_forest"}

    run = rayfit_command("run", "exp.yaml", "--out", "run")
    run.wait_for("baselines: classic-ML baselines")  # the tasks are submitted, their workers starting
    assert not baselines <= set(_ctrl_c(run, run_dir))

    resume = rayfit_command("resume", "run")
    resume.wait_for("torch_mlp: 1/8")  # inside the worker group's fit
    snapshot = run_dir / "checkpoints" / "torch_mlp" / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + 30
    while not (snapshot.is_file() and json.loads(snapshot.read_text()).get("latest_checkpoint_result")):
        assert time.monotonic() < deadline, resume.output  # Ray Train has recorded a checkpoint
        time.sleep(0.05)
    stages = _ctrl_c(resume, run_dir)
    assert baselines <= set(stages) and "torch_mlp" not in stages

    resume = rayfit_command("resume", "run")
    resume.wait_for("torch_tuned: tune torch")
    time.sleep(3)  # trials under way
    stages = _ctrl_c(resume, run_dir)
    assert "torch_mlp" in stages and "torch_tuned" not in stages
    assert "torch_mlp: 1/8" not in resume.output  # continued from its checkpoint, not from the start

    # The last resume, on the suite's Ray (three real SIGINTs above each stopped a Ray of its own):
    # what is tested is what the record left it.
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    assert main(["resume", "run"]) == 0
    shown = _flat(capfd.readouterr().out)
    assert f"resuming {run_dir}: 4 stage(s) already finished" in shown, shown
    assert not any(f"{stage}: done" in shown for stage in [*baselines, "torch_mlp"]), shown
    assert json.loads((run_dir / "metrics.json").read_text())["models"].keys() >= {*baselines, "torch_mlp",
                                                                                  "torch_tuned"}
    assert (run_dir / "report.html").is_file()


# The CLI's signal policy on its own, without Ray: a library that installs its own handler (as
# ray.init, Ray Train and Tune do) does not get the signal, and a second signal exits at once
# even while the clean-up of the first is still running.
POLICY = textwrap.dedent("""
    import signal, sys, time
    from rayfit.signals import EXIT_INTERRUPTED, stop_on_signals

    with stop_on_signals() as received:
        signal.signal(signal.SIGINT, lambda *a: sys.exit(3))   # what Ray's libraries do
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
        try:
            print("ready", flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            print("interrupted by", received[0], flush=True)
            if sys.argv[1] == "twice":
                time.sleep(60)  # a slow clean-up, cut short by the second signal
            sys.exit(EXIT_INTERRUPTED)
    """)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("times", ["once", "twice"])
def test_the_first_signal_interrupts_and_a_second_exits_at_once(signum, times):
    proc = subprocess.Popen([sys.executable, "-c", POLICY, times], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signum)
        assert proc.stdout.readline().strip() == f"interrupted by {signal.Signals(signum).name}"
        if times == "twice":
            proc.send_signal(signum)
        assert proc.wait(timeout=20) == 130  # not 3: the library's handler never ran; not 60 s later
    finally:
        proc.kill()


@pytest.mark.slow
def test_a_private_ray_stops_whole_with_its_monitor_killed_not_waited_for():
    """shutdown_ray kills Ray's autoscaler monitor (which never exits on SIGTERM: Ray waited a
    second for it at every run's end) and lets Ray stop the rest: no process of the Ray is left."""
    script = textwrap.dedent("""
        import json, psutil, ray
        from ray._private import worker
        from rayfit.cluster.session import ensure_ray, shutdown_ray
        ensure_ray("local", num_cpus=1, dashboard=False)
        ray.get(ray.remote(lambda: 1).remote())
        monitors = [info.process for info in worker._global_node.all_processes["monitor"]]
        ray_processes = psutil.Process().children(recursive=True)
        at_ray_shutdown, shutdown = [], ray.shutdown
        def watched_shutdown(**kwargs):  # what the monitor is when Ray's own stop begins
            at_ray_shutdown.extend(p.poll() for p in monitors)
            return shutdown(**kwargs)
        ray.shutdown = watched_shutdown
        shutdown_ray()
        psutil.wait_procs(ray_processes, timeout=10)
        print(json.dumps({"monitor_exit": at_ray_shutdown,
                          "left": [p.pid for p in ray_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["monitor_exit"] == [-signal.SIGKILL] and outcome["left"] == [], outcome

"""Reliability, round two: one driver per run (rayfit/lease.py: a new run's directory claimed
exclusively, even by two runs started in the same moment; `resume` refusing a run another driver
works on and taking over from one that is gone), and the smaller accidents: a fetched key that
climbs out of its destination, concurrent cache writers, a head whose job agent is not up yet."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rayfit.lease as lease_module
from rayfit.cluster.storage import Location
from rayfit.config import Experiment
from rayfit.errors import UserError
from rayfit.lease import LEASE_FILE, RunLease, Taken
from rayfit.progress import Display
from rayfit.run_dir import claim_run_dir
from rayfit.stages.open_run import new_run, resumed_run

CLAIM = """
import sys, time
from pathlib import Path
from rayfit.cluster.storage import Location
from rayfit.lease import Taken
from rayfit.run_dir import claim_run_dir
start = float(sys.argv[2])
while time.time() < start:
    pass
try:
    claim_run_dir(Location.of(sys.argv[1]))
    print("claimed")
except Taken:
    print("taken")
"""


def test_two_processes_claiming_one_directory_at_once_one_wins(tmp_path):
    for attempt in range(3):
        target = tmp_path / f"twin-{attempt}"
        start = time.time() + 2.0  # both spin until the same instant, then claim
        racers = [subprocess.Popen([sys.executable, "-c", CLAIM, str(target), str(start)], stdout=subprocess.PIPE,
                                   text=True) for _ in range(2)]
        answers = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)
        assert answers == ["claimed", "taken"], answers


def _holder(path: Path, **fields) -> None:
    record = {"host": socket.gethostname(), "pid": os.getpid(), "started": 0.0, "expires": time.time() + 60,
              "token": "someone"}
    record.update(fields)
    (path / LEASE_FILE).write_text(json.dumps(record))


def test_resume_refuses_a_live_driver_and_takes_over_from_a_gone_one(tmp_path):
    import psutil

    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _holder(run, pid=sleeper.pid, started=psutil.Process(sleeper.pid).create_time())
        with pytest.raises(Taken, match=f"another driver is working on this run \\(pid {sleeper.pid} on this host\\)"):
            RunLease(Location.of(run)).take("run")
    finally:
        sleeper.kill()
        sleeper.wait()
    # the same pid, gone: taken over
    taker = RunLease(Location.of(run)).take("run")
    held = json.loads((run / LEASE_FILE).read_text())
    assert held["pid"] == os.getpid() and held["token"] == taker.token
    # this process holds it now: a second command in it is refused until the first lets go
    with pytest.raises(Taken):
        RunLease(Location.of(run)).take("run")
    taker.release()
    assert not (run / LEASE_FILE).exists()
    # a pid of this host reused by another process (its start time differs): gone
    _holder(run, pid=os.getppid(), started=1.0)
    RunLease(Location.of(run)).take("run").release()
    # another host's driver: by its expiry
    _holder(run, host="elsewhere-node", pid=12345)
    with pytest.raises(Taken, match="pid 12345 on host elsewhere-node .*its lease runs until"):
        RunLease(Location.of(run)).take("run")
    _holder(run, host="elsewhere-node", pid=12345, expires=time.time() - 1)
    RunLease(Location.of(run)).take("run").release()


def test_a_driver_keeps_its_lease_fresh_until_it_lets_go(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_module, "REFRESH_S", 0.05)
    run = tmp_path / "run"
    run.mkdir()
    held = RunLease(Location.of(run)).create()  # refreshed from here on
    first = json.loads((run / LEASE_FILE).read_text())["expires"]
    time.sleep(0.5)
    assert json.loads((run / LEASE_FILE).read_text())["expires"] > first
    held.release()
    time.sleep(0.2)
    assert not (run / LEASE_FILE).exists()  # and the refresher wrote no new one


def _exp(tmp_path: Path, name: str) -> Experiment:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "y": rng.integers(0, 2, 60)})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    return Experiment.model_validate({"name": name, "data": {"source": str(tmp_path / "rows.csv"), "target": "y"}})


def test_a_run_named_by_rayfit_moves_to_the_next_name_when_a_twin_claims_it_first(tmp_path):
    exp = _exp(tmp_path, "twin")
    planned = Location.of(tmp_path / "runs" / "twin-20261205-120000")
    twin = claim_run_dir(planned)  # the other run, started in the same second, claimed it first
    renamed = []
    state, give_back = new_run(exp, planned.uri, Display(io.StringIO(), live=False), renamed=renamed.append)
    try:
        assert state.location != planned and len(renamed) == 1 and renamed[0] == state.location
        assert state.location.name.startswith("twin-")
        assert (state.run_dir / "config.yaml").is_file() and not (planned.path / "config.yaml").exists()
    finally:
        give_back()
        twin.release()
    # the directory the user named (--out) is never taken over by a second run
    twin = claim_run_dir(planned)
    with pytest.raises(UserError, match="another run claimed this directory"):
        new_run(exp, planned.uri, Display(io.StringIO(), live=False))
    twin.release()


def test_resume_says_another_driver_is_working_on_the_run(tmp_path):
    exp = _exp(tmp_path, "busy")
    state, give_back = new_run(exp, str(tmp_path / "busy"), Display(io.StringIO(), live=False))
    try:  # the first driver still holds it (in this very process)
        with pytest.raises(Taken, match="another driver is working on this run"):
            resumed_run(str(tmp_path / "busy"), Display(io.StringIO(), live=False))
        state.lease.release()  # it ended: the run can be resumed
        resumed = resumed_run(str(tmp_path / "busy"), Display(io.StringIO(), live=False))
        assert resumed.lease is not None and (tmp_path / "busy" / LEASE_FILE).is_file()
        resumed.lease.release()
        resumed.mirror.close()
    finally:
        give_back()


def test_a_fetched_key_that_climbs_out_of_the_destination_is_refused(tmp_path, monkeypatch):
    """An object store key holding `..` as a part would be written outside `fetch --out`."""
    source = tmp_path / "run"
    source.mkdir()
    (source / "metrics.json").write_text("{}")
    real = Location.children

    def with_a_climbing_key(self):
        found = real(self)
        return found + [Location(self.uri + "/..")] if self.uri == str(source) else found

    monkeypatch.setattr(Location, "children", with_a_climbing_key)
    with pytest.raises(UserError, match="holds an entry named '..', which would be written outside"):
        Location.of(source).download(tmp_path / "copy")


def test_concurrent_writers_of_the_launch_cost_cache_write_through_files_of_their_own(tmp_path, monkeypatch):
    from rayfit.trainers import launch_cost

    monkeypatch.setattr(launch_cost, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(launch_cost, "known_worker_group_start_cost", lambda framework: None)
    monkeypatch.setattr(launch_cost, "_time_empty_run", lambda framework: 1.5)
    monkeypatch.setattr(launch_cost, "cluster_key", lambda framework: framework)
    through = []
    replace = Path.replace

    def noted(self, target):
        through.append(self.name)
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", noted)
    launch_cost.worker_group_start_cost("torch")
    launch_cost.worker_group_start_cost("keras")
    assert len(through) == 2 and through[0] != through[1], through  # never one fixed temporary name
    assert json.loads((tmp_path / "worker_group_start.json").read_text()).keys() == {"torch", "keras"}


def test_a_head_just_started_is_asked_again_until_its_job_agent_answers():
    from rayfit.cluster.jobs import _submit_when_ready

    class JustStarted:
        def __init__(self, refusals: int):
            self.refusals, self.asked = refusals, 0

        def submit_job(self, **job):
            self.asked += 1
            if self.asked <= self.refusals:
                raise RuntimeError("Request failed with status code 500: No available agent to submit job, "
                                   "please try again later.")
            return "raysubmit_1"

    head = JustStarted(refusals=2)
    assert _submit_when_ready(head, "127.0.0.1:8265", 30, entrypoint="x") == "raysubmit_1" and head.asked == 3
    with pytest.raises(UserError, match="--address 127.0.0.1:8265: the job was not accepted: .*No available agent"):
        _submit_when_ready(JustStarted(refusals=10 ** 6), "127.0.0.1:8265", 1.5, entrypoint="x")


def test_a_large_data_file_is_shipped_by_its_content_and_a_broken_upload_is_never_reused(tmp_path, monkeypatch):
    from rayfit.cluster import jobs

    monkeypatch.setattr(jobs, "SHIP_LIMIT_BYTES", 0)  # every file counts as large: into the storage
    storage, workdir = Location.of(tmp_path / "storage"), tmp_path / "job"
    data = tmp_path / "rows.csv"
    data.write_text("a,y\n1,0\n2,1\n")
    first = Path(jobs._ship(data, workdir, storage))
    assert first.read_text() == data.read_text() and first.name == "rows.csv"
    assert jobs._ship(data, workdir, storage) == str(first)  # the same content: the same upload
    data.write_text("a,y\n1,1\n2,0\n3,1\n")  # edited: uploaded anew, beside the first
    second = Path(jobs._ship(data, workdir, storage))
    assert second != first and second.read_text() == data.read_text()
    # an upload killed half-way (no marker): made again, not reused
    (second.parent / jobs.UPLOADED).unlink()
    second.write_text("a,y\n1,")
    assert Path(jobs._ship(data, workdir, storage)) == second and second.read_text() == data.read_text()


def test_resume_notices_data_in_storage_that_changed(tmp_path):
    from rayfit.run_record import RunRecord

    data = tmp_path / "rows.csv"
    data.write_text("a,y\n1,0\n2,1\n")
    uri = f"file://{data}"
    record = RunRecord.create(tmp_path, uri)
    assert record.data["source_sha256"].startswith("objects:")
    record.check_source(uri)  # unchanged: fine
    data.write_text("a,y\n1,0\n2,1\n3,0\n")
    with pytest.raises(UserError, match="changed since the run started"):
        record.check_source(uri)


def test_following_a_job_whose_jobs_api_stops_answering_is_one_error_and_a_blip_is_waited_out():
    from rayfit.cluster.jobs import follow

    class Head:
        def __init__(self, failures: int):
            self.failures, self.asked = failures, 0

        def get_job_status(self, job_id):
            self.asked += 1
            if self.asked <= self.failures:
                raise ConnectionRefusedError("[Errno 111] Connection refused")
            return "JobStatus.SUCCEEDED"

        def get_job_logs(self, job_id):
            return "data: done\n"

    said = []
    assert follow(Head(failures=2), "raysubmit_1", said.append, poll_s=0.01, patience_s=5) is None
    assert said == ["data: done"]
    with pytest.raises(UserError, match="job raysubmit_2: the cluster's Jobs API stopped answering .*"
                                        "rayfit jobs status raysubmit_2"):
        follow(Head(failures=10 ** 6), "raysubmit_2", said.append, poll_s=0.01, patience_s=0.2)


def test_a_run_given_the_out_of_an_earlier_run_leaves_that_run_s_mlflow_records_alone(tmp_path):
    """Tracking deletes what an earlier attempt of the same run logged (a resumed run): by the run's
    own id, not its directory, so a new run given a reused --out never deletes another's records."""
    from mlflow import MlflowClient

    from rayfit.evaluation.tracking import RUN_TAG, log_to_mlflow
    from rayfit.run_record import RunRecord

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = RunRecord.create(tmp_path / "a", "iris"), RunRecord.create(tmp_path / "b", "iris")
    assert first.run_id and second.run_id and first.run_id != second.run_id
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    metrics = {"best_model": "linear", "task": "classification", "models": {"linear": {"test": {"accuracy": 0.9}}}}
    for record in (first, second, second):  # the second run logged twice (resumed): its first attempt replaced
        log_to_mlflow(uri, "exp", "runs-same-out", record.run_id, {"seed": 0}, metrics, {}, {}, [])
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("exp").experiment_id
    parents = [r for r in client.search_runs([experiment]) if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.data.tags[RUN_TAG] for r in parents) == sorted([first.run_id, second.run_id])


def test_a_stop_while_the_terminal_is_given_back_leaves_it_given_back(tmp_path, monkeypatch):
    """A lost cluster stops the command with a SIGINT of its own, whenever it sees the loss: one
    that lands while `output_to_log` gives the terminal back its file descriptors must not leave
    them on the log (the command's last line, the `error:`, would go there). It acts once they are
    back."""
    import signal

    from rayfit.errors import Interrupted
    from rayfit.run_dir import output_to_log
    from rayfit.signals import stop_on_signals

    def where(fd: int) -> tuple[int, int]:
        stat = os.fstat(fd)
        return stat.st_dev, stat.st_ino

    before = where(1), where(2)
    real, calls = os.dup2, []

    def dup2(source, target):
        calls.append(target)
        if len(calls) == 3:  # the first of the two that give fds 1 and 2 back
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs here
        return real(source, target)

    monkeypatch.setattr(os, "dup2", dup2)
    with stop_on_signals(exit_on_second=False) as received:
        with pytest.raises(Interrupted):
            with output_to_log(tmp_path / "run.log", verbose=False):
                pass
    monkeypatch.undo()
    assert received == ["SIGINT"] and len(calls) == 4
    assert (where(1), where(2)) == before


def test_a_hard_stop_s_last_words_reach_the_terminal_not_the_log(tmp_path, capfd):
    """A lost cluster whose clean-up waits on it ends the process from a timer (os._exit), while the
    run's output goes to run.log: its `error:` line is written to the terminal's stderr itself."""
    from rayfit.run_dir import last_words, output_to_log

    with output_to_log(tmp_path / "run.log", verbose=False):
        print("into the log")
        last_words("error: the cluster at 10.0.0.1:6379 stopped answering; resume with: rayfit resume run")
    captured = capfd.readouterr()
    assert "error: the cluster at 10.0.0.1:6379 stopped answering; resume with: rayfit resume run" in \
        captured.err.splitlines()
    log = (tmp_path / "run.log").read_text()
    assert "into the log" in log and "stopped answering" not in log
    last_words("error: after the log")  # the terminal's own descriptor once output is back
    assert capfd.readouterr().err == "error: after the log\n"

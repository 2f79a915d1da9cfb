"""The launch seam (cluster/launch.py) and the watchdog it waits under: remote work starts named
and with its resources, finishes in any order, and a task that is running is progress, so work
queued behind long tasks is not taken for a stall (while a real stall still is)."""
from __future__ import annotations

import time

import pytest

from rayfit.cluster.launch import POOL_ENV, as_finished, start
from rayfit.cluster.watchdog import StageStalled, Watchdog

WAITING = ["{CPU: 1} x3 (task or actor)"]


def test_a_running_task_is_progress_and_a_quiet_stage_with_nothing_running_is_a_stall():
    running = {"n": 1}
    dog = Watchdog(timeout_s=0.4, demands=lambda: WAITING, describe_cluster=lambda: "2 CPUs (0 free)",
                   running=lambda tasks: running["n"])
    dog._tasks.add("a-task")  # what the seam records for each task it starts
    with dog:
        time.sleep(1.5)  # well past the timeout, queued work waiting, but a task runs
        assert not dog.fired
        running["n"] = 0
        deadline = time.monotonic() + 5
        while not dog.fired and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(StageStalled, match=r"made no progress for \d+ s while Ray could not place \{CPU: 1\} x3"):
            dog.check()


def test_a_look_that_fails_does_not_end_the_watching():
    """An exception inside the watchdog's own poll (Ray's state out of reach for a moment, a
    description that fails) used to end its thread silently: the next look still looks."""
    looks = {"n": 0}

    def failing_description():
        raise ConnectionError("gone for a moment")

    dog = Watchdog(timeout_s=0.2, demands=lambda: WAITING, describe_cluster=failing_description)
    dog._look = _failing_twice(dog._look, looks)
    with dog:
        deadline = time.monotonic() + 5
        while not dog.fired and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(StageStalled, match="the cluster has resources it did not say"):
            dog.check()
    assert looks["n"] == 2


def _failing_twice(look, looks):
    def failing():
        if looks["n"] < 2:  # the first two looks fail outright, outside the advisory calls
            looks["n"] += 1
            raise RuntimeError("a bug in a look")
        return look()
    return failing


def test_work_started_through_the_seam_finishes_in_any_order_and_counts_as_running(ray_session):
    def _nap(seconds: float, answer):  # defined here: pickled by value, as workers cannot import this module
        time.sleep(seconds)
        return answer

    warm = [start(_nap, 0.5, "here", name="rayfit.nap[warm]", cpus=1) for _ in range(2)]  # two workers up
    assert [handle.result() for handle in warm] == ["here", "here"]
    handles = [start(_nap, seconds, seconds, name=f"rayfit.nap[{seconds}]", cpus=1, tag=seconds)
               for seconds in (4.0, 0.1)]
    # Ray reports a task's state about once a second: a stall timeout is seconds, never less
    dog = Watchdog(timeout_s=1.5, demands=lambda: WAITING, describe_cluster=lambda: "")
    with dog:
        for handle in handles:
            dog.track(handle.ref)
        finished = [(handle.tag, answer) for handle, answer in as_finished(handles)]
        # both ran past the timeout with demands "pending": the running tasks kept the stage alive
        assert not dog.fired
    assert finished == [(0.1, 0.1), (4.0, 4.0)]


def test_a_framework_s_tasks_run_in_warm_workers_of_their_own_pool(ray_session):
    def _where():  # defined here: pickled by value, as workers cannot import this module
        import os

        return os.getpid(), os.environ.get(POOL_ENV)

    first = start(_where, name="rayfit.where[torch]", cpus=1, pool="torch").result()
    again = start(_where, name="rayfit.where[torch]", cpus=1, pool="torch").result()
    keras = start(_where, name="rayfit.where[keras]", cpus=1, pool="keras").result()
    plain = start(_where, name="rayfit.where", cpus=1).result()
    assert first[1] == "torch" and again == first  # the same worker, its imports kept
    assert keras[1] == "keras" and keras[0] != first[0]
    assert plain[1] is None and plain[0] not in {first[0], keras[0]}


def test_a_network_s_folds_run_in_a_few_chains_leaving_cpus_to_the_classic_models():
    from rayfit.stages.network_folds import fold_lanes

    assert fold_lanes(networks=2, cpus=2) == 1  # one chain each: one warm worker per framework
    assert fold_lanes(networks=1, cpus=2) == 1
    assert fold_lanes(networks=2, cpus=16) == 4
    assert fold_lanes(networks=1, cpus=16) == 8


def test_a_network_held_by_its_pool_answers_saves_and_exports_as_itself(ray_session, tmp_path, monkeypatch):
    import numpy as np
    import torch

    from rayfit.config import TorchConfig
    from rayfit.evaluation.export import ONNX_FILE, TORCHSCRIPT_FILE, export_extras
    from rayfit.evaluation.fitted import load_model, model_to_bytes
    from rayfit.evaluation.manifest import write_manifest
    from rayfit.trainers import remote_network
    from rayfit.trainers.core import architecture
    from rayfit.trainers.remote_network import NetworkOnWorkers
    from rayfit.trainers.torch_model import TorchModel
    from rayfit.trainers.torch_models import build_torch_model

    torch.manual_seed(0)
    arch = architecture(TorchConfig().model_dump(), "mlp", (6,), 3)
    here = TorchModel("torch_mlp", "classification", build_torch_model(arch), arch)
    held = NetworkOnWorkers("torch_mlp", "classification", "torch", model_to_bytes(here))
    X = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    calls, remote_call = [], NetworkOnWorkers._call
    monkeypatch.setattr(NetworkOnWorkers, "_call", lambda self, fn, *args: calls.append(fn) or remote_call(self, fn, *args))
    assert not held.in_process and held.kind == "torch"
    assert np.allclose(held.predict_proba(X), here.predict_proba(X), atol=1e-6)
    assert (held.predict(X) == here.predict(X)).all()  # the same rows again: the outputs kept, no second call
    assert calls == [remote_network._outputs_task]

    held.save(tmp_path / "saved")  # the archive's files, written here without the framework
    write_manifest(tmp_path / "saved")
    assert np.allclose(load_model(tmp_path / "saved").predict_proba(X), here.predict_proba(X), atol=1e-6)
    prepared = type("Prepared", (), {"X_train": X, "input_shape": (6,), "class_names": ["a", "b", "c"]})
    assert export_extras(held, tmp_path / "saved", prepared) == [TORCHSCRIPT_FILE, ONNX_FILE, "README.md"]
    scripted = torch.jit.load(str(tmp_path / "saved" / TORCHSCRIPT_FILE))
    with torch.no_grad():
        logits = scripted(torch.as_tensor(X)).numpy()
    assert np.allclose(logits.argmax(axis=1), here.predict(X))
    assert calls[-1] == remote_network._exports_task


def test_a_network_stays_with_its_workers_only_where_ray_keeps_them_warm(ray_session, monkeypatch):
    import numpy as np
    import torch

    from rayfit.cluster import session
    from rayfit.config import TorchConfig
    from rayfit.evaluation.fitted import model_to_bytes
    from rayfit.trainers.core import architecture
    from rayfit.trainers.remote_network import NetworkOnWorkers, held_network
    from rayfit.trainers.torch_model import TorchModel
    from rayfit.trainers.torch_models import build_torch_model

    torch.manual_seed(0)
    arch = architecture(TorchConfig().model_dump(), "mlp", (4,), 1)
    saved = model_to_bytes(TorchModel("torch_mlp", "regression", build_torch_model(arch), arch))
    # the suite's Ray is a private one ensure_ray started: its idle workers are kept a minute
    assert session.keeps_idle_workers()
    assert isinstance(held_network("torch", "torch_mlp", "regression", saved), NetworkOnWorkers)
    # a joined cluster may stop an idle worker within a second: the driver holds the network itself
    monkeypatch.setattr(session, "keeps_idle_workers", lambda: False)
    here = held_network("torch", "torch_mlp", "regression", saved)
    assert isinstance(here, TorchModel) and here.in_process
    assert here.predict(np.zeros((3, 4), dtype=np.float32)).shape == (3,)

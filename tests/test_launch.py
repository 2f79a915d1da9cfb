"""How a network is launched: a Ray Train worker group, or one Ray task when a group buys nothing."""
from __future__ import annotations

import pytest

from rayfit.cluster.plan import WorkerPlan
from rayfit.config import KerasConfig, TorchConfig
from rayfit.trainers import launch_cost
from rayfit.trainers.launch import TrainingData, choose_launch, estimate_train_seconds
from rayfit.trainers.launch_cost import StartCost

SMALL = TrainingData(None, "classification", 1, None, seed=0, train_rows=700, input_shape=(20,))
TWO_CPU_WORKERS = WorkerPlan(2, 1.0)


def _never_measured(framework):
    raise AssertionError("the start-up cost was measured although no worker group could pay")


def _unbounded(*args):  # no bound: the probe's estimate decides
    return None


def test_a_small_network_trains_in_one_task_without_measuring_a_launch():
    chosen = choose_launch("torch", "mlp", TorchConfig(epochs=40), SMALL, TWO_CPU_WORKERS,
                           estimate=lambda *a: 1.5, start_cost=_never_measured, bound=_unbounded)
    assert chosen.kind.name == "task" and "less than any worker group takes to start" in chosen.reason


def test_the_estimate_scales_a_step_timed_on_a_worker(ray_session, monkeypatch):
    # the probe really trains a few steps, in a Ray task of PyTorch's pool holding one worker's resources
    assert launch_cost.step_seconds_on_worker("mlp", TorchConfig(batch_size=32), (20,), 1, {"CPU": 1}) > 0
    monkeypatch.setattr(launch_cost, "step_seconds_on_worker", lambda *args: 0.01)
    # ceil(700 / 32) = 22 steps an epoch, 10 epochs; Keras steps count 1.3 times PyTorch's
    assert estimate_train_seconds("torch", "mlp", TorchConfig(epochs=10), SMALL, {"CPU": 1}) == pytest.approx(2.2)
    assert estimate_train_seconds("keras", "mlp", KerasConfig(epochs=10), SMALL, {"CPU": 1}) == pytest.approx(2.86)
    bigger = TrainingData(None, "classification", 1, None, seed=0, train_rows=70_000, input_shape=(20,))
    assert estimate_train_seconds("torch", "mlp", TorchConfig(epochs=10, batch_size=64), bigger,
                                  {"CPU": 1}) == pytest.approx(0.01 * 1094 * 10)


@pytest.mark.parametrize("settings, data, plan, kind", [
    (TorchConfig(launch="ray_train"), SMALL, TWO_CPU_WORKERS, "ray_train"),  # the user's word wins
    (TorchConfig(workers=1), SMALL, WorkerPlan(1, 1.0), "task"),  # one worker: nothing to parallelise
    (TorchConfig(), TrainingData(None, "classification", 1, None, 0, train_path="t.parquet", train_rows=700,
                                 input_shape=(20,)), TWO_CPU_WORKERS, "ray_train"),  # streamed: workers read shards
    (TorchConfig(), SMALL, WorkerPlan(2, 1.0, 1.0), "ray_train"),  # GPU workers
    (TorchConfig(), SMALL, WorkerPlan(1, 1.0, 1.0), "task"),  # gpu: auto on a 1-GPU laptop: one GPU task
])
def test_launch_rules(settings, data, plan, kind):
    assert choose_launch("torch", "mlp", settings, data, plan, start_cost=_never_measured).kind.name == kind


def test_a_small_mlp_bounded_without_a_probe_trains_in_one_task(monkeypatch):
    def _never_probed(*args):
        raise AssertionError("probed although the bound decided")

    # 700 rows at batch 32, 100 epochs: 2,200 steps of a 20-64-32-1 MLP, each bounded at 1.5 ms
    # + 6 x 3,457 weights x 32 rows / 1e9 = 2.2 ms: at most 4.9 s, 2 workers saving at most 2.4 s,
    # less than the 3 s a PyTorch worker takes to import it
    chosen = choose_launch("torch", "mlp", TorchConfig(), SMALL, TWO_CPU_WORKERS, estimate=_never_probed,
                           start_cost=_never_measured)
    assert chosen.kind.name == "task" and "less than the 3 s each takes to import PyTorch" in chosen.reason
    assert chosen.figures["bound_s"] == pytest.approx(2200 * (0.0015 + 6 * 3457 * 32 / 1e9), rel=1e-3)
    # a bound that cannot decide: the probe's estimate does (here: too little to pay for a group)
    monkeypatch.setattr(launch_cost, "known_worker_group_start_cost", lambda framework: None)
    bigger = TrainingData(None, "classification", 1, None, seed=0, train_rows=200_000, input_shape=(20,))
    probed = choose_launch("torch", "mlp", TorchConfig(), bigger, TWO_CPU_WORKERS, estimate=lambda *a: 1.5,
                           start_cost=_never_measured)
    assert probed.kind.name == "task" and probed.figures["estimate_s"] == 1.5
    assert launch_cost.mlp_step_bound({"model": "cnn"}, 32) is None  # only an MLP's step is bounded


def test_the_measured_start_up_cost_decides():
    measured = lambda framework: StartCost(40.0, "measured now")  # noqa: E731
    slow_here = choose_launch("torch", "mlp", TorchConfig(), SMALL, TWO_CPU_WORKERS,
                              estimate=lambda *a: 60.0, start_cost=measured, bound=_unbounded)
    assert slow_here.kind.name == "task" and "40.0 s a worker group takes to start here" in slow_here.reason
    fast_here = choose_launch("torch", "mlp", TorchConfig(), SMALL, TWO_CPU_WORKERS, estimate=lambda *a: 60.0,
                              start_cost=lambda framework: StartCost(8.0, "measured now"), bound=_unbounded)
    assert fast_here.kind.name == "ray_train" and "save up to 30 s" in fast_here.reason
    assert fast_here.figures == {"estimate_s": 60.0, "saving_s": 30.0, "start_cost_s": 8.0,
                                 "start_cost_source": "measured now"}


def test_the_start_up_cost_is_measured_once_and_cached_per_cluster(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYFIT_CACHE_DIR", str(tmp_path))
    runs = []
    monkeypatch.setattr(launch_cost, "_time_empty_run", lambda framework: runs.append(framework) or 9.5)
    first = launch_cost.worker_group_start_cost("torch")
    second = launch_cost.worker_group_start_cost("torch")
    assert (first.seconds, first.source) == (9.5, "measured now")
    assert second.seconds == 9.5 and "cached" in second.source
    assert runs == ["torch"]  # measured once; keras would be its own entry
    assert launch_cost.cluster_key("torch") in (tmp_path / "worker_group_start.json").read_text()


def test_an_empty_worker_group_is_timed_for_real(ray_session):
    seconds = launch_cost._time_empty_run("torch")  # 2 workers of a sliver of a CPU: start, join, stop
    assert 0.5 < seconds < 300


def test_a_task_or_worker_group_checkpoints_by_the_clock(monkeypatch):
    """After an epoch when one more would leave more than checkpoint_every_s unsaved; every epoch
    when epochs take longer; and always after the last."""
    from rayfit.trainers import contexts

    now = [0.0]
    monkeypatch.setattr(contexts.time, "monotonic", lambda: now[0])

    def saved_after(epoch_s: float, epochs: int, every_s: float = 5.0) -> list[int]:
        clock, saved = contexts.CheckpointClock(every_s), []
        for epoch in range(1, epochs + 1):
            now[0] += epoch_s
            if clock.due(final=epoch == epochs):
                saved.append(epoch)
        return saved

    assert saved_after(1.0, 10) == [4, 8, 10]  # never more than 5 s of 1-s epochs unsaved
    assert saved_after(7.0, 3) == [1, 2, 3]  # slower epochs: each one
    assert saved_after(0.1, 6) == [6]  # a short run: its end only
    assert saved_after(0.1, 4, every_s=0) == [1, 2, 3, 4]  # 0: every epoch

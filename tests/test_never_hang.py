"""Nothing waits for ever: the stall seen on a 2-CPU laptop now completes, and a request the cluster
cannot serve ends in the watchdog's error within its limit."""
from __future__ import annotations

import json
import re
import time

import pytest
from sklearn.datasets import load_breast_cancer

from rayfit.cli import main
from rayfit.evaluation.baselines import baselines_for


@pytest.fixture(scope="module")
def breast_cancer_parquet(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "breast_cancer.parquet"
    load_breast_cancer(as_frame=True).frame.to_parquet(path)
    return path


def test_distributed_trials_on_streamed_parquet_complete(ray_session, breast_cancer_parquet, tmp_path, capsys):
    """The run that used to stall at "trial 3/8" on 2 CPUs: a Parquet file streamed through Ray Data to
    Tune trials that each launch a 2-worker Ray Train group, with ASHA stopping some of them (a stopped
    trial's worker group must be freed for the third trial to be placed: 2 fit at once). The suite's
    one search of distributed trials: what a distributed trial is (its own Ray Train run, every
    epoch reported to Tune) is checked here too."""
    from ray._private.state import state

    def lingering() -> list[str]:  # what a Train run may leave behind (other tests' too: count them)
        return sorted(a["ActorClassName"] for a in state.actor_table(None).values() if a["State"] == "ALIVE"
                      and a["ActorClassName"] in ("PlacementGroupCleaner", "TrainController"))

    from rayfit.cluster.orphans import actor_made_placement_groups

    before, groups_before = lingering(), actor_made_placement_groups()
    out = tmp_path / "run"
    code = main(["run", "--data", str(breast_cancer_parquet), "--target", "target", "--out", str(out),
                 "--set", "data.streaming=true", "--set", "tune.trial_mode=distributed",
                 "--set", "tune.num_samples=3", "--set", "tune.max_t=3", "--set", "tune.grace_period=1",
                 "--set", "baselines.models=[dummy]", "--set", "torch.enabled=false", "--set", "keras.enabled=false",
                 "--set", "ray.stall_timeout_s=120", "--set", "evaluation.cv_networks=false"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    search = metrics["searches"]["torch_tuned"]
    assert search["trial_mode"] == "distributed" and search["trials"] == 3
    # each trial trained through a Ray Train run of its own, its checkpoints in the trial's directory,
    # and reported every epoch it trained to Tune: its history whole, whether ASHA stopped it or not
    trial_runs = {p.parent.parent for p in (out / "tune" / "search").glob("*/train/checkpoint_*") if p.is_dir()}
    assert len(trial_runs) == 3, trial_runs
    trials = json.loads((out / "run_state.json").read_text())["stages"]["search:torch_tuned"]["trials"]
    assert all([h["epoch"] for h in t["history"]] == list(range(1, t["epochs"] + 1)) for t in trials), trials
    assert max(t["epochs"] for t in trials) == 3
    # the best trial's network is the run's torch_tuned, scored on the test split with the others
    assert metrics["models"]["torch_tuned"]["test"]["accuracy"] > 0.8
    # the plan, not the trial actor's sliver of a CPU, sets how many trials run at once
    assert search["placement"] == "2 trials at once, each 2 workers x (0.495 CPU)"
    assert (out / "data" / "train.parquet").is_file()  # the workers really read the streamed split
    # every trial's worker group was freed, ASHA's stopped ones included, and nothing of theirs lives
    # on: Ray Train's detached cleaners see their controllers gone and exit
    assert actor_made_placement_groups() <= groups_before
    deadline = time.monotonic() + 60
    while lingering() != before and time.monotonic() < deadline:
        time.sleep(1)
    assert lingering() == before


def test_a_request_the_cluster_cannot_serve_ends_in_the_watchdogs_error(ray_session, tmp_path, capsys):
    """Another job holds every CPU: the plan (which sees the cluster's size) cannot foresee it, Ray
    would wait for ever; the watchdog names the stage, what it waits for and what the cluster has."""
    import ray

    class Hog:  # defined here: pickled by value, as the test module is not importable on workers
        def ready(self):
            return True

    free = ray.available_resources().get("CPU", 0)
    hog = ray.remote(num_cpus=free)(Hog).remote()
    ray.get(hog.ready.remote())
    try:
        started = time.monotonic()
        code = main(["run", "--data", "iris", "--out", str(tmp_path / "run"), "--set", "ray.stall_timeout_s=3",
                     "--set", "torch.enabled=false", "--set", "keras.enabled=false", "--set", "tune.enabled=false"])
        elapsed = time.monotonic() - started
    finally:
        ray.kill(hog)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, "\n".join(err[-30:])
    baselines = len(baselines_for("default", "classification"))
    assert re.match(r"error: stage 'baselines' made no progress for [3-9] s while Ray could not place "
                    rf"\{{CPU: 1\}} x{baselines} \(task or actor\)", err[-1]), err[-1]
    assert "the cluster has 2 CPUs (0 free)" in err[-1]
    assert elapsed < 60  # seconds past the 3 s limit, not a wait for ever
    # what never got placed was cancelled: the CPUs come back once the other job ends
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < free and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) >= free

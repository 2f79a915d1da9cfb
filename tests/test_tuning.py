"""Ray Tune searches: schedulers stop or evolve trials, searchers propose, resources are checked."""
from __future__ import annotations

import numpy as np
import pytest

from rayfit.cluster.plan import ClusterShape, check_trial_request
from rayfit.config import TorchConfig, TuneSettings, validate
from rayfit.errors import UserError
from rayfit.trainers.launch import TrainingData
from rayfit.tuning.search import STATUSES, _status, run_search, search_name

BASE = TorchConfig(hidden_sizes=[16], patience=100, batch_size=32)  # no early stopping inside trials


@pytest.fixture(scope="module")
def data(ray_session):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((320, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    arrays = {"X_train": X[:240], "y_train": y[:240], "X_val": X[240:], "y_val": y[240:]}
    return TrainingData(ray_session.put(arrays), "classification", 1, None, seed=0)


def test_asha_stops_trials_early(data, tmp_path):
    settings = TuneSettings(num_samples=8, max_t=8, grace_period=1, reduction_factor=2, scheduler="asha",
                            space={"lr": {"loguniform": [1e-4, 1e-1]}})
    search = run_search(settings, BASE, data, tmp_path)
    assert len(search.trials) == 8
    assert search.epochs_trained < 8 * 8, search.epochs_trained
    assert any(t["status"] == "stopped by scheduler" for t in search.trials)
    assert {t["status"] for t in search.trials} <= set(STATUSES)
    assert search.model.predict_proba(np.zeros((2, 6), np.float32)).shape == (2, 2)
    # Tune heard of each trial only at ASHA's rungs (epochs 1, 2, 4) and at its last epoch; the
    # epochs between travelled inside those reports, and every trial's history is whole
    for trial in search.trials:
        reported = _reported_epochs(tmp_path / search_name(settings), trial["trial_id"])
        assert set(reported) <= {1, 2, 4, trial["epochs"]}, (reported, trial["epochs"])
        assert [row["epoch"] for row in trial["history"]] == list(range(1, trial["epochs"] + 1))


def _reported_epochs(search_dir, trial_id: str) -> list[int]:
    """The epochs at which a trial reported to Tune: its result.json, one line per report."""
    import json

    results = [p for p in search_dir.glob("*/result.json") if trial_id in p.parent.name]
    assert len(results) == 1, results
    return [json.loads(line)["epoch"] for line in results[0].read_text().splitlines() if line.strip()]


def test_optuna_proposes_every_trial(data, tmp_path):
    settings = TuneSettings(num_samples=3, max_t=2, grace_period=1, searcher="optuna", scheduler="fifo",
                            space={"lr": {"loguniform": [1e-4, 1e-1]}, "hidden_sizes": {"choice": [[8], [16, 8]]},
                                   "dropout": {"quniform": [0.0, 0.4, 0.1]}})
    search = run_search(settings, BASE, data, tmp_path)
    assert len(search.trials) == 3
    assert len({t["params"]["lr"] for t in search.trials}) == 3
    assert all(t["params"]["hidden_sizes"] in ([8], [16, 8]) for t in search.trials)


def test_grid_search_runs_every_combination(data, tmp_path):
    settings = TuneSettings(num_samples=1, max_t=1, grace_period=1, searcher="grid", scheduler="fifo",
                            space={"lr": {"grid": [0.001, 0.01]}, "batch_size": {"grid": [16, 32]}})
    search = run_search(settings, BASE, data, tmp_path)
    combos = sorted((t["params"]["lr"], t["params"]["batch_size"]) for t in search.trials)
    assert combos == [(0.001, 16), (0.001, 32), (0.01, 16), (0.01, 32)]


def test_resource_requests_are_checked(ray_session):
    assert validate({"tune": {"gpus_per_trial": 0.25}}).tune.gpus_per_trial == 0.25  # fractions pack trials
    cluster = ClusterShape.current()
    if ray_session.cluster_resources().get("GPU", 0) == 0:
        with pytest.raises(UserError, match="tune.gpus_per_trial: 0.25, but the Ray cluster has no GPU"):
            check_trial_request(1, 0.25, cluster)
    with pytest.raises(UserError, match="tune.cpus_per_trial: 64 CPUs per trial"):
        check_trial_request(64, 0, cluster)


def test_an_inline_trial_must_fit_one_node_not_the_cluster_total():
    two_nodes = ClusterShape(((2.0, 0.0), (2.0, 0.0)))
    check_trial_request(3, 0, two_nodes)  # a distributed trial's workers may span both nodes
    with pytest.raises(UserError, match="a trial of 3 CPUs and 0 GPUs fits no node .* 2 CPUs \\+ 0 GPUs per node"):
        check_trial_request(3, 0, two_nodes, inline=True)
    check_trial_request(2, 0, two_nodes, inline=True)


@pytest.mark.parametrize("raw, fragment", [
    ({"tune": {"searcher": "optuna", "space": {"lr": {"grid": [0.1, 0.2]}}}}, "need searcher random or grid"),
    ({"tune": {"searcher": "grid", "space": {"lr": {"uniform": [0.1, 0.2]}}}}, "every space dimension to be a grid"),
    ({"tune": {"scheduler": "pbt", "max_t": 4, "perturbation_interval": 4}}, "perturbation_interval (4) must be below"),
    ({"tune": {"metric": "val_accuracy"}}, "mode for val_accuracy is max"),
    ({"tune": {"space": {"dropout": {"quniform": [0, 0.5, 0.9]}}}}, "quniform step q"),
    ({"tune": {"scheduler": "bogus"}}, "tune.scheduler"),
])
def test_invalid_searches_are_refused(raw, fragment):
    with pytest.raises(UserError, match=None) as info:
        validate(raw)
    assert fragment in str(info.value)


def test_asha_stops_gradient_boosting_trials_early(data, tmp_path):
    settings = TuneSettings(model="gradient_boosting", num_samples=6, max_t=6, grace_period=1, reduction_factor=2)
    assert set(settings.space) == {"learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization"}
    search = run_search(settings, BASE, data, tmp_path, n_classes=2)
    assert len(search.trials) == 6 and search.epochs_trained < 6 * 6
    assert search.model.name == "gradient_boosting_tuned"
    assert search.model.predict_proba(np.zeros((3, 6), np.float32)).shape == (3, 2)


def test_a_failed_trial_is_recorded_and_the_search_goes_on(data, tmp_path):
    # max_leaf_nodes=1 is out of HistGradientBoosting's range: that trial fails on every retry.
    settings = TuneSettings(model="gradient_boosting", num_samples=1, max_t=2, grace_period=1, searcher="grid",
                            scheduler="fifo", space={"max_leaf_nodes": {"grid": [1, 8]}})
    search = run_search(settings, BASE.model_copy(update={"max_failures": 0}), data, tmp_path, n_classes=2)
    by_leaves = {t["params"]["max_leaf_nodes"]: t for t in search.trials}
    assert by_leaves[1]["status"] == "failed" and "max_leaf_nodes" in by_leaves[1]["error"]
    assert by_leaves[8]["status"] == "completed" and search.best_params == {"max_leaf_nodes": 8}
    assert search.trials[-1] is by_leaves[1]  # failed trials sort last
    # rayfit's record of finished trials (what a search continues from) has the one that finished
    from rayfit.cluster.storage import Location
    from rayfit.tuning.saved_state import finished_trials

    record = finished_trials(Location.of(tmp_path / search_name(settings)))
    assert list(record.values()) == [by_leaves[8]["trial_id"]], record


def test_a_search_whose_saved_state_differs_goes_on_from_its_finished_trials(data, tmp_path):
    """Tune's saved state that is not what rayfit recorded (a driver killed while Tune was saving, or
    a tampered file) is never unpickled; the search goes on from rayfit's record of its finished
    trials: those are kept as they are, read as JSON, and only the missing ones run."""
    from rayfit.cluster.storage import Location
    from rayfit.tuning.saved_state import TRIALS_RECORD, finished_trials
    import pickle

    marker = tmp_path / "unpickled"

    class Writes:  # a pickle whose unpickling creates `marker`
        def __reduce__(self):
            return (open, (str(marker), "w"))

    settings = TuneSettings(model="gradient_boosting", num_samples=2, max_t=2, grace_period=1, scheduler="fifo")
    first = run_search(settings, BASE, data, tmp_path, n_classes=2)
    search_dir = tmp_path / search_name(settings)
    record = finished_trials(Location.of(search_dir))
    assert sorted(record.values()) == sorted(t["trial_id"] for t in first.trials)
    # one trial as if the driver had died before it finished: out of the record
    (kept_dir, kept_id), (lost_dir, _) = sorted(record.items())
    import json

    (search_dir / TRIALS_RECORD).write_text(json.dumps({"finished": {kept_dir: kept_id}}))
    kept_results = (search_dir / kept_dir / "result.json").read_bytes()
    (search_dir / "tuner.pkl").write_bytes(pickle.dumps(Writes()))
    said = []
    again = run_search(settings, BASE, data, tmp_path, n_classes=2, say=said.append)
    assert not marker.exists()  # nothing of the state was unpickled
    assert len(said) == 1 and "the search goes on from rayfit's record of its 1 finished trial(s)" in said[0], said
    assert len(again.trials) == 2 and kept_id in {t["trial_id"] for t in again.trials}
    assert (search_dir / kept_dir / "result.json").read_bytes() == kept_results  # not run again
    assert not (search_dir / lost_dir).exists()  # the unfinished one ran anew, in a directory of its own
    assert len([p for p in search_dir.iterdir() if p.is_dir()]) == 2
    assert len(finished_trials(Location.of(search_dir))) == 2
    assert again.model.predict_proba(np.zeros((3, 6), np.float32)).shape == (3, 2)


def test_a_keras_network_is_tunable(data, tmp_path):
    from rayfit.config import KerasConfig

    settings = TuneSettings(model="keras", num_samples=2, max_t=3, grace_period=1, scheduler="fifo",
                            space={"lr": {"loguniform": [1e-3, 3e-2]}})
    search = run_search(settings, KerasConfig(hidden_sizes=[16], patience=100), data, tmp_path, n_classes=2)
    assert len(search.trials) == 2 and all(t["epochs"] == 3 for t in search.trials)
    # FIFO decides nothing on the way: one report per trial, at its end, with all 3 epochs in its history
    assert all(_reported_epochs(tmp_path / search_name(settings), t["trial_id"]) == [3] for t in search.trials)
    assert all([row["epoch"] for row in t["history"]] == [1, 2, 3] for t in search.trials)
    assert search.model.kind == "keras" and search.model.name == "keras_tuned"
    assert search.model.predict_proba(np.zeros((2, 6), np.float32)).shape == (2, 2)


def _lineage_changes(trial: dict) -> list[int]:
    """Epochs at which a trial's learning rate changed (constant within a run: only PBT changes it)."""
    history = trial["history"]
    return [b["epoch"] for a, b in zip(history, history[1:]) if not np.isclose(a["lr"], b["lr"])]


def test_pbt_exploits_a_better_trials_checkpoint(ray_session, tmp_path):
    # Four trials at once (half a CPU each), most with hopeless learning rates. At each epoch a trial in
    # the bottom half may take a top-half trial's checkpoint and a perturbed lr, and train on from there.
    # Epochs of a few hundred steps: with the test's tiny data a trial ran all its epochs before Tune's
    # driver had acted on its first result, and nothing was exploited.
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4400, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    data = TrainingData(ray_session.put({"X_train": X[:4000], "y_train": y[:4000], "X_val": X[4000:],
                                         "y_val": y[4000:]}), "classification", 1, None, seed=0)
    settings = TuneSettings(num_samples=4, max_t=8, scheduler="pbt", perturbation_interval=1, quantile_fraction=0.5,
                            cpus_per_trial=0.5, space={"lr": {"loguniform": [1e-6, 0.3]}})
    search = run_search(settings, TorchConfig(hidden_sizes=[16], patience=100, batch_size=16), data, tmp_path)
    assert search.trial_mode == "inline"
    assert len(search.trials) == 4
    exploited = [t for t in search.trials if _lineage_changes(t)]
    assert exploited, [t["params"] for t in search.trials]
    exploits = (tmp_path / "search" / "pbt_global.txt").read_text().splitlines()
    assert len(exploits) >= len(exploited)  # Tune's own log of exploits agrees
    for trial in exploited:
        # The lineage is whole: the donor's epochs, then this trial's, with no gap or repeat...
        assert [h["epoch"] for h in trial["history"]] == list(range(1, len(trial["history"]) + 1))
        # ...and it ends with the configuration the trial finished with.
        assert np.isclose(trial["history"][-1]["lr"], trial["params"]["lr"])


@pytest.mark.parametrize("searcher, scheduler, package", [
    ("hyperopt", "fifo", "hyperopt"), ("bohb", "asha", "hpbandster"), ("random", "pb2", "GPy")])
def test_optional_algorithms_run_where_their_packages_install(data, tmp_path, searcher, scheduler, package):
    pytest.importorskip(package)
    settings = TuneSettings(num_samples=4, max_t=4, grace_period=1, perturbation_interval=2, searcher=searcher,
                            scheduler=scheduler, max_concurrent_trials=2, space={"lr": {"loguniform": [1e-4, 1e-1]}})
    search = run_search(settings, BASE, data, tmp_path)
    assert len(search.trials) == 4
    assert len({t["params"]["lr"] for t in search.trials}) > 1  # the algorithm proposed, not one point
    assert all(1 <= t["epochs"] <= 4 for t in search.trials)


# A distributed trial (its own Ray Train run, every epoch reported to Tune): the suite's one search of
# them, on streamed Parquet, is tests/test_never_hang.py's.


@pytest.mark.parametrize("overrides, seconds, streaming, expected", [
    ({}, 0.5, False, "inline"),  # a small network: no worker group
    ({}, 1000, False, "distributed"),  # long enough to pay for a Ray Train launch
    ({}, 25, False, "inline"),  # 2 workers save at most 12.5 s: less than this cluster's launch (15 s)
    ({"workers_per_trial": 1}, 1000, False, "inline"),  # one worker buys nothing
    ({}, 0.5, True, "distributed"),  # streamed data is read by Ray Train workers
    ({"gpus_per_trial": 2}, 0.5, False, "distributed"),
    ({"scheduler": "pbt", "max_t": 8}, 1000, False, "inline"),  # PBT exploits Tune checkpoints
    ({"trial_mode": "inline"}, 1000, True, "inline"),  # the user's word wins
    ({"model": "gradient_boosting"}, 1000, False, "inline"),
])
def test_auto_trial_mode(overrides, seconds, streaming, expected):
    from rayfit.tuning.trial_mode import choose_trial_mode

    from rayfit.trainers.launch_cost import StartCost

    settings = TuneSettings(cpus_per_trial=2, **overrides)
    start_cost = lambda framework: StartCost(15.0, "measured")  # noqa: E731
    assert choose_trial_mode(settings, streaming, lambda: seconds, start_cost).mode == expected


def test_distributed_trials_refuse_what_they_cannot_do():
    with pytest.raises(UserError, match="restarts trials from Tune checkpoints"):
        validate({"tune": {"trial_mode": "distributed", "scheduler": "pbt", "max_t": 8}})
    with pytest.raises(UserError, match="gradient_boosting trains inline"):
        validate({"tune": {"trial_mode": "distributed", "model": "gradient_boosting"}})


def test_a_trial_says_what_ended_it():
    """The scheduler's cuts are told from the trial's own early stopping and from a full run."""
    rows = [{"epoch": e, "early_stopped": False} for e in (1, 2, 3)]
    assert _status("", rows, planned=3) == "completed"
    assert _status("", rows[:2], planned=3) == "stopped by scheduler"
    assert _status("", rows[:1] + [{"epoch": 2, "early_stopped": True}], planned=3) == "early stopping"
    assert _status("boom", rows, planned=3) == "failed"
    assert _status("", [{"epoch": 1, "planned": 1}], planned=1) == "completed"  # a model that does not grow


def test_an_abandoned_search_stops_where_it_stands_and_resumes_from_there(data, tmp_path):
    """A search beside the models stage is abandoned from the driver's other thread (its error or a
    signal): Tune stops its trials' actors and the call raises Interrupted; the same search run
    again continues from Tune's saved state and finishes every trial."""
    import threading

    from rayfit.errors import Interrupted

    settings = TuneSettings(num_samples=3, max_t=4, grace_period=4, scheduler="fifo", max_concurrent_trials=1,
                            space={"lr": {"loguniform": [1e-4, 1e-1]}})
    abandon, outcome = threading.Event(), {}

    def on_event(event):
        abandon.set()  # at the first result of the first trial

    def search():
        try:
            outcome["search"] = run_search(settings, BASE, data, tmp_path, on_event, abandon=abandon, beside=True)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=search)
    thread.start()
    thread.join(120)
    assert not thread.is_alive() and isinstance(outcome.get("error"), Interrupted), outcome
    resumed = run_search(settings, BASE, data, tmp_path)
    assert len(resumed.trials) == 3 and all(t["status"] == "completed" for t in resumed.trials), resumed.trials


def test_beside_the_models_a_search_runs_as_many_trials_at_once_as_pay_for_their_actors():
    from rayfit.tuning.search import expected_epoch_share, trials_at_once_beside

    asha = TuneSettings(num_samples=8, max_t=20, grace_period=2, reduction_factor=3, scheduler="asha")
    # every trial to epoch 2, a third on to 6, a ninth to 18, a 27th to 20
    assert expected_epoch_share(asha) == pytest.approx((2 + 4 / 3 + 12 / 9 + 2 / 27) / 20)
    assert expected_epoch_share(asha.model_copy(update={"scheduler": "fifo"})) == 1.0
    small = TrainingData(None, "classification", 1, None, seed=0, train_rows=700, input_shape=(18,))
    large = TrainingData(None, "classification", 1, None, seed=0, train_rows=200_000, input_shape=(18,))
    base = TorchConfig()
    at_once, why = trials_at_once_beside(asha, base, small, fit=2)
    assert at_once == 1 and "each trial actor costs about 4 s of a CPU to start" in why, why
    assert trials_at_once_beside(asha, base, large, fit=2)[0] == 2
    assert trials_at_once_beside(asha, base, large, fit=1)[0] == 1
    # no bound without a shape (a baseline's search, or data seen only as a stream): as many as fit
    assert trials_at_once_beside(asha, base, TrainingData(None, "classification", 1, None, seed=0), fit=4)[0] == 4


def test_a_search_beside_the_models_needs_trials_surely_inline():
    from rayfit.tuning.search import trials_surely_inline

    small = TrainingData(None, "classification", 1, None, seed=0, train_rows=700, input_shape=(18,))
    large = TrainingData(None, "classification", 1, None, seed=0, train_rows=2_000_000, input_shape=(18,))
    base = TorchConfig()
    assert trials_surely_inline(TuneSettings(), base, small)  # 2 workers a trial could never pay for their group
    assert not trials_surely_inline(TuneSettings(), base, large)  # only a measurement can tell
    assert trials_surely_inline(TuneSettings(workers_per_trial=1), base, large)
    assert not trials_surely_inline(TuneSettings(trial_mode="distributed"), base, small)
    assert trials_surely_inline(TuneSettings(model="gradient_boosting"), base, large)


def test_a_finished_trial_s_results_reach_the_storage_as_it_is_recorded(tmp_path):
    """Tune copies a trial's result.json from the driver's staging directory to the storage only
    every few minutes; a trial rayfit records as finished has its results in the storage at once,
    so that a search continued from the record can read it back (a driver killed a minute after)."""
    from types import SimpleNamespace

    import pyarrow.fs as pafs

    from rayfit.cluster.storage import Location
    from rayfit.tuning.saved_state import Vouch, finished_trials

    staging, search = tmp_path / "staging" / "trial_a", tmp_path / "runs" / "search"
    staging.mkdir(parents=True)
    (staging / "result.json").write_text('{"epoch": 1, "config": {"lr": 0.1}}\n{"epoch": 2, "config": {"lr": 0.1}}\n')
    storage = SimpleNamespace(trial_dir_name="trial_a", trial_driver_staging_path=str(staging),
                              storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(search / "trial_a"),
                              experiment_driver_staging_path=str(tmp_path / "staging"),
                              experiment_fs_path=str(search))
    trial = SimpleNamespace(storage=storage, trial_id="a_00000")
    Vouch(Location.of(search)).on_trial_complete(1, [trial], trial)
    assert (search / "trial_a" / "result.json").read_text() == (staging / "result.json").read_text()
    assert finished_trials(Location.of(search)) == {"trial_a": "a_00000"}

"""`--time-limit` (rayfit/budget.py): how the training stages share the limit, a network stopping at
the epoch that reaches its deadline, work cancelled at a deadline, and one limited run end to end.
Whether runs end within their limits is measured by B11 (`make bench`), not timed here."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from rayfit.budget import FINAL_RESERVE_S, MIN_LIMIT_S, WEIGHTS, Budget, check_limit
from rayfit.cli import main
from rayfit.config import TorchConfig
from rayfit.errors import UserError
from rayfit.trainers.contexts import TaskContext
from rayfit.trainers.core import train
from rayfit.trainers.launch import TrainingData, make_loop_config


def test_each_stage_gets_its_share_of_what_is_left_and_a_fast_stage_hands_its_time_on():
    budget = Budget(100.0, started=time.time())
    available = budget.left() - budget.reserve_s
    assert budget.reserve_s > FINAL_RESERVE_S
    models = budget.share("models", ("search", "cv"))
    assert models == pytest.approx(available * WEIGHTS["models"] / sum(WEIGHTS.values()), abs=0.1)
    # the models took no time: search and cv now share all of it, in their weights' proportion
    search = budget.share("search", ("cv",))
    assert search == pytest.approx(available * WEIGHTS["search"] / (WEIGHTS["search"] + WEIGHTS["cv"]), abs=0.1)
    assert budget.share("cv") == pytest.approx(available, abs=0.1)  # the last stage: everything left
    budget.took("cv", 12.34)
    assert budget.entry()["stages"]["cv"] == {"budget_s": round(available, 1), "actual_s": 12.3}


def test_a_resumed_run_has_the_time_its_earlier_commands_left():
    now = time.time()
    assert Budget(60.0, started=now, used_before=45.0).deadline == pytest.approx(now + 15.0)
    late = Budget(60.0, started=now, used_before=70.0)
    assert late.share("models", ("cv",)) == 0.0  # nothing left: every stage gets nothing, never less


def test_a_limit_too_small_to_do_anything_says_the_least_it_needs():
    check_limit(None)
    check_limit(MIN_LIMIT_S)
    with pytest.raises(UserError, match=rf"time_limit: 5 s is too short .* at least {MIN_LIMIT_S:g} s"):
        check_limit(5)


def _tiny_training(tmp_path, deadline):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    X = (rng.standard_normal((200, 4)) + y[:, None]).astype(np.float32)
    data = TrainingData({"X_train": X[:150], "y_train": y[:150], "X_val": X[150:], "y_val": y[150:]},
                        "classification", 2, None, seed=0)
    settings = TorchConfig(model="mlp", epochs=40, batch_size=16, hidden_sizes=[8], patience=40)
    config = make_loop_config("limit_test", "torch", "mlp", settings, data, deadline=deadline)
    return train(config, TaskContext(str(tmp_path), keep=1, checkpoint_every_s=60.0))


def test_a_network_stops_after_the_epoch_past_which_another_would_miss_its_deadline(tmp_path):
    # a deadline already reached: one epoch, then it stops, with its checkpoint written
    history = _tiny_training(tmp_path / "now", deadline=time.time())
    assert len(history) == 1 and history[-1]["stopped_by_time_limit"]
    assert json.loads(next((tmp_path / "now").glob("checkpoint_*/history.json")).read_text())[-1]["epoch"] == 1
    # a deadline far away: the epochs it was given
    history = _tiny_training(tmp_path / "later", deadline=time.time() + 3600)
    assert len(history) == 40 and not any(h.get("stopped_by_time_limit") for h in history)


def test_work_not_finished_at_the_deadline_is_cancelled_and_handed_back(ray_session):
    from rayfit.cluster.launch import as_finished, start

    def _nap(seconds: float):  # defined here: pickled by value, as workers cannot import this module
        time.sleep(seconds)
        return seconds

    handles = [start(_nap, seconds, name=f"rayfit.nap[{seconds}]", cpus=1, tag=seconds) for seconds in (0.1, 60.0)]
    # work that stops at the deadline on its own (a network) is spared: waited for, not cancelled
    spared = start(_nap, 7.0, name="rayfit.nap[7.0]", cpus=0, tag=7.0)
    unfinished = []
    started = time.monotonic()
    finished = [handle.tag for handle, _ in as_finished([*handles, spared], until=time.time() + 5,
                                                         unfinished=unfinished, spare=[spared])]
    assert finished == [0.1, 7.0] and [h.tag for h in unfinished] == [60.0]
    assert time.monotonic() - started < 30  # it returned at the deadline, not when the nap would end
    with pytest.raises(Exception):  # cancelled: its worker is gone
        ray_session.get(unfinished[0].ref, timeout=30)


def test_a_search_resumed_under_a_limit_gets_the_time_left_now_not_its_first_budget(ray_session, tmp_path):
    """Tune restores a search with the TuneConfig it pickled; `rayfit resume` under a time limit
    gives it the share left now (the budget Tune then enforces, read where Tune keeps it)."""
    from ray import tune

    from rayfit.tuning.search import renew_time_budget

    def trainable(config):  # defined here: pickled by value, as workers cannot import this module
        tune.report({"x": 1})

    tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=1, time_budget_s=100),
               run_config=tune.RunConfig(name="search", storage_path=str(tmp_path), verbose=0)).fit()
    restored = tune.Tuner.restore(str(tmp_path / "search"), trainable=trainable)
    assert restored._local_tuner._tune_config.time_budget_s == 100  # what resume would have kept
    renew_time_budget(restored, 7.5)
    assert restored._local_tuner._tune_config.time_budget_s == 7.5
    restored.fit()  # and it still runs (its one trial finished: nothing left to do)


def test_a_limited_run_shares_its_limit_and_says_what_each_stage_had_and_what_it_skipped(ray_session, messy_csv,
                                                                                        tmp_path):
    out = tmp_path / "limited"
    assert main(["run", "--data", str(messy_csv), "--target", "label", "--out", str(out), "--time-limit", "25",
                 "--set", "keras.enabled=false"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    limit = metrics["time_limit"]
    assert limit["limit_s"] == 25 and limit["until_report_s"] > 0
    assert set(limit["stages"]) == {"models", "search", "cv"}
    assert all(stage["budget_s"] >= 0 for stage in limit["stages"].values())
    # 25 s on this machine leaves the search too little: skipped, with the reason; not trained
    assert "torch_tuned" in limit["skipped"] and "less than" in limit["skipped"]["torch_tuned"]
    assert "torch_tuned" not in metrics["models"] and metrics["best_model"] in metrics["models"]
    assert "the data-parallel boosters" not in limit["skipped"]  # none configured: nothing to skip
    report = (out / "report.md").read_text()
    assert "## Time limit" in report and "skipped: torch_tuned:" in report
    assert json.loads((out / "run_state.json").read_text())["time_used_s"] > 0  # kept for resume

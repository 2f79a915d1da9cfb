"""The searches beside the models stage (rayfit/stages/searches.py): they start only where nothing
waits for a gang of CPUs and no time limit shares the stages out; their results join the run in
order once the models stage ends; an error in the models stage abandons them and waits for them."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from rayfit.config import validate
from rayfit.errors import Interrupted
from rayfit.stages import searches as stage


@pytest.fixture
def fake(monkeypatch):
    """A run's state with two enabled searches, whose Tune part waits to be released or abandoned."""
    release, calls, recorded = threading.Event(), [], []

    def tune_one(state, settings, data, abandon=None):
        calls.append((settings.model, abandon is not None))
        while not release.is_set():
            if abandon is not None and abandon.wait(0.01):
                raise Interrupted()
        return f"result of {settings.model}"

    monkeypatch.setattr(stage, "tune_one", tune_one)
    monkeypatch.setattr(stage, "record_search", lambda state, settings, search: recorded.append(search))
    monkeypatch.setattr("rayfit.tuning.search.trials_surely_inline", lambda settings, base, data: True)
    exp = validate({"searches": [{"model": "gradient_boosting"}]})
    state = SimpleNamespace(exp=exp, searches={}, budget=None, stage_times={},
                            timed=lambda name: _timed(state, name))
    return SimpleNamespace(state=state, release=release, calls=calls, recorded=recorded)


def _timed(state, name):
    from contextlib import contextmanager

    @contextmanager
    def timed():
        yield
        state.stage_times[name] = 0.0
    return timed()


def test_searches_run_beside_the_models_and_join_the_run_in_order(fake):
    with stage.searches_beside(fake.state, SimpleNamespace(train_path=None)) as beside:
        beside.start()
        assert beside.running
        fake.release.set()  # the models stage ends after the searches have begun
    assert fake.calls == [("torch", True), ("gradient_boosting", True)]
    assert fake.recorded == ["result of torch", "result of gradient_boosting"]
    assert set(fake.state.stage_times) == {"torch_tuned", "gradient_boosting_tuned"}


def test_an_error_in_the_models_stage_abandons_the_searches_and_waits_for_them(fake):
    with pytest.raises(RuntimeError, match="models failed"):
        with stage.searches_beside(fake.state, SimpleNamespace(train_path=None)) as beside:
            beside.start()
            raise RuntimeError("models failed")
    assert not beside.thread.is_alive()  # stopped before Ray could be shut down under it
    assert fake.recorded == []  # nothing half-done joins the run: `rayfit resume` continues the search


def test_a_failed_search_fails_the_run_once_the_models_stage_ends(fake, monkeypatch):
    def failing(state, settings, data, abandon=None):
        raise ValueError("no trial could run")

    monkeypatch.setattr(stage, "tune_one", failing)
    with pytest.raises(ValueError, match="no trial could run"):
        with stage.searches_beside(fake.state, SimpleNamespace(train_path=None)) as beside:
            beside.start()


@pytest.mark.parametrize("why", ["time limit", "not inline", "all done"])
def test_searches_wait_for_the_models_where_they_cannot_run_beside(fake, monkeypatch, why):
    if why == "time limit":  # each stage has its share of the limit, in turn
        fake.state.budget = object()
    elif why == "not inline":  # a trial's worker group would wait for the models' CPUs
        monkeypatch.setattr("rayfit.tuning.search.trials_surely_inline", lambda settings, base, data: False)
    else:
        fake.state.searches = {"torch_tuned": {}, "gradient_boosting_tuned": {}}
    with stage.searches_beside(fake.state, SimpleNamespace(train_path=None)) as beside:
        beside.start()
        assert not beside.running
    assert fake.calls == [] and fake.recorded == []


def test_a_signal_while_the_driver_waits_for_the_searches_abandons_them(fake):
    with pytest.raises(Interrupted):
        with stage.searches_beside(fake.state, SimpleNamespace(train_path=None)) as beside:
            beside.start()
            waits = beside._join

            def signalled(timeout=None):  # Ctrl-C lands while the models stage waits for the searches
                if timeout is None:
                    raise Interrupted()
                return waits(timeout)

            beside._join = signalled
    assert beside.abandoned.is_set() and not beside.thread.is_alive()
    assert fake.recorded == []

"""Old runs keep working: run directories written by an earlier rayfit (committed under
tests/data/old_runs/, made once by its make_old_runs.py) still load in `rayfit predict`, `rayfit
serve`, `rayfit.load` and `rayfit resume`, and answer what they answered when they were made.

The fixtures: `finished/`, a run on a 120-row table (a number and a category with gaps, a date, a
yes/no target) with every model kind (scikit-learn's dummy, linear and decision tree, their
soft-voting ensemble, a PyTorch and a Keras MLP), each exported (export.models: all); and
`interrupted/`, a run stopped by Ctrl-C after its baselines. Each test works on a copy moved to a
temporary folder, as a user moves a run; the committed files are never written. `resume` reads
the data where the run recorded it, as typed (`--data table.csv`, relative to the folder it was
run from): a moved run resumes when its data moved with it and it is resumed from that folder.

A saved model is found again by two kinds of names, and both must outlive any change of the code:

- names inside pickles: the fitted preprocessing (`preprocessor.joblib`) and scikit-learn models
  (`estimator.joblib`) are joblib pickles that name rayfit's own classes and functions by module
  and name (today `rayfit.data.preprocessing:DatetimeExpander`, `as_float`, `as_text`,
  `category_name`; expected.json's "pickled" lists them). Moving or renaming one breaks every run
  saved before it. rayfit has no alias layer of its own for these (no custom unpickler): the alias
  is a plain Python name at the old place.
- the model's kind: `model.json` says `"kind": "sklearn" | "ensemble" | "torch" | "keras"` (also
  "booster", "clusters"), which `rayfit.evaluation.fitted.load_model` looks up in `LOADERS` (kind ->
  loader: sklearn and ensemble, plus what a module registers when imported), `OWN_MODULE` (kind ->
  the module that registers it) and the framework registry (`rayfit.frameworks.FRAMEWORKS`,
  whose `fitted` is a "module:Class" string imported when needed). These tables are the kinds'
  alias mechanism: a kind is any key in them. Keras files name rayfit's custom layers by
  `register_keras_serializable(package="rayfit")`, not by module.

How to move something an old run names:
- a function or class to another module: import it back into the old module under the old name,
  e.g. in rayfit/data/preprocessing.py `from rayfit.data.dates import DatetimeExpander  # noqa: F401
  (old runs' pickles name it here)`;
- a whole module: keep the old module as a stub that re-exports the new one, or alias it where its
  package is imported: `sys.modules["rayfit.data.preprocessing"] = rayfit.data.tables`;
- a renamed class or function: `OldName = NewName` in the old module;
- a model class: change its "module:Class" in FRAMEWORKS or OWN_MODULE (they say where the loader
  lives, never what the files say); a renamed kind: keep the old word as a key for the same loader,
  `LOADERS["ensemble"] = SoftVote.load` (or a second OWN_MODULE entry), since every saved
  `model.json` keeps the old word.
A dependency upgrade that can no longer read the old pickles (scikit-learn, joblib, PyTorch, Keras)
fails here too: it would break users' saved runs as well. Only a deliberate break of the format
regenerates the fixtures (make_old_runs.py), said in its commit.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rayfit
from conftest import tree_digest
from rayfit.cli import main

FIXTURES = Path(__file__).parent / "data" / "old_runs"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
BEST = EXPECTED["best_model"]
MOVED = ("an old run no longer loads: did a module, class, function or model kind it names move? "
         "Leave an alias at the old place (tests/test_old_runs.py's docstring says how)")


@pytest.fixture(scope="module")
def old(tmp_path_factory) -> Path:
    """A copy of the fixtures, moved elsewhere as a user moves a run: the committed files are never touched."""
    copy = tmp_path_factory.mktemp("old") / "old_runs"
    shutil.copytree(FIXTURES, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return copy


def _same_answers(frame: pd.DataFrame, name: str, what: str) -> None:
    """Predictions equal to those recorded when the run was made; probabilities to float precision."""
    expected = EXPECTED["models"][name]
    assert [str(v) for v in frame["prediction"]] == expected["prediction"], f"{what}: predictions changed"
    for column in [c for c in expected if c.startswith("proba_")]:
        assert np.allclose(frame[column].to_numpy(dtype=float), expected[column], rtol=0, atol=1e-6), \
            f"{what}: {column} changed: {frame[column].tolist()} != {expected[column]}"


def _ran(code: int, capsys, what: str) -> None:
    if code != 0:
        err = capsys.readouterr().err
        pytest.fail(f"{what}: exit {code}. {MOVED}.\n{err[-3000:]}")


def test_the_names_old_pickles_hold_still_resolve():
    """Each name of rayfit's own in the fixtures' pickles imports as it is written there."""
    broken = []
    for name in EXPECTED["pickled"]:
        module, _, attr = name.partition(":")
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{name} ({type(exc).__name__}: {exc})")
    assert not broken, f"{MOVED}. Pickled names that no longer resolve: {'; '.join(broken)}"


def test_the_kinds_old_models_name_still_load():
    from rayfit.evaluation.fitted import LOADERS, OWN_MODULE
    from rayfit.frameworks import FRAMEWORKS

    for kind in sorted({entry["kind"] for entry in EXPECTED["models"].values()}):
        assert kind in LOADERS or kind in OWN_MODULE or kind in FRAMEWORKS, \
            f"{MOVED}: model kind {kind!r} has no loader (LOADERS, OWN_MODULE or FRAMEWORKS)"
        if kind in FRAMEWORKS:
            FRAMEWORKS[kind].load("fitted")  # its "module:Class" imports


@pytest.mark.parametrize("model", [None, *sorted(set(EXPECTED["models"]) - {BEST})],
                         ids=lambda m: m or f"best-{BEST}")
def test_predict_answers_as_when_the_run_was_made(old, model, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    args = ["predict", str(old / "finished"), "--data", str(old / "rows.csv"), "--out", str(out)]
    _ran(main(args + (["--model", model] if model else [])), capsys, "rayfit " + " ".join(args))
    name = model or BEST
    frame = pd.read_csv(out, keep_default_na=False)
    assert len(frame) == len(EXPECTED["models"][name]["prediction"])
    _same_answers(frame, name, f"rayfit predict --model {name}")


def test_a_run_whose_manifest_was_removed_predicts_only_when_the_user_vouches_for_it(old, tmp_path, capsys):
    run = tmp_path / "finished"
    shutil.copytree(old / "finished", run)
    (run / "model" / "MANIFEST.json").unlink()
    args = ["predict", str(run), "--data", str(old / "rows.csv"), "--out", str(tmp_path / "p.csv")]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model: no MANIFEST.json, so rayfit cannot vouch for its files" in err[0], err
    assert not (tmp_path / "p.csv").exists()
    _ran(main([*args, "--trust-unverified"]), capsys, "rayfit predict --trust-unverified")
    _same_answers(pd.read_csv(tmp_path / "p.csv", keep_default_na=False), BEST, "rayfit predict --trust-unverified")
    assert rayfit.load(run, trust_unverified=True).best_model.name == BEST
    with pytest.raises(rayfit.UserError, match="no MANIFEST.json"):
        rayfit.load(run).best_model


def test_load_gives_every_model_answering_as_before(old):
    before = tree_digest(old / "finished")
    rows = pd.read_csv(old / "rows.csv")
    try:
        run = rayfit.load(old / "finished")
        assert run.best_model_name == BEST
        answers = {f"best model ({BEST})": (BEST, run.best_model)}
        assert set(run.models) == set(EXPECTED["models"])
        answers.update({f"run.models[{name!r}]": (name, run.models[name]) for name in run.models})
        for what, (name, model) in answers.items():
            proba = model.predict_proba(rows)
            frame = pd.DataFrame({"prediction": model.predict(rows).tolist(),
                                  **{f"proba_{c}": proba[c].to_numpy() for c in proba.columns}})
            _same_answers(frame, name, what)
    except Exception as exc:
        raise AssertionError(f"rayfit.load: {MOVED}: {type(exc).__name__}: {exc}") from exc
    assert tree_digest(old / "finished") == before  # read, never changed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _call(url: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def test_serve_answers_as_when_the_run_was_made(old, ray_session, capsys):
    """`rayfit serve` itself, in this process: a client thread waits for the endpoint, asks it,
    then stops the server with Ctrl-C (SIGINT), as a user would."""
    port, done, got = _free_port(), threading.Event(), {}
    url = f"http://127.0.0.1:{port}/rayfit-finished"  # the suite's Ray is shared: under the app's own prefix
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in pd.read_csv(old / "rows.csv").to_dict("records")]

    def client():
        deadline = time.monotonic() + 180
        try:
            while not done.is_set() and time.monotonic() < deadline:
                try:
                    got["health"] = _call(url + "/healthz")
                    break
                except (urllib.error.URLError, ConnectionError, OSError):
                    time.sleep(0.5)
            if "health" in got:
                got["predict"] = _call(url + "/predict", rows)
        except Exception as exc:  # noqa: BLE001 - said by the test below
            got["error"] = repr(exc)
        finally:
            if not done.is_set():
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: rayfit serve stops

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        code = main(["serve", str(old / "finished"), "--port", str(port)])
        done.set()
        thread.join(timeout=30)
    except KeyboardInterrupt:  # the client's Ctrl-C came just after serve had ended on its own
        code = -1
    finally:
        done.set()
        # Ray Serve's log, where serve puts it: a file of the command's own (rayfit-serve-PORT-*.log)
        logs = list(Path(tempfile.gettempdir()).glob(f"rayfit-serve-{port}-*.log"))
        said = " ".join(log.read_text(errors="replace") for log in logs)
        for log in logs:
            log.unlink(missing_ok=True)
    # a replica that cannot load the model says why in Serve's log only
    assert "health" in got and "error" not in got, \
        f"rayfit serve (exit {code}): {MOVED}: {got}\n{capsys.readouterr().err[-2000:]}\n" \
        f"Ray Serve's log: ...{' | '.join(line for line in said.splitlines() if 'Error' in line)[-2000:]}"
    assert code == 0
    status, health = got["health"]
    assert status == 200 and health["status"] == "ok" and health["model"] == BEST, health
    status, answer = got["predict"]
    assert status == 200 and answer["rows"] == len(rows), answer
    frame = pd.DataFrame({"prediction": answer["predictions"],
                          **{f"proba_{c}": [p[c] for p in answer["probabilities"]] for c in answer["probabilities"][0]}})
    _same_answers(frame, BEST, "rayfit serve")


def test_resume_finishes_an_interrupted_run(tmp_path, monkeypatch, ray_session, capfd):
    """The run and its data moved together (a copy elsewhere), resumed from their folder: the run
    recorded its data as typed (`--data table.csv`), as a user who keeps them side by side does.
    It was stopped as its evaluation began: its three recorded models load from their old pickles."""
    moved = tmp_path / "moved"
    shutil.copytree(FIXTURES / "interrupted", moved / "interrupted")
    shutil.copy(FIXTURES / "table.csv", moved / "table.csv")
    run_dir = moved / "interrupted"
    recorded = json.loads((run_dir / "run_state.json").read_text())
    assert recorded["status"] == "running" and not (run_dir / "metrics.json").exists()
    monkeypatch.chdir(moved)

    code = main(["resume", "interrupted"])
    out, err = capfd.readouterr()
    assert code == 0, f"rayfit resume interrupted: exit {code}. {MOVED}.\n{(out + err)[-3000:]}"

    state = json.loads((run_dir / "run_state.json").read_text())
    assert state["status"] == "finished" and (run_dir / "metrics.json").is_file()
    # the recorded models were loaded (their records and files as they were), not trained again
    assert {name: state["stages"][name] for name in recorded["stages"]} == recorded["stages"]
    for name in recorded["stages"]:
        assert (run_dir / "models" / name / "estimator.joblib").read_bytes() == \
            (FIXTURES / "interrupted" / "models" / name / "estimator.joblib").read_bytes()
    expected = EXPECTED["resumed"]
    run = rayfit.load("interrupted")
    assert set(run.models) == set(expected["models"]) and run.best_model_name in run.models
    rows = pd.read_csv(FIXTURES / "rows.csv")
    for name, answers in expected["models"].items():
        model = run.models[name]
        proba = model.predict_proba(rows)
        assert model.predict(rows).tolist() == answers["prediction"], f"resumed {name}: predictions changed"
        for label in proba.columns:
            assert np.allclose(proba[label], answers[f"proba_{label}"], rtol=0, atol=1e-6), f"resumed {name}: {label}"
